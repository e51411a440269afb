package scheduler

import "fmt"

// Evacuate plans moving every guest off host (maintenance mode). Guests go
// largest first to the least loaded host that fits within the high
// watermark minus hysteresis. If the active hosts cannot take them all,
// standby hosts are added to PowerOn, largest first. The plan moves all
// guests or none: with a pinned guest or not enough room it has no moves and
// Infeasible says why. Per-round caps do not apply.
func (c *Cluster) Evacuate(host string, pol Policy) (Plan, error) {
	s, err := newSim(c, pol)
	if err != nil {
		return Plan{}, err
	}
	src, ok := s.byName[host]
	if !ok {
		return Plan{}, invalid("evacuate: unknown host %q", host)
	}
	s.hosts[src].usable = false
	guests := s.guestsBySize(src)
	for _, gi := range guests {
		if s.guests[gi].Pinned {
			return Plan{Infeasible: fmt.Sprintf("guest %s on %s is pinned", s.guests[gi].Name, host)}, nil
		}
	}
	reason := "evacuate: " + host
	for {
		failed := int32(-1)
		for _, gi := range guests {
			to := s.leastLoadedFit(gi)
			if to < 0 {
				failed = gi
				break
			}
			s.move(gi, to, reason)
		}
		if failed < 0 {
			for i := range s.hosts {
				if s.hosts[i].powerOn && len(s.hosts[i].guests) == 0 {
					s.hosts[i].powerOn = false // not needed after all
				}
			}
			return s.buildPlan(""), nil
		}
		for len(s.steps) > 0 {
			s.undo()
		}
		if s.powerOnStandby() < 0 {
			g := &s.guests[failed]
			return Plan{Infeasible: fmt.Sprintf("guest %s (%.2f cores, %d bytes memory, %d vcpus) fits on no other host",
				g.Name, g.CPUDemand, g.MemoryBytes, g.VCPUs)}, nil
		}
	}
}

// leastLoadedFit returns the usable host that takes gi within the
// destination limits and ends least loaded, or -1.
func (s *sim) leastLoadedFit(gi int32) int32 {
	best, bestLoad := int32(-1), 0.0
	for i := range s.hosts {
		hi := int32(i)
		if !s.fits(gi, hi, s.hosts[hi].dest) {
			continue
		}
		if l := s.loadWith(hi, gi, 1); best < 0 || l < bestLoad {
			best, bestLoad = hi, l
		}
	}
	return best
}
