package scheduler

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Balance plans moves that bring every active host under the high
// watermarks, as VMware DRS or OpenStack Watcher's workload_balance do.
//
// Hot hosts are handled hottest first. For each, the planner prefers one move
// that cools it; among those, the cheapest one that does not make either end
// the most loaded host of the cluster, else the one that leaves the lowest
// peak. When no single move suffices it moves the guest that removes the most
// excess and repeats. A destination is the least loaded host that fits
// within the high watermark minus hysteresis and ends less loaded than the
// source was, so no move raises the cluster's maximum load and the next
// round will not move the guest back.
//
// If some host stays hot, or a per-round cap stops the round, the plan keeps
// the moves made and Infeasible says why.
func (c *Cluster) Balance(pol Policy) (Plan, error) {
	s, err := newSim(c, pol)
	if err != nil {
		return Plan{}, err
	}
	why := s.cool(s.usableHosts())
	return s.buildPlan(why), nil
}

// cool moves guests off the hot hosts among hosts, hottest first, and says
// why some stayed hot ("" if none did).
func (s *sim) cool(hosts []int32) string {
	var hot []int32
	for _, hi := range hosts {
		if s.hot(hi) {
			hot = append(hot, hi)
		}
	}
	slices.SortFunc(hot, func(a, b int32) int {
		if c := cmp.Compare(s.load(b), s.load(a)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	order := s.newLoadOrder(hosts)
	var stuck []string
	for i, src := range hot {
		for s.hot(src) {
			gi, to := s.relieve(src, order)
			if gi < 0 {
				stuck = append(stuck, s.hosts[src].Name)
				break
			}
			if !s.budget(gi) {
				for _, h := range hot[i:] {
					if s.hot(h) {
						stuck = append(stuck, s.hosts[h].Name)
					}
				}
				return fmt.Sprintf("per-round migration cap reached; still hot: %s", strings.Join(stuck, ", "))
			}
			s.move(gi, to, fmt.Sprintf("balance: %s is hot (cpu %.0f%%, memory %.0f%%)",
				s.hosts[src].Name, 100*s.cpuUtil(src), 100*s.memUtil(src)))
			order.moved()
		}
	}
	if len(stuck) > 0 {
		return fmt.Sprintf("no guest can leave without overloading another host; still hot: %s", strings.Join(stuck, ", "))
	}
	return ""
}

// relieve picks the move that best cools hot host src, or returns -1.
func (s *sim) relieve(src int32, order *loadOrder) (guest, to int32) {
	srcLoad := s.load(src)
	// floor is the load of the most loaded other host that is not hot (hot
	// ones will be cooled too): the cluster maximum cannot drop below it, so
	// cooling src further buys nothing.
	floor := 0.0
	for i := len(order.hosts) - 1; i >= 0; i-- {
		if d := order.hosts[i]; d != src && !s.hot(d) {
			floor = order.load[d]
			break
		}
	}
	type cand struct {
		g, to  int32
		fixes  bool
		peak   float64
		excess float64
		bytes  int64
	}
	var best cand
	found := false
	rank := func(c cand) int {
		switch {
		case c.fixes && c.peak <= floor:
			return 0
		case c.fixes:
			return 1
		}
		return 2
	}
	// better orders candidates: fewer moves left, then the tie-breaks of
	// each class (see Balance).
	better := func(a, b cand) bool {
		ra, rb := rank(a), rank(b)
		if ra != rb {
			return ra < rb
		}
		switch ra {
		case 0:
			if a.bytes != b.bytes {
				return a.bytes < b.bytes
			}
			if a.peak != b.peak {
				return a.peak < b.peak
			}
		case 1:
			if a.peak != b.peak {
				return a.peak < b.peak
			}
			if a.bytes != b.bytes {
				return a.bytes < b.bytes
			}
		default:
			if a.excess != b.excess {
				return a.excess < b.excess
			}
			if a.peak != b.peak {
				return a.peak < b.peak
			}
			if a.bytes != b.bytes {
				return a.bytes < b.bytes
			}
		}
		return a.g < b.g
	}
	h := &s.hosts[src]
	cpuHot, memHot := h.use.cpu > h.high.cpu, h.use.mem > h.high.mem
	for _, gi := range h.guests {
		g := &s.guests[gi]
		helps := cpuHot && g.cpu > 0 || memHot && g.mem > 0
		if !s.movable(gi) || !helps {
			continue // pinned, moved already, or no help
		}
		to := order.firstFit(gi, src, srcLoad)
		if to < 0 {
			continue
		}
		c := cand{g: gi, to: to, fixes: !s.hotWithout(src, gi), bytes: g.bytes,
			peak:   max(s.loadWith(src, gi, -1), s.loadWith(to, gi, 1)),
			excess: float64(max(0, h.use.cpu-g.cpu-h.high.cpu))/h.cpuCap + float64(max(0, h.use.mem-g.mem-h.high.mem))/h.memCap}
		if !found || better(c, best) {
			best, found = c, true
		}
	}
	if !found {
		return -1, -1
	}
	return best.g, best.to
}
