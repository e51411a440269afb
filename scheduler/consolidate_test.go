package scheduler

import (
	"slices"
	"strings"
	"testing"
)

func TestConsolidate(t *testing.T) {
	capped := DefaultPolicy()
	capped.MaxMigrations = 2
	abcd := []Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100), host("d", 10, 100)}
	// 10 guests of 1 core and 10 GiB: a has 2, b 3, c 1, d 4. Target is
	// 7 cores per host, so two hosts suffice.
	spread := func(o ...opt) *Cluster {
		return cluster(abcd, many("a", "a", 2, 1, 10), many("b", "b", 3, 1, 10),
			many("c", "c", 1, 1, 10, o...), many("d", "d", 4, 1, 10))
	}
	tests := []struct {
		name     string
		c        *Cluster
		n        int
		pol      Policy
		want     string
		wantOff  []string
		wantWhy  string
		wantUsed int
	}{
		{name: "as few hosts as possible; fewest guests moved",
			c: spread(), pol: DefaultPolicy(), want: "c00>d a00>d a01>d", wantOff: []string{"a", "c"}, wantUsed: 2},
		{name: "explicit n frees the host with fewest guests",
			c: spread(), n: 3, pol: DefaultPolicy(), want: "c00>d", wantOff: []string{"c"}, wantUsed: 3},
		{name: "pinned guests keep their host",
			c: spread(pinned), pol: DefaultPolicy(), want: "a00>d a01>d b00>d b01>c b02>c", wantOff: []string{"a", "b"}, wantUsed: 2},
		{name: "too few hosts asked for",
			c: spread(), n: 1, pol: DefaultPolicy(), want: "c00>d a00>d a01>d", wantOff: []string{"a", "c"},
			wantWhy: "could pack onto 2 hosts, not 1", wantUsed: 2},
		{name: "the host whose guest may go nowhere else is kept",
			c: cluster(abcd[:3], []Guest{guest("a00", "a", 2, 10), guest("b00", "b", 1, 10),
				guest("c00", "c", 1, 10, onlyOn("b", "c"))}),
			n: 1, pol: DefaultPolicy(), want: "b00>c a00>c", wantOff: []string{"a", "b"}, wantUsed: 1},
		{name: "n at least the active hosts: nothing to do",
			c: spread(), n: 4, pol: DefaultPolicy(), wantUsed: 4},
		{name: "empty hosts are freed without moves",
			c: cluster(append(abcd, host("e", 10, 100)), many("d", "d", 4, 1, 10)), pol: DefaultPolicy(),
			wantOff: []string{"a", "b", "c", "e"}, wantUsed: 1},
		{name: "per-round cap frees whole hosts only",
			c: spread(), pol: capped, want: "c00>d", wantOff: []string{"c"}, wantWhy: "per-round migration cap 2 reached", wantUsed: 3},
		{name: "anti-affinity is respected",
			c: cluster(abcd[:2], []Guest{guest("a1", "a", 1, 1, groupX), guest("b1", "b", 1, 1, groupX),
				guest("b2", "b", 1, 1)}),
			pol: DefaultPolicy(), wantUsed: 2},
		{name: "hot kept hosts are cooled",
			c:   cluster(abcd[:3], many("a", "a", 9, 1, 1), many("b", "b", 2, 1, 1), many("c", "c", 1, 1, 1)),
			pol: DefaultPolicy(), want: "c00>b a00>b", wantOff: []string{"c"}, wantUsed: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.c.Consolidate(tt.n, tt.pol)
			if err != nil {
				t.Fatal(err)
			}
			if got := moves(p); got != tt.want {
				t.Errorf("moves %q, want %q", got, tt.want)
			}
			if !slices.Equal(p.PowerOff, tt.wantOff) {
				t.Errorf("power off %v, want %v", p.PowerOff, tt.wantOff)
			}
			if !strings.Contains(p.Infeasible, tt.wantWhy) || (tt.wantWhy == "") != p.Feasible() {
				t.Errorf("infeasible %q, want %q", p.Infeasible, tt.wantWhy)
			}
			after := applyOK(t, tt.c, p, tt.pol)
			if got := usedHosts(after); got != tt.wantUsed {
				t.Errorf("%d hosts used after, want %d", got, tt.wantUsed)
			}
			if p.Feasible() {
				if hot := hotHosts(after, tt.pol); len(hot) > 0 {
					t.Errorf("hot after consolidation: %v", hot)
				}
			}
		})
	}
}

func TestConsolidateWaves(t *testing.T) {
	// Three guests land on d; two parallel migrations per host make two
	// waves.
	c := cluster([]Host{host("a", 10, 100), host("c", 10, 100), host("d", 10, 100)},
		many("a", "a", 2, 1, 10), many("c", "c", 1, 1, 10), many("d", "d", 4, 1, 10))
	p, err := c.Consolidate(0, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Waves) != 2 || len(p.Waves[0]) != 2 || len(p.Waves[1]) != 1 {
		t.Fatalf("waves %v, want [[0 1] [2]]", p.Waves)
	}
	pol := DefaultPolicy()
	pol.MaxParallelPerHost = 3
	p, _ = c.Consolidate(0, pol)
	if len(p.Waves) != 1 {
		t.Fatalf("waves %v with 3 parallel migrations, want one wave", p.Waves)
	}
}
