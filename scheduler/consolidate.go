package scheduler

import (
	"cmp"
	"fmt"
	"slices"
)

// Consolidate plans packing the guests of the active hosts onto n of them
// and lists the hosts it empties in PowerOff, as VMware DPM or OpenStack
// Watcher's VM workload consolidation do. With n <= 0 it uses as few hosts
// as it can.
//
// Hosts are emptied whole, fewest guests first (then least loaded, then
// smallest), so every move frees a host and no guest moves twice. Hosts with
// pinned guests are always kept, and hosts whose guests may use few hosts
// (Guest.Hosts) are emptied last. The hosts to keep start as the fullest ones
// whose capacity at the target utilisation covers the total demand (or the n
// fullest); the guests of each other host go, largest first, to the kept
// host left with the least room that still fits them within the target
// utilisation. A host whose guests do not all fit is kept instead. Clusters
// of up to 2,000 guests are packed with several fit rules and the plan
// using the fewest hosts (then feasible, fewest moves, fewest bytes) is
// kept. Finally, kept
// hosts that are hot are cooled as Balance would.
//
// Infeasible is set when more than n hosts remain, a hot host cannot be
// cooled, or a per-round cap stopped the round; the moves still free whole
// hosts.
func (c *Cluster) Consolidate(n int, pol Policy) (Plan, error) {
	s, err := newSim(c, pol)
	if err != nil {
		return Plan{}, err
	}
	// Small clusters are cheap to pack several ways; keep the best result.
	rules := numFitRules
	if len(s.guests) > portfolioGuests {
		rules = 1
	}
	var best Plan
	bestUsed := 0
	for r := range rules {
		if r > 0 {
			s, _ = newSim(c, pol)
		}
		p, used := s.consolidate(n, r)
		if r == 0 || cmp.Or(cmp.Compare(used, bestUsed), compareBool(p.Feasible(), best.Feasible()),
			cmp.Compare(len(p.Moves), len(best.Moves)), cmp.Compare(p.Bytes(), best.Bytes())) < 0 {
			best, bestUsed = p, used
		}
	}
	return best, nil
}

// compareBool orders true before false.
func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}

// portfolioGuests is the cluster size up to which Consolidate tries every
// fit rule.
const portfolioGuests = 2000

// consolidate packs with one fit rule and returns the plan and the number of
// active hosts left.
func (s *sim) consolidate(n int, rule fitRule) (Plan, int) {
	active := s.usableHosts()
	if n > 0 && n >= len(active) {
		return s.buildPlan(s.cool(active)), len(active)
	}
	pinned := make([]bool, len(s.hosts))
	for _, h := range active {
		for _, gi := range s.hosts[h].guests {
			if s.guests[gi].Pinned {
				pinned[h] = true
			}
		}
	}
	flex := s.flexibility(active)
	// Freeing order: cheapest to empty first; hosts whose guests have the
	// fewest places to go (Guest.Hosts) last, so they are the ones kept.
	order := slices.Clone(active)
	slices.SortFunc(order, func(a, b int32) int {
		ha, hb := &s.hosts[a], &s.hosts[b]
		if pinned[a] != pinned[b] {
			if pinned[a] {
				return 1
			}
			return -1
		}
		if c := cmp.Compare(flex[b], flex[a]); c != 0 {
			return c
		}
		if c := cmp.Compare(len(ha.guests), len(hb.guests)); c != 0 {
			return c
		}
		if c := cmp.Compare(s.load(a), s.load(b)); c != 0 {
			return c
		}
		if c := cmp.Compare(ha.cpuCap*ha.memCap, hb.cpuCap*hb.memCap); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	keep := s.keepCount(order, pinned, n)
	p := newPacker(s, order[len(order)-keep:], rule)
	var freed []int32
	why := ""
	for _, cand := range order[:len(order)-keep] {
		if why = s.roundCapped(cand); why != "" {
			break
		}
		if p.empty(cand) {
			freed = append(freed, cand)
		} else {
			p.add(cand)
		}
	}
	if used := len(active) - len(freed); why == "" && n > 0 && used > n {
		why = fmt.Sprintf("could pack onto %d hosts, not %d", used, n)
	}
	// Hosts kept because they were full may be hot; cool them onto the
	// other kept hosts so the packed cluster needs no Balance round.
	if why == "" {
		why = s.cool(s.usableHosts())
	}
	plan := s.buildPlan(why)
	slices.Sort(freed) // index order is name order
	for _, h := range freed {
		plan.PowerOff = append(plan.PowerOff, s.hosts[h].Name)
	}
	return plan, len(active) - len(freed)
}

// flexibility gives each active host the fewest active hosts any of its
// guests may run on (len(active) when none has a Guest.Hosts list).
func (s *sim) flexibility(active []int32) []int {
	perSet := make([]int, len(s.allowed))
	for i, set := range s.allowed {
		for _, h := range active {
			if set[h] {
				perSet[i]++
			}
		}
	}
	flex := make([]int, len(s.hosts))
	for _, h := range active {
		flex[h] = len(active)
		for _, gi := range s.hosts[h].guests {
			if a := s.guests[gi].allowed; a >= 0 {
				flex[h] = min(flex[h], perSet[a])
			}
		}
	}
	return flex
}

// keepCount is how many hosts at the end of order to keep at first: n, or
// the fewest whose target capacity covers all demand; never fewer than the
// hosts with pinned guests, nor zero while guests remain.
func (s *sim) keepCount(order []int32, pinned []bool, n int) int {
	var need usage
	nPinned := 0
	for _, h := range order {
		need.cpu += s.hosts[h].use.cpu
		need.mem += s.hosts[h].use.mem
		need.vcpu += s.hosts[h].use.vcpu
		if pinned[h] {
			nPinned++
		}
	}
	keep := n
	if n <= 0 {
		var have usage
		keep = 0
		for i := len(order) - 1; i >= 0; i-- {
			if have.cpu >= need.cpu && have.mem >= need.mem && have.vcpu >= need.vcpu {
				break
			}
			t := s.hosts[order[i]].target
			have.cpu, have.mem, have.vcpu = have.cpu+t.cpu, have.mem+t.mem, have.vcpu+t.vcpu
			keep++
		}
		if keep == 0 && (need != usage{}) {
			keep = 1
		}
	}
	return min(max(keep, nPinned), len(order))
}

// roundCapped says why emptying h would break a per-round cap, or "".
func (s *sim) roundCapped(h int32) string {
	p := s.pol
	gs := s.hosts[h].guests
	if p.MaxMigrations > 0 && len(s.steps)+len(gs) > p.MaxMigrations {
		return fmt.Sprintf("per-round migration cap %d reached", p.MaxMigrations)
	}
	var b int64
	for _, gi := range gs {
		b += s.guests[gi].bytes
	}
	if p.MaxBytes > 0 && s.bytes+b > p.MaxBytes {
		return fmt.Sprintf("per-round cap of %d bytes reached", p.MaxBytes)
	}
	return ""
}
