// Package agenttest runs the real `virtpool agent` binary against the lab's
// hosts for acceptance tests, and reads its API: its state, its events.
package agenttest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/agent"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/autoscaler"
	"github.com/virtpool/virtpool/lab/labtest"
)

// Options add to the agent's configuration.
type Options struct {
	Interval time.Duration // sample_interval
	Fence    bool          // every host's fence action: virtpool lab fence NAME
	PowerOn  bool          // with Fence, every host's power-on action: virtpool lab start NAME
	Extra    string        // more top-level lines
}

// Agent is a `virtpool agent` process and its API.
type Agent struct {
	Proc     *autoscaler.Agent // the lab's process runner: lines kept, group stopped
	URL      string
	interval time.Duration
}

// Start runs the agent over l's hosts with the binaries the tests use
// (labtest), and stops it when the test ends (showing its last lines if
// the test failed).
func Start(t testing.TB, l *lab.Lab, o Options) *Agent {
	t.Helper()
	bin, err := labtest.VirtpoolBinary()
	if err != nil {
		t.Fatal(err)
	}
	drvBin, err := labtest.DriverBinary()
	if err != nil {
		t.Fatal(err)
	}
	fence := ""
	if o.Fence {
		fence = bin
	}
	tlsFiles := lab.ShipClientFiles()
	cfg := fmt.Sprintf("listen = \"127.0.0.1:0\"\nsample_interval = %q\nretention = \"5m\"\ndriver_path = %q\nhosts = %s\n"+
		"checkpoint_ca = %q\ncheckpoint_cert = %q\ncheckpoint_key = %q\n%s\n",
		o.Interval, drvBin, Hosts(l, fence, o.PowerOn), tlsFiles.CA, tlsFiles.Cert, tlsFiles.Key, o.Extra)
	path := filepath.Join(t.TempDir(), "agent.hcl")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := autoscaler.Start(autoscaler.Config{Bin: bin, Args: []string{"agent", "-config", path},
		Env: append(os.Environ(), "VIRTPOOL_LOG=debug"), Grace: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{Proc: p, interval: o.Interval}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("agent output:\n%s", a.Tail(60))
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	line, err := p.WaitLine(ctx, regexp.MustCompile(`agent listening: url=(http://\S+/)`), time.Time{})
	if err != nil {
		t.Fatalf("agent did not start listening: %v\n%s", err, a.Tail(30))
	}
	a.URL = regexp.MustCompile(`url=(http://\S+/)`).FindStringSubmatch(line.Text)[1]
	return a
}

// Hosts is the agent configuration's hosts map for l's hosts, with their
// budgets when they have one and, when virtpool (its binary) is not "",
// each host's fence action: virtpool lab fence NAME, and with powerOn its
// power-on action: virtpool lab start NAME.
func Hosts(l *lab.Lab, virtpool string, powerOn bool) string {
	var b strings.Builder
	b.WriteString("{\n")
	for _, h := range l.Hosts {
		fmt.Fprintf(&b, "  %s = { uri = %q", h.Name, h.URI)
		if c := h.Capacity(); c.CPUs > 0 {
			fmt.Fprintf(&b, ", cpus = %v, memory_mib = %d", c.CPUs, c.MemoryMiB)
		}
		if h.ShipBin != "" {
			fmt.Fprintf(&b, ", checkpoint_url = %q, checkpoint_peer_url = %q, checkpoint_dir = %q", h.ShipURL(), h.ShipPeerURL(), h.ShipDir())
		}
		if virtpool != "" {
			fmt.Fprintf(&b, ", fence = [%q, \"lab\", \"fence\", %q]", virtpool, h.Name)
			if powerOn {
				fmt.Fprintf(&b, ", power_on = [%q, \"lab\", \"start\", %q]", virtpool, h.Name)
			}
		}
		b.WriteString(" }\n")
	}
	b.WriteString("}")
	return b.String()
}

// Tail is the agent's last n lines of output.
func (a *Agent) Tail(n int) string { return a.Proc.Tail(n) }

// Get reads path of the agent's API into v (JSON, or the text for a
// *string).
func (a *Agent) Get(t testing.TB, path string, v any) {
	t.Helper()
	resp, err := http.Get(a.URL + strings.TrimPrefix(path, "/"))
	if err != nil {
		t.Fatalf("agent GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("agent GET %s: %d %v\n%s", path, resp.StatusCode, err, body)
	}
	if s, ok := v.(*string); ok {
		*s = string(body)
		return
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("agent GET %s: %v\n%s", path, err, body)
	}
}

// After returns the agent's state once it has taken n samples whose
// rounds began after the call, so that what happened before the call is
// in each of them (a round in flight at the call may have read a host
// before it changed, and be stored after). The deadline only keeps a
// stuck agent from hanging the suite: the wait is counted in samples.
func (a *Agent) After(t testing.TB, n int) agent.State {
	t.Helper()
	call := time.Now() // the agent's rounds are timed on this machine's clock
	seen := map[time.Time]bool{}
	deadline := call.Add(time.Duration(n+1)*a.interval*20 + 30*time.Second)
	var s agent.State
	for {
		a.Get(t, "/api/v1/state", &s)
		if s.Time.After(call) {
			seen[s.Time] = true
		}
		if len(seen) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent took %d samples begun after %s, not %d, by %s\n%s", len(seen), call.Format(time.TimeOnly), n,
				deadline.Format(time.TimeOnly), a.Tail(30))
		}
		time.Sleep(a.interval / 5)
	}
}

// LastSeq is the agent's newest event number.
func (a *Agent) LastSeq(t testing.TB) int64 {
	t.Helper()
	var evs []event.Event
	a.Get(t, "/api/v1/events", &evs)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// WaitEvents waits until the agent has shown, after seq, an event of each
// "kind:subject" in want (subject: the pool for events about a pool, else
// the guest for events about a guest, else the host), and returns the first of each. The deadline only keeps a
// stuck agent from hanging the suite.
func (a *Agent) WaitEvents(t testing.TB, seq int64, want ...string) map[string]event.Event {
	t.Helper()
	got := map[string]event.Event{}
	deadline := time.Now().Add(90 * time.Second)
	for {
		var evs []event.Event
		a.Get(t, fmt.Sprintf("/api/v1/events?since=%d", seq), &evs)
		for _, e := range evs {
			subject := e.Host
			if e.Pool != "" {
				subject = e.Pool
			} else if e.Guest != "" {
				subject = e.Guest
			}
			if k := e.Kind + ":" + subject; slices.Contains(want, k) {
				if _, seen := got[k]; !seen {
					got[k] = e
				}
			}
		}
		if len(got) == len(want) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("events %v not all seen by %s (saw %v)\n%s", want, deadline.Format(time.TimeOnly), got, a.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
