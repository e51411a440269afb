package acctest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/virtpool/virtpool/event"
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
// are marked standby; load returns → it spreads onto them again.
func TestAccHostsConsolidateAndSpread(t *testing.T) {
	needLab(t)
	pol := labPolicy(pool.ModeConsolidate, 0.9)
	pol.TargetUtilisation = 0.6
	p := newPool(t, "t3", []string{"h1", "h2", "h3"}, "192.0.2.221/24", 3, 3, 3, pol)
	p.createOn("h1", "h2", "h3")
	w := watchMembers(t, p, func() []string { return []string{"t3-1", "t3-2", "t3-3"} })
	s := followStreams(t, p, 3)
	t0 := time.Now()
	a := startAgent(t, map[string]string{"hosts.hcl": hostsPolicy("t3-hosts", "t3", hostsTarget)}, targetConfig(), apmConfig())
	packThenSpread(t, a, t0, "pool", eventOf(event.ScaleRequested, "t3"), func() {}, p)
	w.check(t)
	s.check(t)
}

// packThenSpread follows the hosts dimension through a cycle, from the
// start of agent a at t0: the idle members of pools (three in all) are
// packed onto one host and the two others go on standby; loaded, they
// spread onto all three hosts again, and each state holds for a few more
// evaluations. decision picks the target's records of the agent's Scale
// calls, what names the subject in messages; check runs after each phase.
func packThenSpread(t *testing.T, a *agent, t0 time.Time, what string, decision wantEvent, check func(), pools ...*testPool) {
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
	standby := waitFor(t, "two hosts on standby", 30*time.Second, func() bool { return len(standbyHosts()) == 2 },
		func() string { return fmt.Sprintf("on standby: %v", standbyHosts()) })
	tl := newTimeline(t, "idle "+what+" (from agent start)", t0)
	tl.add("decision (Scale called)", decided.Time)
	tl.add("first migration started", start.Time)
	tl.add(what+" on one host", packed)
	tl.add("freed hosts on standby", standby)
	tl.print()
	home := inUse()[0]
	t.Logf("packed onto %s; on standby: %v", home, standbyHosts())
	if slices.Contains(standbyHosts(), home) {
		t.Fatalf("%s runs the members and is on standby", home)
	}
	check()
	time.Sleep(hold)
	if hs := inUse(); len(hs) != 1 {
		t.Fatalf("%s spread again without load: %v", what, hs)
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
