package acctest

import (
	"regexp"
	"slices"
	"testing"
	"time"
)

var reClusterScale = regexp.MustCompile(`scale requested.*cluster=true`)

// The hosts dimension without a pool: two pools, c1 on h1..h3 and c2 on
// h2 and h3 only. Idle, the cluster packs onto one host (h2 or h3: c2 may
// not go to h1) and the others go on standby; loaded, it spreads onto all
// three again, c2's member never leaving its pool's hosts.
func TestAccClusterConsolidateAndSpread(t *testing.T) {
	needLab(t)
	c1 := newPool(t, "c1", []string{"h1", "h2", "h3"}, "192.0.2.181/24", 2, 2, 2, labPolicy("balance", 0.9))
	c2 := newPool(t, "c2", []string{"h2", "h3"}, "192.0.2.186/24", 1, 1, 1, labPolicy("balance", 0.9))
	c1.createOn("h1", "h2")
	c2.createOn("h3")
	w := watchMembers(t, c1, func() []string { return []string{"c1-1", "c1-2", "c2-1"} })
	s1, s2 := followStreams(t, c1, 2), followStreams(t, c2, 1)
	target := hostsTarget(t, c1, c2)
	on := func(h string) int { return len(c1.on(h)) + len(c2.on(h)) }
	inUse := func() []string {
		var out []string
		for _, h := range []string{"h1", "h2", "h3"} {
			if on(h) > 0 {
				out = append(out, h)
			}
		}
		return out
	}
	c2Home := func() {
		t.Helper()
		if hs := c2.placement()["c2-1"]; len(hs) != 1 || !slices.Contains([]string{"h2", "h3"}, hs[0]) {
			t.Fatalf("c2-1 runs on %v, not on one of pool c2's hosts h2, h3", hs)
		}
	}

	t0 := time.Now()
	a := startAgent(t, map[string]string{"cluster.hcl": hostsPolicy("cluster-hosts", "", target)}, targetConfig(), apmConfig())
	packed := waitFor(t, "the cluster on one host", 120*time.Second, func() bool { return len(inUse()) == 1 && on(inUse()[0]) == 3 })
	decision := a.waitLog(reClusterScale, t0, time.Second)
	start := a.waitLog(reMigrationStart, t0, time.Second)
	standby := waitFor(t, "two hosts on standby", 30*time.Second, func() bool { return len(c1.standbyHosts()) == 2 })
	tl := newTimeline(t, "idle cluster (from agent start)", t0)
	tl.add("decision (Scale called)", decision.At)
	tl.add("first migration started", start.At)
	tl.add("cluster on one host", packed)
	tl.add("freed hosts on standby", standby)
	tl.print()
	c2Home()
	t.Logf("packed onto %v; on standby: %v", inUse(), c1.standbyHosts())
	time.Sleep(6 * time.Second)
	if hs := inUse(); len(hs) != 1 {
		t.Fatalf("cluster spread again without load: %v", hs)
	}

	t1 := time.Now()
	for i := 1; i <= 2; i++ {
		c1.setLoad(i, 100)
	}
	c2.setLoad(1, 100)
	spread := waitFor(t, "one member on each host", 120*time.Second, func() bool { return on("h1") == 1 && on("h2") == 1 && on("h3") == 1 })
	decision = a.waitLog(reClusterScale, t1, time.Second)
	start = a.waitLog(reMigrationStart, t1, time.Second)
	tl = newTimeline(t, "load returns", t1)
	tl.add("decision (Scale called)", decision.At)
	tl.add("first migration started", start.At)
	tl.add("cluster on three hosts", spread)
	tl.print()
	c2Home()
	if sb := c1.standbyHosts(); len(sb) != 0 {
		t.Errorf("hosts still on standby after spreading: %v", sb)
	}
	time.Sleep(6 * time.Second)
	for _, h := range []string{"h1", "h2", "h3"} {
		if n := on(h); n != 1 {
			t.Errorf("%s runs %d members after the cluster spread, want one", h, n)
		}
	}
	for i := 1; i <= 2; i++ {
		c1.setLoad(i, 0)
	}
	c2.setLoad(1, 0)
	w.check(t)
	s1.check(t)
	s2.check(t)
}
