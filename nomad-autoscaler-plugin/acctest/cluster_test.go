package acctest

import (
	"slices"
	"testing"
	"time"

	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/pool"
)

// The hosts dimension without a pool: two pools, c1 on h1..h3 and c2 on
// h2 and h3 only. Idle, the cluster packs onto one host (h2 or h3: c2 may
// not go to h1) and the others go on standby; loaded, it spreads onto all
// three again, c2's member never leaving its pool's hosts.
func TestAccClusterConsolidateAndSpread(t *testing.T) {
	needLab(t)
	c1 := newPool(t, "c1", []string{"h1", "h2", "h3"}, "192.0.2.181/24", 2, 2, 2, labPolicy(pool.ModeBalance, 0.9))
	c2 := newPool(t, "c2", []string{"h2", "h3"}, "192.0.2.186/24", 1, 1, 1, labPolicy(pool.ModeBalance, 0.9))
	c1.createOn("h1", "h2")
	c2.createOn("h3")
	w := watchMembers(t, c1, func() []string { return []string{"c1-1", "c1-2", "c2-1"} })
	s1, s2 := followStreams(t, c1, 2), followStreams(t, c2, 1)
	c2Home := func() {
		t.Helper()
		if hs := c2.placement()["c2-1"]; len(hs) != 1 || !slices.Contains([]string{"h2", "h3"}, hs[0]) {
			t.Fatalf("c2-1 runs on %v, not on one of pool c2's hosts h2, h3", hs)
		}
	}
	t0 := time.Now()
	a := startAgent(t, map[string]string{"cluster.hcl": hostsPolicy("cluster-hosts", "", hostsTarget)}, targetConfig(), apmConfig())
	packThenSpread(t, a, t0, "cluster", wantEvent{event.ScaleRequested + " of the cluster",
		func(e event.Event) bool { return e.Kind == event.ScaleRequested && e.Cluster }}, c2Home, nil, c1, c2)
	w.check(t)
	s1.check(t)
	s2.check(t)
}
