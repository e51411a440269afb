package scheduler

import "fmt"

// Place chooses hosts for k new guests shaped like tmpl: its VCPUs,
// MemoryBytes, CPUDemand (the expected demand), Pool and AntiAffinity are
// used; Name and Host are ignored. It returns one active host name per new
// guest, in order; a host appears several times when it takes several
// guests. Hosts end within the high watermark minus hysteresis, vCPU ratio
// and anti-affinity (against existing members of the group and among the new
// guests). pol.Placement picks the least loaded host (spread) or the most
// loaded one that fits (binpack). Errors wrap ErrInfeasible or ErrInvalid.
func (c *Cluster) Place(tmpl Guest, k int, pol Policy) ([]string, error) {
	tmpl.Name, tmpl.Host = "new guest", ""
	if err := checkGuest(tmpl); err != nil {
		return nil, err
	}
	if k < 0 || k > maxGuests {
		return nil, invalid("place: k %d out of range", k)
	}
	s, err := newSim(c, pol)
	if err != nil {
		return nil, err
	}
	g := usage{milli(tmpl.CPUDemand), tmpl.MemoryBytes, int64(tmpl.VCPUs)}
	taken := make([]bool, len(s.hosts)) // host already has a group member
	free := 0
	for i := range s.hosts {
		h := &s.hosts[i]
		if tmpl.AntiAffinity != "" {
			for _, gi := range h.guests {
				if s.guests[gi].AntiAffinity == tmpl.AntiAffinity {
					taken[i] = true
					break
				}
			}
		}
		if h.usable && !taken[i] {
			free++
		}
	}
	if tmpl.AntiAffinity != "" && free < k {
		return nil, fmt.Errorf("%w: pool %s: need %d hosts for anti-affinity group %s, only %d available",
			ErrInfeasible, tmpl.Pool, k, tmpl.AntiAffinity, free)
	}
	out := make([]string, 0, k)
	for n := range k {
		best, bestLoad := -1, 0.0
		for i := range s.hosts {
			h := &s.hosts[i]
			cpu, mem, vcpu := h.use.cpu+g.cpu, h.use.mem+g.mem, h.use.vcpu+g.vcpu
			if !h.usable || taken[i] || !h.dest.holds(cpu, mem, vcpu) {
				continue
			}
			l := max(float64(cpu)/h.cpuCap, float64(mem)/h.memCap)
			better := l < bestLoad
			if pol.Placement == BinpackPlacement {
				better = l > bestLoad
			}
			if best < 0 || better {
				best, bestLoad = i, l
			}
		}
		if best < 0 {
			if err := s.tooBig(tmpl, g, pol); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: pool %s: no active host has room for new guest %d of %d (%.2f cores, %d bytes, %d vcpus)",
				ErrInfeasible, tmpl.Pool, n+1, k, tmpl.CPUDemand, tmpl.MemoryBytes, tmpl.VCPUs)
		}
		h := &s.hosts[best]
		h.use.cpu, h.use.mem, h.use.vcpu = h.use.cpu+g.cpu, h.use.mem+g.mem, h.use.vcpu+g.vcpu
		if tmpl.AntiAffinity != "" {
			taken[best] = true
		}
		out = append(out, h.Name)
	}
	return out, nil
}

// tooBig explains a guest no usable host could take even empty: it names
// the limit that stops it on the host that comes closest, with the
// watermark (high less hysteresis) in MiB or cores. nil if some host could.
func (s *sim) tooBig(tmpl Guest, g usage, pol Policy) error {
	var best *hostS
	for i := range s.hosts {
		h := &s.hosts[i]
		if !h.usable {
			continue
		}
		if h.dest.holds(g.cpu, g.mem, g.vcpu) {
			return nil
		}
		if best == nil || h.dest.mem > best.dest.mem {
			best = h
		}
	}
	if best == nil {
		return nil // no usable host: the caller's message says so
	}
	const mib = 1 << 20
	what := fmt.Sprintf("pool %s: a new guest (%d MiB, %d vcpus) is larger than any host", tmpl.Pool,
		tmpl.MemoryBytes/mib, tmpl.VCPUs)
	h := best
	switch {
	case g.mem > h.dest.mem:
		return fmt.Errorf("%w: %s: the most memory a host takes is %d MiB on %s (memory high watermark %.2f less hysteresis %.2f "+
			"of its %d MiB): lower the template's memory_mib, raise memory_high, or add memory to the hosts",
			ErrInfeasible, what, h.dest.mem/mib, h.Name, pol.HighMem, pol.Hysteresis, h.MemoryBytes/mib)
	case g.vcpu > h.dest.vcpu:
		return fmt.Errorf("%w: %s: %s takes at most %d vcpus (%.2f cores × vcpu ratio %.0f): lower the template's vcpus or raise vcpu_ratio",
			ErrInfeasible, what, h.Name, h.dest.vcpu, h.Cores, h.vcpuRatio(pol.VCPURatio))
	default:
		return fmt.Errorf("%w: %s: its expected CPU demand (%.2f cores) is above %.2f cores on %s (cpu high watermark %.2f less "+
			"hysteresis %.2f of %.2f cores)", ErrInfeasible, what, tmpl.CPUDemand, float64(h.dest.cpu)/1000, h.Name, pol.HighCPU, pol.Hysteresis, h.Cores)
	}
}
