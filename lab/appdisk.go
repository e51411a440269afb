package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// NomadDisk is the application disk of a pool member that runs a Nomad
// client: an ext2 image in the lab's image directory holding nomadBin as
// /app/nomad and guest/nomad-client.sh as /app/run, which the guest mounts
// read-only and runs with virtpool.app=1 on its command line (its other
// settings: see the script). Each member boots from it through an overlay
// of its own, as from any base image; the binary is read from the disk as
// it runs, so the guest's memory holds only what Nomad uses. Made once per
// binary and script: an image that exists is returned as it is.
func (l *Lab) NomadDisk(ctx context.Context, nomadBin string) (string, error) {
	script, err := guestSources.ReadFile("guest/nomad-client.sh")
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(nomadBin)
	if err != nil {
		return "", fmt.Errorf("nomad client disk: %w", err)
	}
	libs, err := sharedLibs(ctx, nomadBin)
	if err != nil {
		return "", fmt.Errorf("nomad client disk: %w", err)
	}
	copies := map[string]string{"nomad": nomadBin}
	sum := sha256.New()
	fmt.Fprintf(sum, "%s %d %d\n", nomadBin, fi.Size(), fi.ModTime().UnixNano())
	for _, lib := range libs {
		copies[filepath.Join("lib", filepath.Base(lib))] = lib
		fmt.Fprintf(sum, "%s\n", lib)
	}
	sum.Write(script)
	img := filepath.Join(l.ImageDir, "nomad-client-"+hex.EncodeToString(sum.Sum(nil))[:12]+".ext2")
	if _, err := os.Stat(img); err == nil {
		return img, nil
	}
	if err := appDisk(ctx, img, map[string][]byte{"run": script}, copies); err != nil {
		return "", fmt.Errorf("nomad client disk: %w", err)
	}
	// Older images (another binary or script) are of no more use: each
	// is the size of Nomad.
	old, _ := filepath.Glob(filepath.Join(l.ImageDir, "nomad-client-*.ext2"))
	for _, o := range old {
		if o != img {
			_ = os.Remove(o)
		}
	}
	return img, nil
}

// sharedLibs is what ldd says a dynamically linked binary loads: its
// interpreter and libraries, by the names the loader looks for (copied
// from what they link to). A Nomad built with cgo needs the machine's
// libc, which the guest's initramfs lacks; a static binary needs none.
func sharedLibs(ctx context.Context, bin string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", bin).CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "not a dynamic executable") {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, strings.TrimSpace(string(out)))
	}
	var libs []string
	for _, f := range strings.Fields(string(out)) {
		if !strings.HasPrefix(f, "/") {
			continue
		}
		libs = append(libs, f)
	}
	return libs, nil
}

// appDisk writes an ext2 image at img holding the given files (contents,
// or paths to copy), sized to them with room to spare, through a
// temporary file renamed at the end so that a half-made image is never
// found.
func appDisk(ctx context.Context, img string, contents map[string][]byte, copies map[string]string) error {
	root, err := os.MkdirTemp(filepath.Dir(img), ".appdisk-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	var size int64
	for name, b := range contents {
		if err := os.WriteFile(filepath.Join(root, name), b, 0o755); err != nil {
			return err
		}
		size += int64(len(b))
	}
	for name, src := range copies {
		dst := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := copyFile(src, dst); err != nil {
			return err
		}
		if err := os.Chmod(dst, 0o755); err != nil {
			return err
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return err
		}
		size += fi.Size()
	}
	// ext2's metadata and a block per small file: 5 % and 8 MiB more.
	mib := (size+size/20)>>20 + 8
	tmp := img + ".tmp"
	cmd := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext2", "-m", "0", "-L", "app", "-d", root, tmp, strconv.FormatInt(mib, 10)+"M")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mke2fs %s: %w: %s", tmp, err, strings.TrimSpace(string(out)))
	}
	return os.Rename(tmp, img)
}
