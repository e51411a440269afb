package scheduler

import (
	"fmt"
	"strings"
	"testing"
)

func TestLoads(t *testing.T) {
	abc := []Host{host("a", 10, 100), host("b", 10, 100), standby(host("c", 10, 100))}
	tests := []struct {
		name string
		c    *Cluster
		want string // name:cpu%/mem%[:hot] per host
	}{
		{name: "idle", c: cluster(abc),
			want: "a:0/0 b:0/0 c:0/0"},
		{name: "cpu hot above 80%",
			c:    cluster(abc, []Guest{guest("a1", "a", 5, 1), guest("a2", "a", 3.5, 1), guest("b1", "b", 8, 1)}),
			want: "a:85/2:hot b:80/1 c:0/0"},
		{name: "memory hot above 85%",
			c:    cluster(abc, []Guest{guest("a1", "a", 1, 90)}),
			want: "a:10/90:hot b:0/0 c:0/0"},
		{name: "standby hosts are never hot",
			c:    cluster(abc, []Guest{guest("c1", "c", 9, 1)}),
			want: "a:0/0 b:0/0 c:90/1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			loads, err := tc.c.Loads(DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range loads {
				s := fmt.Sprintf("%s:%.0f/%.0f", l.Name, 100*l.CPU, 100*l.Memory)
				if l.Hot {
					s += ":hot"
				}
				got = append(got, s)
			}
			if g := strings.Join(got, " "); g != tc.want {
				t.Errorf("loads = %s, want %s", g, tc.want)
			}
			// Balance has work exactly when a host is hot.
			plan, err := tc.c.Balance(DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			if hot := strings.Contains(tc.want, ":hot"); hot != (len(plan.Moves) > 0 || !plan.Feasible()) {
				t.Errorf("hot=%v but Balance plans %d moves (%s)", hot, len(plan.Moves), plan.Infeasible)
			}
		})
	}
}
