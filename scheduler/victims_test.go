package scheduler

import (
	"errors"
	"slices"
	"testing"
)

func TestVictims(t *testing.T) {
	hosts := []Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100)}
	tests := []struct {
		name string
		c    *Cluster
		pool string
		k    int
		want []string
	}{
		{name: "a host holding only the pool goes first",
			c: cluster(hosts, []Guest{guest("a1", "a", 3, 10), guest("a2", "a", 3, 10),
				guest("b1", "b", 0.1, 10), guest("b2", "b", 1, 10, poolDB)}),
			pool: "web", k: 2, want: []string{"a1", "a2"}},
		{name: "unplaced guests before anything else",
			c: cluster(hosts, []Guest{guest("a1", "a", 3, 10), guest("p1", "", 5, 10),
				guest("b1", "b", 0.1, 10), guest("b2", "b", 1, 10, poolDB)}),
			pool: "web", k: 2, want: []string{"p1", "a1"}},
		{name: "the smallest freeable host wins",
			c: cluster(hosts, []Guest{guest("a1", "a", 1, 10), guest("a2", "a", 1, 10),
				guest("c1", "c", 5, 10), guest("b1", "b", 1, 10, poolDB)}),
			pool: "web", k: 1, want: []string{"c1"}},
		{name: "too many on one host: least loaded guests",
			c: cluster(hosts, []Guest{guest("a1", "a", 3, 10), guest("a2", "a", 2, 10), guest("a3", "a", 1, 10),
				guest("b1", "b", 0.5, 10), guest("b2", "b", 1, 10, poolDB)}),
			pool: "web", k: 2, want: []string{"b1", "a3"}},
		{name: "equal demand: least memory in use",
			c: cluster(hosts, []Guest{guest("a1", "a", 1, 10, usedGiB(8)), guest("a2", "a", 1, 10, usedGiB(2)),
				guest("a3", "a", 1, 10, poolDB)}),
			pool: "web", k: 1, want: []string{"a2"}},
		{name: "whole pool", c: cluster(hosts, []Guest{guest("a1", "a", 1, 10), guest("b1", "b", 1, 10)}),
			pool: "web", k: 2, want: []string{"a1", "b1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Victims(tt.pool, tt.k)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	t.Run("more than the pool has", func(t *testing.T) {
		c := cluster(hosts, []Guest{guest("a1", "a", 1, 10)})
		if _, err := c.Victims("web", 2); !errors.Is(err, ErrInfeasible) {
			t.Fatalf("err = %v, want ErrInfeasible", err)
		}
	})
}
