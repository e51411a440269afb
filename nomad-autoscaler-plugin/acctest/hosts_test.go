package acctest

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"testing"
	"time"
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
    evaluation_interval = "2s"
    cooldown            = "4s"

    check "host_cpu" {
      source       = "virtpool"
      query        = %q
      query_window = "6s"
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
`, name, query, target, block)
}

// Test 3: low load → the pool is consolidated onto one host and the others
// are marked standby; load returns → it spreads onto them again.
func TestAccHostsConsolidateAndSpread(t *testing.T) {
	needLab(t)
	pol := labPolicy("consolidate", 0.9)
	pol.TargetUtilisation = 0.6
	p := newPool(t, "t3", []string{"h1", "h2", "h3"}, "192.0.2.221/24", 3, 3, 3, pol)
	p.createOn("h1", "h2", "h3")
	w := watchMembers(t, p, func() []string { return []string{"t3-1", "t3-2", "t3-3"} })
	s := followStreams(t, p, 3)
	target := hostsTarget(t, p)
	t0 := time.Now()
	a := startAgent(t, map[string]string{"hosts.hcl": hostsPolicy("t3-hosts", "t3", target)}, targetConfig(), apmConfig())
	packThenSpread(t, a, t0, "pool", logRE("scale requested", "t3"), func() {}, p)
	w.check(t)
	s.check(t)
}

// packThenSpread follows the hosts dimension through a cycle, from the
// start of agent a at t0: the idle members of pools (three in all) are
// packed onto one host and the two others go on standby; loaded, they
// spread onto all three hosts again, and each state holds for a few more
// evaluations. reScale matches the agent's Scale calls, what names the
// subject in messages; check runs after each phase.
func packThenSpread(t *testing.T, a *agent, t0 time.Time, what string, reScale *regexp.Regexp, check func(), pools ...*testPool) {
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
	})
	decision := a.waitLog(reScale, t0, time.Second)
	start := a.waitLog(reMigrationStart, t0, time.Second)
	standby := waitFor(t, "two hosts on standby", 30*time.Second, func() bool { return len(standbyHosts()) == 2 })
	tl := newTimeline(t, "idle "+what+" (from agent start)", t0)
	tl.add("decision (Scale called)", decision.At)
	tl.add("first migration started", start.At)
	tl.add(what+" on one host", packed)
	tl.add("freed hosts on standby", standby)
	tl.print()
	home := inUse()[0]
	t.Logf("packed onto %s; on standby: %v", home, standbyHosts())
	if slices.Contains(standbyHosts(), home) {
		t.Fatalf("%s runs the members and is on standby", home)
	}
	check()
	time.Sleep(6 * time.Second)
	if hs := inUse(); len(hs) != 1 {
		t.Fatalf("%s spread again without load: %v", what, hs)
	}

	// Load returns: three busy guests on one host.
	t1 := time.Now()
	setLoad(100)
	spread := waitFor(t, "one member on each host", 120*time.Second, func() bool {
		return on("h1") == 1 && on("h2") == 1 && on("h3") == 1
	})
	decision = a.waitLog(reScale, t1, time.Second)
	start = a.waitLog(reMigrationStart, t1, time.Second)
	tl = newTimeline(t, "load returns", t1)
	tl.add("decision (Scale called)", decision.At)
	tl.add("first migration started", start.At)
	tl.add(what+" on three hosts", spread)
	tl.print()
	check()
	if sb := standbyHosts(); len(sb) != 0 {
		t.Errorf("hosts still on standby after spreading: %v", sb)
	}
	time.Sleep(6 * time.Second)
	for _, h := range hosts {
		if n := on(h); n != 1 {
			t.Errorf("%s runs %d members after the %s spread, want one", h, n, what)
		}
	}
	setLoad(0)
}

// hostsTarget returns the policy's target for the average load of the
// hosts in use, measured on this machine, for the members of pools (three
// in all, on at most three hosts). That average times the number of hosts
// in use is the members' total CPU (whatever the placement), so the
// strategy asks for ceil(total/target) hosts: the target must lie above
// what the idle members use (one host is enough) and below half of what
// the loaded members use (three hosts are needed). Loaded members here
// share the machine's real cores, so the window is narrow under TCG; the
// target sits in its middle.
func hostsTarget(t *testing.T, pools ...*testPool) int {
	t.Helper()
	cores := float64(hostCPUs(t))
	total := func(load int) float64 {
		for _, p := range pools {
			for i := 1; i <= int(p.spec.Size); i++ {
				p.setLoad(i, load)
			}
		}
		time.Sleep(2 * time.Second)
		sum := 0.0
		for _, p := range pools {
			for _, c := range p.measureCPU(5 * time.Second) {
				sum += c
			}
		}
		return 100 * sum / cores // in % of one host
	}
	loaded, idle := total(100), total(0)
	lo, hi := idle, loaded/2
	t.Logf("measured: the loaded members use %.0f%% of a host, the idle ones %.0f%%: target in (%.0f, %.0f)",
		loaded, idle, lo, hi)
	if hi-lo < 6 {
		t.Fatalf("loaded (%.0f%%) and idle (%.0f%%) members too close to tell apart on this machine now", loaded, idle)
	}
	return int((lo + hi) / 2) // the agent starts after: its samples never see the calibration
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
