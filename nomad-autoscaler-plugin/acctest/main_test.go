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
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	vpplugin "github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/labtest"
	"github.com/virtpool/virtpool/lab/probe"
)

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
	var down func()
	if theLab, down, err = labtest.Up(ctx, "autoscaler acc", true, logger); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer down()
	// Over tls the hosts ask for a login: from the environment, as an
	// operator gives it to the agent, its plugins and their drivers.
	creds, err := theLab.Credentials()
	if err != nil {
		fmt.Fprintln(os.Stderr, "autoscaler acc:", err)
		return 1
	}
	if creds != nil {
		env, err := driver.CredentialsEnvEntry(creds)
		if err != nil {
			fmt.Fprintln(os.Stderr, "autoscaler acc:", err)
			return 1
		}
		k, v, _ := strings.Cut(env, "=")
		os.Setenv(k, v)
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
		if fi, err := os.Stat(f); err != nil {
			return "", "", fmt.Errorf("%s is not an executable (run make autoscaler plugins): %w", f, err)
		} else if fi.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("%s is not an executable (run make autoscaler plugins)", f)
		}
	}
	return as, dir, nil
}
