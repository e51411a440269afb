package scheduler

import (
	"cmp"
	"fmt"
	"slices"
)

// Victims chooses k guests of pool to remove on scale-in, in order:
// guests not yet placed first (removing them disturbs nothing), then whole
// sets of guests whose removal empties an active host (fewest guests first,
// then least loaded host), then the least loaded guests (lowest CPU demand,
// then least memory in use). Errors wrap ErrInfeasible or ErrInvalid.
func (c *Cluster) Victims(pool string, k int) ([]string, error) {
	s, err := newSim(c, DefaultPolicy())
	if err != nil {
		return nil, err
	}
	var members []int32
	for i := range s.guests {
		if s.guests[i].Pool == pool {
			members = append(members, int32(i))
		}
	}
	if k < 0 || k > len(members) {
		return nil, fmt.Errorf("%w: pool %s has %d guests, cannot remove %d", ErrInfeasible, pool, len(members), k)
	}
	chosen := make([]bool, len(s.guests))
	out := make([]string, 0, k)
	take := func(gi int32) {
		chosen[gi] = true
		out = append(out, s.guests[gi].Name)
	}
	for _, gi := range members {
		if len(out) < k && s.guests[gi].host < 0 {
			take(gi)
		}
	}
	// Hosts holding only this pool's guests can be freed by removing them.
	var whole []int32
	for i := range s.hosts {
		h := &s.hosts[i]
		if h.State != Active || len(h.guests) == 0 {
			continue
		}
		if !slices.ContainsFunc(h.guests, func(gi int32) bool { return s.guests[gi].Pool != pool }) {
			whole = append(whole, int32(i))
		}
	}
	slices.SortFunc(whole, func(a, b int32) int {
		if c := cmp.Compare(len(s.hosts[a].guests), len(s.hosts[b].guests)); c != 0 {
			return c
		}
		if c := cmp.Compare(s.load(a), s.load(b)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, hi := range whole {
		gs := slices.Sorted(slices.Values(s.hosts[hi].guests))
		if len(out)+len(gs) > k {
			continue
		}
		for _, gi := range gs {
			take(gi)
		}
	}
	rest := slices.DeleteFunc(slices.Clone(members), func(gi int32) bool { return chosen[gi] })
	slices.SortFunc(rest, func(a, b int32) int {
		ga, gb := &s.guests[a], &s.guests[b]
		if c := cmp.Compare(ga.cpu, gb.cpu); c != 0 {
			return c
		}
		if c := cmp.Compare(ga.bytes, gb.bytes); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, gi := range rest[:k-len(out)] {
		take(gi)
	}
	return out, nil
}
