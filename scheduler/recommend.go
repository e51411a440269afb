package scheduler

import "math"

// Recommend returns how many hosts the cluster should have active, for an
// autoscaler. While the mean utilisation of the active hosts is between the
// low watermarks and the high watermarks minus hysteresis it is the current
// count; outside that band it is the fewest hosts of average size that hold
// the demand at the target utilisation, capped by the active plus standby
// hosts. Follow it with Spread or Consolidate.
func (c *Cluster) Recommend(pol Policy) (int, error) {
	s, err := newSim(c, pol)
	if err != nil {
		return 0, err
	}
	var use usage
	var cores, mem, vcpus float64
	active, avail := 0, 0
	for i := range s.hosts {
		h := &s.hosts[i]
		if h.State == Standby {
			avail++
		}
		if !h.usable {
			continue
		}
		active++
		use.cpu, use.mem, use.vcpu = use.cpu+h.use.cpu, use.mem+h.use.mem, use.vcpu+h.use.vcpu
		cores += h.Cores
		vcpus += h.Cores * h.vcpuRatio(pol.VCPURatio)
		mem += float64(h.MemoryBytes)
	}
	avail += active
	if active == 0 {
		return 0, nil
	}
	cpuU, memU := float64(use.cpu)/(cores*1000), float64(use.mem)/mem
	inBand := cpuU <= pol.HighCPU-pol.Hysteresis && memU <= pol.HighMem-pol.Hysteresis &&
		(cpuU >= pol.LowCPU || memU >= pol.LowMem)
	if inBand {
		return active, nil
	}
	n := float64(active)
	// The epsilon keeps float noise from asking for one host too many.
	want := math.Ceil(max(
		float64(use.cpu)/(cores/n*1000*pol.TargetCPU),
		float64(use.mem)/(mem/n*pol.TargetMem),
		float64(use.vcpu)/(vcpus/n)) - 1e-9)
	return min(max(int(want), 1), avail), nil
}
