// Package acctest holds the acceptance tests of virtpool's Nomad Autoscaler
// plugins: the real nomad-autoscaler agent (v0.5.0, built by make
// autoscaler) runs file policies with virtpool-apm and virtpool-target from
// a plugin directory, against the lab's real libvirt hosts and QEMU guests
// whose load generators the tests drive.
//
// They need root and the lab, so they run only when VIRTPOOL_ACC=1 (make
// testacc-autoscaler, part of make test); otherwise each test skips and
// says so. With VIRTPOOL_ACC=1 a missing binary is a failure, not a skip.
package acctest

import (
	"context"
	"fmt"
	"github.com/virtpool/virtpool/lab/labtest"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	vpplugin "github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
)

const labLock = "/tmp/virtpool-lab.lock"

var (
	enabled = os.Getenv("VIRTPOOL_ACC") == "1"
	theLab  *lab.Lab
	drv     driver.Driver
	client  *probe.Client
	logger  hclog.Logger

	// The binaries under test.
	autoscalerBin string // nomad-autoscaler
	pluginDir     string // holds virtpool-apm, virtpool-target, virtpool-driver
)

func needLab(t testing.TB) {
	t.Helper()
	if !enabled {
		t.Skip("acceptance test: needs root, the lab and the autoscaler; run with VIRTPOOL_ACC=1 (make testacc-autoscaler)")
	}
}

func TestMain(m *testing.M) {
	if !enabled {
		os.Exit(m.Run())
	}
	os.Exit(runWithLab(m))
}

func runWithLab(m *testing.M) int {
	ctx := context.Background()
	logger = hclog.New(&hclog.LoggerOptions{Name: "autoscaler-acc", Level: hclog.LevelFromString(labtest.EnvOr("VIRTPOOL_LOG", "warn"))})
	var err error
	if autoscalerBin, pluginDir, err = binaries(); err != nil {
		fmt.Fprintln(os.Stderr, "autoscaler acc:", err)
		return 1
	}
	// The lab is shared with other suites: hold its lock throughout, unless
	// the caller (make, through flock -o) already does.
	if os.Getenv("VIRTPOOL_LAB_LOCK_HELD") != "1" {
		f, err := os.OpenFile(labLock, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			fmt.Fprintln(os.Stderr, "autoscaler acc: lab lock:", err)
			return 1
		}
		defer f.Close()
		syscall.CloseOnExec(int(f.Fd()))
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			fmt.Fprintln(os.Stderr, "autoscaler acc: waiting for the lab lock", labLock)
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
				fmt.Fprintln(os.Stderr, "autoscaler acc: lab lock:", err)
				return 1
			}
		}
	}
	_, loadErr := lab.Load()
	keep := loadErr == nil || os.Getenv("VIRTPOOL_LAB_KEEP") == "1" // don't tear down a lab we did not start
	theLab, err = lab.Up(ctx, lab.Config{Hosts: 3, Log: logger.Named("lab")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "autoscaler acc: lab up:", err)
		if !keep {
			lab.Down(ctx, logger)
		}
		return 1
	}
	if !keep {
		defer func() {
			if err := lab.Down(ctx, logger); err != nil {
				fmt.Fprintln(os.Stderr, "autoscaler acc: lab down:", err)
			}
		}()
	}
	client = probe.New(theLab.ClientNamespace)
	p, err := vpplugin.Start(filepath.Join(pluginDir, vpplugin.BinaryName), logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "autoscaler acc:", err)
		return 1
	}
	defer p.Close()
	drv = p.Driver
	return m.Run()
}

// binaries finds the agent and the plugin directory make built.
func binaries() (string, string, error) {
	as, dir := os.Getenv("VIRTPOOL_AUTOSCALER"), os.Getenv("VIRTPOOL_PLUGIN_DIR")
	if as == "" || dir == "" {
		return "", "", fmt.Errorf("set VIRTPOOL_AUTOSCALER and VIRTPOOL_PLUGIN_DIR (make testacc-autoscaler does)")
	}
	for _, f := range []string{as, filepath.Join(dir, "virtpool-apm"), filepath.Join(dir, "virtpool-target"),
		filepath.Join(dir, vpplugin.BinaryName)} {
		if fi, err := os.Stat(f); err != nil || fi.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("%s is not an executable (run make autoscaler plugins): %v", f, err)
		}
	}
	return as, dir, nil
}
