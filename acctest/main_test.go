// Package acctest holds virtpool's acceptance tests: seed 002's migration
// campaign (R-T1…R-T7) and fault injection, run through the real driver
// process (go-plugin) against the lab's real libvirt daemons and QEMU.
//
// They need root and start the lab, so they run only when VIRTPOOL_ACC=1
// (make testacc, part of make test); otherwise each test skips and says so.
package acctest

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	vpplugin "github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/labtest"
	"github.com/virtpool/virtpool/lab/probe"
)

var (
	enabled    = os.Getenv("VIRTPOOL_ACC") == "1"
	theLab     *lab.Lab
	drv        driver.Driver
	driverProc *vpplugin.Process
	logger     hclog.Logger
)

// needLab skips a test unless acceptance tests are enabled.
func needLab(t testing.TB) {
	t.Helper()
	if !enabled {
		t.Skip("acceptance test: needs root and the lab; run with VIRTPOOL_ACC=1 (make testacc)")
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
	logger = hclog.New(&hclog.LoggerOptions{Name: "acctest", Level: hclog.LevelFromString(labtest.EnvOr("VIRTPOOL_LOG", "warn"))})
	var down func()
	var err error
	// The campaign measures migration, not placement, and runs one guest at
	// a time: its hosts share the machine (no budgets). A budget freezes a
	// busy vCPU in the middle of kernel paths while QEMU's migration thread
	// syncs the dirty bitmap, and QEMU 7.2's TCG then loses guest writes
	// (see lab/guest/kernel.config): R-T4's memory-dirtying guest crashed
	// in about one migration in a hundred with budgets.
	if theLab, down, err = labtest.Up(ctx, "acctest", false, logger); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer down()
	client = probe.New(theLab.ClientNamespace)
	bin, err := labtest.DriverBinary()
	if err != nil {
		fmt.Fprintln(os.Stderr, "acctest:", err)
		return 1
	}
	if err := startDriver(bin); err != nil {
		fmt.Fprintln(os.Stderr, "acctest:", err)
		return 1
	}
	defer func() { driverProc.Close() }()
	return m.Run()
}

// startDriver starts (or restarts, after a fault test killed it) the
// driver plugin process.
func startDriver(bin string) error {
	p, err := vpplugin.Start(bin, logger)
	if err != nil {
		return fmt.Errorf("start driver %s: %w", bin, err)
	}
	driverProc, drv = p, p.Driver
	return nil
}
