package scheduler

import "fmt"

// Spread brings standby hosts into use until n hosts are active (largest
// standby hosts first) and levels the load across the active hosts, as
// VMware DPM does when demand rises.
//
// Levelling repeatedly takes the most loaded host and moves the guest that
// leaves the lowest peak (of source and destination) onto the least loaded
// host that fits within the high watermark minus hysteresis. It stops when
// every host is within Hysteresis of the cluster's mean load, when no move
// lowers a host's load, or at the per-round caps. Every move lowers the
// source's load and leaves both ends below it, so the maximum never rises.
func (c *Cluster) Spread(n int, pol Policy) (Plan, error) {
	s, err := newSim(c, pol)
	if err != nil {
		return Plan{}, err
	}
	why := ""
	active := len(s.usableHosts())
	for ; active < n; active++ {
		if s.powerOnStandby() < 0 {
			why = fmt.Sprintf("want %d active hosts, only %d available", n, active)
			break
		}
	}
	hosts := s.usableHosts()
	var cpu, mem, cpuCap, memCap float64
	for _, h := range hosts {
		cpu += float64(s.hosts[h].use.cpu)
		mem += float64(s.hosts[h].use.mem)
		cpuCap += s.hosts[h].cpuCap
		memCap += s.hosts[h].memCap
	}
	if len(hosts) == 0 {
		return s.buildPlan(why), nil
	}
	level := max(cpu/cpuCap, mem/memCap) + pol.Hysteresis
	order := s.newLoadOrder(hosts)
	stuck := make([]bool, len(s.hosts))
	for {
		src := int32(-1)
		for i := len(order.hosts) - 1; i >= 0; i-- {
			if h := order.hosts[i]; !stuck[h] {
				src = h
				break
			}
		}
		if src < 0 || order.load[src] <= level {
			break
		}
		srcLoad := order.load[src]
		best, bestTo, bestPeak := int32(-1), int32(-1), 0.0
		for _, gi := range s.hosts[src].guests {
			if !s.movable(gi) {
				continue
			}
			to := order.firstFit(gi, src, srcLoad)
			if to < 0 {
				continue
			}
			peak := max(s.loadWith(src, gi, -1), s.loadWith(to, gi, 1))
			if peak >= srcLoad {
				continue // moving it would not lower the peak
			}
			if best < 0 || peak < bestPeak ||
				peak == bestPeak && (s.guests[gi].bytes < s.guests[best].bytes ||
					s.guests[gi].bytes == s.guests[best].bytes && gi < best) {
				best, bestTo, bestPeak = gi, to, peak
			}
		}
		if best < 0 {
			stuck[src] = true
			continue
		}
		if !s.budget(best) {
			if why == "" {
				why = "per-round migration cap reached before the load was level"
			}
			break
		}
		s.move(best, bestTo, fmt.Sprintf("spread: %s at %.0f%%, cluster mean %.0f%%",
			s.hosts[src].Name, 100*srcLoad, 100*(level-pol.Hysteresis)))
		order.moved()
	}
	return s.buildPlan(why), nil
}
