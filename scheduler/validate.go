package scheduler

import (
	"fmt"
	"slices"
)

// Validate replays p against the cluster and reports the first violation:
//
//   - a move of an unknown, pinned or already moved guest, or from a host the
//     guest is not on (every guest moves at most once per plan);
//   - a destination that is unknown, the source itself, neither active nor
//     listed in PowerOn, or not among the guest's Hosts (when it has some);
//   - a host taking part in more than pol.MaxParallelPerHost moves of a wave;
//   - a destination that overcommits (see package doc) or meets another
//     member of an arriving guest's anti-affinity group, assuming every
//     incoming move of the wave has landed and no outgoing one has left;
//   - malformed waves, or a PowerOff host that is not empty at the end.
//
// It shares no planning code, so tests use it as an independent check.
func (c *Cluster) Validate(p Plan, pol Policy) error {
	if err := c.Check(); err != nil {
		return err
	}
	if err := pol.Validate(); err != nil {
		return err
	}
	type hostV struct {
		h      Host
		usable bool
		lim    limits
		use    usage
		groups map[string]int
	}
	hosts := make(map[string]*hostV, len(c.Hosts))
	for _, h := range c.Hosts {
		hosts[h.Name] = &hostV{h: h, usable: h.State == Active, lim: pol.highLimits(h), groups: map[string]int{}}
	}
	for _, name := range p.PowerOn {
		h, ok := hosts[name]
		if !ok || h.h.State != Standby || h.usable {
			return fmt.Errorf("power on %q: not a standby host (or listed twice)", name)
		}
		h.usable = true
	}
	type guestV struct {
		g     Guest
		u     usage
		moved bool
	}
	guests := make(map[string]*guestV, len(c.Guests))
	for _, g := range c.Guests {
		gv := &guestV{g: g, u: usage{milli(g.CPUDemand), g.MemoryBytes, int64(g.VCPUs)}}
		guests[g.Name] = gv
		if g.Host != "" {
			h := hosts[g.Host]
			h.use.cpu, h.use.mem, h.use.vcpu = h.use.cpu+gv.u.cpu, h.use.mem+gv.u.mem, h.use.vcpu+gv.u.vcpu
			if g.AntiAffinity != "" {
				h.groups[g.AntiAffinity]++
			}
		}
	}
	// Waves must cover Moves exactly once, in order.
	next := 0
	for w, idx := range p.Waves {
		if len(idx) == 0 {
			return fmt.Errorf("wave %d is empty", w)
		}
		for _, i := range idx {
			if i != next || i >= len(p.Moves) {
				return fmt.Errorf("wave %d: move index %d, want %d (waves must list moves in order)", w, i, next)
			}
			if p.Moves[i].Wave != w {
				return fmt.Errorf("move %d: Wave %d but listed in wave %d", i, p.Moves[i].Wave, w)
			}
			next++
		}
	}
	if next != len(p.Moves) {
		return fmt.Errorf("waves list %d of %d moves", next, len(p.Moves))
	}
	for w, idx := range p.Waves {
		count := map[string]int{}
		incoming := map[string]usage{}
		arriving := map[string]map[string]int{}
		var dests []string
		for _, i := range idx {
			m := p.Moves[i]
			g, ok := guests[m.Guest]
			switch {
			case !ok:
				return fmt.Errorf("wave %d: unknown guest %q", w, m.Guest)
			case g.g.Pinned:
				return fmt.Errorf("wave %d: guest %q is pinned", w, m.Guest)
			case g.moved:
				return fmt.Errorf("wave %d: guest %q moved twice", w, m.Guest)
			case g.g.Host == "" || g.g.Host != m.From:
				return fmt.Errorf("wave %d: guest %q is on %q, not %q", w, m.Guest, g.g.Host, m.From)
			}
			to, ok := hosts[m.To]
			switch {
			case !ok:
				return fmt.Errorf("wave %d: guest %q to unknown host %q", w, m.Guest, m.To)
			case m.To == m.From:
				return fmt.Errorf("wave %d: guest %q moves to its own host", w, m.Guest)
			case !to.usable:
				return fmt.Errorf("wave %d: guest %q to host %q which is %s", w, m.Guest, m.To, to.h.State)
			case len(g.g.Hosts) > 0 && !slices.Contains(g.g.Hosts, m.To):
				return fmt.Errorf("wave %d: guest %q to host %q, not one of its hosts %v", w, m.Guest, m.To, g.g.Hosts)
			}
			g.moved = true
			count[m.From]++
			count[m.To]++
			if count[m.From] > pol.MaxParallelPerHost || count[m.To] > pol.MaxParallelPerHost {
				return fmt.Errorf("wave %d: more than %d parallel migrations on a host (guest %q)", w, pol.MaxParallelPerHost, m.Guest)
			}
			if _, seen := incoming[m.To]; !seen {
				dests = append(dests, m.To)
			}
			in := incoming[m.To]
			in.cpu, in.mem, in.vcpu = in.cpu+g.u.cpu, in.mem+g.u.mem, in.vcpu+g.u.vcpu
			incoming[m.To] = in
			if a := g.g.AntiAffinity; a != "" {
				if arriving[m.To] == nil {
					arriving[m.To] = map[string]int{}
				}
				arriving[m.To][a]++
				if to.groups[a]+arriving[m.To][a] > 1 {
					return fmt.Errorf("wave %d: guest %q meets another member of anti-affinity group %q on %q", w, m.Guest, a, m.To)
				}
			}
		}
		slices.Sort(dests)
		for _, name := range dests {
			h, in := hosts[name], incoming[name]
			cpu, mem, vcpu := h.use.cpu+in.cpu, h.use.mem+in.mem, h.use.vcpu+in.vcpu
			if !h.lim.holds(cpu, mem, vcpu) {
				return fmt.Errorf("wave %d: host %q overcommitted: cpu %dm/%dm, memory %d/%d, vcpus %d/%d",
					w, name, cpu, h.lim.cpu, mem, h.lim.mem, vcpu, h.lim.vcpu)
			}
		}
		for _, i := range idx {
			m := p.Moves[i]
			g, from, to := guests[m.Guest], hosts[m.From], hosts[m.To]
			from.use.cpu, from.use.mem, from.use.vcpu = from.use.cpu-g.u.cpu, from.use.mem-g.u.mem, from.use.vcpu-g.u.vcpu
			to.use.cpu, to.use.mem, to.use.vcpu = to.use.cpu+g.u.cpu, to.use.mem+g.u.mem, to.use.vcpu+g.u.vcpu
			if a := g.g.AntiAffinity; a != "" {
				from.groups[a]--
				to.groups[a]++
			}
			g.g.Host = m.To
		}
	}
	occupied := map[string]bool{}
	for _, g := range guests {
		occupied[g.g.Host] = true
	}
	for _, name := range p.PowerOff {
		if _, ok := hosts[name]; !ok || occupied[name] {
			return fmt.Errorf("power off %q: unknown or not empty after the plan", name)
		}
	}
	return nil
}

// Apply validates p and returns the cluster after it: guests on their new
// hosts, PowerOn hosts active and PowerOff hosts on standby. c is unchanged.
func (c *Cluster) Apply(p Plan, pol Policy) (*Cluster, error) {
	if err := c.Validate(p, pol); err != nil {
		return nil, err
	}
	out := c.Clone()
	dest := make(map[string]string, len(p.Moves))
	for _, m := range p.Moves {
		dest[m.Guest] = m.To
	}
	for i := range out.Guests {
		if to, ok := dest[out.Guests[i].Name]; ok {
			out.Guests[i].Host = to
		}
	}
	state := map[string]HostState{}
	for _, n := range p.PowerOn {
		state[n] = Active
	}
	for _, n := range p.PowerOff {
		state[n] = Standby
	}
	for i := range out.Hosts {
		if s, ok := state[out.Hosts[i].Name]; ok {
			out.Hosts[i].State = s
		}
	}
	return out, nil
}
