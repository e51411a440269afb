package scheduler

import (
	"slices"
	"strings"
	"testing"
)

func TestSpread(t *testing.T) {
	hosts := []Host{host("a", 10, 100), host("b", 10, 100), standby(host("s1", 10, 100)), standby(host("s2", 10, 100))}
	// a at 60 %, b at 40 % of CPU; the mean over four hosts is 25 %.
	busy := cluster(hosts, many("a", "a", 6, 1, 1), many("b", "b", 4, 1, 1))
	capped := DefaultPolicy()
	capped.MaxMigrations = 1
	tests := []struct {
		name      string
		c         *Cluster
		n         int
		pol       Policy
		wantMoves int
		wantOn    []string
		wantMax   float64 // highest load after, at most
		wantWhy   string
	}{
		{name: "power on two hosts and level", c: busy, n: 4, pol: DefaultPolicy(),
			wantMoves: 4, wantOn: []string{"s1", "s2"}, wantMax: 0.3},
		{name: "one more host", c: busy, n: 3, pol: DefaultPolicy(),
			wantMoves: 3, wantOn: []string{"s1"}, wantMax: 0.4},
		{name: "not enough standby hosts", c: busy, n: 5, pol: DefaultPolicy(),
			wantMoves: 4, wantOn: []string{"s1", "s2"}, wantMax: 0.3, wantWhy: "want 5 active hosts, only 4 available"},
		{name: "already level", c: cluster(hosts[:2], many("a", "a", 4, 1, 1), many("b", "b", 4, 1, 1)), n: 2,
			pol: DefaultPolicy(), wantMax: 0.4},
		{name: "cap", c: busy, n: 4, pol: capped,
			wantMoves: 1, wantOn: []string{"s1", "s2"}, wantMax: 0.5, wantWhy: "per-round migration cap"},
		{name: "pinned guests stay", c: cluster(hosts, many("a", "a", 6, 1, 1, pinned)), n: 3, pol: DefaultPolicy(),
			wantOn: []string{"s1"}, wantMax: 0.6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.c.Spread(tt.n, tt.pol)
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Moves) != tt.wantMoves {
				t.Errorf("%d moves (%s), want %d", len(p.Moves), moves(p), tt.wantMoves)
			}
			if !slices.Equal(p.PowerOn, tt.wantOn) {
				t.Errorf("power on %v, want %v", p.PowerOn, tt.wantOn)
			}
			if !strings.Contains(p.Infeasible, tt.wantWhy) || (tt.wantWhy == "") != p.Feasible() {
				t.Errorf("infeasible %q, want %q", p.Infeasible, tt.wantWhy)
			}
			after := applyOK(t, tt.c, p, tt.pol)
			if m := maxLoad(after); m > tt.wantMax+1e-9 {
				t.Errorf("max load %.3f, want at most %.3f", m, tt.wantMax)
			}
		})
	}
}
