// Package nomadjob runs the shipped Nomad job file,
// examples/agent/agent.nomad.hcl, as written with a real Nomad agent (make
// testacc-nomad): `nomad agent -dev` on loopback only, the job run with the
// lab's hosts through its variables, the allocation running and its
// service check passing, the virtpool agent answering with the lab's
// hosts, then the job stopped and purged, and nothing left behind.
//
// It needs root, the lab and a Nomad binary ($VIRTPOOL_NOMAD, which make
// builds from tools/nomad), so it runs only when VIRTPOOL_ACC=1.
package nomadjob

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/agent"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/agenttest"
	"github.com/virtpool/virtpool/lab/autoscaler"
	"github.com/virtpool/virtpool/lab/labtest"
)

var (
	enabled = os.Getenv("VIRTPOOL_ACC") == "1"
	theLab  *lab.Lab
)

func TestMain(m *testing.M) {
	if !enabled {
		os.Exit(m.Run())
	}
	os.Exit(runWithLab(m))
}

func runWithLab(m *testing.M) int {
	log := hclog.New(&hclog.LoggerOptions{Name: "nomadjob", Level: hclog.LevelFromString(labtest.EnvOr("VIRTPOOL_LOG", "warn"))})
	l, down, err := labtest.Up(context.Background(), "nomadjob", true, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer down()
	theLab = l
	return m.Run()
}

// jobFile is the shipped example, run as an operator would run it.
var jobFile = filepath.Join("..", "..", "examples", "agent", "agent.nomad.hcl")

const jobID = "virtpool-agent" // the job file's

// TestAgentNomadJob runs the example job file with the lab's hosts and
// checks what an operator would: the allocation runs, Nomad's check of
// /health passes, the agent shows the hosts; stopping the job ends the
// agent and its driver.
func TestAgentNomadJob(t *testing.T) {
	if !enabled {
		t.Skip("acceptance test: needs root, the lab and Nomad; run with VIRTPOOL_ACC=1 (make testacc-nomad)")
	}
	nomadBin := os.Getenv("VIRTPOOL_NOMAD")
	if nomadBin == "" {
		t.Fatal("VIRTPOOL_NOMAD is not set: the nomad binary to run ('make testacc-nomad' builds it from tools/nomad)")
	}
	bin, err := labtest.VirtpoolBinary()
	if err != nil {
		t.Fatal(err)
	}
	drvBin, err := labtest.DriverBinary()
	if err != nil {
		t.Fatal(err)
	}
	n := startNomad(t, nomadBin)
	port, err := autoscaler.FreePort()
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	n.cli(t, "job", "run", "-detach",
		"-var", "virtpool="+bin, "-var", "driver_path="+drvBin,
		"-var", fmt.Sprintf("port=%d", port), "-var", "hosts="+agenttest.Hosts(theLab, "", false),
		jobFile)
	alloc := n.waitAlloc(t)
	running := time.Since(start)
	check := n.waitCheck(t, alloc.ID)
	passing := time.Since(start)
	t.Logf("job run → allocation running: %v; → its service check passing (%s, HTTP %d): %v",
		running.Round(time.Millisecond), check.Check, check.StatusCode, passing.Round(time.Millisecond))

	regs, _, err := n.api.Services().Get("virtpool-agent", nil)
	if err != nil {
		t.Fatalf("service virtpool-agent: %v", err)
	}
	if len(regs) != 1 || regs[0].Address != "127.0.0.1" || regs[0].Port != port || regs[0].AllocID != alloc.ID {
		t.Fatalf("service virtpool-agent: %+v, want one registration of allocation %s at 127.0.0.1:%d", regs, alloc.ID, port)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	if code, body := get(t, url+"health"); code != http.StatusOK {
		t.Fatalf("agent /health: %d %s", code, body)
	}
	// Every host sampled without error: a sample of a busy lab host can
	// miss its 2 s bound and show it down until the next (every 10 s in
	// the job), so a few samples are allowed.
	waitFor(t, n, "agent shows the lab's hosts active", 45*time.Second, func() (bool, error) {
		var hosts []agent.Host
		code, body := get(t, url+"api/v1/hosts")
		if code != http.StatusOK {
			return false, fmt.Errorf("/api/v1/hosts: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &hosts); err != nil {
			t.Fatalf("agent /api/v1/hosts: %v\n%s", err, body)
		}
		if err := sameHosts(hosts, theLab.Hosts); err != nil {
			return false, fmt.Errorf("/api/v1/hosts: %w", err)
		}
		return true, nil
	})
	t.Logf("agent shows the lab's %d hosts active %v after job run", len(theLab.Hosts), time.Since(start).Round(time.Millisecond))

	task := n.procs(t)
	agentPid, ok := task[bin]
	if !ok {
		t.Fatalf("no %s process of the job's allocation; the Nomad agent's processes: %v", bin, task)
	}
	t.Logf("under Nomad: virtpool agent (pid %d) RSS %d MiB, its driver RSS %d MiB", agentPid, rssKiB(t, agentPid)>>10, rssKiB(t, task[drvBin])>>10)

	stopped := time.Now()
	n.cli(t, "job", "stop", "-purge", "-detach", jobID)
	n.waitGone(t, alloc.ID, []int{agentPid, task[drvBin]})
	t.Logf("job stop -purge → agent and driver gone, job purged: %v", time.Since(stopped).Round(time.Millisecond))
}

// sameHosts says how the agent's hosts differ from the lab's: the same
// names, each active (sampled, no error).
func sameHosts(got []agent.Host, want []lab.Host) error {
	names := map[string]agent.Host{}
	for _, h := range got {
		names[h.Name] = h
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d hosts, want the lab's %d", len(got), len(want))
	}
	for _, w := range want {
		h, ok := names[w.Name]
		if !ok {
			return fmt.Errorf("no host %s", w.Name)
		}
		if h.State != "active" || h.Error != "" || h.URI != w.URI {
			return fmt.Errorf("host %s is %s (%q) at %s, want active at %s", w.Name, h.State, h.Error, h.URI, w.URI)
		}
	}
	return nil
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// waitFor polls cond every 100 ms until it is done or the deadline, which
// only keeps a stuck Nomad from hanging the suite, passes; its last error
// says what was still missing.
func waitFor(t *testing.T, n *nomadAgent, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, err := cond()
		if done {
			return
		}
		select {
		case <-n.proc.Done():
			t.Fatalf("%s: nomad exited (%v)\n%s", what, n.proc.Err(), n.proc.Tail(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not by %s (%v)\n%s", what, deadline.Format(time.TimeOnly), err, n.proc.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var errNotYet = errors.New("not yet")
