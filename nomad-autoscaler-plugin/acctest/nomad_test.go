package acctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	nomad "github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/lab/nomadserver"
	"github.com/virtpool/virtpool/pool"
)

// Nomad cluster scaling, end to end: a real Nomad server in the lab, Nomad
// clients in the pool's members (lab.NomadDisk), the real autoscaler with
// Nomad's own APM (percentage-allocated_cpu of the pool's node class) and
// virtpool-target, as an operator of the aws-asg target would run it.

// nomadMemberMiB is a member's memory, sized from what the test logs
// (guestMemory): with 384 MiB, an idle member had 342 MiB available (the
// agent's 64 MiB resident are mostly the binary's pages, read from the
// disk and shared), one allocation (its executor and log monitor) took 25
// MiB more. 256 MiB leaves room for the two allocations a member holds.
const nomadMemberMiB = 256

// The example's policy and job (examples/autoscaler/with-nomad): pool
// "clients", whose members' node class is the pool's name
// (nomad-client.sh). Its target value, 70 % of the pool's CPU allocated:
// two allocations on one member (80 %) ask for two members; two and then
// three on two members (40 %, 60 %) keep two; one on two (20 %) asks for
// one.
var (
	nomadExample = filepath.Join("..", "..", "examples", "autoscaler", "with-nomad")
	nomadPool    = "clients"
)

// examplePolicy is the example's cluster policy named name, on the lab's
// time scale and at most two members, with extra lines in its target
// block.
func examplePolicy(t *testing.T, name, extra string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nomadExample, "policies", "clients-cluster.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	hcl := string(b)
	for _, r := range []struct{ re, to string }{
		{`scaling "clients"`, fmt.Sprintf("scaling %q", name)},
		{`max += 10`, "max = 2"},
		{`evaluation_interval = "30s"`, fmt.Sprintf("evaluation_interval = %q", hclDur(evalInterval))},
		{`cooldown += "3m"`, fmt.Sprintf("cooldown = %q", hclDur(cooldown))},
		{`node_drain_deadline += "15m"`, `node_drain_deadline = "2m"`},
		{`(node_selector_strategy = "newest_create_index"\n)`, "${1}" + extra},
	} {
		re := regexp.MustCompile(r.re)
		if !re.MatchString(hcl) {
			t.Fatalf("the example policy has no %s any more: update this test", r.re)
		}
		hcl = re.ReplaceAllString(hcl, r.to)
	}
	return hcl
}

// fillJob is the example's job, named id, with count allocations.
func (c *nomadCluster) fillJob(id string, count int) *nomad.Job {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(nomadExample, "jobs", "fill.nomad.hcl"))
	if err != nil {
		c.t.Fatal(err)
	}
	job, err := c.api.Jobs().ParseHCL(string(b), true)
	if err != nil {
		c.t.Fatalf("parse the example job: %v", err)
	}
	job.ID, job.Name = &id, &id
	job.TaskGroups[0].Count = &count
	return job
}

// nomadCluster is the lab's Nomad server, seen from the test.
type nomadCluster struct {
	t   *testing.T
	srv *nomadserver.Server
	api *nomad.Client
}

// startNomad runs a Nomad server in the lab's client namespace for the
// test (VIRTPOOL_NOMAD: make testacc-autoscaler builds it).
func startNomad(t *testing.T) *nomadCluster {
	t.Helper()
	bin := os.Getenv("VIRTPOOL_NOMAD")
	if bin == "" {
		t.Fatal("set VIRTPOOL_NOMAD to the nomad binary (make testacc-autoscaler does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	srv, err := nomadserver.Start(ctx, nomadserver.Config{Bin: bin, Dir: t.TempDir(), Lab: theLab, Log: logger.Named("nomad")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nomad server output (last lines):\n%s", srv.Tail(30))
		}
		srv.Stop()
	})
	t.Logf("nomad server %s leads (HTTP from here %s) after %s", srv.RPC, srv.Addr, time.Since(start).Round(time.Millisecond))
	return &nomadCluster{t: t, srv: srv, api: srv.API}
}

// newNomadPool stores a pool whose members run a Nomad client that joins
// the lab's server.
func newNomadPool(t *testing.T, c *nomadCluster, ipBase string) *testPool {
	t.Helper()
	disk, err := theLab.NomadDisk(context.Background(), os.Getenv("VIRTPOOL_NOMAD"))
	if err != nil {
		t.Fatal(err)
	}
	spec := poolSpec(nomadPool, []string{"h1", "h2", "h3"}, ipBase, 1, 1, 2)
	spec.Template.MemoryMiB = nomadMemberMiB
	spec.Template.BaseImage = disk
	spec.Template.Cmdline += fmt.Sprintf(" virtpool.app=1 virtpool.nomad=%s virtpool.pool=%s", c.srv.RPC, nomadPool)
	return storePool(t, spec, labPolicy(pool.ModeBalance, 0.9))
}

// node is the node of that name that is not down, or nil.
func (c *nomadCluster) node(name string) *nomad.NodeListStub {
	c.t.Helper()
	nodes, _, err := c.api.Nodes().List(nil)
	if err != nil {
		c.t.Fatalf("nomad nodes: %v", err)
	}
	for _, n := range nodes {
		if n.Name == name && n.Status != nomad.NodeStatusDown {
			return n
		}
	}
	return nil
}

// nodes shows every node, for failure messages.
func (c *nomadCluster) nodes() string {
	nodes, _, err := c.api.Nodes().List(nil)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s %s %s drain=%v", n.Name, n.Status, n.SchedulingEligibility, n.Drain))
	}
	sort.Strings(parts)
	return "nodes: " + strings.Join(parts, ", ")
}

// waitNode waits for member name's Nomad client to be ready with
// raw_exec.
func (c *nomadCluster) waitNode(name string, timeout time.Duration) {
	c.t.Helper()
	waitFor(c.t, "Nomad node "+name+" ready with raw_exec", timeout, func() bool {
		n := c.node(name)
		return n != nil && n.Status == nomad.NodeStatusReady && n.Drivers["raw_exec"] != nil && n.Drivers["raw_exec"].Healthy
	}, func() string { return c.nodes() + console(name) })
}

// register runs the job and returns when it was registered.
func (c *nomadCluster) register(job *nomad.Job) time.Time {
	c.t.Helper()
	if _, _, err := c.api.Jobs().Register(job, nil); err != nil {
		c.t.Fatalf("register job %s: %v", *job.ID, err)
	}
	c.t.Cleanup(func() { _, _, _ = c.api.Jobs().Deregister(*job.ID, true, nil) })
	return time.Now()
}

// running is the job's running allocations.
func (c *nomadCluster) running(jobID string) []*nomad.AllocationListStub {
	c.t.Helper()
	allocs, _, err := c.api.Jobs().Allocations(jobID, false, nil)
	if err != nil {
		c.t.Fatalf("allocations of %s: %v", jobID, err)
	}
	var out []*nomad.AllocationListStub
	for _, a := range allocs {
		if a.ClientStatus == nomad.AllocClientStatusRunning && a.DesiredStatus == nomad.AllocDesiredStatusRun {
			out = append(out, a)
		}
	}
	return out
}

// allocs shows the job's allocations, for failure messages.
func (c *nomadCluster) allocs(jobID string) string {
	allocs, _, err := c.api.Jobs().Allocations(jobID, true, nil)
	if err != nil {
		return err.Error()
	}
	var parts []string
	for _, a := range allocs {
		parts = append(parts, fmt.Sprintf("%s on %s %s/%s%s", a.ID[:8], a.NodeName, a.DesiredStatus, a.ClientStatus, taskEvents(a)))
	}
	// Why the scheduler placed nothing, if it did not.
	evals, _, err := c.api.Jobs().Evaluations(jobID, nil)
	if err == nil {
		for _, e := range evals {
			for tg, m := range e.FailedTGAllocs {
				parts = append(parts, fmt.Sprintf("eval %s: group %s not placed: %d nodes evaluated, filtered by class %v, constraint %v, exhausted %v",
					e.ID[:8], tg, m.NodesEvaluated, m.ClassFiltered, m.ConstraintFiltered, m.DimensionExhausted))
			}
		}
	}
	return fmt.Sprintf("allocations of %s: %s", jobID, strings.Join(parts, "; "))
}

func taskEvents(a *nomad.AllocationListStub) string {
	var b strings.Builder
	for task, s := range a.TaskStates {
		for _, e := range s.Events[max(0, len(s.Events)-3):] {
			fmt.Fprintf(&b, " [%s: %s %s]", task, e.Type, e.DisplayMessage)
		}
	}
	return b.String()
}

// nodeWatch samples one node every 100 ms while a member migrates: any
// status but ready, and any change of its status time (a heartbeat
// missed, even if the node came back between samples), is recorded.
type nodeWatch struct {
	stop, done chan struct{}

	mu       sync.Mutex
	samples  int
	bad      []string
	maxGap   time.Duration // longest time between two answers
	statusAt int64
}

func (c *nomadCluster) watchNode(id string) *nodeWatch {
	w := &nodeWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := time.Now()
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			n, _, err := c.api.Nodes().Info(id, nil)
			w.mu.Lock()
			if err == nil {
				w.samples++
				w.maxGap = max(w.maxGap, time.Since(last))
				last = time.Now()
				if n.Status != nomad.NodeStatusReady {
					w.bad = append(w.bad, fmt.Sprintf("%s at %s", n.Status, time.Now().Format("15:04:05.000")))
				}
				if w.statusAt != 0 && n.StatusUpdatedAt != w.statusAt {
					w.bad = append(w.bad, fmt.Sprintf("status changed at %s", time.Unix(n.StatusUpdatedAt, 0).Format("15:04:05")))
				}
				w.statusAt = n.StatusUpdatedAt
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *nodeWatch) finish() (samples int, bad []string, maxGap time.Duration) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.samples, w.bad, w.maxGap
}

// guestMemory logs what member n's memory holds (vpguest's /ps): how
// much is available, and the resident memory of each Nomad process (the
// agent; per task, an executor and a log monitor: the same binary, whose
// pages they share).
func guestMemory(t *testing.T, p *testPool, n int, when string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	body, err := client.Get(ctx, p.memberIP(n), "/ps")
	if err != nil {
		t.Fatalf("member %d: /ps: %v", n, err)
	}
	lines := strings.Split(strings.TrimSpace(body), "\n")
	var nomads []string
	for _, line := range lines[1:] {
		if f := strings.Fields(line); len(f) == 3 && f[1] == "nomad" {
			nomads = append(nomads, f[2]+" KiB")
		}
	}
	t.Logf("member %d %s: %s; nomad processes' RSS: %s", n, when, lines[0], strings.Join(nomads, ", "))
	if len(nomads) == 0 {
		t.Errorf("member %d runs no nomad process: %s", n, body)
	}
}

// clusterLog samples the Nomad cluster every 200 ms and keeps when each
// thing was first seen: "node N STATUS", "node N draining", "node N
// gone" (purged), "JOB running K" (K allocations running, wanted
// running) and "JOB running on N".
type clusterLog struct {
	stop, done chan struct{}

	mu    sync.Mutex
	first map[string]time.Time
}

func (c *nomadCluster) record(jobs ...string) *clusterLog {
	l := &clusterLog{stop: make(chan struct{}), done: make(chan struct{}), first: map[string]time.Time{}}
	go func() {
		defer close(l.done)
		known := map[string]bool{}
		for {
			var seen []string
			if nodes, _, err := c.api.Nodes().List(nil); err == nil {
				here := map[string]bool{}
				for _, n := range nodes {
					here[n.Name] = true
					known[n.Name] = true
					seen = append(seen, "node "+n.Name+" "+n.Status)
					if n.Drain || n.SchedulingEligibility == nomad.NodeSchedulingIneligible {
						seen = append(seen, "node "+n.Name+" draining")
					}
				}
				for name := range known {
					if !here[name] {
						seen = append(seen, "node "+name+" gone")
					}
				}
			}
			for _, job := range jobs {
				allocs, _, err := c.api.Jobs().Allocations(job, false, nil)
				if err != nil {
					continue
				}
				running := 0
				for _, a := range allocs {
					if a.ClientStatus == nomad.AllocClientStatusRunning && a.DesiredStatus == nomad.AllocDesiredStatusRun {
						running++
						seen = append(seen, job+" running on "+a.NodeName)
					}
				}
				seen = append(seen, fmt.Sprintf("%s running %d", job, running))
			}
			now := time.Now()
			l.mu.Lock()
			for _, k := range seen {
				if _, ok := l.first[k]; !ok {
					l.first[k] = now
				}
			}
			l.mu.Unlock()
			select {
			case <-l.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	return l
}

// at is when what was first seen, if it was.
func (l *clusterLog) at(what string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.first[what]
	return t, ok
}

// wait waits for what to be seen after since and returns when it was.
func (l *clusterLog) wait(t *testing.T, c *nomadCluster, what string, since time.Time, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	waitFor(t, what, timeout, func() bool {
		var ok bool
		at, ok = l.at(what)
		return ok && !at.Before(since)
	}, func() string { return c.nodes() + "; " + c.allocs("fill") + "; " + c.allocs("late") })
	return at
}

func (l *clusterLog) close() {
	close(l.stop)
	<-l.done
}

// TestAccNomadClusterScaling: jobs whose allocations fill the pool make it
// grow, the new member's client registers and gets allocations; a member
// live-migrated while it runs allocations stays ready in Nomad; jobs
// stopped make it shrink: the newest member drained (its allocation moves
// first), removed and its node purged. Before that, the same policy in
// dry-run changes nothing, and bad keys are reported.
func TestAccNomadClusterScaling(t *testing.T) {
	needLab(t)
	ctx := context.Background()
	c := startNomad(t)
	p := newNomadPool(t, c, "192.0.2.191/24")
	// The members watched: never on two hosts, never lost.
	var namesMu sync.Mutex
	watchNames := []string{"clients-1"}
	w := watchMembers(t, p, func() []string {
		namesMu.Lock()
		defer namesMu.Unlock()
		return append([]string(nil), watchNames...)
	})
	cl := c.record("fill", "late")
	t.Cleanup(cl.close)

	t0 := time.Now()
	p.createOn("h1")
	answered := time.Now()
	c.waitNode("clients-1", 3*time.Minute)
	ready1 := cl.wait(t, c, "node clients-1 ready", t0, 5*time.Second)
	t.Logf("member clients-1 (%d MiB, 1 vCPU, TCG): vpguest answers +%.1fs, Nomad client ready +%.1fs", nomadMemberMiB,
		answered.Sub(t0).Seconds(), ready1.Sub(t0).Seconds())
	guestMemory(t, p, 1, "idle")

	nomadBlock := fmt.Sprintf("nomad {\n  address = %q\n}\n", c.srv.Addr)

	// 4. First with dry-run: fill's allocations press, the plan is only
	// recorded, nothing changes. Bad Nomad keys are reported, naming them.
	tp := c.register(c.fillJob("fill", 2))
	dryRun(t, c, p, nomadBlock, tp)

	// 1. The allocations fill the pool: it grows, the new client gets work.
	ta := time.Now()
	a := startAgentWith(t, nomadBlock, map[string]string{"clients.hcl": examplePolicy(t, "clients", "")}, targetConfig(), apmConfig())
	created := a.waitEvent(eventOf(event.MemberCreated, nomadPool), ta, 3*time.Minute)
	if created.Guest != "clients-2" {
		t.Fatalf("created %s, want clients-2", created.Guest)
	}
	namesMu.Lock()
	watchNames = append(watchNames, "clients-2")
	namesMu.Unlock()
	filled := cl.wait(t, c, "fill running 2", tp, 3*time.Minute)
	c.waitNode("clients-2", 3*time.Minute)
	ready2 := cl.wait(t, c, "node clients-2 ready", tp, 5*time.Second)
	guestMemory(t, p, 2, "idle")
	tl := c.register(c.fillJob("late", 1))
	placed := cl.wait(t, c, "late running 1", tl, 3*time.Minute)
	late := c.running("late")[0]
	if late.NodeName != "clients-2" {
		t.Errorf("job late runs on %s, want the new member clients-2 (clients-1 is full): %s", late.NodeName, c.allocs("late"))
	}
	guestMemory(t, p, 2, "running late's allocation")
	line := newTimeline(t, "allocation pressure (job fill, 2 allocations, registered at +0)", tp)
	line.add("the autoscaler started (no dry-run)", ta)
	line.add("member clients-2 created", created.Time)
	line.add("fill's 2 allocations run (clients-1)", filled)
	line.add("clients-2's Nomad client ready", ready2)
	line.add("job late registered", tl)
	line.add("late's allocation runs on clients-2", placed)
	line.print()
	p.checkStoredSize(2)

	// 3. Live-migrate clients-2 while it runs late's allocation: its node
	// stays ready, the allocation keeps running.
	from := p.placement()["clients-2"]
	if len(from) != 1 {
		t.Fatalf("clients-2 on %v", from)
	}
	to := "h3"
	if from[0] == "h3" {
		to = "h2"
	}
	nw := c.watchNode(late.NodeID)
	res, err := p.ops.Migrate(ctx, "clients-2", from[0], to, pool.MigrateOptions(driver.MigrateOptions{BandwidthMiBs: 2000, MaxDowntime: 50 * time.Millisecond}, nil, true))
	time.Sleep(2 * time.Second) // samples after the switch, too
	samples, bad, gap := nw.finish()
	if err != nil {
		t.Fatalf("migrate clients-2 %s → %s: %v", from[0], to, err)
	}
	t.Logf("clients-2 live-migrated %s → %s in %s (pause %s, %d MiB) while running late's allocation; its node sampled %d times "+
		"(longest gap between answers %s): ready throughout; Nomad marks a node down only after its heartbeat TTL (at least 10 s) and 10 s of grace",
		from[0], to, res.Elapsed.Round(time.Millisecond), res.Downtime, res.Bytes>>20, samples, gap.Round(time.Millisecond))
	if len(bad) > 0 {
		t.Errorf("node clients-2 not ready throughout the migration: %v", bad)
	}
	after := c.running("late")
	if len(after) != 1 || after[0].ID != late.ID {
		t.Errorf("late's allocation %s did not keep running through the migration: %s", late.ID, c.allocs("late"))
	} else if s := after[0].TaskStates["sleep"]; s == nil || s.Restarts != 0 {
		t.Errorf("late's task restarted during the migration: %+v", s)
	}

	// 2. fill stopped: one allocation on two members asks for one. The
	// newest, clients-2, is drained (late moves to clients-1), removed,
	// its node purged.
	ts := time.Now()
	namesMu.Lock()
	watchNames = watchNames[:1] // clients-2 is to go
	namesMu.Unlock()
	if _, _, err := c.api.Jobs().Deregister("fill", true, nil); err != nil {
		t.Fatal(err)
	}
	removed := a.waitEvent(eventOf(event.MemberRemoved, nomadPool), ts, 3*time.Minute)
	if removed.Guest != "clients-2" {
		t.Errorf("removed %s, want clients-2 (newest_create_index)", removed.Guest)
	}
	gone := cl.wait(t, c, "node clients-2 gone", ts, time.Minute)
	moved := cl.wait(t, c, "late running on clients-1", ts, 3*time.Minute)
	draining, drained := cl.at("node clients-2 draining")
	line = newTimeline(t, "jobs stopped (fill deregistered at +0)", ts)
	if drained {
		line.add("clients-2 draining", draining)
	}
	line.add("member clients-2 removed", removed.Time)
	line.add("clients-2's node purged", gone)
	line.add("late's new allocation runs on clients-1", moved)
	line.print()
	if !drained || !draining.Before(removed.Time) {
		t.Errorf("clients-2 was not seen draining before it was removed (draining seen: %v at %s, removed at %s)",
			drained, draining.Format("15:04:05.000"), removed.Time.Format("15:04:05.000"))
	}
	// Drained, not lost: Nomad stopped late's allocation on clients-2
	// before its guest went.
	if old, _, err := c.api.Allocations().Info(late.ID, nil); err != nil {
		t.Errorf("late's first allocation: %v", err)
	} else if old.ClientStatus != nomad.AllocClientStatusComplete {
		t.Errorf("late's allocation on clients-2 ended %s, want complete (stopped by the drain, before the member was removed)", old.ClientStatus)
	}
	if got := p.placement(); len(got) != 1 || got["clients-1"] == nil {
		t.Errorf("members %v, want clients-1 only", got)
	}
	p.checkStoredSize(1)
	w.check(t)
}

// dryRun runs the autoscaler with the example policy in dry-run and with
// bad target keys, while fill's allocations (registered at tp) press on
// the pool's one member: the plan to grow is recorded and nothing
// changes; each bad key is reported naming it. The agent is stopped at
// the end.
func dryRun(t *testing.T, c *nomadCluster, p *testPool, nomadBlock string, tp time.Time) {
	t.Helper()
	bad := []struct{ name, line, want string }{
		{"bad strategy", `      node_selector_strategy = "biggest"` + "\n", `node_selector_strategy: "biggest" is not one of`},
		{"bad purge", `      node_purge = "maybe"` + "\n", `node_purge: "maybe" is not true or false`},
	}
	policies := map[string]string{"dry.hcl": examplePolicy(t, "dry", `      dry-run = "true"`+"\n")}
	for i, b := range bad {
		key := strings.Fields(b.line)[0]
		policies[fmt.Sprintf("bad%d.hcl", i)] = regexp.MustCompile(`(?m)^\s*`+key+`\s*=.*\n`).
			ReplaceAllString(examplePolicy(t, fmt.Sprintf("bad%d", i), ""), b.line)
	}
	a := startAgentWith(t, nomadBlock, policies, targetConfig(), apmConfig())
	defer a.Stop()
	for _, b := range bad {
		l := a.waitLogT(t, regexp.MustCompile(regexp.QuoteMeta(b.want)), time.Time{}, 60*time.Second)
		t.Logf("%s reported: %s", b.name, l.Text)
	}
	plan := a.waitEvent(wantEvent{"dry run: would scale pool " + nomadPool, func(e event.Event) bool {
		return e.Kind == event.DryRunPlan && e.Action == event.ActionScale && e.Pool == nomadPool && e.Size == 2
	}}, tp, 2*time.Minute)
	t.Logf("recorded: %s", plan.Message)
	time.Sleep(hold) // more evaluations: still nothing happens
	if n := len(a.allEvents(eventOf(event.MemberCreated, nomadPool), time.Time{})); n != 0 {
		t.Errorf("%d members created in dry-run mode", n)
	}
	if n := p.count(); n != 1 {
		t.Errorf("%d members in dry-run mode, want 1", n)
	}
	p.checkStoredSize(1)
	if n := c.node("clients-1"); n == nil || n.Drain || n.SchedulingEligibility != nomad.NodeSchedulingEligible {
		t.Errorf("clients-1's node changed in dry-run mode: %s", c.nodes())
	}
}
