package scheduler

// HostLoad is one host's utilisation as the planners see it.
type HostLoad struct {
	Name   string
	State  HostState
	Guests int
	// CPU and Memory are utilisations (fractions of Cores and MemoryBytes)
	// of the guests placed on the host (see package doc).
	CPU, Memory float64
	// Hot: above a high watermark (Policy.HighCPU or Policy.HighMem). Only
	// active hosts are hot; Balance cools exactly these.
	Hot bool
}

// Loads returns every host's utilisation, sorted by host name, with the
// same arithmetic as the planners: a host Balance would cool is Hot here,
// and a plan that leaves no host Hot here leaves Balance nothing to do.
func (c *Cluster) Loads(pol Policy) ([]HostLoad, error) {
	s, err := newSim(c, pol)
	if err != nil {
		return nil, err
	}
	out := make([]HostLoad, len(s.hosts))
	for i := range s.hosts {
		h := &s.hosts[i]
		out[i] = HostLoad{Name: h.Name, State: h.State, Guests: len(h.guests),
			CPU: s.cpuUtil(int32(i)), Memory: s.memUtil(int32(i)),
			Hot: h.usable && s.hot(int32(i))}
	}
	return out, nil
}
