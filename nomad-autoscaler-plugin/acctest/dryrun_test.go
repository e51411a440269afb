package acctest

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/event"
)

func pool1(p *testPool, n int) string { return fmt.Sprintf("%s-%d", p.spec.Name, n) }

// Test 4a: with dry-run the autoscaler decides and the plugin plans and
// logs what it would do, and nothing changes: no migration, no member
// created, the pool record untouched.
func TestAccDryRunChangesNothing(t *testing.T) {
	needLab(t)
	p := newPool(t, "t4", []string{"h1", "h2"}, "192.0.2.231/24", 2, 1, 3, hotAbove(hotHigh))
	p.createOn("h1", "h1")
	dry := `      dry-run   = "true"
`
	a := startAgent(t, map[string]string{
		"hot.hcl": hotPolicy("t4-hot", "t4", dry),
		// Two members at loadedPct each, against a target of half that:
		// the strategy asks for more members.
		"size.hcl": strings.Replace(sizePolicy("t4-size", "t4", 1, 3, hostPct(loadedPct)/2), `dimension = "size"`, "dimension = \"size\"\n"+dry, 1),
	}, targetConfig(), apmConfig())
	a.waitLog(regexpPolicyEval("t4"), time.Now(), 60*time.Second)

	t0 := time.Now()
	p.setLoad(1, hostPct(loadedPct))
	p.setLoad(2, hostPct(loadedPct))
	balance := a.waitEvent(wantEvent{"dry run: would balance, moving t4's members", func(e event.Event) bool {
		return e.Kind == event.DryRunPlan && e.Action == event.ActionBalance && e.Pool == "t4" &&
			len(e.Moves) > 0 && strings.HasPrefix(e.Moves[0].Guest, "t4-")
	}}, t0, 90*time.Second)
	resize := a.waitEvent(wantEvent{"dry run: would scale pool t4", func(e event.Event) bool {
		return e.Kind == event.DryRunPlan && e.Action == event.ActionScale && e.Pool == "t4"
	}}, t0, 90*time.Second)
	t.Logf("dry run, balance: %s", balance)
	t.Logf("dry run, size: %s", resize)
	tl := newTimeline(t, "dry run", t0)
	tl.add("would balance (recorded)", balance.Time)
	tl.add(fmt.Sprintf("would resize the pool to %d (recorded)", resize.Size), resize.Time)
	tl.print()
	// Several more evaluations: still nothing happens.
	time.Sleep(hold)
	if n := len(a.allEvents(migrationStarted, time.Time{})); n != 0 {
		t.Errorf("%d migrations in dry-run mode", n)
	}
	if n := len(a.allEvents(wantEvent{"members created or removed", func(e event.Event) bool {
		return e.Kind == event.MemberCreated || e.Kind == event.MemberRemoved
	}}, time.Time{})); n != 0 {
		t.Errorf("%d members created or removed in dry-run mode", n)
	}
	if got := p.on("h1"); len(got) != 2 {
		t.Errorf("h1 runs %v, want both members still there", got)
	}
	if n := p.count(); n != 2 {
		t.Errorf("%d members, want 2", n)
	}
	p.checkStoredSize(2)
	p.setLoad(1, 0)
	p.setLoad(2, 0)
}

// Test 4b: a bad key or value in a policy or in a plugin's configuration
// is reported by the agent, naming it.
func TestAccBadConfigReported(t *testing.T) {
	needLab(t)
	newPool(t, "t4b", []string{"h1", "h2"}, "192.0.2.236/24", 0, 0, 1, nil)
	target := func(extra string) string {
		return fmt.Sprintf(`scaling "p" {
  enabled = true
  min     = 0
  max     = 1
  policy {
    evaluation_interval = "`+hclDur(evalInterval)+`"
    check "c" {
      strategy "fixed-value" {
        value = 0
      }
    }
    target "virtpool" {
%s
    }
  }
}
`, extra)
	}
	// Policies: all in one agent; each error must name what is wrong.
	policies := []struct {
		name, hcl, want string
	}{
		{"unknown key", target(`pool = "t4b"
dimension = "hot_hosts"
poool = "t4b"`), `unknown key "poool"`},
		{"bad dimension", target(`pool = "t4b"
dimension = "hot_host"`), `dimension: "hot_host" is not one of size, hosts, hot_hosts`},
		{"no pool", target(`dimension = "size"`), `pool missing`},
		{"unknown pool", target(`pool = "nosuchpool"
dimension = "size"`), `pool "nosuchpool": pool not found`},
		{"bad bool", target(`pool = "t4b"
dimension = "size"
node_drain = "yes"`), `node_drain: "yes" is not true or false`},
		{"bad query", strings.Replace(sizePolicy("q", "t4b", 0, 1, 50), "metric=cpu", "metrc=cpu", 1),
			`unknown key "metrc"`},
	}
	files := map[string]string{}
	for i, pc := range policies {
		files[fmt.Sprintf("p%d.hcl", i)] = strings.Replace(pc.hcl, `scaling "p"`, fmt.Sprintf(`scaling "p%d"`, i), 1)
	}
	a := startAgent(t, files, targetConfig(), apmConfig())
	for _, pc := range policies {
		t.Run("policy "+pc.name, func(t *testing.T) {
			l := a.waitLogT(t, regexp.MustCompile(regexp.QuoteMeta(pc.want)), time.Time{}, 60*time.Second)
			t.Logf("reported: %s", l.Text)
		})
	}

	// Plugin configurations: the agent refuses to start, naming the key.
	plugins := []struct {
		name        string
		target, apm map[string]string
		want        string
	}{
		{"target unknown key", with(targetConfig(), "load_windw", "5s"), apmConfig(), `unknown key "load_windw"`},
		{"target bad duration", with(targetConfig(), "load_window", "fast"), apmConfig(), `load_window: "fast" is not a duration`},
		{"apm unknown key", targetConfig(), with(apmConfig(), "sample_intervall", "1s"), `unknown key "sample_intervall"`},
		{"apm bad hosts", targetConfig(), with(apmConfig(), "hosts", "h1=not-a-uri"), `hosts: h1=not-a-uri: "not-a-uri" is not a libvirt URI`},
	}
	for _, pc := range plugins {
		t.Run(pc.name, func(t *testing.T) {
			b := startAgent(t, map[string]string{}, pc.target, pc.apm)
			l := b.waitLogT(t, regexp.MustCompile(regexp.QuoteMeta(pc.want)), time.Time{}, 60*time.Second)
			t.Logf("reported: %s", l.Text)
			select {
			case <-b.Done():
				t.Logf("agent exited: %v", b.Err())
			case <-time.After(30 * time.Second):
				t.Errorf("agent still running with a bad plugin config")
			}
		})
	}
}

func with(m map[string]string, k, v string) map[string]string {
	out := map[string]string{}
	for a, b := range m {
		out[a] = b
	}
	out[k] = v
	return out
}
