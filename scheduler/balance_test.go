package scheduler

import (
	"strings"
	"testing"
)

func TestBalance(t *testing.T) {
	capped := DefaultPolicy()
	capped.MaxMigrations = 1
	abc := []Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100)}
	tests := []struct {
		name      string
		c         *Cluster
		pol       Policy
		want      string // moves, "guest>to"
		wantWhy   string // substring of Infeasible; "" means feasible
		wantWaves int
	}{
		{name: "nothing hot, nothing moves",
			c:   cluster(abc, []Guest{guest("a1", "a", 7, 10), guest("b1", "b", 1, 10)}),
			pol: DefaultPolicy()},
		{name: "one move; lowest peak when the rest is cool",
			c: cluster(abc, []Guest{guest("a1", "a", 4, 4), guest("a2", "a", 1.5, 2), guest("a3", "a", 3.5, 2, usedGiB(1)),
				guest("b1", "b", 1, 10), guest("c1", "c", 2, 10)}),
			pol: DefaultPolicy(), want: "a1>b", wantWaves: 1},
		{name: "one move, to the guests' own hosts only",
			c: cluster(abc, []Guest{guest("a1", "a", 4, 4, onlyOn("a", "c")), guest("a2", "a", 1.5, 2),
				guest("a3", "a", 3.5, 2, usedGiB(1), onlyOn("a", "c")), guest("b1", "b", 1, 10), guest("c1", "c", 2, 10)}),
			pol: DefaultPolicy(), want: "a3>c", wantWaves: 1},
		{name: "one move; cheapest when another host sets the maximum",
			c: cluster(abc, []Guest{guest("a1", "a", 4, 4), guest("a2", "a", 1.5, 2), guest("a3", "a", 3.5, 2, usedGiB(1)),
				guest("b1", "b", 1, 10), guest("c1", "c", 7.4, 10)}),
			pol: DefaultPolicy(), want: "a3>b", wantWaves: 1},
		{name: "two moves when no guest is big enough",
			c:   cluster(abc, many("a", "a", 10, 1, 2)),
			pol: DefaultPolicy(), want: "a00>b a01>c", wantWaves: 1},
		{name: "memory hot",
			c: cluster(abc, []Guest{guest("a1", "a", 1, 50), guest("a2", "a", 1, 40), guest("a3", "a", 1, 2),
				guest("b1", "b", 1, 10)}),
			pol: DefaultPolicy(), want: "a1>c", wantWaves: 1}, // peak 0.50 beats a2 (0.52)
		{name: "pinned guests cannot cool a host",
			c:   cluster(abc, many("a", "a", 3, 3, 2, pinned)),
			pol: DefaultPolicy(), wantWhy: "no guest can leave without overloading another host; still hot: a"},
		{name: "a guest that frees no CPU does not move off a CPU-hot host",
			c:   cluster(abc, []Guest{guest("a1", "a", 9, 2, pinned), guest("a2", "a", 0, 10)}),
			pol: DefaultPolicy(), wantWhy: "still hot: a"},
		{name: "anti-affinity leaves no destination",
			c: cluster(abc[:2], []Guest{guest("a1", "a", 6, 2, pinned), guest("a2", "a", 3, 2, groupX),
				guest("b1", "b", 1, 2, groupX)}),
			pol: DefaultPolicy(), wantWhy: "still hot: a"},
		{name: "destinations stay under high minus hysteresis",
			c: cluster(abc[:2], []Guest{guest("a1", "a", 6, 2, pinned), guest("a2", "a", 3, 2),
				guest("b1", "b", 5, 2)}),
			pol: DefaultPolicy(), wantWhy: "still hot: a"},
		{name: "per-round cap",
			c:   cluster(append(abc, host("d", 10, 100)), many("a", "a", 3, 3, 2), many("b", "b", 3, 3, 2)),
			pol: capped, want: "a00>c", wantWhy: "per-round migration cap reached; still hot: b", wantWaves: 1},
		{name: "maintenance hosts are neither sources nor destinations",
			c: cluster([]Host{host("a", 10, 100), maintenance(host("m", 10, 100)), host("b", 10, 100)},
				many("a", "a", 3, 3, 2), many("m", "m", 4, 3, 2)),
			pol: DefaultPolicy(), want: "a00>b", wantWaves: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maxLoad(tt.c)
			p, err := tt.c.Balance(tt.pol)
			if err != nil {
				t.Fatal(err)
			}
			if got := moves(p); got != tt.want {
				t.Errorf("moves %q, want %q", got, tt.want)
			}
			if !strings.Contains(p.Infeasible, tt.wantWhy) || (tt.wantWhy == "") != p.Feasible() {
				t.Errorf("infeasible %q, want %q", p.Infeasible, tt.wantWhy)
			}
			if len(p.Waves) != tt.wantWaves {
				t.Errorf("%d waves, want %d", len(p.Waves), tt.wantWaves)
			}
			after := applyOK(t, tt.c, p, tt.pol)
			if p.Feasible() {
				if hot := hotHosts(after, tt.pol); len(hot) > 0 {
					t.Errorf("still hot after a feasible plan: %v", hot)
				}
			}
			if maxLoad(after) > before+1e-12 {
				t.Errorf("max load rose from %.3f to %.3f", before, maxLoad(after))
			}
			for _, m := range p.Moves {
				if !strings.HasPrefix(m.Reason, "balance: "+m.From+" is hot") {
					t.Errorf("reason %q", m.Reason)
				}
			}
		})
	}
}
