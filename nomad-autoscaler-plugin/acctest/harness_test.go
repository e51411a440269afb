package acctest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/autoscaler"
	"github.com/virtpool/virtpool/lab/probe"
	"github.com/virtpool/virtpool/pool"
)

// ---- pools -------------------------------------------------------------

// testPool is a pool made for one test: its record on the lab hosts (the
// same record the provider writes) and its members.
type testPool struct {
	t    *testing.T
	spec pool.Spec
	pol  *pool.Policy
	ops  *pool.Ops
}

// seeds is the hosts config key of the plugins: every lab host by name,
// with its capacity (the pool records say the same).
func seeds() string {
	var s []string
	for _, h := range theLab.Hosts {
		s = append(s, h.Name+"="+h.URI+";"+h.Capacity().String()) // the lab hosts have budgets
	}
	return strings.Join(s, ", ")
}

// labPolicy is a migration policy for the lab: hot above cpuHigh of a
// host's CPUs, fast migrations (the lab's guests are tiny).
func labPolicy(mode string, cpuHigh float64) *pool.Policy {
	return &pool.Policy{Mode: mode, CPULow: 0.1, CPUHigh: cpuHigh, MemoryLow: 0.1, MemoryHigh: 0.85,
		TargetUtilisation: cpuHigh - 0.1, MaxMigrationsPerRound: 2, MaxParallel: 1,
		BandwidthMiB: 2000, MaxDowntimeMs: 50}
}

// newPool stores a pool record for hosts; members are made by createOn or
// by the autoscaler. Everything is removed when the test ends.
func newPool(t *testing.T, name string, hosts []string, ipBase string, size, minSize, maxSize int64, pol *pool.Policy) *testPool {
	t.Helper()
	return storePool(t, poolSpec(name, hosts, ipBase, size, minSize, maxSize), pol)
}

// poolSpec is the spec of a pool of the lab's test guests on hosts.
func poolSpec(name string, hosts []string, ipBase string, size, minSize, maxSize int64) pool.Spec {
	inv := theLab.Inventory()
	spec := pool.Spec{Name: name, Size: size, MinSize: minSize, MaxSize: maxSize, Placement: pool.PlacementSpread,
		Template: pool.Template{VCPUs: 1, MemoryMiB: 64, Kernel: theLab.Image.Kernel, Initrd: theLab.Image.Initrd,
			Cmdline: theLab.Image.Cmdline + " virtpool.ip={ip} virtpool.name={name}", IPBase: ipBase,
			Bridge: lab.GuestBridge, Accelerator: theLab.Accelerator}}
	for _, h := range hosts {
		spec.Hosts = append(spec.Hosts, inv[h])
	}
	return spec
}

// storePool stores the pool's record; members are made by createOn or by
// the autoscaler. Everything is removed when the test ends.
func storePool(t *testing.T, spec pool.Spec, pol *pool.Policy) *testPool {
	t.Helper()
	ops := &pool.Ops{Hosts: theLab.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return drv, nil },
		Log: logger.Named("pool"), ShutdownTimeout: 0}
	p := &testPool{t: t, spec: spec, pol: pol, ops: ops}
	t.Cleanup(p.remove)
	if _, err := ops.WritePool(context.Background(), pool.Record{Spec: spec, Policy: pol}, nil); err != nil {
		t.Fatalf("store pool %s: %v", spec.Name, err)
	}
	return p
}

// remove deletes the pool's members (wherever they are), its records and
// any standby mark the autoscaler left on the lab hosts.
func (p *testPool) remove() {
	ctx := context.Background()
	all, err := p.ops.ListAll(ctx, nil)
	if err != nil {
		p.t.Errorf("cleanup: %v", err)
		return
	}
	for h, doms := range all {
		for _, d := range doms {
			if d.Labels[pool.LabelPool] == p.spec.Name {
				if err := p.ops.RemoveGuest(ctx, h, d.Name); err != nil {
					p.t.Errorf("cleanup: %v", err)
				}
			}
		}
	}
	if err := p.ops.DeletePoolRecord(ctx, p.spec.Name, p.ops.Hosts.Names()); err != nil {
		p.t.Errorf("cleanup: %v", err)
	}
	for _, h := range p.ops.Hosts.Names() {
		if err := p.ops.SetAutoStandby(ctx, h, false); err != nil {
			p.t.Errorf("cleanup: %v", err)
		}
	}
}

// memberIP is member n's address.
func (p *testPool) memberIP(n int) string {
	ip, err := pool.MemberIP(p.spec.Template.IPBase, n)
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.Split(ip, "/")[0]
}

// createOn creates members 1, 2, … on the given hosts (as if an earlier
// apply had placed them there) and waits until they answer.
func (p *testPool) createOn(hosts ...string) {
	p.t.Helper()
	ctx := context.Background()
	for i, h := range hosts {
		n := i + 1
		name := pool.MemberName(p.spec.Name, n)
		ds, err := p.spec.Template.DomainSpec(name, n, pool.MemberLabels(p.spec, n))
		if err != nil {
			p.t.Fatal(err)
		}
		ds.MAC = pool.MemberMAC(p.spec.Name, n)
		if _, err := drv.CreateDomain(ctx, p.ops.Hosts[h].URI, ds); err != nil {
			p.t.Fatalf("create %s on %s: %v", name, h, err)
		}
	}
	p.waitReady(len(hosts))
}

// waitReady waits until members 1..n answer on the network.
func (p *testPool) waitReady(n int) {
	p.t.Helper()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = client.WaitReady(context.Background(), p.memberIP(i+1), 90*time.Second)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			p.t.Fatalf("member %d: %v", i+1, err)
		}
	}
}

// placement maps each member running (or paused) to its hosts, on the
// hosts that answer.
func (p *testPool) placement() map[string][]string {
	p.t.Helper()
	ms, err := p.ops.Members(context.Background(), p.spec.Name)
	if _, err := pool.Partial(err); err != nil {
		p.t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range ms {
		if m.State == driver.StateRunning || m.State == driver.StatePaused {
			out[m.Name] = append(out[m.Name], m.Host)
		}
	}
	return out
}

// on returns the member names running on host, sorted.
func (p *testPool) on(host string) []string {
	var out []string
	for name, hs := range p.placement() {
		if len(hs) == 1 && hs[0] == host {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// setLoad drives member n's load generator (CPU percent of its vCPU).
func (p *testPool) setLoad(n, cpu int) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := client.SetLoad(ctx, p.memberIP(n), cpu, 0); err != nil {
		p.t.Fatalf("member %d: %v%s", n, err, console(pool.MemberName(p.spec.Name, n)))
	}
}

// console is the end of a guest's serial console on each lab host that
// has one: the guest kernel is quiet there until it oopses or panics.
func console(name string) string {
	var b strings.Builder
	for _, h := range theLab.Hosts {
		data, err := os.ReadFile(filepath.Join(h.StateDir, "log", "qemu", name+"-console.log"))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "\nconsole of %s on %s (last lines):\n%s", name, h.Name, strings.Join(lines[max(0, len(lines)-15):], "\n"))
	}
	return b.String()
}

// memberIndex is the number in a member's name.
func memberIndex(name string) int {
	n, _ := strconv.Atoi(name[strings.LastIndex(name, "-")+1:])
	return n
}

// ---- watching guests ---------------------------------------------------

// watcher polls every lab host and records any member running on two
// hosts, or on none, in two consecutive polls (one poll can race with the
// end of a migration).
type watcher struct {
	stop chan struct{}
	done chan struct{}

	mu    sync.Mutex
	dup   []string
	lost  []string
	polls int
}

func watchMembers(t *testing.T, p *testPool, names func() []string) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		prevDup, prevLost := map[string]bool{}, map[string]bool{}
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			// Hosts that do not answer (powered off) are left out.
			all, err := p.ops.ListAll(context.Background(), nil)
			if _, err := pool.Partial(err); err != nil {
				continue
			}
			running := map[string][]string{}
			present := map[string]bool{}
			for h, doms := range all {
				for _, d := range doms {
					if d.State == driver.StateRunning {
						running[d.Name] = append(running[d.Name], h)
					}
					if d.State == driver.StateRunning || d.State == driver.StatePaused {
						present[d.Name] = true
					}
				}
			}
			dup, lost := map[string]bool{}, map[string]bool{}
			w.mu.Lock()
			w.polls++
			for _, n := range names() {
				if len(running[n]) > 1 {
					dup[n] = true
					if prevDup[n] {
						w.dup = append(w.dup, fmt.Sprintf("%s on %v", n, running[n]))
					}
				}
				if !present[n] {
					lost[n] = true
					if prevLost[n] {
						w.lost = append(w.lost, n)
					}
				}
			}
			w.mu.Unlock()
			prevDup, prevLost = dup, lost
		}
	}()
	t.Cleanup(w.close)
	return w
}

func (w *watcher) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// check fails the test if a member ran on two hosts or vanished.
func (w *watcher) check(t *testing.T) {
	t.Helper()
	w.close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.dup) > 0 {
		t.Errorf("members running on two hosts: %v", w.dup)
	}
	if len(w.lost) > 0 {
		t.Errorf("members lost (on no host): %v", w.lost)
	}
	t.Logf("placement watched in %d polls: no member on two hosts, none lost", w.polls)
}

// streamEvery paces the members' streams: slow enough that a streaming
// member costs its host little (4% of a lab host; a 10 ms stream would take
// a quarter and upset every load the tests set), fast enough to see a
// migration's pause.
const streamEvery = 100 * time.Millisecond

// streams follows every member's HTTP stream from the client namespace.
type streams map[string]*probe.Stream

func followStreams(t *testing.T, p *testPool, n int) streams {
	t.Helper()
	s := streams{}
	for i := 1; i <= n; i++ {
		st, err := client.FollowHTTPEvery(p.memberIP(i), streamEvery)
		if err != nil {
			t.Fatalf("member %d stream: %v", i, err)
		}
		s[pool.MemberName(p.spec.Name, i)] = st
	}
	t.Cleanup(func() {
		for _, st := range s {
			st.Stop()
		}
	})
	return s
}

// check stops the streams and fails if one broke (dropped connection, gap
// or repeat).
func (s streams) check(t *testing.T) {
	t.Helper()
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := s[n].Stop()
		if r.Err != nil {
			t.Errorf("stream from %s broken: %v", n, r.Err)
			continue
		}
		t.Logf("stream from %s unbroken: %d lines, longest stall %s", n, r.Lines, r.MaxStall.Round(time.Millisecond))
	}
}

// ---- the autoscaler agent ----------------------------------------------

// agent is a running nomad-autoscaler agent (lab/autoscaler) whose log and
// whose target's event log the test reads, stopped when the test ends.
type agent struct {
	*autoscaler.Agent
	t       *testing.T
	logFile string
	// eventLog is the virtpool-target's event_log ("" when the test's
	// configuration has none): what the target was asked and did, as
	// records, which the tests read rather than its log lines.
	eventLog string

	mu     sync.Mutex
	events []event.Event // read so far
	read   int64         // how far
}

// logLine is a line of its log, read at At.
type logLine = autoscaler.Line

// targetConfig is the virtpool-target plugin config the tests use:
// samples every sampleInterval, load averaged over loadWindow.
func targetConfig() map[string]string {
	c := map[string]string{"hosts": seeds(), "sample_interval": hclDur(sampleInterval), "retention": "10m", "load_window": hclDur(loadWindow),
		"shutdown_timeout": "0s", "migration_bandwidth_mib": "2000", "migration_max_downtime": "50ms"}
	if theLab.Transport() == lab.TLS {
		c["migration_tls"] = "true" // the lab's QEMUs refuse migrations in the clear
	}
	return c
}

func apmConfig() map[string]string {
	return map[string]string{"hosts": seeds(), "sample_interval": hclDur(sampleInterval), "retention": "10m"}
}

func hclMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("{\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "      %q = %q\n", k, m[k])
	}
	b.WriteString("    }")
	return b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	p, err := autoscaler.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// startAgent runs the agent with file policies (file name → HCL) and the
// given plugin configs, without any Nomad server; the target gets an
// event_log in the agent's directory.
func startAgent(t *testing.T, policies map[string]string, target, apm map[string]string) *agent {
	t.Helper()
	return startAgentWith(t, "", policies, target, apm)
}

// startAgentWith is startAgent with more of the agent's configuration
// (HCL), e.g. a nomad block.
func startAgentWith(t *testing.T, extra string, policies map[string]string, target, apm map[string]string) *agent {
	t.Helper()
	dir := t.TempDir()
	eventLog := filepath.Join(dir, "events.jsonl")
	target = with(target, "event_log", eventLog)
	pdir := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range policies {
		if err := os.WriteFile(filepath.Join(pdir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := fmt.Sprintf(`log_level  = "DEBUG"
plugin_dir = %q

http {
  bind_address = "127.0.0.1"
  bind_port    = %d
}

policy {
  dir                         = %q
  default_cooldown            = %q
  default_evaluation_interval = %q
  source "nomad" {
    enabled = false
  }
}

apm "virtpool" {
  driver = "virtpool-apm"
  config = %s
}

target "virtpool" {
  driver = "virtpool-target"
  config = %s
}
`, pluginDir, freePort(t), pdir, hclDur(cooldown), hclDur(evalInterval), hclMap(apm), hclMap(target)) + extra
	cfgFile := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	a := runAgent(t, "", "agent", "-config", cfgFile)
	a.eventLog = eventLog
	return a
}

// runAgent starts the agent with args in dir, its log in the test's
// temporary directory, and stops it when the test ends.
func runAgent(t *testing.T, dir string, args ...string) *agent {
	t.Helper()
	a := &agent{t: t, logFile: filepath.Join(t.TempDir(), "agent.log")}
	var err error
	a.Agent, err = autoscaler.Start(autoscaler.Config{Bin: autoscalerBin, Args: args, Dir: dir, LogFile: a.logFile,
		Log: logger.Named("agent")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.stop)
	return a
}

// stop ends the agent (and with it its plugins and their driver
// processes) and, if the test failed, shows the end of its log.
func (a *agent) stop() {
	a.Stop()
	if a.t.Failed() || os.Getenv("VIRTPOOL_AGENT_LOG") == "1" {
		// What virtpool's plugins did and what went wrong, not the agent's
		// debug chatter: short enough that the test's own failure
		// messages, printed before, stay in view.
		var shown []string
		for _, l := range a.Lines(0) {
			if reAgentSummary.MatchString(l.Text) {
				shown = append(shown, l.String())
			}
		}
		shown = shown[max(0, len(shown)-40):]
		// Keep the whole log: the test's temporary directory goes away.
		keep := filepath.Join(os.TempDir(), "virtpool-autoscaler-acc", strings.ReplaceAll(a.t.Name(), "/", "_")+"-agent.log")
		if err := keepFile(a.logFile, keep); err != nil {
			keep = "nowhere: " + err.Error()
		}
		if a.eventLog != "" {
			if _, err := os.Stat(a.eventLog); err == nil {
				events := strings.TrimSuffix(keep, ".log") + "-events.jsonl"
				if err := keepFile(a.eventLog, events); err != nil {
					events = "nowhere: " + err.Error()
				}
				keep += "; the target's event log in " + events
			}
		}
		a.t.Logf("agent log, virtpool's plugins and errors (last %d lines; all in %s):\n%s", len(shown), keep,
			strings.Join(shown, "\n"))
	}
}

// keepFile copies src to dst, making dst's directory.
func keepFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

// reAgentSummary picks the agent log lines worth showing when a test fails.
var reAgentSummary = regexp.MustCompile(`\[(WARN|ERROR)\]|\[INFO\]  external_plugin\.virtpool-`)

// waitLog waits for a log line after since matching re.
func (a *agent) waitLog(re *regexp.Regexp, since time.Time, timeout time.Duration) logLine {
	a.t.Helper()
	return a.waitLogT(a.t, re, since, timeout)
}

// waitLogT is waitLog failing t (a subtest) rather than the agent's test.
func (a *agent) waitLogT(t *testing.T, re *regexp.Regexp, since time.Time, timeout time.Duration) logLine {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l, err := a.WaitLine(ctx, re, since)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		t.Fatalf("no log line matching %q within %s", re, timeout)
	case err != nil:
		t.Fatal(err)
	}
	return l
}

// wantEvent picks records of the target's event log; what names them in
// failure messages.
type wantEvent struct {
	what  string
	match func(event.Event) bool
}

// eventOf wants the records of kind for pool ("": any pool, or none).
func eventOf(kind, pool string) wantEvent {
	if pool == "" {
		return wantEvent{kind, func(e event.Event) bool { return e.Kind == kind }}
	}
	return wantEvent{kind + " of pool " + pool, func(e event.Event) bool { return e.Kind == kind && e.Pool == pool }}
}

// readEvents returns every record of the target's event log so far,
// reading what it appended since the last call.
func (a *agent) readEvents() []event.Event {
	a.t.Helper()
	if a.eventLog == "" {
		a.t.Fatal("this agent's target has no event_log (startAgent gives it one)")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	evs, off, err := event.ReadFile(a.eventLog, a.read)
	if err != nil {
		a.t.Errorf("target's event log: %v", err) // the records read are still good
	}
	a.events, a.read = append(a.events, evs...), off
	return a.events
}

// allEvents returns the records at or after since that w wants.
func (a *agent) allEvents(w wantEvent, since time.Time) []event.Event {
	a.t.Helper()
	var out []event.Event
	for _, e := range a.readEvents() {
		if !e.Time.Before(since) && w.match(e) {
			out = append(out, e)
		}
	}
	return out
}

// findEvent returns the first record at or after since that w wants.
func (a *agent) findEvent(w wantEvent, since time.Time) (event.Event, bool) {
	a.t.Helper()
	if evs := a.allEvents(w, since); len(evs) > 0 {
		return evs[0], true
	}
	return event.Event{}, false
}

// mustFindEvent is findEvent failing the test if there is none.
func (a *agent) mustFindEvent(w wantEvent, since time.Time) event.Event {
	a.t.Helper()
	e, ok := a.findEvent(w, since)
	if !ok {
		a.t.Fatalf("no record %s in the target's event log since %s", w.what, since.Format("15:04:05.000"))
	}
	return e
}

// waitEvent waits for a record at or after since that w wants, failing
// the test on timeout or when the agent exits first.
func (a *agent) waitEvent(w wantEvent, since time.Time, timeout time.Duration) event.Event {
	a.t.Helper()
	deadline := time.After(timeout)
	for {
		if e, ok := a.findEvent(w, since); ok {
			return e
		}
		select {
		case <-a.Done():
			if e, ok := a.findEvent(w, since); ok { // its plugins wrote it as it ended
				return e
			}
			a.t.Fatalf("agent exited (%v) while waiting for a record %s", a.Err(), w.what)
		case <-deadline:
			evs := a.readEvents()
			var last []string
			for _, e := range evs[max(0, len(evs)-10):] {
				last = append(last, e.String())
			}
			a.t.Fatalf("no record %s in the target's event log within %s; its last records:\n%s", w.what, timeout,
				strings.Join(last, "\n"))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// waitFor polls cond until it holds. On timeout it fails with what it
// waited for and what show says the state was at the end (expected, then
// measured).
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool, show func() string) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s; at the end: %s; %s", timeout, what, show(), budgets())
	return time.Time{}
}

// budgets says what CPU each lab host got over a second against its
// budget: a host that is given less than its budget while its guests want
// more (a machine busy with something else) cannot show the loads the
// tests set, whatever virtpool does.
func budgets() string {
	before := map[string]time.Duration{}
	for _, h := range theLab.Hosts {
		before[h.Name], _ = h.Cgroups.CPUUsage()
	}
	start := time.Now()
	time.Sleep(time.Second) // the window measured
	var parts []string
	for _, h := range theLab.Hosts {
		u, err := h.Cgroups.CPUUsage()
		if err != nil {
			parts = append(parts, fmt.Sprintf("%s: %v", h.Name, err))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", h.Name, (u-before[h.Name]).Seconds()/time.Since(start).Seconds()))
	}
	return fmt.Sprintf("CPU the lab hosts got over the last second, in cores of their %v-core budgets: %s",
		theLab.Hosts[0].Capacity().CPUs, strings.Join(parts, ", "))
}

// placementOf shows where the members of pools run, for failure messages.
func placementOf(pools ...*testPool) func() string {
	return func() string {
		var parts []string
		for _, p := range pools {
			parts = append(parts, fmt.Sprintf("%s %v", p.spec.Name, p.placement()))
		}
		return strings.Join(parts, "; ")
	}
}

// The target's migrations, of any pool.
var (
	migrationStarted  = eventOf(event.MigrationStarted, "")
	migrationFinished = eventOf(event.MigrationFinished, "")
)

// ---- timelines ---------------------------------------------------------

// timeline prints reaction times relative to a load change.
type timeline struct {
	t      *testing.T
	name   string
	t0     time.Time
	events []string
}

func newTimeline(t *testing.T, name string, t0 time.Time) *timeline {
	return &timeline{t: t, name: name, t0: t0}
}

func (tl *timeline) add(label string, at time.Time) {
	tl.events = append(tl.events, fmt.Sprintf("  %-34s +%6.1fs", label, at.Sub(tl.t0).Seconds()))
}

func (tl *timeline) print() {
	tl.t.Logf("reaction times, %s (load change at +0.0s):\n%s", tl.name, strings.Join(tl.events, "\n"))
}

// ---- timing and load, from the configuration ------------------------------

// The timing every policy and plugin config here uses; every wait below is
// derived from it, never a fixed sleep.
const (
	sampleInterval = time.Second     // the plugins' sample_interval
	evalInterval   = 2 * time.Second // every policy's evaluation_interval
	cooldown       = 4 * time.Second // every policy's cooldown
	loadWindow     = 6 * time.Second // the checks' query_window and the target's load_window
)

// hold is how long a state must last to show that the policies keep it:
// past the cooldown of the last action, two more evaluations, each of
// which would have acted.
const hold = cooldown + 2*evalInterval

// go2s formats a duration as the policies and plugin configs write it.
func hclDur(d time.Duration) string { return d.String() }

// The lab's hosts each have a CPU budget (lab.HostCPUs, its cgroup), which is
// also the capacity virtpool plans with, so loads here are in units of a
// host: a member "at P% of its host" uses P% of that budget whatever the
// machine. Members have one vCPU.

// hostPct is the load-generator setting (% of the member's one vCPU) that
// makes it use pct% of a lab host's CPU capacity.
func hostPct(pct int) int { return int(math.Round(float64(pct) * theLab.Hosts[0].CPUs)) }

// hotAbove is a balance policy under which a host is hot above high of its
// capacity (a fraction), with a small hysteresis below it.
func hotAbove(high float64) *pool.Policy {
	pol := labPolicy(pool.ModeBalance, high)
	pol.CPULow = high - 0.04
	pol.TargetUtilisation = high - 0.02
	return pol
}

// ---- pool-wide load ------------------------------------------------------

// spreadLoad drives a pool-wide load, as a load balancer in front of the
// pool would: every second, total percent of one vCPU is split evenly over
// the running members (at most 100 each). It returns a setter for the
// total and stops when the test ends.
func (p *testPool) spreadLoad() func(total int) {
	var mu sync.Mutex
	total := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			mu.Lock()
			tot := total
			mu.Unlock()
			var members []string
			for name, hs := range p.placement() {
				if len(hs) == 1 {
					members = append(members, name)
				}
			}
			if len(members) == 0 {
				continue
			}
			per := min(100, tot/len(members))
			var wg sync.WaitGroup
			for _, m := range members {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 900*time.Millisecond)
					defer cancel()
					_ = client.SetLoad(ctx, p.memberIP(memberIndex(m)), per, 0) // a booting member does not answer yet
				}()
			}
			wg.Wait()
		}
	}()
	p.t.Cleanup(func() {
		close(stop)
		<-done
	})
	return func(t int) {
		mu.Lock()
		total = t
		mu.Unlock()
	}
}

// count returns the number of members defined anywhere.
func (p *testPool) count() int { return len(p.placement()) }

// hostsOf returns the distinct hosts the members run on, sorted.
func (p *testPool) hostsOf() []string {
	seen := map[string]bool{}
	for _, hs := range p.placement() {
		for _, h := range hs {
			seen[h] = true
		}
	}
	var out []string
	for h := range seen {
		out = append(out, h)
	}
	sort.Strings(out)
	return out
}
