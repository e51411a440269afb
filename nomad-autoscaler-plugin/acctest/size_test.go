package acctest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/pool"
)

// sizePolicy keeps the average CPU of a pool's members near target% by
// changing the pool's size (the virtpool-apm answers the query).
func sizePolicy(name, poolName string, minSize, maxSize, target int) string {
	return fmt.Sprintf(`scaling %q {
  enabled = true
  min     = %d
  max     = %d

  policy {
    evaluation_interval = %q
    cooldown            = %q

    check "member_cpu" {
      source       = "virtpool"
      query        = "pool=%s metric=cpu agg=avg reduce=avg"
      query_window = %q
      strategy "target-value" {
        target = %d
      }
    }

    target "virtpool" {
      pool      = %q
      dimension = "size"
    }
  }
}
`, name, minSize, maxSize, hclDur(evalInterval), hclDur(cooldown), poolName, hclDur(loadWindow), target, poolName)
}

// The size test's model. The policy keeps the members' average CPU (% of
// their vCPU) at hostPct(sizeTargetPct), so it asks for
// ceil(members·average/target) members. The pool's work is
// sizeWorkPct% of a host, split over the members: one member alone is
// held to its host's budget (100%), which asks for ceil(100/40) = 3;
// three at 40% each ask for 3 too (max_size). Idle members (a guest
// without work costs well under 1% of a host) ask for one.
const (
	sizeTargetPct = 40
	sizeWorkPct   = 120
)

// Test 2: the pool's load rises → it grows up to max_size, the new members
// spread over the hosts; the load falls → it shrinks to min_size.
func TestAccPoolSizeFollowsLoad(t *testing.T) {
	needLab(t)
	p := newPool(t, "t2", []string{"h1", "h2", "h3"}, "192.0.2.211/24", 1, 1, 3, labPolicy(pool.ModeBalance, 0.9))
	p.createOn("h1")
	setLoad := p.spreadLoad()
	a := startAgent(t, map[string]string{"size.hcl": sizePolicy("t2-size", "t2", 1, 3, hostPct(sizeTargetPct))}, targetConfig(), apmConfig())
	a.waitLog(regexpPolicyEval("t2"), time.Now(), 60*time.Second)
	time.Sleep(hold)
	if n := p.count(); n != 1 {
		t.Fatalf("%d members before any load, want 1", n)
	}

	// Up: 1.2 hosts' worth of work for the pool.
	t0 := time.Now()
	setLoad(hostPct(sizeWorkPct))
	most := 0
	grown := waitFor(t, "3 members", 120*time.Second, func() bool {
		most = max(most, p.count())
		return p.count() == 3
	}, placementOf(p))
	p.waitReady(3)
	decision := a.waitEvent(eventOf(event.ScaleRequested, "t2"), t0, time.Second)
	created := a.waitEvent(eventOf(event.MemberCreated, "t2"), t0, time.Second)
	tl := newTimeline(t, "pool load up", t0)
	tl.add("decision (Scale called)", decision.Time)
	tl.add("first member created", created.Time)
	tl.add("3 members defined", grown)
	tl.add("3 members answering", time.Now())
	tl.print()
	// Stays at max_size under load; never above.
	time.Sleep(hold)
	most = max(most, p.count())
	if most > 3 {
		t.Errorf("pool reached %d members, above max_size 3", most)
	}
	if n := p.count(); n != 3 {
		t.Errorf("%d members under load, want max_size 3", n)
	}
	if hs := p.hostsOf(); len(hs) != 3 {
		t.Errorf("members on %v, want spread over the 3 hosts (placement %v)", hs, p.placement())
	}
	p.checkStoredSize(3)

	// Down: no work.
	t1 := time.Now()
	setLoad(0)
	shrunk := waitFor(t, "1 member", 120*time.Second, func() bool { return p.count() == 1 }, placementOf(p))
	decision = a.waitEvent(eventOf(event.ScaleRequested, "t2"), t1, time.Second)
	removed := a.waitEvent(eventOf(event.MemberRemoved, "t2"), t1, time.Second)
	tl = newTimeline(t, "pool load down", t1)
	tl.add("decision (Scale called)", decision.Time)
	tl.add("first member removed", removed.Time)
	tl.add("1 member left (min_size)", shrunk)
	tl.print()
	time.Sleep(hold)
	if n := p.count(); n != 1 {
		t.Errorf("%d members without load, want min_size 1", n)
	}
	p.checkStoredSize(1)
	// The member left still serves.
	for name := range p.placement() {
		if err := client.WaitReady(context.Background(), p.memberIP(memberIndex(name)), 10*time.Second); err != nil {
			t.Errorf("remaining member %s: %v", name, err)
		}
	}
}

// checkStoredSize checks the size in the pool record (what Terraform and
// every other tool read).
func (p *testPool) checkStoredSize(want int64) {
	p.t.Helper()
	pr, _, _, err := p.ops.ReadPool(context.Background(), p.spec.Name, nil)
	if err != nil {
		p.t.Fatal(err)
	}
	if pr.Spec.Size != want {
		p.t.Errorf("pool record says size %d, want %d", pr.Spec.Size, want)
	}
}
