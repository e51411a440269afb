package acctest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/agenttest"
	"github.com/virtpool/virtpool/pool"
)

// failoverGrace is how long the tests' agent waits before failing a host.
const failoverGrace = 3 * time.Second

// failPools are the pools the host failure tests run: each has one
// member on h3 and one on another host.
var failPools = []struct {
	name   string
	hosts  []string
	ipBase int
}{{"vpf-a", []string{"h1", "h3"}, 201}, {"vpf-b", []string{"h2", "h3"}, 211}}

func failOps() *pool.Ops {
	return &pool.Ops{Hosts: theLab.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return drv, nil },
		Log: logger.Named("failover-test"), HostTimeout: 5 * time.Second}
}

// failPoolsUp stores the failover pools, empty, and removes them when
// the test ends.
func failPoolsUp(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ops := failOps()
	img := theLab.Image
	for _, fp := range failPools {
		spec := pool.Spec{Name: fp.name, Size: 0, MaxSize: 4, Placement: pool.PlacementSpread, AntiAffinity: false,
			Template: pool.Template{VCPUs: 1, MemoryMiB: 64, Kernel: img.Kernel, Initrd: img.Initrd,
				Cmdline: img.Cmdline + " virtpool.ip={ip} virtpool.name={name}", IPBase: fmt.Sprintf("192.0.2.%d/24", fp.ipBase),
				Bridge: lab.GuestBridge, Accelerator: theLab.Accelerator}}
		for _, h := range fp.hosts {
			spec.Hosts = append(spec.Hosts, theLab.Inventory()[h])
		}
		pr, _, found, err := ops.ReadPool(ctx, fp.name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !found {
			pr = pool.Record{Spec: spec}
		}
		if _, err := ops.WritePool(ctx, pr, nil); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, fp := range failPools {
			if _, err := ops.ScaleTo(ctx, fp.name, 0); err != nil {
				t.Errorf("remove pool %s: %v", fp.name, err)
			}
			if err := ops.DeletePoolRecord(ctx, fp.name, []string{"h1", "h2", "h3"}); err != nil {
				t.Errorf("remove pool %s: %v", fp.name, err)
			}
		}
	})
}

// spreadPools gives each failover pool one member on each of its hosts
// (from scratch): anti-affinity places them, then it is lifted so that
// the host left may take the replacements.
func spreadPools(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ops := failOps()
	antiAffinity := func(name string, on bool) {
		pr, _, _, err := ops.ReadPool(ctx, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		pr.Spec.AntiAffinity = on
		if _, err := ops.WritePool(ctx, pr, nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, fp := range failPools {
		if _, err := ops.ScaleTo(ctx, fp.name, 0); err != nil {
			t.Fatal(err)
		}
		antiAffinity(fp.name, true)
		if _, err := ops.ScaleTo(ctx, fp.name, 2); err != nil {
			t.Fatal(err)
		}
		antiAffinity(fp.name, false)
		if got := placements(t, fp.name); !strings.Contains(got, "@h3") || strings.Count(got, "@") != 2 {
			t.Fatalf("pool %s: %s, want a member on %s and h3", fp.name, got, fp.hosts[0])
		}
	}
}

// placements renders where a pool's members run on the hosts that answer,
// sorted: "a-1@h1 a-2@h3".
func placements(t *testing.T, name string) string {
	t.Helper()
	var out []string
	eachRunning(func(h string, d driver.Domain) {
		if d.Labels[pool.LabelPool] == name {
			out = append(out, d.Name+"@"+h)
		}
	})
	sort.Strings(out)
	return strings.Join(out, " ")
}

// eachRunning calls fn for every guest running (or paused: a checkpoint's
// end pauses a protected guest briefly) on a lab host that answers
// (within 2 s: a host down runs nothing).
func eachRunning(fn func(host string, d driver.Domain)) {
	for _, h := range theLab.Hosts {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		doms, err := drv.ListDomains(ctx, h.URI)
		cancel()
		for _, d := range doms {
			if err == nil && driver.Active(d.State) {
				fn(h.Name, d)
			}
		}
	}
}

// copyWatch lists every host that answers every 100 ms (or as told) while
// a test runs and remembers any moment a guest ran on two hosts at once.
type copyWatch struct {
	mu    sync.Mutex
	skip  map[string]bool // hosts not to list (cut off: a call would hang)
	twice []string
	polls int
}

func watchCopies(t *testing.T) *copyWatch { return watchCopiesEvery(t, 100*time.Millisecond) }

// watchCopiesEvery is watchCopies looking every d. The hosts are read one
// after the other, so a live migration can look like two copies: the
// source read running just before the switch, the destination just after.
// A guest seen on two hosts is read again on them in the reverse order
// at once, and counts only if that read sees it on both too (a migration
// then shows it on its destination only; two real copies, on both).
func watchCopiesEvery(t *testing.T, d time.Duration) *copyWatch {
	w := &copyWatch{skip: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	runningOn := func(hosts []lab.Host) map[string][]string {
		running := map[string][]string{}
		for _, h := range hosts {
			w.mu.Lock()
			skip := w.skip[h.Name]
			w.mu.Unlock()
			if skip {
				continue
			}
			cctx, c := context.WithTimeout(ctx, time.Second)
			doms, err := drv.ListDomains(cctx, h.URI)
			c()
			if err != nil {
				continue // down: it runs nothing we could see
			}
			for _, d := range doms {
				if d.State == driver.StateRunning {
					running[d.Name] = append(running[d.Name], h.Name)
				}
			}
		}
		return running
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var twice []string
			for name, hs := range runningOn(theLab.Hosts) {
				if len(hs) < 2 {
					continue
				}
				var again []lab.Host
				for i := len(hs) - 1; i >= 0; i-- {
					if h, err := theLab.Host(hs[i]); err == nil {
						again = append(again, h)
					}
				}
				if on := runningOn(again)[name]; len(on) > 1 {
					twice = append(twice, fmt.Sprintf("%s on %v at %s", name, on, time.Now().Format("15:04:05.000")))
				}
			}
			w.mu.Lock()
			w.polls++
			w.twice = append(w.twice, twice...)
			w.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(d):
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.twice) > 0 {
			t.Errorf("guests seen running on two hosts at once: %v", w.twice)
		}
		t.Logf("%d looks at every host: no guest ran twice", w.polls)
	})
	return w
}

func (w *copyWatch) setSkip(host string, skip bool) {
	w.mu.Lock()
	w.skip[host] = skip
	w.mu.Unlock()
}

// fencingAgent starts virtpool agent with the lab's fence actions and the
// tests' grace period, and returns it with h3, the host the tests fail.
func fencingAgent(t *testing.T) (*runningAgent, lab.Host) {
	t.Helper()
	ag := agenttest.Start(t, theLab, agenttest.Options{Interval: agentInterval, Fence: true,
		Extra: fmt.Sprintf("failover_grace = %q\nfence_timeout = \"30s\"", failoverGrace)})
	h3, err := theLab.Host("h3")
	if err != nil {
		t.Fatal(err)
	}
	return ag, h3
}

// TestHostFailure: a host that crashes, or is cut off, is fenced by the
// agent once the grace period is over, and each pool that used it is back
// to its size on the hosts left; no guest ever runs on two hosts; when the
// host is back, the stale copies there are removed, never started. It
// prints detection, fence and restore times per run.
func TestHostFailure(t *testing.T) {
	needLab(t)
	ag, h3 := fencingAgent(t)
	ctx := context.Background()
	w := watchCopies(t)
	type run struct {
		how                       string
		detect, fence, full, back time.Duration
	}
	var runs []run
	failPoolsUp(t)
	for i, how := range []string{"crash", "crash", "crash", "partition"} {
		spreadPools(t)
		ag.After(t, 2) // the agent knows the pools and where their members run
		seq := ag.LastSeq(t)
		start := time.Now()
		switch how {
		case "crash":
			if err := lab.Crash(ctx, h3); err != nil {
				t.Fatal(err)
			}
		case "partition":
			w.setSkip("h3", true)
			if err := lab.Partition(ctx, h3); err != nil {
				t.Fatal(err)
			}
		}
		evs := ag.WaitEvents(t, seq, "host_down:h3", "host_failed:h3", "host_fenced:h3", "pool_restored:vpf-a", "pool_restored:vpf-b")
		if how == "partition" {
			// Cut off, its guests ran until the fence: now nothing does.
			if ps, err := h3.Processes(); err != nil || len(ps) > 0 {
				t.Errorf("after the fence h3 runs %v (%v)", ps, err)
			}
		}
		r := run{how: how, detect: evs["host_failed:h3"].Time.Sub(start), fence: time.Duration(evs["host_fenced:h3"].ElapsedMs) * time.Millisecond}
		for _, p := range []string{"pool_restored:vpf-a", "pool_restored:vpf-b"} {
			r.full = max(r.full, evs[p].Time.Sub(start))
			if evs[p].Size != 2 {
				t.Errorf("run %d: %s: %d members, want 2", i+1, evs[p].Message, evs[p].Size)
			}
		}
		for _, fp := range failPools {
			if got := placements(t, fp.name); strings.Count(got, "@"+fp.hosts[0]) != 2 {
				t.Errorf("run %d (%s): pool %s after the fence: %s, want both members on %s", i+1, how, fp.name, got, fp.hosts[0])
			}
		}
		// Power h3 on again (and reconnect it): nothing stale starts.
		seq = ag.LastSeq(t)
		back := time.Now()
		if err := lab.Start(ctx, h3); err != nil {
			t.Fatal(err)
		}
		if err := lab.Heal(ctx, h3); err != nil {
			t.Fatal(err)
		}
		w.setSkip("h3", false)
		ag.WaitEvents(t, seq, "host_up:h3", "host_recovered:vpf-a", "host_recovered:vpf-b")
		r.back = time.Since(back)
		doms, err := drv.ListDomains(ctx, h3.URI)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range doms {
			if d.Labels[pool.LabelRole] == pool.RoleMember {
				t.Errorf("run %d: stale member %s (%s) left on h3", i+1, d.Name, d.State)
			}
		}
		runs = append(runs, r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "host failure, grace period %s (sample every %s):\n", failoverGrace, agentInterval)
	fmt.Fprintf(&b, "  %-3s %-10s %10s %10s %14s %12s %14s\n", "run", "failure", "detected", "fence", "pools at size", "after grace", "stale removed")
	var crashFull []time.Duration
	for i, r := range runs {
		fmt.Fprintf(&b, "  %-3d %-10s %10s %10s %14s %12s %14s\n", i+1, r.how, r.detect.Round(time.Millisecond), r.fence,
			r.full.Round(time.Millisecond), (r.full - failoverGrace).Round(time.Millisecond), r.back.Round(time.Millisecond))
		if r.how == "crash" {
			crashFull = append(crashFull, r.full)
		}
	}
	slices.Sort(crashFull)
	fmt.Fprintf(&b, "  crash, median time to full size: %s (%s after the grace period; goal: within 10 s after it)",
		crashFull[len(crashFull)/2].Round(time.Millisecond), (crashFull[len(crashFull)/2] - failoverGrace).Round(time.Millisecond))
	t.Log(b.String())
}

// TestHostFailureWithoutFence: with no fence action, a failed host's
// guests are not restarted elsewhere, and the agent says why.
func TestHostFailureWithoutFence(t *testing.T) {
	needLab(t)
	ag := agenttest.Start(t, theLab, agenttest.Options{Interval: agentInterval, Extra: fmt.Sprintf("failover_grace = %q", failoverGrace)})
	h3, err := theLab.Host("h3")
	if err != nil {
		t.Fatal(err)
	}
	watchCopies(t)
	failPoolsUp(t)
	spreadPools(t)
	ag.After(t, 2)
	seq := ag.LastSeq(t)
	if err := lab.Crash(context.Background(), h3); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lab.Start(context.Background(), h3); err != nil {
			t.Error(err)
		}
	})
	e := ag.WaitEvents(t, seq, "host_failed:h3")["host_failed:h3"]
	if !strings.Contains(e.Message, "no fence action configured, so its guests are not restarted elsewhere") {
		t.Errorf("host_failed says %q", e.Message)
	}
	ag.After(t, 4) // what a restore would have done by now, it has not
	for _, fp := range failPools {
		if got := placements(t, fp.name); strings.Count(got, "@") != 1 {
			t.Errorf("pool %s without a fence: %s, want its one member left alone", fp.name, got)
		}
	}
}

// startDomain creates a single domain on host as the provider's
// virtpool_domain does (its template and failover hosts in its labels),
// removed everywhere when the test ends.
func startDomain(t *testing.T, name, ip string, host lab.Host, failover []string, mac string) {
	t.Helper()
	img := theLab.Image
	tpl := pool.Template{VCPUs: 1, MemoryMiB: 64, Kernel: img.Kernel, Initrd: img.Initrd,
		Cmdline: img.Cmdline + " virtpool.ip=" + ip + "/24 virtpool.name=" + name, Bridge: lab.GuestBridge, Accelerator: theLab.Accelerator}
	labels := map[string]string{}
	if len(failover) > 0 {
		labels[pool.LabelFailoverHosts], labels[pool.LabelMAC] = strings.Join(failover, ","), mac
	}
	createDomain(t, name, ip, mac, host, tpl, labels)
}

// createDomain creates a single domain from tpl on host with labels, as
// the provider does (its role and template added to them; its placement
// noted on its failover hosts), waits until it answers on ip, and removes
// it, and its placement records, everywhere when the test ends.
func createDomain(t *testing.T, name, ip, mac string, host lab.Host, tpl pool.Template, labels map[string]string) {
	t.Helper()
	js, err := json.Marshal(tpl)
	if err != nil {
		t.Fatal(err)
	}
	labels[pool.LabelRole], labels[pool.LabelTemplate] = pool.RoleDomain, string(js)
	spec, err := tpl.DomainSpec(name, 0, labels)
	if err != nil {
		t.Fatal(err)
	}
	spec.MAC = mac
	if _, err := drv.CreateDomain(context.Background(), host.URI, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		removeEverywhere(t, name)
		if len(pool.FailoverHosts(labels)) == 0 {
			return
		}
		if err := failOps().DropPlacement(context.Background(), name, theLab.Inventory().Names()); err != nil {
			t.Error(err)
		}
	})
	if err := failOps().NotePlacement(context.Background(), name, host.Name, labels); err != nil {
		t.Fatal(err)
	}
	if err := client.WaitReady(context.Background(), ip, 60*time.Second); err != nil {
		t.Fatal(err)
	}
}

// runningOn lists the hosts that answer and run the domain name.
func runningOn(name string) []string {
	var on []string
	eachRunning(func(h string, d driver.Domain) {
		if d.Name == name {
			on = append(on, h)
		}
	})
	return on
}

// TestDomainRestartAfterHostFailure: a single domain with failover hosts
// whose host crashes is started again, once, on one of them after the
// fence, and answers on its address; a domain without failover hosts
// stays down with its host. When the host is back, the restarted domain's
// stale definition there is removed, never started.
func TestDomainRestartAfterHostFailure(t *testing.T) {
	needLab(t)
	ag, h3 := fencingAgent(t)
	ctx := context.Background()
	watchCopies(t)
	const soloIP = "192.0.2.231"
	startDomain(t, "vpf-solo", soloIP, h3, []string{"h1", "h2"}, "52:54:00:c0:02:e7")
	startDomain(t, "vpf-stay", "192.0.2.232", h3, nil, "")
	ag.After(t, 2) // the agent has seen both on h3
	seq := ag.LastSeq(t)
	crashed := time.Now()
	if err := lab.Crash(ctx, h3); err != nil {
		t.Fatal(err)
	}
	evs := ag.WaitEvents(t, seq, "host_fenced:h3", "guest_restarted:vpf-solo")
	restarted := evs["guest_restarted:vpf-solo"]
	if err := client.WaitReady(ctx, soloIP, 60*time.Second); err != nil {
		t.Fatalf("restarted domain does not answer: %v", err)
	}
	answered := time.Since(crashed)
	if on := runningOn("vpf-solo"); len(on) != 1 || on[0] != restarted.To || !slices.Contains([]string{"h1", "h2"}, on[0]) {
		t.Fatalf("vpf-solo runs on %v, want once on %s (one of its failover hosts)", on, restarted.To)
	}
	if on := runningOn("vpf-stay"); len(on) != 0 {
		t.Fatalf("vpf-stay (no failover hosts) runs on %v, want nowhere", on)
	}
	seq = ag.LastSeq(t)
	if err := lab.Start(ctx, h3); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	rec := ag.WaitEvents(t, seq, "host_up:h3", "host_recovered:h3")["host_recovered:h3"]
	if !strings.Contains(rec.Message, "vpf-solo") {
		t.Errorf("host_recovered says %q, want the stale vpf-solo named", rec.Message)
	}
	doms, err := drv.ListDomains(ctx, h3.URI)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range doms {
		if d.Name == "vpf-solo" {
			t.Errorf("stale vpf-solo (%s) left on h3", d.State)
		}
		if d.Name == "vpf-stay" && d.State == driver.StateRunning {
			t.Errorf("vpf-stay started again on h3 by itself")
		}
	}
	if on := runningOn("vpf-solo"); len(on) != 1 {
		t.Errorf("after h3 came back vpf-solo runs on %v", on)
	}
	t.Logf("HA restart of a single domain, grace %s: restarted on %s %s after the crash (create %d ms), answering after %s; stale definition on h3 removed %s after it was back",
		failoverGrace, restarted.To, restarted.Time.Sub(crashed).Round(time.Millisecond), restarted.ElapsedMs,
		answered.Round(time.Millisecond), rec.Time.Sub(back).Round(time.Millisecond))
}

// TestDomainRestartByLateAgent: h3 crashes and is fenced while no agent
// runs. An agent started afterwards never saw vpf-late on h3; the
// placement record on its failover hosts (what the provider writes when
// it creates the domain) tells it, and it restarts vpf-late once, on one
// of them. h3 back, the stale definition there goes.
func TestDomainRestartByLateAgent(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	h3, err := theLab.Host("h3")
	if err != nil {
		t.Fatal(err)
	}
	watchCopies(t)
	const ip = "192.0.2.233"
	startDomain(t, "vpf-late", ip, h3, []string{"h1", "h2"}, "52:54:00:c0:02:e9")
	if err := lab.Crash(ctx, h3); err != nil {
		t.Fatal(err)
	}
	if err := lab.Fence(ctx, h3); err != nil { // by the operator, say
		t.Fatal(err)
	}
	started := time.Now()
	ag, _ := fencingAgent(t)
	restarted := ag.WaitEvents(t, 0, "guest_restarted:vpf-late")["guest_restarted:vpf-late"]
	if err := client.WaitReady(ctx, ip, 60*time.Second); err != nil {
		t.Fatalf("restarted domain does not answer: %v", err)
	}
	if on := runningOn("vpf-late"); len(on) != 1 || on[0] != restarted.To || !slices.Contains([]string{"h1", "h2"}, on[0]) {
		t.Fatalf("vpf-late runs on %v, want once on %s (one of its failover hosts)", on, restarted.To)
	}
	seq := ag.LastSeq(t)
	if err := lab.Start(ctx, h3); err != nil {
		t.Fatal(err)
	}
	ag.WaitEvents(t, seq, "host_up:h3", "host_recovered:h3")
	if on := runningOn("vpf-late"); len(on) != 1 || on[0] != restarted.To {
		t.Errorf("after h3 came back vpf-late runs on %v, want on %s only", on, restarted.To)
	}
	t.Logf("HA restart by an agent started after the fence (grace %s): restarted on %s %s after the agent started",
		failoverGrace, restarted.To, restarted.Time.Sub(started).Round(time.Millisecond))
}
