package agent

import (
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

func TestProtectTargets(t *testing.T) {
	prot, err := pool.Protection{Interval: 2 * time.Second, OnFailure: pool.OnFailureRestore}.Label()
	if err != nil {
		t.Fatal(err)
	}
	protected := func(name, standby string) driver.DomainStats {
		return driver.DomainStats{Name: name, State: driver.StateRunning, Labels: map[string]string{pool.LabelRole: pool.RoleDomain,
			pool.LabelProtection: prot, pool.LabelFailoverHosts: standby}}
	}
	stopped := protected("off", "h1,h2,h3")
	stopped.State = driver.StateShutoff
	plain := protected("plain", "h1,h2")
	delete(plain.Labels, pool.LabelProtection)
	domains := map[string][]driver.DomainStats{
		"h1": {protected("a", "h1,h2,h3"), stopped, plain},
		"h2": {protected("b", "h1,h2,h3"), protected("c", "h2,h3")},
		"h3": {protected("d", "h1,h2,h3")},
	}
	state := func(down ...string) State {
		var s State
		for _, h := range []string{"h1", "h2", "h3"} {
			st := HostActive
			for _, d := range down {
				if d == h {
					st = HostDown
				}
			}
			s.Hosts = append(s.Hosts, Host{Name: h, State: st})
		}
		return s
	}
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name    string
		s       State
		usable  func(string) bool
		current func(string) string
		want    map[string]string // domain → primary/standby
	}{
		{"all up: the first other host", state(), func(string) bool { return true }, none,
			map[string]string{"a": "h1/h2", "b": "h2/h1", "c": "h2/h3", "d": "h3/h1"}},
		{"h1 failed: its domains left, others skip it", state("h1"), func(h string) bool { return h != "h1" }, none,
			map[string]string{"b": "h2/h3", "c": "h2/h3", "d": "h3/h2"}},
		{"a host back does not take the standby over", state(), func(string) bool { return true },
			func(n string) string { return map[string]string{"b": "h3", "d": "h2"}[n] },
			map[string]string{"a": "h1/h2", "b": "h2/h3", "c": "h2/h3", "d": "h3/h2"}},
		{"the current standby is now the primary", state(), func(string) bool { return true },
			func(n string) string { return map[string]string{"b": "h2"}[n] },
			map[string]string{"a": "h1/h2", "b": "h2/h1", "c": "h2/h3", "d": "h3/h1"}},
		{"no helper on h2", state(), func(h string) bool { return h != "h2" }, none,
			map[string]string{"a": "h1/h3", "d": "h3/h1"}},
		{"no standby can take c", state("h3"), func(h string) bool { return h != "h3" }, none,
			map[string]string{"a": "h1/h2", "b": "h2/h1", "c": "h2/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := protectTargets(tc.s, func(h string) []driver.DomainStats { return domains[h] }, tc.usable, tc.current)
			if len(got) != len(tc.want) {
				t.Errorf("targets %v, want %v", got, tc.want)
			}
			for name, w := range tc.want {
				if g, ok := got[name]; !ok || g.primary+"/"+g.standby != w || g.interval != 2*time.Second {
					t.Errorf("%s: %+v, want %s every 2s", name, g, w)
				}
			}
		})
	}
}
