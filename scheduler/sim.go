package scheduler

import (
	"cmp"
	"slices"
	"strings"
)

// sim is the planners' working copy of a cluster. Hosts and guests are
// sorted by name so that every tie is broken the same way whatever the input
// order. All capacity arithmetic is in integers (millicores, bytes, vCPUs),
// so sums are exact and independent of order.
type sim struct {
	pol    Policy
	hosts  []hostS
	guests []guestS
	byName map[string]int32 // host name → index
	// groupAt counts the guests of an anti-affinity group on a host.
	groupAt map[hostGroup]int32
	steps   []step
	bytes   int64 // memory copied by steps
	// initUse snapshots each host's starting use for building waves.
	initUse []usage
	// allowed holds the distinct Guest.Hosts sets, by host index.
	allowed [][]bool
}

type usage struct{ cpu, mem, vcpu int64 }

func (u *usage) add(g *guestS) { u.cpu += g.cpu; u.mem += g.mem; u.vcpu += g.vcpu }
func (u *usage) sub(g *guestS) { u.cpu -= g.cpu; u.mem -= g.mem; u.vcpu -= g.vcpu }

type hostS struct {
	Host
	usable  bool // may receive guests: active, or powered on by this plan
	powerOn bool
	high    limits // Validate's limits
	dest    limits // planners' limits for destinations
	target  limits // consolidation fill level
	cpuCap  float64
	memCap  float64
	use     usage
	guests  []int32 // guests currently here, unordered
}

type guestS struct {
	Guest
	cpu, mem, vcpu int64
	bytes          int64
	group          int32 // -1: no anti-affinity group
	allowed        int32 // index in sim.allowed; -1: any host
	host           int32 // -1: not placed
	pos            int32 // index in hosts[host].guests
	moved          bool
}

type hostGroup struct{ host, group int32 }

type step struct {
	guest, from, to int32
	reason          string
}

func newSim(c *Cluster, pol Policy) (*sim, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	if err := pol.Validate(); err != nil {
		return nil, err
	}
	s := &sim{pol: pol, byName: make(map[string]int32, len(c.Hosts)), groupAt: map[hostGroup]int32{}}
	s.hosts = make([]hostS, len(c.Hosts))
	for i, h := range c.Hosts {
		s.hosts[i] = hostS{Host: h, usable: h.State == Active,
			high: pol.highLimits(h), dest: pol.destLimits(h), target: pol.targetLimits(h),
			cpuCap: h.Cores * 1000, memCap: float64(h.MemoryBytes)}
	}
	slices.SortFunc(s.hosts, func(a, b hostS) int { return cmp.Compare(a.Name, b.Name) })
	for i := range s.hosts {
		s.byName[s.hosts[i].Name] = int32(i)
	}
	s.guests = make([]guestS, len(c.Guests))
	for i, g := range c.Guests {
		s.guests[i] = guestS{Guest: g, cpu: milli(g.CPUDemand), mem: g.MemoryBytes, vcpu: int64(g.VCPUs),
			bytes: copyBytes(g), group: -1, host: -1}
	}
	slices.SortFunc(s.guests, func(a, b guestS) int { return cmp.Compare(a.Name, b.Name) })
	groups := map[string]int32{}
	sets := map[string]int32{}
	// Intern groups and host sets in guest-name order so ids are
	// deterministic.
	for i := range s.guests {
		g := &s.guests[i]
		g.allowed = -1
		if len(g.Hosts) > 0 {
			key := strings.Join(slices.Sorted(slices.Values(g.Hosts)), "\x00")
			id, ok := sets[key]
			if !ok {
				set := make([]bool, len(s.hosts))
				for _, n := range g.Hosts {
					if hi, ok := s.byName[n]; ok {
						set[hi] = true
					}
				}
				id = int32(len(s.allowed))
				s.allowed = append(s.allowed, set)
				sets[key] = id
			}
			g.allowed = id
		}
		if g.AntiAffinity != "" {
			id, ok := groups[g.AntiAffinity]
			if !ok {
				id = int32(len(groups))
				groups[g.AntiAffinity] = id
			}
			g.group = id
		}
		if g.Host != "" {
			h := s.byName[g.Host]
			s.place(int32(i), h)
		}
	}
	s.initUse = make([]usage, len(s.hosts))
	for i := range s.hosts {
		s.initUse[i] = s.hosts[i].use
	}
	return s, nil
}

func (s *sim) place(gi, hi int32) {
	g, h := &s.guests[gi], &s.hosts[hi]
	g.host, g.pos = hi, int32(len(h.guests))
	h.guests = append(h.guests, gi)
	h.use.add(g)
	if g.group >= 0 {
		s.groupAt[hostGroup{hi, g.group}]++
	}
}

func (s *sim) unplace(gi int32) {
	g := &s.guests[gi]
	h := &s.hosts[g.host]
	last := h.guests[len(h.guests)-1]
	h.guests[g.pos] = last
	s.guests[last].pos = g.pos
	h.guests = h.guests[:len(h.guests)-1]
	h.use.sub(g)
	if g.group >= 0 {
		k := hostGroup{g.host, g.group}
		if s.groupAt[k]--; s.groupAt[k] == 0 {
			delete(s.groupAt, k)
		}
	}
	g.host = -1
}

// move records a migration of guest gi to host to.
func (s *sim) move(gi, to int32, reason string) {
	from := s.guests[gi].host
	s.unplace(gi)
	s.place(gi, to)
	s.guests[gi].moved = true
	s.bytes += s.guests[gi].bytes
	s.steps = append(s.steps, step{gi, from, to, reason})
}

// undo reverts the last move.
func (s *sim) undo() {
	st := s.steps[len(s.steps)-1]
	s.steps = s.steps[:len(s.steps)-1]
	s.unplace(st.guest)
	s.place(st.guest, st.from)
	s.guests[st.guest].moved = false
	s.bytes -= s.guests[st.guest].bytes
}

// movable reports whether gi may be migrated in this plan.
func (s *sim) movable(gi int32) bool {
	g := &s.guests[gi]
	return !g.Pinned && !g.moved && g.host >= 0
}

// fits reports whether gi may move to hi without exceeding lim there.
func (s *sim) fits(gi, hi int32, lim limits) bool {
	g, h := &s.guests[gi], &s.hosts[hi]
	if !h.usable || g.host == hi || !lim.holds(h.use.cpu+g.cpu, h.use.mem+g.mem, h.use.vcpu+g.vcpu) ||
		g.allowed >= 0 && !s.allowed[g.allowed][hi] {
		return false
	}
	return g.group < 0 || s.groupAt[hostGroup{hi, g.group}] == 0
}

// budget reports whether the round may still move gi.
func (s *sim) budget(gi int32) bool {
	p := s.pol
	if p.MaxMigrations > 0 && len(s.steps) >= p.MaxMigrations {
		return false
	}
	return p.MaxBytes == 0 || s.bytes+s.guests[gi].bytes <= p.MaxBytes
}

func (s *sim) cpuUtil(hi int32) float64 { return float64(s.hosts[hi].use.cpu) / s.hosts[hi].cpuCap }
func (s *sim) memUtil(hi int32) float64 { return float64(s.hosts[hi].use.mem) / s.hosts[hi].memCap }

// load is a host's utilisation: the larger of CPU and memory.
func (s *sim) load(hi int32) float64 { return max(s.cpuUtil(hi), s.memUtil(hi)) }

// loadWith is the load of hi after adding (sign 1) or removing (sign -1) gi.
func (s *sim) loadWith(hi, gi int32, sign int64) float64 {
	h, g := &s.hosts[hi], &s.guests[gi]
	return max(float64(h.use.cpu+sign*g.cpu)/h.cpuCap, float64(h.use.mem+sign*g.mem)/h.memCap)
}

// hot reports whether hi is above a high watermark.
func (s *sim) hot(hi int32) bool {
	h := &s.hosts[hi]
	return h.use.cpu > h.high.cpu || h.use.mem > h.high.mem
}

// hotWithout reports whether hi would still be hot without gi.
func (s *sim) hotWithout(hi, gi int32) bool {
	h, g := &s.hosts[hi], &s.guests[gi]
	return h.use.cpu-g.cpu > h.high.cpu || h.use.mem-g.mem > h.high.mem
}

// size is gi's share of a host with the given capacities (the larger of
// its CPU and memory shares), used to order guests largest first.
func (s *sim) size(gi int32, cpuCap, memCap float64) float64 {
	g := &s.guests[gi]
	return max(float64(g.cpu)/cpuCap, float64(g.mem)/memCap)
}

// guestsBySize returns the guests on hi, largest first, ties by name.
func (s *sim) guestsBySize(hi int32) []int32 {
	cpuCap, memCap := s.hosts[hi].cpuCap, s.hosts[hi].memCap
	gs := slices.Clone(s.hosts[hi].guests)
	slices.SortFunc(gs, func(a, b int32) int {
		if c := cmp.Compare(s.size(b, cpuCap, memCap), s.size(a, cpuCap, memCap)); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	return gs
}

// usableHosts returns the indices of hosts that may receive guests.
func (s *sim) usableHosts() []int32 {
	var out []int32
	for i := range s.hosts {
		if s.hosts[i].usable {
			out = append(out, int32(i))
		}
	}
	return out
}

// powerOnStandby marks the best standby host (most capacity, then name)
// usable and returns it, or -1 if none is left.
func (s *sim) powerOnStandby() int32 {
	best := int32(-1)
	for i := range s.hosts {
		h := &s.hosts[i]
		if h.State != Standby || h.usable {
			continue
		}
		if best < 0 || h.cpuCap*h.memCap > s.hosts[best].cpuCap*s.hosts[best].memCap {
			best = int32(i)
		}
	}
	if best >= 0 {
		s.hosts[best].usable, s.hosts[best].powerOn = true, true
	}
	return best
}
