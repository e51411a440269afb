// Package labtest holds what the acceptance-test packages that use the lab
// share.
package labtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// DriverBinary is $VIRTPOOL_DRIVER, or virtpool-driver built from this
// module into a temporary directory.
func DriverBinary() (string, error) {
	return Binary("VIRTPOOL_DRIVER", "github.com/virtpool/virtpool/cmd/virtpool-driver")
}

// VirtpoolBinary is $VIRTPOOL_BIN, or the virtpool command built from this
// module into a temporary directory.
func VirtpoolBinary() (string, error) {
	return Binary("VIRTPOOL_BIN", "github.com/virtpool/virtpool/cmd/virtpool")
}

// Binary is the path in the environment variable env, or the command pkg
// built into a temporary directory.
func Binary(env, pkg string) (string, error) {
	if p := os.Getenv(env); p != "" {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "virtpool-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// EnvOr is the environment variable k, or def when it is unset or empty.
func EnvOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
