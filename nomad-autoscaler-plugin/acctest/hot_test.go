package acctest

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/pool"
)

// hotPolicy is a hot_hosts policy: fixed-value 0 means "no host hot".
func hotPolicy(name, poolName string, extra string) string {
	return fmt.Sprintf(`scaling %q {
  enabled = true
  min     = 0
  max     = 3

  policy {
    evaluation_interval = %q
    cooldown            = %q

    check "no_hot_host" {
      strategy "fixed-value" {
        value = 0
      }
    }

    target "virtpool" {
      pool      = %q
      dimension = "hot_hosts"
%s    }
  }
}
`, name, hclDur(evalInterval), hclDur(cooldown), poolName, extra)
}

// Loads of the hot-host tests, in % of a host: two loaded members make
// their host hot, one loaded member (with an idle one) does not, whatever
// an idle TCG guest costs (below hotHigh − loadedPct).
const (
	loadedPct = 40
	hotHigh   = 0.65
)

// Test 1 (TUNe in both directions): load two guests on host A until A is
// hot → the autoscaler moves one to B; then unload A and load B → a guest
// moves back to A. The moved guest's load is counted where it now runs
// (TUNe could only migrate one way because it lost track of a moved
// guest). Streams from every guest stay unbroken; no guest is ever on two
// hosts or lost.
func TestAccHotHostsBothDirections(t *testing.T) {
	needLab(t)
	p := newPool(t, "t1", []string{"h1", "h2"}, "192.0.2.201/24", 3, 1, 3, hotAbove(hotHigh))
	p.createOn("h1", "h1", "h2")
	names := func() []string { return []string{"t1-1", "t1-2", "t1-3"} }
	w := watchMembers(t, p, names)
	s := followStreams(t, p, 3)
	load := hostPct(loadedPct)
	t.Logf("hosts have %v cores each; hot above %.0f%%; a loaded member runs at %d%% of its vCPU (%d%% of its host)",
		theLab.Hosts[0].CPUs, 100*hotHigh, load, loadedPct)

	a := startAgent(t, map[string]string{"hot.hcl": hotPolicy("t1-hot", "t1", "")}, targetConfig(), apmConfig())
	a.waitLog(regexpPolicyEval("t1"), time.Now(), 60*time.Second)
	// Idle: no host is hot, nothing moves.
	idle := time.Now()
	time.Sleep(hold)
	if n := len(a.allEvents(migrationStarted, idle)); n != 0 {
		t.Fatalf("%d migrations while every guest was idle", n)
	}

	// Phase 1: A (h1) hot.
	t0 := time.Now()
	p.setLoad(1, load)
	p.setLoad(2, load)
	moved := waitMove(t, a, p, "h1", "h2", t0, "A→B: h1 hot")
	if memberIndex(moved) != 1 && memberIndex(moved) != 2 {
		t.Fatalf("moved %s, want a loaded guest (t1-1 or t1-2)", moved)
	}
	stayed := pool.MemberName("t1", 3-memberIndex(moved))
	// Nothing else moves once no host is hot (no ping-pong).
	settle := time.Now()
	time.Sleep(hold)
	if n := len(a.allEvents(migrationStarted, settle)); n != 0 {
		t.Fatalf("%d more migrations after h1 cooled", n)
	}
	if got := p.on("h1"); len(got) != 1 || got[0] != stayed {
		t.Fatalf("h1 runs %v after phase 1; want only %s", got, stayed)
	}

	// Phase 2: A idle, B (h2) hot. The moved guest (still loaded, now on
	// h2) and t1-3 make h2 hot only if the moved guest's load is counted
	// on h2.
	t1 := time.Now()
	p.setLoad(memberIndex(stayed), 0)
	p.setLoad(3, load)
	back := waitMove(t, a, p, "h2", "h1", t1, "B→A: h2 hot")
	if back != moved && back != "t1-3" {
		t.Fatalf("moved %s back, want one of h2's loaded guests (%s, t1-3)", back, moved)
	}
	settle = time.Now()
	time.Sleep(hold)
	if n := len(a.allEvents(migrationStarted, settle)); n != 0 {
		t.Fatalf("%d more migrations after h2 cooled", n)
	}
	// One loaded guest per host: neither is hot.
	hot := map[string]bool{moved: true, "t1-3": true}
	for _, h := range []string{"h1", "h2"} {
		n := 0
		for _, g := range p.on(h) {
			if hot[g] {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s runs %v: want exactly one of the loaded guests %s, t1-3", h, p.on(h), moved)
		}
	}
	for i := 1; i <= 3; i++ {
		p.setLoad(i, 0)
	}
	w.check(t)
	s.check(t)
}

// waitMove waits for the autoscaler to move a member from one host to
// another after t0, prints the reaction times and returns the member.
func waitMove(t *testing.T, a *agent, p *testPool, from, to string, t0 time.Time, what string) string {
	t.Helper()
	decision := a.waitEvent(eventOf(event.ScaleRequested, p.spec.Name), t0, 90*time.Second)
	start := a.waitEvent(migrationStarted, t0, 60*time.Second)
	done := a.waitEvent(migrationFinished, t0, 60*time.Second)
	scaled := a.waitEvent(eventOf(event.ScaleDone, p.spec.Name), t0, 60*time.Second)
	moved := done.Guest
	if done.From != from || done.To != to {
		t.Fatalf("%s: first migration was %s, want one from %s to %s", what, done, from, to)
	}
	if got := p.placement()[moved]; len(got) != 1 || got[0] != to {
		t.Fatalf("%s: %s runs on %v, want %s", what, moved, got, to)
	}
	tl := newTimeline(t, what, t0)
	tl.add("decision (Scale called)", decision.Time)
	tl.add("first migration started", start.Time)
	tl.add("first migration done", done.Time)
	tl.add("scale action done", scaled.Time)
	tl.print()
	t.Logf("%s: %s moved %s→%s (%s)", what, moved, from, to, done)
	return moved
}

// regexpPolicyEval matches the target's status lines for a pool: the
// agent evaluates its policy.
func regexpPolicyEval(poolName string) *regexp.Regexp {
	return regexp.MustCompile(`status:.*pool=` + regexp.QuoteMeta(poolName) + `\b`)
}
