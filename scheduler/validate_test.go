package scheduler

import (
	"strings"
	"testing"
)

// plan builds a plan whose waves are given as lists of "guest:from>to".
func plan(waves ...[]string) Plan {
	var p Plan
	for w, ms := range waves {
		var idx []int
		for _, m := range ms {
			g, rest, _ := strings.Cut(m, ":")
			from, to, _ := strings.Cut(rest, ">")
			idx = append(idx, len(p.Moves))
			p.Moves = append(p.Moves, Move{Guest: g, From: from, To: to, Wave: w})
		}
		p.Waves = append(p.Waves, idx)
	}
	return p
}

func TestValidate(t *testing.T) {
	c := cluster([]Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100),
		standby(host("s", 10, 100)), maintenance(host("m", 10, 100))},
		[]Guest{guest("a1", "a", 3, 10, groupX), guest("a2", "a", 3, 10), guest("p1", "a", 1, 1, pinned),
			guest("b1", "b", 2, 10, groupX), guest("b2", "b", 1, 10), guest("b3", "b", 4, 10, onlyOn("b", "c"))})
	serial := DefaultPolicy()
	serial.MaxParallelPerHost = 1
	withOn := func(p Plan, on ...string) Plan { p.PowerOn = on; return p }
	withOff := func(p Plan, off ...string) Plan { p.PowerOff = off; return p }
	tests := []struct {
		name    string
		p       Plan
		pol     Policy
		wantErr string // "" means valid
	}{
		{name: "empty plan", p: Plan{}},
		{name: "simple move", p: plan([]string{"a2:a>c"})},
		{name: "move to one of the guest's hosts", p: plan([]string{"b3:b>c"})},
		{name: "move to another host", p: plan([]string{"b3:b>a"}), wantErr: `guest "b3" to host "a", not one of its hosts [b c]`},
		{name: "unknown guest", p: plan([]string{"zz:a>c"}), wantErr: `unknown guest "zz"`},
		{name: "pinned guest", p: plan([]string{"p1:a>c"}), wantErr: `guest "p1" is pinned`},
		{name: "moved twice", p: plan([]string{"a2:a>c"}, []string{"a2:c>b"}), wantErr: `guest "a2" moved twice`},
		{name: "wrong source", p: plan([]string{"a2:b>c"}), wantErr: `guest "a2" is on "a", not "b"`},
		{name: "unknown destination", p: plan([]string{"a2:a>zz"}), wantErr: `unknown host "zz"`},
		{name: "own host", p: plan([]string{"a2:a>a"}), wantErr: "moves to its own host"},
		{name: "standby destination", p: plan([]string{"a2:a>s"}), wantErr: `host "s" which is standby`},
		{name: "standby destination powered on", p: withOn(plan([]string{"a2:a>s"}), "s")},
		{name: "power on an active host", p: withOn(plan([]string{"a2:a>s"}), "a"), wantErr: `power on "a"`},
		{name: "maintenance destination", p: plan([]string{"a2:a>m"}), wantErr: `host "m" which is maintenance`},
		{name: "parallel limit", p: plan([]string{"a1:a>c", "a2:a>c"}), pol: serial, wantErr: "more than 1 parallel"},
		{name: "parallel limit, two waves", p: plan([]string{"a1:a>c"}, []string{"a2:a>c"}), pol: serial},
		// b holds 7 cores; a2 (3) fits only once b3 (4) has left.
		{name: "incoming before outgoing within a wave", p: plan([]string{"b3:b>c", "a2:a>b"}),
			wantErr: `host "b" overcommitted`},
		{name: "outgoing in an earlier wave", p: plan([]string{"b3:b>c"}, []string{"a2:a>b"})},
		{name: "overcommit", p: plan([]string{"a1:a>b"}), wantErr: "anti-affinity group"},
		{name: "overcommit cpu", p: plan([]string{"a2:a>b"}), wantErr: `host "b" overcommitted`},
		{name: "anti-affinity within a wave", p: plan([]string{"b1:b>c", "a1:a>b"}), wantErr: `group "x" on "b"`},
		{name: "anti-affinity across waves", p: plan([]string{"b1:b>c"}, []string{"a1:a>b"})},
		{name: "two group members arriving together", p: plan([]string{"b1:b>c", "a1:a>c"}), wantErr: `group "x" on "c"`},
		{name: "power off a host left with guests", p: withOff(plan([]string{"a2:a>c"}), "a"), wantErr: `power off "a"`},
		{name: "power off an emptied host", p: withOff(plan([]string{"b1:b>c"}, []string{"b2:b>c", "b3:b>c"}), "b")},
		{name: "move missing from waves", p: Plan{Moves: []Move{{Guest: "a2", From: "a", To: "c"}}}, wantErr: "waves list 0 of 1"},
		{name: "wave index out of range", p: Plan{Waves: [][]int{{0}}}, wantErr: "move index 0"},
		{name: "moves out of order", p: Plan{Moves: plan([]string{"a2:a>c", "b2:b>c"}).Moves, Waves: [][]int{{1, 0}}},
			wantErr: "move index 1, want 0"},
		{name: "empty wave", p: Plan{Waves: [][]int{{}}}, wantErr: "wave 0 is empty"},
		{name: "wrong Wave field", p: Plan{Moves: []Move{{Guest: "a2", From: "a", To: "c", Wave: 3}}, Waves: [][]int{{0}}},
			wantErr: "Wave 3 but listed in wave 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := tt.pol
			if pol == (Policy{}) {
				pol = DefaultPolicy()
			}
			err := c.Validate(tt.p, pol)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if _, err := c.Apply(tt.p, pol); err != nil {
					t.Fatalf("apply: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if _, err := c.Apply(tt.p, pol); err == nil {
				t.Fatal("apply accepted an invalid plan")
			}
		})
	}
}

func TestApply(t *testing.T) {
	c := cluster([]Host{host("a", 10, 100), host("b", 10, 100), standby(host("s", 10, 100))},
		[]Guest{guest("a1", "a", 1, 1), guest("b1", "b", 1, 1)})
	p := plan([]string{"a1:a>s"})
	p.PowerOn, p.PowerOff = []string{"s"}, []string{"a"}
	after, err := c.Apply(p, DefaultPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if after.Guests[0].Host != "s" || after.Guests[1].Host != "b" {
		t.Errorf("guests after: %+v", after.Guests)
	}
	if after.Hosts[0].State != Standby || after.Hosts[2].State != Active {
		t.Errorf("hosts after: %+v", after.Hosts)
	}
	if c.Guests[0].Host != "a" || c.Hosts[2].State != Standby {
		t.Error("Apply modified its receiver")
	}
}
