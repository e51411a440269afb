package scheduler

import (
	"fmt"
	"testing"
)

func TestBuildPlanWaves(t *testing.T) {
	hosts := []Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100), host("d", 10, 100),
		host("e", 10, 100), host("f", 10, 100)}
	c := cluster(hosts, []Guest{guest("a1", "a", 3, 1, groupX), guest("a2", "a", 1, 1), guest("a3", "a", 1, 1),
		guest("b1", "b", 6, 1, groupX), guest("e1", "e", 4, 1)})
	tests := []struct {
		name  string
		steps [][2]string // guest, destination, in planning order
		want  string      // moves per wave
	}{
		{name: "independent moves share a wave", steps: [][2]string{{"a2", "c"}, {"e1", "f"}},
			want: "[a2>c e1>f]"},
		// b holds 6 cores: a1 (3) fits only after b1 has left (8 cores max).
		{name: "a move waits for the space it needs", steps: [][2]string{{"b1", "c"}, {"a1", "b"}},
			want: "[b1>c] [a1>b]"},
		{name: "parallel limit pushes the third move back, others move up",
			steps: [][2]string{{"a1", "c"}, {"a2", "d"}, {"a3", "d"}, {"e1", "f"}},
			want:  "[a1>c a2>d e1>f] [a3>d]"},
		// e1 (4 cores) fits on a (5) only after a1 (3) has left.
		{name: "chain through three hosts", steps: [][2]string{{"b1", "c"}, {"a1", "b"}, {"e1", "a"}},
			want: "[b1>c] [a1>b] [e1>a]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := newSim(c, DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			gi := map[string]int32{}
			for i := range s.guests {
				gi[s.guests[i].Name] = int32(i)
			}
			for _, st := range tt.steps {
				s.move(gi[st[0]], s.byName[st[1]], "test")
			}
			p := s.buildPlan("")
			got := ""
			for w, idx := range p.Waves {
				if w > 0 {
					got += " "
				}
				got += "["
				for k, i := range idx {
					if k > 0 {
						got += " "
					}
					got += fmt.Sprintf("%s>%s", p.Moves[i].Guest, p.Moves[i].To)
				}
				got += "]"
			}
			if got != tt.want {
				t.Errorf("waves %s, want %s", got, tt.want)
			}
			if err := c.Validate(p, DefaultPolicy()); err != nil {
				t.Errorf("plan does not validate: %v", err)
			}
		})
	}
}
