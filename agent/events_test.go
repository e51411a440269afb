package agent

import (
	"strings"
	"testing"
	"time"
)

func TestDiff(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	g := func(name, host, state string) Guest {
		return Guest{Name: name, UUID: "uuid-" + name, Host: host, State: state, Pool: "web", Role: "member"}
	}
	h := func(name, state string, gs ...Guest) Host { return Host{Name: name, State: state, Guests: gs} }
	after := func(prev State, hosts ...Host) State {
		s := State{Time: t0, Hosts: hosts}
		s.Migrations = migrations(s, prev)
		return s
	}
	st := func(hosts ...Host) State { return after(State{}, hosts...) }
	inFlight := st(h("h1", HostActive, g("a", "h1", "running")), h("h2", HostActive, g("a", "h2", "paused")))
	switched := after(inFlight, h("h1", HostActive, g("a", "h1", "paused")), h("h2", HostActive, g("a", "h2", "running")))
	tests := []struct {
		name      string
		prev, cur State
		want      []string // messages
	}{
		{name: "first sample", prev: State{}, cur: st(h("h1", HostActive, g("a", "h1", "running")))},
		{name: "nothing changed", prev: st(h("h1", HostActive, g("a", "h1", "running"))), cur: st(h("h1", HostActive, g("a", "h1", "running")))},
		{name: "started and stopped", prev: st(h("h1", HostActive, g("a", "h1", "running"))),
			cur:  st(h("h1", HostActive, g("b", "h1", "running"))),
			want: []string{"b started on h1", "a stopped on h1"}},
		{name: "paused is not stopped", prev: st(h("h1", HostActive, g("a", "h1", "running"))),
			cur: st(h("h1", HostActive, g("a", "h1", "paused")))},
		{name: "shut off is stopped", prev: st(h("h1", HostActive, g("a", "h1", "running"))),
			cur: st(h("h1", HostActive, g("a", "h1", "shutoff"))), want: []string{"a stopped on h1"}},
		{name: "migration starts", prev: st(h("h1", HostActive, g("a", "h1", "running")), h("h2", HostActive)),
			cur:  st(h("h1", HostActive, g("a", "h1", "running")), h("h2", HostActive, g("a", "h2", "paused"))),
			want: []string{"a migrating h1 → h2"}},
		{name: "migration ends", prev: inFlight, cur: st(h("h1", HostActive), h("h2", HostActive, g("a", "h2", "running"))),
			want: []string{"a moved h1 → h2"}},
		// libvirt resumes the destination (Finish) before the source lets go
		// (Confirm); the destination's job is not over yet.
		{name: "destination resumed, source still there", prev: inFlight, cur: switched},
		{name: "source let go after the switch", prev: switched, cur: st(h("h1", HostActive), h("h2", HostActive, g("a", "h2", "running"))),
			want: []string{"a moved h1 → h2"}},
		{name: "migration failed", prev: inFlight, cur: st(h("h1", HostActive, g("a", "h1", "running")), h("h2", HostActive))},
		{name: "host down: guests unknown, not stopped", prev: st(h("h1", HostActive, g("a", "h1", "running"))),
			cur:  st(Host{Name: "h1", State: HostDown, Error: "no route", Guests: []Guest{g("a", "h1", GuestUnknown)}}),
			want: []string{"host h1 down: no route"}},
		{name: "host back", prev: st(Host{Name: "h1", State: HostDown, Guests: []Guest{g("a", "h1", GuestUnknown)}}),
			cur: st(h("h1", HostStandby, g("a", "h1", "running"))), want: []string{"host h1 up (standby)"}},
		{name: "host back without its guest", prev: st(Host{Name: "h1", State: HostDown, Guests: []Guest{g("a", "h1", GuestUnknown)}}),
			cur: st(h("h1", HostActive)), want: []string{"host h1 up (active)", "a stopped on h1"}},
		{name: "maintenance", prev: st(h("h1", HostActive)), cur: st(h("h1", HostMaintenance)),
			want: []string{"host h1 active → maintenance"}},
		{name: "pool resized", prev: State{Time: t0, Pools: []Pool{{Name: "web", Size: 1}}},
			cur: State{Time: t0, Pools: []Pool{{Name: "web", Size: 3}}}, want: []string{"pool web: 1 → 3 members running"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, e := range diff(tc.prev, tc.cur) {
				got = append(got, e.Message)
			}
			if strings.Join(got, "; ") != strings.Join(tc.want, "; ") {
				t.Errorf("events %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMigrations(t *testing.T) {
	g := func(host, state string) Guest { return Guest{Name: "a", UUID: "u", Host: host, State: state} }
	h := func(name string, gs ...Guest) Host { return Host{Name: name, State: HostActive, Guests: gs} }
	onH1 := State{Hosts: []Host{h("h1", g("h1", "running"))}}
	tests := []struct {
		name string
		prev State
		cur  []Host
		want string // from→to, "" for none
	}{
		{name: "pre-copy", prev: onH1, cur: []Host{h("h1", g("h1", "running")), h("h2", g("h2", "paused"))}, want: "h1→h2"},
		{name: "post-copy, after the switch", prev: onH1, cur: []Host{h("h1", g("h1", "paused")), h("h2", g("h2", "running"))}, want: "h1→h2"},
		{name: "after the switch, seen again", prev: State{Hosts: []Host{h("h1", g("h1", "paused")), h("h2", g("h2", "running"))},
			Migrations: []Migration{{UUID: "u", From: "h1", To: "h2"}}},
			cur: []Host{h("h1", g("h1", "paused")), h("h2", g("h2", "running"))}, want: "h1→h2"},
		{name: "first seen in flight", cur: []Host{h("h1", g("h1", "paused")), h("h2", g("h2", "running"))}, want: "h2→h1"},
		{name: "stopped copy left on the source", prev: onH1, cur: []Host{h("h1", g("h1", "shutoff")), h("h2", g("h2", "running"))}},
		{name: "one host", prev: onH1, cur: []Host{h("h1", g("h1", "running"))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ms := migrations(State{Hosts: tc.cur}, tc.prev)
			got := ""
			if len(ms) == 1 {
				got = ms[0].From + "→" + ms[0].To
			}
			if len(ms) > 1 || got != tc.want {
				t.Errorf("migrations %+v, want %q", ms, tc.want)
			}
		})
	}
}
