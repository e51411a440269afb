package scheduler

import (
	"cmp"
	"slices"
)

// loadOrder keeps hosts sorted by load (least loaded first, ties by name)
// while moves change their loads, so Balance and Spread find sources and
// destinations without re-sorting after every move.
type loadOrder struct {
	s     *sim
	hosts []int32
	load  []float64 // by host index; valid for hosts in the order
}

func (s *sim) newLoadOrder(hosts []int32) *loadOrder {
	o := &loadOrder{s: s, hosts: slices.Clone(hosts), load: make([]float64, len(s.hosts))}
	for _, h := range hosts {
		o.load[h] = s.load(h)
	}
	slices.SortFunc(o.hosts, o.cmp)
	return o
}

func (o *loadOrder) cmp(a, b int32) int {
	if c := cmp.Compare(o.load[a], o.load[b]); c != 0 {
		return c
	}
	return cmp.Compare(a, b)
}

// update re-sorts h after its load changed.
func (o *loadOrder) update(h int32) {
	i, found := slices.BinarySearchFunc(o.hosts, h, o.cmp)
	if !found {
		return
	}
	o.hosts = slices.Delete(o.hosts, i, i+1)
	o.load[h] = o.s.load(h)
	i, _ = slices.BinarySearchFunc(o.hosts, h, o.cmp)
	o.hosts = slices.Insert(o.hosts, i, h)
}

// moved updates both ends of the last move.
func (o *loadOrder) moved() {
	st := o.s.steps[len(o.s.steps)-1]
	o.update(st.from)
	o.update(st.to)
}

// firstFit returns the least loaded host other than skip that takes gi
// within the destination limits and ends below ceiling, or -1.
func (o *loadOrder) firstFit(gi, skip int32, ceiling float64) int32 {
	s := o.s
	for _, d := range o.hosts {
		if o.load[d] >= ceiling {
			break // adding gi cannot end below ceiling
		}
		if d != skip && s.fits(gi, d, s.hosts[d].dest) && s.loadWith(d, gi, 1) < ceiling {
			return d
		}
	}
	return -1
}
