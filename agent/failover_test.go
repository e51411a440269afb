package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
	"github.com/virtpool/virtpool/power"
)

func TestDecide(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	st := func(at time.Duration, h3 string, dbSize int) State {
		return State{Time: t0.Add(at), Hosts: []Host{{Name: "h1", State: HostActive}, {Name: "h3", State: h3}},
			Pools: []Pool{{Name: "db", Hosts: []string{"h1", "h3"}, Size: dbSize, Desired: 2}}}
	}
	none := map[string]bool{}
	tests := []struct {
		name      string
		states    []State // fed in order; the last one's actions are checked
		fenced    map[string]bool
		canFence  bool
		canPower  bool // both power actions
		busyUntil int  // states seen while actions run
		tried     bool // the single domains of h3 were restarted
		// recovering: a recovery of h3 failed (its records may have no
		// fence left).
		recovering bool
		want       string
	}{
		{name: "all up", states: []State{st(0, HostActive, 2)}, want: ""},
		{name: "down, within the grace period", states: []State{st(0, HostDown, 1), st(9*time.Second, HostDown, 1)}, canFence: true, want: ""},
		{name: "down for the grace period: fence", states: []State{st(0, HostDown, 1), st(10*time.Second, HostDown, 1)}, canFence: true,
			want: "fence h3"},
		{name: "no fence action: said once", states: []State{st(0, HostDown, 1), st(10*time.Second, HostDown, 1)}, want: "no-fence h3"},
		{name: "no fence action: not said again", states: []State{st(0, HostDown, 1), st(10*time.Second, HostDown, 1),
			st(11*time.Second, HostDown, 1)}, want: ""},
		{name: "back within the grace period: the count restarts", states: []State{st(0, HostDown, 1), st(5*time.Second, HostActive, 2),
			st(6*time.Second, HostDown, 1), st(14*time.Second, HostDown, 1)}, canFence: true, want: ""},
		{name: "busy: nothing, and what is to say is kept", states: []State{st(0, HostDown, 1), st(10*time.Second, HostDown, 1),
			st(11*time.Second, HostDown, 1)}, busyUntil: 2, want: "no-fence h3"},
		{name: "fenced, pool short: restore", states: []State{st(0, HostDown, 1)}, fenced: map[string]bool{"h3": true}, want: "restore h3"},
		{name: "fenced, pool at size, restarts tried", states: []State{st(0, HostDown, 2)}, fenced: map[string]bool{"h3": true}, tried: true, want: ""},
		// An agent started after the fence: its single domains are its to
		// restart (they are in no pool record).
		{name: "fenced, pool at size, restarts not tried", states: []State{st(0, HostDown, 2)}, fenced: map[string]bool{"h3": true}, want: "restore h3"},
		{name: "fenced host answers: recover", states: []State{st(0, HostActive, 2)}, fenced: map[string]bool{"h3": true}, want: "recover h3"},
		{name: "recovery not done, no fence left: recover again", states: []State{st(0, HostActive, 2)}, recovering: true, want: "recover h3"},
		{name: "standby and empty, not long enough", states: []State{st(0, HostStandby, 2), st(DefaultStandbyOff-time.Second, HostStandby, 2)},
			canFence: true, canPower: true, want: ""},
		{name: "standby and empty long enough: power off", states: []State{st(0, HostStandby, 2), st(DefaultStandbyOff, HostStandby, 2)},
			canFence: true, canPower: true, want: "power-off h3"},
		{name: "standby, no power actions", states: []State{st(0, HostStandby, 2), st(DefaultStandbyOff, HostStandby, 2)},
			canFence: true, want: ""},
		{name: "active again in between: the count restarts", states: []State{st(0, HostStandby, 2), st(time.Minute, HostActive, 2),
			st(DefaultStandbyOff, HostStandby, 2)}, canFence: true, canPower: true, want: ""},
		{name: "off on standby: not failed", states: []State{st(0, HostOff, 2), st(time.Hour, HostOff, 2)}, canFence: true, want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailover(10*time.Second, 0)
			if tc.tried {
				f.unstarted["h3"] = false
			}
			f.recovering["h3"] = tc.recovering
			fenced := tc.fenced
			if fenced == nil {
				fenced = none
			}
			var acts []action
			for i, s := range tc.states {
				f.busy = i < tc.busyUntil
				acts = f.decide(s, fenced, func(string) bool { return tc.canFence }, func(string) bool { return tc.canPower })
			}
			var got []string
			for _, a := range acts {
				got = append(got, a.kind+" "+a.host)
			}
			if strings.Join(got, "; ") != tc.want {
				t.Errorf("actions %q, want %q", got, tc.want)
			}
		})
	}
}

// failLab is three fake hosts: pool web (one member, on h1) uses h1 and
// h2, pool db (db-1 on h3, db-2 on h2) uses h2 and h3; an agent fails a
// host after 3 s down, with fence as h3's fence action.
type failLab struct {
	d      *pooltest.Driver
	a      *Agent
	fences []string // fence actions run
	log    *logged  // the agent's warnings and errors
}

func newFailLab(t *testing.T, fence func(argv []string) error) *failLab {
	t.Helper()
	hosts := failHosts("h1", "h2", "h3")
	var seeds []fleet.Seed
	var uris []string
	for _, h := range hosts {
		seeds = append(seeds, fleet.Seed{Name: h.Name, URI: h.URI})
		uris = append(uris, h.URI)
	}
	d := pooltest.New(4, 8, uris...)
	putPool(t, d, pool.Spec{Name: "web", Size: 1, MaxSize: 4, Template: failTemplate, Hosts: failHosts("h1", "h2")}, "test:///h1")
	putPool(t, d, pool.Spec{Name: "db", Size: 2, MaxSize: 4, Template: failTemplate, Hosts: failHosts("h2", "h3")}, "test:///h3", "test:///h2")
	cfg := Config{Config: fleet.Config{Seeds: seeds, SampleInterval: time.Second, Retention: time.Minute, MaxSamples: 100},
		MaxEvents: 100, FailoverGrace: 3 * time.Second, Fence: map[string][]string{}}
	if fence != nil {
		cfg.Fence["h3"] = []string{"fence-h3", "--now"}
	}
	f := fleet.New(cfg.Config, func(context.Context) (driver.Driver, error) { return d, nil }, hclog.NewNullLogger())
	f.Now = d.Now
	log := hclog.NewInterceptLogger(&hclog.LoggerOptions{Output: io.Discard})
	l := &failLab{d: d, a: New(cfg, f, log), log: &logged{}}
	log.RegisterSink(l.log)
	l.a.runFence = func(_ context.Context, argv []string) error {
		l.fences = append(l.fences, strings.Join(argv, " "))
		return power.Failure(argv, []byte("chassis power off: done\n"), fence(argv))
	}
	return l
}

// failTemplate is the template of failLab's pools and single domains.
var failTemplate = pool.Template{VCPUs: 1, MemoryMiB: 256, Kernel: "/k"}

// failHosts are the entries of failLab's hosts of these names.
func failHosts(names ...string) []pool.HostEntry {
	var out []pool.HostEntry
	for _, n := range names {
		out = append(out, pool.HostEntry{Name: n, URI: "test:///" + n})
	}
	return out
}

// putPool stores sp's record (generation 1) on each of its hosts and puts
// its member n+1 on the host of URI on[n], running.
func putPool(t *testing.T, d *pooltest.Driver, sp pool.Spec, on ...string) {
	t.Helper()
	rec, err := pool.EncodeRecord(pool.Record{Generation: 1, Spec: sp})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range sp.Hosts {
		if err := d.PutRecord(context.Background(), h.URI, rec); err != nil {
			t.Fatal(err)
		}
	}
	for i, uri := range on {
		d.AddDomain(uri, driver.Domain{Name: pool.MemberName(sp.Name, i+1), VCPUs: 1, MemoryMiB: 256, Labels: pool.MemberLabels(sp, i+1)}, 0.1)
	}
}

// single puts a running single domain of failTemplate on h3, with labels
// (its failover hosts, MAC) to which it adds its role and template, and
// returns them.
func (l *failLab) single(t *testing.T, name string, labels map[string]string) map[string]string {
	t.Helper()
	return l.singleIn(t, name, driver.StateRunning, labels)
}

// singleIn is single with the domain in state (running, paused…).
func (l *failLab) singleIn(t *testing.T, name, state string, labels map[string]string) map[string]string {
	t.Helper()
	tpl, err := json.Marshal(failTemplate)
	if err != nil {
		t.Fatal(err)
	}
	labels[pool.LabelRole], labels[pool.LabelTemplate] = pool.RoleDomain, string(tpl)
	l.d.AddDomain("test:///h3", driver.Domain{Name: name, State: state, VCPUs: 1, MemoryMiB: 256, Labels: labels}, 0.1)
	return labels
}

// steps samples n times a second apart, letting what failover started
// finish after each.
func (l *failLab) steps(t *testing.T, n int) {
	t.Helper()
	for range n {
		l.d.Advance(time.Second)
		if err := l.a.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
		l.a.fo.acting.Wait()
	}
}

func (l *failLab) members(t *testing.T, name string) string {
	t.Helper()
	ops := &pool.Ops{Hosts: l.a.fleet.Topology().Hosts, Driver: l.a.fleet.Driver}
	ms, err := ops.Members(context.Background(), name)
	if err := pool.Needed(err, []string{"h1", "h2"}); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range ms {
		out = append(out, m.Name+"@"+m.Host)
	}
	return strings.Join(out, " ")
}

func (l *failLab) kinds(since int64) []string {
	var out []string
	for _, e := range l.a.Events().Since(since) {
		if slices.Contains([]string{event.HostFailed, event.HostFenced, event.FenceFailed, event.PoolRestored,
			event.RestoreFailed, event.HostRecovered, event.GuestRestarted}, e.Kind) {
			out = append(out, e.Kind+":"+e.Host+e.Pool+e.Guest)
		}
	}
	return out
}

// TestFailover: h3 down for the grace period is fenced, db is restored
// on h2 under a new name (web, which does not use h3, is left alone);
// h3 back, its stale copy of db-1 is removed, never started, and the
// fence dropped.
func TestFailover(t *testing.T) {
	l := newFailLab(t, func([]string) error { return nil })
	l.steps(t, 1)
	l.d.Host("test:///h3").Down = true
	l.steps(t, 2) // not answering since the step before them: 2 s
	if len(l.fences) != 0 {
		t.Fatalf("fenced within the grace period: %v", l.fences)
	}
	l.steps(t, 1)
	if got := strings.Join(l.fences, "; "); got != "fence-h3 --now" {
		t.Fatalf("fence actions %q, want one, h3's", got)
	}
	if got, want := strings.Join(l.kinds(0), " "), "host_failed:h3 host_fenced:h3 pool_restored:h3db"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if got := l.members(t, "db"); got != "db-2@h2 db-3@h2" {
		t.Errorf("db after the fence: %q, want db-2@h2 db-3@h2", got)
	}
	if got := l.members(t, "web"); got != "web-1@h1" {
		t.Errorf("web: %q, want it untouched", got)
	}
	l.steps(t, 3)
	if h3 := host(t, l.a.State(), "h3"); !h3.Fenced || len(h3.Guests) != 0 || len(l.fences) != 1 {
		t.Errorf("h3 after its fence: %+v, fenced %d times; want fenced once, no guests", h3, len(l.fences))
	}
	// Back: the stale copy goes.
	seq := l.a.Events().Since(0)[len(l.a.Events().Since(0))-1].Seq
	l.d.Host("test:///h3").Down = false
	l.steps(t, 2)
	if got := strings.Join(l.kinds(seq), " "); got != "host_recovered:h3db" {
		t.Errorf("events after h3 is back %q, want host_recovered:h3db", got)
	}
	if doms, err := l.d.ListDomains(context.Background(), "test:///h3"); err != nil || len(doms) != 0 {
		t.Errorf("h3 keeps %v (%v)", doms, err)
	}
	if h3 := host(t, l.a.State(), "h3"); h3.Fenced {
		t.Errorf("h3 still fenced once back: %+v", h3)
	}
}

// TestFailoverRestartsDomains: after h3's fence, a single domain with
// failover hosts starts on one of them, from its template; one without
// stays down. h3 back, the restarted domain's stale
// definition there goes, the other one stays for its operator.
func TestFailoverRestartsDomains(t *testing.T) {
	var l *failLab
	l = newFailLab(t, func([]string) error {
		l.d.PowerOff("test:///h3")
		return nil
	})
	l.single(t, "solo", map[string]string{pool.LabelFailoverHosts: "h1", pool.LabelMAC: "52:54:00:00:00:07"})
	l.single(t, "stay", map[string]string{})
	l.steps(t, 1)
	// The agent records where solo runs, on its failover host, for an
	// agent that would start after h3 fails.
	if rs, err := l.d.ListRecords(context.Background(), "test:///h1"); err != nil || pool.Placements(rs)["solo"].Host != "h3" {
		t.Errorf("h1's placement records %+v (%v), want solo on h3", pool.Placements(rs), err)
	}
	l.d.Host("test:///h3").Down = true
	l.steps(t, 4)
	if got, want := strings.Join(l.kinds(0), " "), "host_failed:h3 host_fenced:h3 pool_restored:h3db guest_restarted:h1solo"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if w := l.d.Where("solo"); w["test:///h1"] != driver.StateRunning || len(w) != 2 {
		t.Errorf("solo: %v, want running on h1 (and its powered-off definition on h3)", w)
	}
	if w := l.d.Where("stay"); len(w) != 1 || w["test:///h3"] != driver.StateShutoff {
		t.Errorf("stay: %v, want only its powered-off definition on h3", w)
	}
	seq := l.a.Events().Since(0)[len(l.a.Events().Since(0))-1].Seq
	l.d.Host("test:///h3").Down = false
	l.steps(t, 2)
	if got := l.kinds(seq); !slices.Contains(got, "host_recovered:h3") {
		t.Errorf("events after h3 is back %q, want a host_recovered:h3 for the domains", got)
	}
	if w := l.d.Where("solo"); len(w) != 1 || w["test:///h1"] != driver.StateRunning {
		t.Errorf("solo once h3 is back: %v, want on h1 only", w)
	}
	if w := l.d.Where("stay"); w["test:///h3"] != driver.StateShutoff {
		t.Errorf("stay once h3 is back: %v, want left on h3", w)
	}
}

// TestFailoverRestartByLateAgent: an agent started after h3 failed never
// saw solo there; the placement record on its failover host h1 (what the
// provider writes) tells it, and it restarts solo on h1 and records that.
func TestFailoverRestartByLateAgent(t *testing.T) {
	l := newFailLab(t, func([]string) error { return nil })
	labels := l.single(t, "solo", map[string]string{pool.LabelFailoverHosts: "h1"})
	ops := &pool.Ops{Hosts: pool.Inventory{}, Driver: l.a.fleet.Driver}
	for _, h := range []string{"h1", "h2", "h3"} {
		ops.Hosts[h] = pool.HostEntry{Name: h, URI: "test:///" + h}
	}
	if err := ops.NotePlacement(context.Background(), "solo", "h3", labels); err != nil {
		t.Fatal(err)
	}
	l.d.Host("test:///h3").Down = true // before the agent's first sample
	l.steps(t, 5)
	if got := l.kinds(0); !slices.Contains(got, "guest_restarted:h1solo") {
		t.Fatalf("events %q, want solo restarted on h1", got)
	}
	if w := l.d.Where("solo"); w["test:///h1"] != driver.StateRunning {
		t.Errorf("solo: %v, want running on h1", w)
	}
	rs, err := l.d.ListRecords(context.Background(), "test:///h1")
	if err != nil {
		t.Fatal(err)
	}
	if p := pool.Placements(rs)["solo"]; p.Host != "h1" {
		t.Errorf("placement of solo after the restart: %+v, want on h1", p)
	}
}

// TestFailoverRestartWaitsForFailoverHosts: a domain whose failover host
// does not answer either is not restarted (that host may run it), and is
// once the host answers.
func TestFailoverRestartWaitsForFailoverHosts(t *testing.T) {
	l := newFailLab(t, func([]string) error { return nil })
	l.single(t, "solo", map[string]string{pool.LabelFailoverHosts: "h1"})
	l.steps(t, 1)
	l.d.Host("test:///h1").Down, l.d.Host("test:///h3").Down = true, true
	l.steps(t, 4)
	var failed bool
	for _, e := range l.a.Events().Since(0) {
		failed = failed || (e.Kind == event.RestoreFailed && e.Guest == "solo" && strings.Contains(e.Message, "failover host h1 does not answer"))
	}
	if !failed || len(l.d.Where("solo")) != 1 {
		t.Fatalf("with h1 down too: restore_failed for solo %v, solo on %v; want a failure and solo left alone", failed, l.d.Where("solo"))
	}
	l.d.Host("test:///h1").Down = false
	l.steps(t, 4) // the retry comes a grace period after the failure
	if w := l.d.Where("solo"); w["test:///h1"] != driver.StateRunning {
		t.Errorf("solo once h1 answers: %v, want running on h1", w)
	}
}

// TestFailoverWithoutFence: no fence action, nothing restarted; the
// operator is told why, once.
func TestFailoverWithoutFence(t *testing.T) {
	l := newFailLab(t, nil)
	l.steps(t, 1)
	l.d.Host("test:///h3").Down = true
	l.steps(t, 8)
	evs := l.kinds(0)
	if strings.Join(evs, " ") != "host_failed:h3" {
		t.Fatalf("events %v, want one host_failed", evs)
	}
	if e := l.a.Events().Since(0); !strings.Contains(e[len(e)-1].Message, "no fence action configured, so its guests are not restarted elsewhere") {
		t.Errorf("message %q", e[len(e)-1].Message)
	}
	if got := l.members(t, "db"); got != "db-2@h2" {
		t.Errorf("db: %q, want db-2@h2 alone", got)
	}
}

// TestFenceFails: a fence action that fails restarts nothing, says why,
// and is tried again after the grace period.
func TestFenceFails(t *testing.T) {
	l := newFailLab(t, func([]string) error { return errors.New("exit status 1") })
	l.steps(t, 1)
	l.d.Host("test:///h3").Down = true
	l.steps(t, 3)
	if got, want := strings.Join(l.kinds(0), " "), "host_failed:h3 fence_failed:h3"; got != want {
		t.Errorf("events %q, want %q", got, want)
	}
	if e := l.a.Events().Since(0); !strings.Contains(e[len(e)-1].Message, "exit status 1; chassis power off: done") {
		t.Errorf("message %q does not give the error and the output's last line", e[len(e)-1].Message)
	}
	if got := l.members(t, "db"); got != "db-2@h2" {
		t.Errorf("db: %q, want db-2@h2 alone", got)
	}
	l.steps(t, 2)
	if len(l.fences) != 1 {
		t.Errorf("fence tried %d times within the grace period after a failure, want once", len(l.fences))
	}
	l.steps(t, 2)
	if len(l.fences) != 2 {
		t.Errorf("fence tried %d times, want a second try after the grace period", len(l.fences))
	}
}

// TestStandbyPowerOff: h3, on standby and empty for standby_power_off_after
// (3 s here), is powered off with its fence action: it is off, not failed
// (no host_failed, no second fence), and db's record says so. Powered on
// by hand, it is recovered: its standby fence is dropped.
func TestStandbyPowerOff(t *testing.T) {
	var l *failLab
	l = newFailLab(t, func([]string) error {
		l.d.Host("test:///h3").Down = true
		return nil
	})
	l.a.cfg.PowerOn = map[string][]string{"h3": {"power-on-h3"}}
	l.a.fo.standbyOff = 3 * time.Second
	ctx := context.Background()
	if _, err := l.a.fleet.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ops := l.a.ops(l.a.fleet.Topology(), "")
	if err := ops.RemoveGuest(ctx, "h3", "db-1"); err != nil {
		t.Fatal(err)
	}
	if err := ops.SetAutoStandby(ctx, "h3", true); err != nil {
		t.Fatal(err)
	}
	l.steps(t, 3)
	if len(l.fences) != 0 {
		t.Fatalf("powered off before 3 s: %v", l.fences)
	}
	l.steps(t, 1)
	if got := strings.Join(l.fences, "; "); got != "fence-h3 --now" {
		t.Fatalf("actions %q, want h3's fence once", got)
	}
	l.steps(t, 8)
	if len(l.fences) != 1 {
		t.Errorf("actions %q after the power-off, want no more", l.fences)
	}
	var kinds []string
	for _, e := range l.a.Events().Since(0) {
		if e.Kind == event.HostPoweredOff || e.Kind == event.HostFailed || e.Kind == event.HostFenced {
			kinds = append(kinds, e.Kind)
		}
	}
	if strings.Join(kinds, " ") != event.HostPoweredOff {
		t.Errorf("events %v, want host_powered_off alone", kinds)
	}
	if h3 := host(t, l.a.State(), "h3"); h3.State != HostOff {
		t.Errorf("h3 is %q, want %q", h3.State, HostOff)
	}
	pr, _, _, err := ops.ReadPool(ctx, "db", []string{"h2"})
	if fc, ok := pr.Fenced("h3"); err != nil || !ok || !fc.Standby {
		t.Errorf("db's record: fence %+v (%v, %v), want h3's standby fence", fc, ok, err)
	}
	l.d.Host("test:///h3").Down = false
	l.steps(t, 2)
	if pr, _, _, err := ops.ReadPool(ctx, "db", []string{"h2"}); err != nil || len(pr.Fences) != 0 {
		t.Errorf("db's fences once h3 answers: %+v (%v), want none", pr.Fences, err)
	}
	if h3 := host(t, l.a.State(), "h3"); h3.State != HostStandby {
		t.Errorf("h3 is %q once it answers, want %q", h3.State, HostStandby)
	}
}

// TestHostTimeout: a host that does not answer is waited for, in each
// round, until its grace is over (a little past it), not a whole call
// timeout more: the round that fails a hung host ends with its grace. Up,
// fenced, or past its grace, a host gets the fleet's own timeout.
func TestHostTimeout(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	const uri = "qemu+tls://h3/system"
	st := func(at time.Duration, h3 string) State {
		return State{Time: t0.Add(at), Hosts: []Host{{Name: "h3", URI: uri, State: h3}}}
	}
	never := func(string) bool { return false }
	for _, tc := range []struct {
		name   string
		states []State
		fenced bool
		at     time.Duration // when the call is made
		want   time.Duration
	}{
		{"up", []State{st(0, HostActive)}, false, time.Second, time.Hour},
		{"down since its last answer, 3 s before its grace ends", []State{st(0, HostActive), st(2*time.Second, HostDown)}, false,
			2 * time.Second, 3*time.Second + pastGrace},
		{"a round later", []State{st(0, HostActive), st(2*time.Second, HostDown), st(4*time.Second, HostDown)}, false,
			4 * time.Second, time.Second + pastGrace},
		{"its grace over", []State{st(0, HostActive), st(2*time.Second, HostDown)}, false, 6 * time.Second, time.Hour},
		{"fenced", []State{st(0, HostActive), st(2*time.Second, HostDown)}, true, 2 * time.Second, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFailover(5*time.Second, 0)
			for _, s := range tc.states {
				f.decide(s, map[string]bool{"h3": tc.fenced}, never, never)
			}
			if got := f.hostTimeout(uri, t0.Add(tc.at)); got != tc.want {
				t.Errorf("timeout %s, want %s", got, tc.want)
			}
		})
	}
}
