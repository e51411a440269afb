// Package labtest holds what the acceptance-test packages that use the lab
// share.
package labtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"
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

// Median runs f calls times and returns the median of their durations
// (of the two middle ones, for an even count); an error of f fails tb.
func Median(tb testing.TB, calls int, f func() error) time.Duration {
	tb.Helper()
	var ds []time.Duration
	for range calls {
		start := time.Now()
		if err := f(); err != nil {
			tb.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return (ds[(calls-1)/2] + ds[calls/2]) / 2
}
