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
	if p := os.Getenv("VIRTPOOL_DRIVER"); p != "" {
		return p, nil
	}
	dir, err := os.MkdirTemp("", "virtpool-driver-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "virtpool-driver")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/virtpool/virtpool/cmd/virtpool-driver").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build virtpool-driver: %w\n%s", err, out)
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
