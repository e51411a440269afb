package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/fleet"
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
			got := protectTargets(tc.s, nil, func(h string) []driver.DomainStats { return domains[h] }, tc.usable, tc.current)
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

// TestProtectTargetsMembers: a protected pool's members get a standby
// placed by the scheduler among the pool's unfenced hosts that can take
// one, never their own host, the room the other standbys would take on
// counted (so that one host does not stand by for everything); a
// standby that still can be is kept.
func TestProtectTargetsMembers(t *testing.T) {
	const mib = 1 << 20
	member := func(name string) driver.DomainStats {
		return driver.DomainStats{Name: name, State: driver.StateRunning, Labels: map[string]string{pool.LabelRole: pool.RoleMember, pool.LabelPool: "web"}}
	}
	other := member("db-1")
	other.Labels[pool.LabelPool] = "db" // a pool without protection
	paused := member("web-3")           // a checkpoint's end: protected all the same
	paused.State = driver.StatePaused
	domains := map[string][]driver.DomainStats{"h1": {member("web-1"), member("web-2")}, "h2": {paused, other}}
	state := func(capMiB int64) State {
		var s State
		for _, h := range []string{"h1", "h2", "h3", "h4"} {
			host := Host{Name: h, State: HostActive, CapacityCPUs: 1, CapacityMemoryBytes: capMiB * mib}
			for _, d := range domains[h] {
				host.Guests = append(host.Guests, Guest{Name: d.Name, Host: h, Pool: d.Labels[pool.LabelPool], State: d.State,
					VCPUs: 1, MemoryBytes: 256 * mib})
			}
			s.Hosts = append(s.Hosts, host)
		}
		return s
	}
	prot := &pool.Protection{Interval: 2 * time.Second, OnFailure: pool.OnFailureRestore}
	web := pool.Record{Spec: pool.Spec{Name: "web", Protection: prot, Hosts: []pool.HostEntry{{Name: "h1"}, {Name: "h2"}, {Name: "h3"}}}}
	fenced := web
	fenced.Fences = []pool.Fence{{Host: "h3"}}
	pools := func(pr pool.Record) map[string]pool.Record {
		return map[string]pool.Record{"web": pr, "db": {Spec: pool.Spec{Name: "db", Hosts: web.Spec.Hosts}}}
	}
	all := func(string) bool { return true }
	none := func(string) string { return "" }
	for _, tc := range []struct {
		name    string
		s       State
		pools   map[string]pool.Record
		usable  func(string) bool
		current func(string) string
		want    map[string]string // member → primary/standby, or primary/!why it has none
	}{
		// web-1: h3 is empty; web-2: h3 (web-1's standby) before h2
		// (web-3 and db-1); web-3: h1 (two members) as full as h3 (two
		// standbys), the first wins. h4 is not the pool's.
		{"placed by the scheduler, spread", state(1024), pools(web), all, none,
			map[string]string{"web-1": "h1/h3", "web-2": "h1/h3", "web-3": "h2/h1"}},
		{"a standby that still can be is kept", state(1024), pools(web), all,
			func(n string) string { return map[string]string{"web-1": "h2", "web-3": "h1"}[n] },
			map[string]string{"web-1": "h1/h2", "web-2": "h1/h3", "web-3": "h2/h1"}},
		{"the recorded standby is now the primary", state(1024), pools(web), all,
			func(n string) string { return map[string]string{"web-3": "h2"}[n] },
			map[string]string{"web-1": "h1/h3", "web-2": "h1/h3", "web-3": "h2/h1"}},
		{"a fenced host stands by for nothing", state(2048), pools(fenced), all, none,
			map[string]string{"web-1": "h1/h2", "web-2": "h1/h2", "web-3": "h2/h1"}},
		{"a host without a helper neither", state(2048), pools(web), func(h string) bool { return h != "h3" }, none,
			map[string]string{"web-1": "h1/h2", "web-2": "h1/h2", "web-3": "h2/h1"}},
		// 480 MiB below the watermark: h3 takes one standby, h1 and h2 none.
		{"no room for a standby", state(600), pools(web), all, none,
			map[string]string{"web-1": "h1/h3", "web-2": "h1/!no active host has room", "web-3": "h2/!no active host has room"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := protectTargets(tc.s, tc.pools, func(h string) []driver.DomainStats { return domains[h] }, tc.usable, tc.current)
			if len(got) != len(tc.want) {
				t.Errorf("targets %v, want %v", got, tc.want)
			}
			for name, w := range tc.want {
				g := got[name]
				if g.standby == g.primary {
					t.Errorf("%s: standby on its own host %s", name, g.primary)
				}
				primary, standby, _ := strings.Cut(w, "/")
				why, unplaced := strings.CutPrefix(standby, "!")
				if g.primary != primary || g.interval != 2*time.Second ||
					(unplaced && (g.standby != "" || !strings.Contains(g.unplaced, why))) || (!unplaced && g.standby != standby) {
					t.Errorf("%s: %+v, want %s every 2s", name, g, w)
				}
			}
		})
	}
}

// TestRemoved: a protected guest is gone (its images can go) only when
// every host answers without it and it has no placement record.
func TestRemoved(t *testing.T) {
	hosts := func(h2 string, guests ...string) State {
		s := State{Hosts: []Host{{Name: "h1", State: HostActive}, {Name: "h2", State: h2}}}
		for _, g := range guests {
			s.Hosts[0].Guests = append(s.Hosts[0].Guests, Guest{Name: g, State: driver.StateShutoff})
		}
		return s
	}
	placed := fleet.Topology{Placements: map[string]pool.Placement{"a": {Domain: "a", Host: "h1"}}}
	for _, tc := range []struct {
		name string
		s    State
		t    fleet.Topology
		want bool
	}{
		{"gone", hosts(HostActive), fleet.Topology{}, true},
		{"stopped, still defined", hosts(HostActive, "a"), fleet.Topology{}, false},
		{"its placement still recorded", hosts(HostActive), placed, false},
		{"a host does not answer: it may be there", hosts(HostDown), fleet.Topology{}, false},
	} {
		if got := removed(tc.s, tc.t, "a"); got != tc.want {
			t.Errorf("%s: removed %v, want %v", tc.name, got, tc.want)
		}
	}
}
