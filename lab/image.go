package lab

import (
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// The guest image's sources travel inside the binary, so 'virtpool lab up'
// works from anywhere.
//
//go:embed guest
var guestSources embed.FS

// CacheDir keeps downloaded packages and built guest images between labs.
func CacheDir() string {
	if d := os.Getenv("VIRTPOOL_CACHE"); d != "" {
		return d
	}
	return "/var/cache/virtpool"
}

// BuildGuest builds (or finds up to date) the tiny guest image into dir.
func BuildGuest(ctx context.Context, log hclog.Logger, dir string) error {
	src, err := os.MkdirTemp("", "virtpool-guest-src-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(src)
	err = fs.WalkDir(guestSources, "guest", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := guestSources.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(src, strings.TrimPrefix(p, "guest/"))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o755)
	})
	if err != nil {
		return fmt.Errorf("unpack guest sources: %w", err)
	}
	log.Info("building guest image (cached after the first time)", "dir", dir)
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(src, "build.sh"), dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("build guest image: %w", err)
	}
	return nil
}

// installImage puts the guest kernel and initramfs into the shared image
// directory, where every host finds them at the same path.
func installImage(ctx context.Context, log hclog.Logger, guestDir, imageDir string) (Image, error) {
	if guestDir == "" {
		guestDir = filepath.Join(CacheDir(), "guest")
		if err := BuildGuest(ctx, log, guestDir); err != nil {
			return Image{}, err
		}
	}
	img := Image{
		Kernel: filepath.Join(imageDir, "vmlinux"),
		Initrd: filepath.Join(imageDir, "initramfs.img"),
	}
	for _, f := range []string{"vmlinux", "initramfs.img"} {
		if err := copyFile(filepath.Join(guestDir, f), filepath.Join(imageDir, f)); err != nil {
			return Image{}, fmt.Errorf("guest image: %w", err)
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(guestDir, "cmdline"))
	if err != nil {
		return Image{}, fmt.Errorf("guest image: %w", err)
	}
	img.Cmdline = strings.TrimSpace(string(cmdline))
	return img, nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if si, err := in.Stat(); err == nil {
		if di, err := os.Stat(dst); err == nil && di.Size() == si.Size() && !di.ModTime().Before(si.ModTime()) {
			return nil
		}
	}
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(dst+".tmp", dst)
}
