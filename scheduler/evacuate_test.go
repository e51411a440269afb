package scheduler

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestEvacuate(t *testing.T) {
	one := DefaultPolicy()
	one.MaxParallelPerHost = 1
	hosts := []Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100)}
	tests := []struct {
		name      string
		c         *Cluster
		pol       Policy
		want      string
		wantOn    []string
		wantWhy   string
		wantWaves int
	}{
		{name: "largest first to the least loaded host",
			c: cluster(hosts, []Guest{guest("a1", "a", 1, 1), guest("a2", "a", 3, 1), guest("a3", "a", 2, 1),
				guest("b1", "b", 2, 1), guest("c1", "c", 1, 1)}),
			pol: DefaultPolicy(), want: "a2>c a3>b a1>b", wantWaves: 2}, // a1: b and c tie at 50 %, b sorts first
		{name: "one migration per host per wave",
			c:   cluster(hosts, many("a", "a", 4, 1, 1)),
			pol: one, want: "a00>b a01>c a02>b a03>c", wantWaves: 4},
		{name: "standby host powered on when needed",
			c: cluster(append(hosts[:2], standby(host("s", 10, 100)), standby(host("t", 4, 100))),
				many("a", "a", 2, 3.5, 1), many("b", "b", 1, 5, 1)),
			pol: DefaultPolicy(), want: "a00>s a01>s", wantOn: []string{"s"}, wantWaves: 1},
		{name: "pinned guest", c: cluster(hosts, []Guest{guest("a1", "a", 1, 1), guest("a2", "a", 1, 1, pinned)}),
			pol: DefaultPolicy(), wantWhy: "guest a2 on a is pinned"},
		{name: "no room: nothing moves",
			c:   cluster(hosts, many("a", "a", 3, 5, 1), many("b", "b", 1, 5, 1), many("c", "c", 1, 5, 1)),
			pol: DefaultPolicy(), wantWhy: "fits on no other host"},
		{name: "anti-affinity", c: cluster(hosts[:2], []Guest{guest("a1", "a", 1, 1, groupX), guest("b1", "b", 1, 1, groupX)}),
			pol: DefaultPolicy(), wantWhy: "guest a1"},
		{name: "empty host", c: cluster(hosts), pol: DefaultPolicy()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.c.Evacuate("a", tt.pol)
			if err != nil {
				t.Fatal(err)
			}
			if got := moves(p); got != tt.want {
				t.Errorf("moves %q, want %q", got, tt.want)
			}
			if !slices.Equal(p.PowerOn, tt.wantOn) {
				t.Errorf("power on %v, want %v", p.PowerOn, tt.wantOn)
			}
			if !strings.Contains(p.Infeasible, tt.wantWhy) || (tt.wantWhy == "") != p.Feasible() {
				t.Errorf("infeasible %q, want %q", p.Infeasible, tt.wantWhy)
			}
			if len(p.Waves) != tt.wantWaves {
				t.Errorf("%d waves, want %d", len(p.Waves), tt.wantWaves)
			}
			after := applyOK(t, tt.c, p, tt.pol)
			if p.Feasible() {
				for _, g := range after.Guests {
					if g.Host == "a" {
						t.Errorf("guest %s still on a", g.Name)
					}
				}
			}
		})
	}
	if _, err := cluster(hosts).Evacuate("zz", DefaultPolicy()); !errors.Is(err, ErrInvalid) {
		t.Errorf("unknown host: err %v, want ErrInvalid", err)
	}
}
