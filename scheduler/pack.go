package scheduler

import (
	"cmp"
	"slices"
	"sort"
)

// fitRule chooses among the kept hosts that can take a guest.
type fitRule int

const (
	// tightest: least room left in the fuller of CPU and memory after
	// placing. Best on large clusters where both resources bind.
	tightest fitRule = iota
	// firstTight: least room left in the scarcest resource only.
	firstTight
	// tightSum: least room left in CPU plus memory.
	tightSum
	// tightMin: least room left in the emptier of CPU and memory.
	tightMin
	numFitRules
)

// packer places guests onto a set of kept hosts for Consolidate. Kept hosts
// are sorted by room left (target capacity minus use) in the cluster's
// scarcest resource, so the candidates for a guest are found by binary
// search and the scan for the best one can stop early.
type packer struct {
	s     *sim
	rule  fitRule
	dim   int // scarcest resource: 0 CPU, 1 memory, 2 vCPUs
	hosts []int32
}

func newPacker(s *sim, kept []int32, rule fitRule) *packer {
	var use, capa [3]float64
	for _, h := range s.usableHosts() {
		u := s.hosts[h].use
		use[0], use[1], use[2] = use[0]+float64(u.cpu), use[1]+float64(u.mem), use[2]+float64(u.vcpu)
	}
	for _, h := range kept {
		t := s.hosts[h].target
		capa[0], capa[1], capa[2] = capa[0]+float64(t.cpu), capa[1]+float64(t.mem), capa[2]+float64(t.vcpu)
	}
	p := &packer{s: s, rule: rule, hosts: slices.Clone(kept)}
	best := -1.0
	for d := range 3 {
		if r := use[d] / max(capa[d], 1); r > best {
			p.dim, best = d, r
		}
	}
	slices.SortFunc(p.hosts, p.cmp)
	return p
}

func (p *packer) room(h int32) int64 {
	hs := &p.s.hosts[h]
	switch p.dim {
	case 0:
		return hs.target.cpu - hs.use.cpu
	case 1:
		return hs.target.mem - hs.use.mem
	}
	return hs.target.vcpu - hs.use.vcpu
}

func (p *packer) need(gi int32) int64 {
	g := &p.s.guests[gi]
	return [3]int64{g.cpu, g.mem, g.vcpu}[p.dim]
}

func (p *packer) cmp(a, b int32) int {
	if c := cmp.Compare(p.room(a), p.room(b)); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

// add makes h a destination.
func (p *packer) add(h int32) {
	i, _ := slices.BinarySearchFunc(p.hosts, h, p.cmp)
	p.hosts = slices.Insert(p.hosts, i, h)
}

// empty moves every guest of h to kept hosts, or nothing (returning false).
func (p *packer) empty(h int32) bool {
	s := p.s
	s.hosts[h].usable = false
	start := len(s.steps)
	reason := "consolidate: empty " + s.hosts[h].Name
	for _, gi := range s.guestsBySize(h) {
		i := p.find(gi)
		if i < 0 {
			for len(s.steps) > start {
				s.undo()
			}
			slices.SortFunc(p.hosts, p.cmp)
			s.hosts[h].usable = true
			return false
		}
		s.move(gi, p.hosts[i], reason)
		// Room shrank: slide the host left to keep the order.
		for ; i > 0 && p.cmp(p.hosts[i-1], p.hosts[i]) > 0; i-- {
			p.hosts[i-1], p.hosts[i] = p.hosts[i], p.hosts[i-1]
		}
	}
	return true
}

// find returns the position of the kept host that takes gi within the
// target utilisation and best satisfies the fit rule, or -1.
func (p *packer) find(gi int32) int {
	s := p.s
	g := &s.guests[gi]
	need := p.need(gi)
	i := sort.Search(len(p.hosts), func(i int) bool { return p.room(p.hosts[i]) >= need })
	best, bestScore := -1, 0.0
	for ; i < len(p.hosts); i++ {
		h := p.hosts[i]
		hs := &s.hosts[h]
		// Hosts are in order of room in the scarcest resource, so once that
		// room alone is no better than the best score, nothing later wins
		// (exact for equal-sized hosts, a heuristic otherwise).
		left := float64(p.room(h) - need)
		switch p.dim {
		case 0:
			left /= hs.cpuCap
		case 1:
			left /= hs.memCap
		}
		if best >= 0 && (p.rule == firstTight || p.dim < 2 && p.rule != tightMin && left >= bestScore) {
			break
		}
		if !s.fits(gi, h, hs.target) {
			continue
		}
		cr := float64(hs.target.cpu-hs.use.cpu-g.cpu) / hs.cpuCap
		mr := float64(hs.target.mem-hs.use.mem-g.mem) / hs.memCap
		var score float64
		switch p.rule {
		case tightest:
			score = max(cr, mr)
		case firstTight:
			score = left
		case tightSum:
			score = cr + mr
		case tightMin:
			score = min(cr, mr)
		}
		if best < 0 || score < bestScore {
			best, bestScore = i, score
		}
	}
	return best
}
