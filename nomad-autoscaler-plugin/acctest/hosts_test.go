package acctest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	agentpkg "github.com/virtpool/virtpool/agent"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/agenttest"
	"github.com/virtpool/virtpool/lab/labtest"
	"github.com/virtpool/virtpool/pool"
)

// hostsPolicy keeps the average load of the hosts in use near target% by
// changing how many hosts are used (DPM-like): a pool's, or with poolName
// "" the whole cluster's (its target names no pool and gives the planner's
// policy itself).
func hostsPolicy(name, poolName string, target int) string {
	query := "metric=cpu agg=avg reduce=avg"
	block := `cpu_high                 = "0.9"
      target_utilisation       = "0.6"
      max_migrations_per_round = "10"`
	if poolName != "" {
		query = "pool=" + poolName + " of=hosts " + query
		block = fmt.Sprintf("pool = %q", poolName)
	}
	return fmt.Sprintf(`scaling %q {
  enabled = true
  min     = 1
  max     = 3

  policy {
    evaluation_interval = %q
    cooldown            = %q

    check "host_cpu" {
      source       = "virtpool"
      query        = %q
      query_window = %q
      strategy "target-value" {
        target = %d
      }
    }

    target "virtpool" {
      dimension = "hosts"
      %s
    }
  }
}
`, name, hclDur(evalInterval), hclDur(cooldown), query, hclDur(loadWindow), target, block)
}

// The hosts tests' model, in % of a host. The policy keeps the hosts in
// use at hostsTarget% on average, so it asks for ceil(total/hostsTarget)
// hosts, where total is the members' load summed in % of a host. Three
// idle members (a TCG guest idles at well under 20%) fit one host; three
// members at spreadPct (150% in all, a host's budget caps one host at
// 100%) need two hosts, then, once measured on two, three: 150/60 > 2. On
// three hosts they stay there as long as each keeps above 40%.
const (
	hostsTarget = 60
	spreadPct   = 50
)

// Test 3: low load → the pool is consolidated onto one host and the others
// are marked standby, and virtpool agent powers them off (the lab's fence)
// once they have been empty for standby_power_off_after; load returns →
// the target powers them on (the lab's start) and the pool spreads onto
// them again.
func TestAccHostsConsolidateAndSpread(t *testing.T) {
	needLab(t)
	pol := labPolicy(pool.ModeConsolidate, 0.9)
	pol.TargetUtilisation = 0.6
	p := newPool(t, "t3", []string{"h1", "h2", "h3"}, "192.0.2.221/24", 3, 3, 3, pol)
	p.createOn("h1", "h2", "h3")
	// Cleanups run last first: every host is on before the pool goes.
	t.Cleanup(func() {
		for _, h := range theLab.Hosts {
			if err := lab.Start(context.Background(), h); err != nil {
				t.Error(err)
			}
		}
	})
	w := watchMembers(t, p, func() []string { return []string{"t3-1", "t3-2", "t3-3"} })
	s := followStreams(t, p, 3)
	t0 := time.Now()
	ag := agenttest.Start(t, theLab, agenttest.Options{Interval: time.Second, Fence: true, PowerOn: true,
		Extra: `standby_power_off_after = "5s"`})
	bin, err := labtest.VirtpoolBinary()
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, map[string]string{"hosts.hcl": hostsPolicy("t3-hosts", "t3", hostsTarget)},
		with(targetConfig(), "power_on", bin+" lab start {host}"), apmConfig())
	packThenSpread(t, a, t0, "pool", eventOf(event.ScaleRequested, "t3"), func() {}, ag, p)
	w.check(t)
	s.check(t)
}

// packThenSpread follows the hosts dimension through a cycle, from the
// start of agent a at t0: the idle members of pools (three in all) are
// packed onto one host and the two others go on standby (and, with a
// virtpool agent ag that powers standby hosts off, off); loaded, they
// spread onto all three hosts again (powered on first), and each state
// holds for a few more evaluations. decision picks the target's records
// of the agent's Scale calls, what names the subject in messages; check
// runs after each phase.
func packThenSpread(t *testing.T, a *agent, t0 time.Time, what string, decision wantEvent, check func(), ag *agenttest.Agent,
	pools ...*testPool) {
	t.Helper()
	hosts := []string{"h1", "h2", "h3"}
	on := func(h string) int {
		n := 0
		for _, p := range pools {
			n += len(p.on(h))
		}
		return n
	}
	inUse := func() []string {
		var out []string
		for _, h := range hosts {
			if on(h) > 0 {
				out = append(out, h)
			}
		}
		return out
	}
	setLoad := func(load int) {
		for _, p := range pools {
			for i := 1; i <= int(p.spec.Size); i++ {
				p.setLoad(i, load)
			}
		}
	}
	standbyHosts := pools[0].standbyHosts // the lab's, whichever pool asks

	// Idle from the start: the agent packs the members.
	packed := waitFor(t, "the "+what+" on one host", 120*time.Second, func() bool {
		hs := inUse()
		return len(hs) == 1 && on(hs[0]) == 3
	}, placementOf(pools...))
	decided := a.waitEvent(decision, t0, time.Second)
	start := a.waitEvent(migrationStarted, t0, time.Second)
	home := inUse()[0]
	freed := slices.DeleteFunc(slices.Clone(hosts), func(h string) bool { return h == home })
	tl := newTimeline(t, "idle "+what+" (from agent start)", t0)
	tl.add("decision (Scale called)", decided.Time)
	tl.add("first migration started", start.Time)
	tl.add(what+" on one host", packed)
	if ag == nil {
		standby := waitFor(t, "two hosts on standby", 30*time.Second, func() bool { return len(standbyHosts()) == 2 },
			func() string { return fmt.Sprintf("on standby: %v", standbyHosts()) })
		tl.add("freed hosts on standby", standby)
		t.Logf("packed onto %s; on standby: %v", home, standbyHosts())
		if slices.Contains(standbyHosts(), home) {
			t.Fatalf("%s runs the members and is on standby", home)
		}
	} else {
		off := ag.WaitEvents(t, 0, event.HostPoweredOff+":"+freed[0], event.HostPoweredOff+":"+freed[1])
		for _, h := range freed {
			tl.add(h+" powered off", off[event.HostPoweredOff+":"+h].Time)
		}
		checkOff(t, ag, freed)
	}
	tl.print()
	check()
	time.Sleep(hold)
	if hs := inUse(); len(hs) != 1 {
		t.Fatalf("%s spread again without load: %v", what, hs)
	}
	if ag != nil {
		checkOff(t, ag, freed) // and they stay off: not failed, not fenced again
	}

	// Load returns: three busy guests on one host.
	t1 := time.Now()
	setLoad(hostPct(spreadPct))
	spread := waitFor(t, "one member on each host", 120*time.Second, func() bool {
		return on("h1") == 1 && on("h2") == 1 && on("h3") == 1
	}, placementOf(pools...))
	decided = a.waitEvent(decision, t1, time.Second)
	start = a.waitEvent(migrationStarted, t1, time.Second)
	tl = newTimeline(t, "load returns", t1)
	tl.add("decision (Scale called)", decided.Time)
	if ag != nil {
		for _, e := range a.allEvents(eventOf(event.HostPoweredOn, ""), t1) {
			tl.add(fmt.Sprintf("%s powered on (answers %d ms after its power-on started)", e.Host, e.ElapsedMs), e.Time)
		}
	}
	tl.add("first migration started", start.Time)
	tl.add(what+" on three hosts", spread)
	tl.print()
	check()
	if sb := standbyHosts(); len(sb) != 0 {
		t.Errorf("hosts still on standby after spreading: %v", sb)
	}
	time.Sleep(hold)
	for _, h := range hosts {
		if n := on(h); n != 1 {
			t.Errorf("%s runs %d members after the %s spread, want one", h, n, what)
		}
	}
	setLoad(0)
}

// standbyHosts lists the lab hosts the autoscaler put on standby.
func (p *testPool) standbyHosts() []string {
	p.t.Helper()
	var out []string
	for _, h := range p.ops.Hosts.Names() {
		st, err := p.ops.HostState(context.Background(), h)
		if err != nil {
			p.t.Fatal(err)
		}
		if st.AutoStandby {
			out = append(out, h)
		}
	}
	return out
}

// checkOff fails unless hosts are off in the lab (nothing runs in their
// namespaces) and virtpool agent shows them off, and it neither took them
// for failed nor fenced them.
func checkOff(t *testing.T, ag *agenttest.Agent, hosts []string) {
	t.Helper()
	s := ag.After(t, 1)
	for _, name := range hosts {
		h, err := theLab.Host(name)
		if err != nil {
			t.Fatal(err)
		}
		if st, err := h.State(); err != nil || st.Processes > 0 {
			t.Errorf("%s powered off, but runs %d processes (%v)", name, st.Processes, err)
		}
		for _, sh := range s.Hosts {
			if sh.Name == name && sh.State != agentpkg.HostOff {
				t.Errorf("virtpool agent shows %s %q, want %q", name, sh.State, agentpkg.HostOff)
			}
		}
	}
	var evs []event.Event
	ag.Get(t, "/api/v1/events", &evs)
	for _, e := range evs {
		if e.Kind == event.HostFailed || e.Kind == event.HostFenced {
			t.Errorf("virtpool agent: %s %s: a standby host powered off is not failed", e.Kind, e.Message)
		}
	}
}
