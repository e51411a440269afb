package nomadjob

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/lab/autoscaler"
)

// nomadAgent is a `nomad agent -dev` of this test and its HTTP API.
type nomadAgent struct {
	bin  string
	dir  string // its configuration and data dir: every process it starts names it
	addr string // http://127.0.0.1:PORT
	api  *nomad.Client
	proc *autoscaler.Agent // the lab's process runner: lines kept, group stopped
}

// nomadConfig keeps Nomad on loopback and off the network: every address
// and port is 127.0.0.1's, the cloud fingerprinters (which ask a metadata
// address; this machine sets AWS_CA_BUNDLE, which makes env_aws try), the
// Consul and Vault ones and the update check (checkpoint) are off, and no
// driver but raw_exec is loaded. Nomad 1.6 cannot turn its Consul client
// off: it asks 127.0.0.1:8500 now and then, so its address is a socket in
// the test's directory that nothing listens on. Nomad 1.6 enables raw_exec in dev mode
// already; the plugin block says so for any version. raw_exec's tasks get
// no cgroup: on cgroups v1 Nomad puts them in freezer/nomad/ whatever
// cgroup_parent says, which would outlive the agent; the task's process
// group is what stops them (the agent and its driver) either way.
const nomadConfig = `
bind_addr            = "127.0.0.1"
data_dir             = %[1]q
disable_update_check = true
log_level            = "INFO"

advertise {
  http = "127.0.0.1:%[2]d"
  rpc  = "127.0.0.1:%[3]d"
  serf = "127.0.0.1:%[4]d"
}

ports {
  http = %[2]d
  rpc  = %[3]d
  serf = %[4]d
}

client {
  network_interface = "lo"
  cgroup_parent     = %[5]q
  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean,consul,vault"
    "driver.allowlist"     = "raw_exec"
  }
}

consul {
  address          = "unix://%[6]s"
  auto_advertise   = false
  server_auto_join = false
  client_auto_join = false
}

plugin "raw_exec" {
  config {
    enabled    = true
    no_cgroups = true
  }
}
`

// startNomad starts a dev agent (server and client in one, state in
// memory and in a temporary directory) and waits for its client to be
// ready with raw_exec. When the test ends it stops it and checks that
// nothing it started is left: no process and no cgroup.
func startNomad(t *testing.T, bin string) *nomadAgent {
	t.Helper()
	var ports [3]int
	for i := range ports {
		p, err := autoscaler.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	n := &nomadAgent{bin: bin, dir: t.TempDir(), addr: fmt.Sprintf("http://127.0.0.1:%d", ports[0])}
	// Nomad's cgroups (its cpuset manager's) go under a parent of this
	// test's own, removed at the end.
	cgroupParent := "virtpool-nomadjob-" + filepath.Base(filepath.Dir(n.dir)) + "-" + filepath.Base(n.dir)
	cfg := filepath.Join(n.dir, "nomad.hcl")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, nomadConfig, filepath.Join(n.dir, "data"), ports[0], ports[1], ports[2], "/"+cgroupParent, filepath.Join(n.dir, "no-consul.sock")), 0o644); err != nil {
		t.Fatal(err)
	}
	proc, err := autoscaler.Start(autoscaler.Config{Bin: bin, Args: []string{"agent", "-dev", "-config", cfg},
		Dir: n.dir, Env: n.env(), LogFile: filepath.Join(n.dir, "nomad.log"), Grace: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n.proc = proc
	t.Cleanup(func() { n.stop(t, cgroupParent) })
	if n.api, err = nomad.NewClient(&nomad.Config{Address: n.addr}); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	waitFor(t, n, "nomad client ready with raw_exec", 60*time.Second, func() (bool, error) {
		nodes, _, err := n.api.Nodes().List(nil)
		if err != nil {
			return false, err
		}
		for _, node := range nodes {
			if d := node.Drivers["raw_exec"]; node.Status == "ready" && d != nil && d.Healthy {
				return true, nil
			}
		}
		return false, fmt.Errorf("nodes %v: %w", nodes, errNotYet)
	})
	t.Logf("nomad agent -dev ready (client with raw_exec) in %v", time.Since(started).Round(time.Millisecond))
	return n
}

// env is this process's environment for Nomad and its CLI, less any
// NOMAD_* setting that would send them elsewhere, with this agent's
// address.
func (n *nomadAgent) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOMAD_") {
			env = append(env, kv)
		}
	}
	return append(env, "NOMAD_ADDR="+n.addr)
}

// cli runs the nomad CLI against this agent, as an operator would.
func (n *nomadAgent) cli(t *testing.T, args ...string) {
	t.Helper()
	cmd := exec.Command(n.bin, args...)
	cmd.Env = n.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nomad %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("nomad %s:\n%s", args[0]+" "+args[1], out)
}

// waitAlloc waits for the job's allocation to run; one that failed fails
// the test with its task's events.
func (n *nomadAgent) waitAlloc(t *testing.T) *nomad.AllocationListStub {
	t.Helper()
	var running *nomad.AllocationListStub
	waitFor(t, n, "allocation running", 90*time.Second, func() (bool, error) {
		allocs, _, err := n.api.Jobs().Allocations(jobID, false, nil)
		if err != nil {
			return false, err
		}
		for _, a := range allocs {
			switch a.ClientStatus {
			case nomad.AllocClientStatusRunning:
				running = a
				return true, nil
			case nomad.AllocClientStatusFailed:
				t.Fatalf("allocation %s failed: %s", a.ID, taskEvents(a))
			}
		}
		return false, fmt.Errorf("allocations %d: %w", len(allocs), errNotYet)
	})
	return running
}

func taskEvents(a *nomad.AllocationListStub) string {
	var b strings.Builder
	for task, s := range a.TaskStates {
		for _, e := range s.Events {
			fmt.Fprintf(&b, "\n  %s: %s %s", task, e.Type, e.DisplayMessage)
		}
	}
	return b.String()
}

// waitCheck waits for the service check of the allocation to pass.
func (n *nomadAgent) waitCheck(t *testing.T, allocID string) nomad.AllocCheckStatus {
	t.Helper()
	var passed nomad.AllocCheckStatus
	waitFor(t, n, "service check passing", 90*time.Second, func() (bool, error) {
		checks, err := n.api.Allocations().Checks(allocID, nil)
		if err != nil {
			return false, err
		}
		for _, c := range checks {
			if c.Service == "virtpool-agent" && c.Status == "success" {
				passed = c
				return true, nil
			}
		}
		return false, fmt.Errorf("checks %+v: %w", checks, errNotYet)
	})
	return passed
}

// waitGone waits for the job to be purged and the given processes (the
// task's) and every other process of the allocation to be gone.
func (n *nomadAgent) waitGone(t *testing.T, allocID string, pids []int) {
	t.Helper()
	waitFor(t, n, "job purged, its processes gone", 60*time.Second, func() (bool, error) {
		for _, pid := range pids {
			if alive(pid) {
				return false, fmt.Errorf("process %d: %w", pid, errNotYet)
			}
		}
		if left := n.procsWhere("NOMAD_ALLOC_ID=" + allocID); len(left) > 0 {
			return false, fmt.Errorf("processes of allocation %s: %v: %w", allocID, left, errNotYet)
		}
		_, _, err := n.api.Jobs().Info(jobID, nil)
		var unexpected nomad.UnexpectedResponseError
		if errors.As(err, &unexpected) && unexpected.StatusCode() == 404 {
			return true, nil
		}
		if err != nil {
			return false, fmt.Errorf("job %s: %w", jobID, err)
		}
		return false, fmt.Errorf("job %s still known: %w", jobID, errNotYet)
	})
}

// procs is the processes of this agent's allocations by executable
// (symbolic links resolved): the ones whose environment or command line
// names its directory.
func (n *nomadAgent) procs(t *testing.T) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, pid := range n.procsWhere(n.dir) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue // gone since
		}
		if _, seen := m[exe]; !seen {
			m[exe] = pid
		}
	}
	// The test names binaries as it was given them.
	for _, env := range []string{"VIRTPOOL_BIN", "VIRTPOOL_DRIVER"} {
		if p := os.Getenv(env); p != "" {
			if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
				if pid, ok := m[real]; ok {
					m[p] = pid
				}
			}
		}
	}
	return m
}

// procsWhere is the live processes (zombies are not) whose environment or
// command line holds s.
func (n *nomadAgent) procsWhere(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || !alive(pid) {
			continue
		}
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if err == nil && bytes.Contains(b, []byte(s)) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// alive: the process exists and has not exited (a zombie, not reaped by
// whatever init this machine has, has).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE …: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

var vmRSS = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB$`)

// rssKiB is a process's resident memory.
func rssKiB(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("RSS of %d: %v", pid, err)
	}
	m := vmRSS.FindSubmatch(b)
	if m == nil {
		t.Fatalf("RSS of %d: no VmRSS", pid)
	}
	kib, _ := strconv.Atoi(string(m[1]))
	return kib
}

// stop ends the agent (SIGINT: a dev agent stops its allocations; then
// its process group is killed) and fails the test for anything of it
// left: a process (a task runs in a process group of its own, so it would
// outlive the agent's), which it then kills, or a cgroup, which it
// removes.
func (n *nomadAgent) stop(t *testing.T, cgroupParent string) {
	n.proc.Stop()
	if t.Failed() {
		t.Logf("nomad output:\n%s", n.proc.Tail(60))
	}
	deadline := time.Now().Add(10 * time.Second)
	left := n.procsWhere(n.dir)
	for len(left) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		left = n.procsWhere(n.dir)
	}
	if len(left) > 0 {
		t.Errorf("processes of the nomad agent left after it stopped: %v (killed)", left)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if left := removeCgroups(cgroupParent); len(left) > 0 {
		t.Errorf("cgroups of the nomad agent left after it stopped: %v (removed)", left)
	}
}

// removeCgroups removes the cgroups named parent (in every cgroup v1
// hierarchy, and in v2's) with what is under them, deepest first, and
// returns those it found that had anything under them but Nomad's own
// (cpuset: reserved and shared), i.e. a task's cgroup that should have
// gone with it.
func removeCgroups(parent string) []string {
	roots, _ := filepath.Glob("/sys/fs/cgroup/*/" + parent)
	if v2 := "/sys/fs/cgroup/" + parent; exists(v2) {
		roots = append(roots, v2)
	}
	var left []string
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if rel, _ := filepath.Rel(root, dirs[i]); rel != "." && rel != "reserved" && rel != "shared" {
				left = append(left, dirs[i])
			}
			_ = os.Remove(dirs[i])
		}
	}
	return left
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }
