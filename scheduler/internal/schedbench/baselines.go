package schedbench

import (
	"cmp"
	"slices"

	"github.com/virtpool/virtpool/scheduler"
)

// FirstFitDecreasing is the consolidation baseline, after OpenStack
// Watcher's VM workload consolidation strategy:
//
//  1. Offload: hosts from most to least CPU-utilised; while a host is over
//     the high watermark, move its least CPU-hungry guest to the first host,
//     most utilised first, that fits it.
//  2. Consolidation: hosts sorted by CPU utilisation; from the least
//     utilised, move each guest, most CPU-hungry first, to the first more
//     utilised host (most utilised first) that fits it. Guests that fit
//     nowhere stay, so hosts may be left partly emptied.
//  3. Optimisation: a guest moved twice counts once (A→B→C is A→C).
//  4. Empty hosts are released.
//
// "Fits" uses the policy's target utilisation (Watcher's capacity
// coefficient), vCPU ratio and anti-affinity. It returns the cluster after.
func FirstFitDecreasing(c *scheduler.Cluster, pol scheduler.Policy) *scheduler.Cluster {
	m := newModel(c, pol)
	byCPU := func() []int {
		ps := make([]int, len(m.hosts))
		for i := range ps {
			ps[i] = i
		}
		slices.SortStableFunc(ps, func(a, b int) int { return cmp.Compare(m.cpuUtil(a), m.cpuUtil(b)) })
		return ps
	}
	byGuestCPU := func(p int) []int {
		gs := slices.Clone(m.on[p])
		slices.SortStableFunc(gs, func(a, b int) int { return cmp.Compare(m.c.Guests[a].CPUDemand, m.c.Guests[b].CPUDemand) })
		return gs
	}
	overloaded := func(p int) bool { return m.cpuUtil(p) > pol.HighCPU || m.memUtil(p) > pol.HighMem }
	movable := func(gi int) bool { return !m.c.Guests[gi].Pinned }

	sorted := byCPU()
	for i := len(sorted) - 1; i >= 0; i-- {
		p := sorted[i]
		if !overloaded(p) {
			continue
		}
		for _, gi := range byGuestCPU(p) {
			for j := len(sorted) - 1; j >= 0 && movable(gi); j-- {
				if m.fits(gi, sorted[j], pol.TargetCPU, pol.TargetMem) {
					m.move(gi, sorted[j])
					break
				}
			}
			if !overloaded(p) {
				break
			}
		}
	}

	sorted = byCPU()
	for asc, p := range sorted {
		gs := byGuestCPU(p)
		for k := len(gs) - 1; k >= 0; k-- {
			gi := gs[k]
			if !movable(gi) {
				continue
			}
			for dsc := len(sorted) - 1; dsc > asc; dsc-- {
				if m.fits(gi, sorted[dsc], pol.TargetCPU, pol.TargetMem) {
					m.move(gi, sorted[dsc])
					break
				}
			}
		}
	}
	return m.result()
}

// GreedyBalance is the balancing baseline, DRS-like: while some host is
// over a high watermark, take the most loaded such host and move its largest guest to the least loaded
// host that fits it within the high watermarks (trying smaller guests if
// the largest fits nowhere), provided the destination ends less loaded than
// the source was. Each guest moves at most once; a host with no such move is
// skipped. It returns the cluster after.
func GreedyBalance(c *scheduler.Cluster, pol scheduler.Policy) *scheduler.Cluster {
	m := newModel(c, pol)
	stuck := make([]bool, len(m.hosts))
	hot := func(p int) bool { return m.cpuUtil(p) > pol.HighCPU || m.memUtil(p) > pol.HighMem }
	for {
		src := -1
		for p := range m.hosts {
			if !stuck[p] && hot(p) && (src < 0 || m.load(p) > m.load(src)) {
				src = p
			}
		}
		if src < 0 {
			break
		}
		gs := slices.DeleteFunc(slices.Clone(m.on[src]), func(gi int) bool { return m.c.Guests[gi].Pinned || m.moved[gi] })
		slices.SortStableFunc(gs, func(a, b int) int { return cmp.Compare(m.size(b, src), m.size(a, src)) })
		dests := make([]int, 0, len(m.hosts))
		for p := range m.hosts {
			if p != src {
				dests = append(dests, p)
			}
		}
		slices.SortStableFunc(dests, func(a, b int) int { return cmp.Compare(m.load(a), m.load(b)) })
		done := false
		for _, gi := range gs {
			for _, d := range dests {
				if m.fits(gi, d, pol.HighCPU, pol.HighMem) && m.load(d)+m.size(gi, d) < m.load(src) {
					m.move(gi, d)
					done = true
					break
				}
			}
			if done {
				break
			}
		}
		if !done {
			stuck[src] = true
		}
	}
	return m.result()
}
