package provider

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
)

// TestAccExampleLab applies examples/lab/main.tf and destroys it with the
// real terraform CLI and the built provider binary, found through the CLI
// configuration the Makefile writes (dev_overrides: no registry needed).
// It is what `make example-lab` runs.
func TestAccExampleLab(t *testing.T) {
	needAcc(t)
	cfgFile := os.Getenv("TF_CLI_CONFIG_FILE")
	b, err := os.ReadFile(cfgFile)
	if err != nil || !strings.Contains(string(b), "dev_overrides") || !strings.Contains(string(b), Address) {
		t.Fatalf("TF_CLI_CONFIG_FILE=%q must be a CLI config with dev_overrides for %s (make testacc-provider writes one): %v",
			cfgFile, Address, err)
	}
	dir := exampleDir(t)
	exampleLab(t, terraformIn(t, dir, nil))
}

// exampleDir is a temporary directory holding a copy of examples/lab.
func exampleDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile("../examples/lab/main.tf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), src, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// terraformIn returns a runner of the terraform CLI in dir, with env added
// to the test's environment; it fails the test on an error.
func terraformIn(t *testing.T, dir string, env []string) func(args ...string) string {
	return func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "terraform", append([]string{"-chdir=" + dir}, args...)...)
		cmd.Env = append(append(os.Environ(), "TF_IN_AUTOMATION=1"), env...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("terraform %s: %s", args[0], time.Since(start).Round(time.Millisecond))
		return string(out)
	}
}

// exampleLab applies examples/lab with tf (run in an exampleDir), checks what
// it made on the lab, that a second plan is empty, destroys it, and checks
// nothing is left (no driver process either).
func exampleLab(t *testing.T, tf func(args ...string) string) {
	t.Helper()
	destroyed := false
	t.Cleanup(func() {
		if !destroyed {
			tf("destroy", "-auto-approve", "-input=false", "-no-color")
		}
	})

	before := map[string]bool{}
	for _, o := range orphanDrivers(t) {
		before[o] = true
	}
	tf("apply", "-auto-approve", "-input=false", "-no-color")
	var outs struct {
		WebMembers struct{ Value map[string]string } `json:"web_members"`
		DB         struct{ Value map[string]string } `json:"db"`
	}
	if err := json.Unmarshal([]byte(tf("output", "-json")), &outs); err != nil {
		t.Fatal(err)
	}
	if len(outs.WebMembers.Value) != 2 {
		t.Errorf("web_members = %v, want 2 members", outs.WebMembers.Value)
	}
	hosts := map[string]bool{}
	for name, h := range outs.WebMembers.Value {
		if hosts[h] {
			t.Errorf("two members on %s despite anti_affinity: %v", h, outs.WebMembers.Value)
		}
		hosts[h] = true
		if l := where(t, name); len(l) != 1 || l[0].Host != h || l[0].State != driver.StateRunning {
			t.Errorf("member %s: on the hosts %+v, output says %s", name, l, h)
		}
	}
	if db := outs.DB.Value; db["host"] != "h3" || db["state"] != driver.StateRunning || db["uuid"] == "" {
		t.Errorf("db output %v, want running on h3", db)
	}
	waitGuest(t, "192.0.2.149")
	if on, _, err := recordHosts(driver.RecordPool, "lab-web"); err != nil || len(on) != 3 {
		t.Errorf("pool record on %v (%v), want all 3 hosts", on, err)
	}
	// A second plan is empty: Read agrees with what apply did.
	if out := tf("plan", "-detailed-exitcode", "-input=false", "-no-color"); !strings.Contains(out, "No changes") {
		t.Errorf("plan after apply is not empty:\n%s", out)
	}

	tf("destroy", "-auto-approve", "-input=false", "-no-color")
	destroyed = true
	for _, name := range []string{"lab-db", "lab-web-1", "lab-web-2"} {
		if l := where(t, name); len(l) > 0 {
			t.Errorf("after destroy %s is still defined: %+v", name, l)
		}
	}
	if on, _, err := recordHosts(driver.RecordPool, "lab-web"); err != nil || len(on) > 0 {
		t.Errorf("after destroy the pool record is on %v (%v)", on, err)
	}
	// Each terraform command ran the provider, which started a driver
	// process; the provider must have stopped it when terraform was done.
	for _, o := range orphanDrivers(t) {
		if !before[o] {
			t.Errorf("a driver process outlived the provider: %s", o)
		}
	}
}

// orphanDrivers lists virtpool-driver processes whose parent is gone
// (reparented to PID 1).
func orphanDrivers(t *testing.T) []string {
	t.Helper()
	var out []string
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if !strings.Contains(string(cmd), "virtpool-driver") {
			continue
		}
		st, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		// stat: pid (comm) state ppid …
		if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 1 && f[1] == "1" {
			out = append(out, d.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
		}
	}
	return out
}
