package pool

import (
	"context"
	"fmt"
	"sort"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/scheduler"
)

// View is the planner's input built from the hosts, and what an operation
// needs to act on its decisions.
type View struct {
	scheduler.Cluster
	// Where maps each scheduler guest name to the domain and its host.
	Where map[string]Located
	// States holds each host's virtpool state.
	States map[string]HostState
	// Domains is every host's listing, stopped domains included.
	Domains map[string][]driver.Domain
	// InFlight lists domains seen on more than one host: a migration is
	// running (or a leftover needs repair). Nothing should plan moves for
	// them until it is over.
	InFlight []string
	// Down holds the hosts that did not answer, left out of the view.
	Down HostsDown
}

// View builds the planner's view of every host: capacity from the host as
// its HostEntry.Capacity says, state from its host record, guests (running
// or paused) from libvirt with their measured demand (Ops.Demand). Hosts
// outside allowed (nil: all) are shown in maintenance so that no decision
// puts anything there. Hosts that do not answer are left out (nothing is
// placed there, their guests are unknown) and named in the HostsDown error
// that then comes with the view, and in View.Down.
func (o *Ops) View(ctx context.Context, allowed map[string]bool) (*View, error) {
	d, err := o.driver(ctx)
	if err != nil {
		return nil, err
	}
	type answer struct {
		info driver.HostInfo
		rs   []driver.Record
		doms []driver.Domain
	}
	answers, err := readEach(ctx, o, o.Hosts.Names(), func(ctx context.Context, h HostEntry) (a answer, err error) {
		var known bool
		if o.Size != nil {
			a.info.CPUs, a.info.MemoryBytes, known = o.Size(h.Name)
		}
		if !known {
			if a.info, err = d.HostInfo(ctx, h.URI); err != nil {
				return a, err
			}
		}
		if a.rs, err = d.ListRecords(ctx, h.URI); err != nil {
			return a, fmt.Errorf("read host state: %w", err)
		}
		if a.doms, err = d.ListDomains(ctx, h.URI); err != nil {
			return a, fmt.Errorf("list guests: %w", err)
		}
		return a, nil
	})
	down, err := Partial(err)
	if err != nil {
		return nil, err
	}
	v := &View{Where: map[string]Located{}, States: map[string]HostState{}, Domains: map[string][]driver.Domain{}, Down: down}
	var names []string
	for _, n := range o.Hosts.Names() {
		a, ok := answers[n]
		if !ok {
			continue
		}
		h := o.Hosts[n]
		st := HostStateOf(n, a.rs)
		v.States[n], v.Domains[n] = st, a.doms
		cores, mem, err := h.Capacity.Of(a.info.CPUs, a.info.MemoryBytes)
		if err != nil {
			return nil, fmt.Errorf("host %s: capacity: %w", n, err)
		}
		sh := scheduler.Host{Name: n, Cores: cores, MemoryBytes: mem, VCPURatio: h.Capacity.VCPURatio, State: scheduler.Active}
		switch {
		case st.Maintenance || (allowed != nil && !allowed[n]):
			sh.State = scheduler.Maintenance
		case st.InStandby():
			sh.State = scheduler.Standby
		}
		names, v.Hosts = append(names, n), append(v.Hosts, sh)
	}
	seen := map[string]int{}
	for _, n := range names {
		for _, dd := range v.Domains[n] {
			if dd.State == driver.StateShutoff || dd.State == driver.StateCrashed {
				continue // takes no resources
			}
			seen[dd.Name]++
			key := dd.Name
			if _, dup := v.Where[key]; dup {
				key = dd.Name + "@" + n // same name on two hosts: never confuse them
			}
			v.Where[key] = Located{Host: n, Domain: dd}
			g := scheduler.Guest{
				Name: key, VCPUs: dd.VCPUs, MemoryBytes: int64(dd.MemoryMiB) << 20,
				Pool: dd.Labels[LabelPool], AntiAffinity: dd.Labels[LabelAntiAffinity], Host: n,
			}
			if o.Demand != nil {
				if cpu, mem, ok := o.Demand(dd.UUID); ok {
					g.CPUDemand, g.MemoryUsed = max(cpu, 0), min(max(mem, 0), g.MemoryBytes)
				}
			}
			v.Guests = append(v.Guests, g)
		}
	}
	for name, n := range seen {
		if n > 1 {
			v.InFlight = append(v.InFlight, name)
		}
	}
	sort.Strings(v.InFlight)
	// A guest on two hosts must not move again: pin both copies.
	for i := range v.Guests {
		if seen[v.Where[v.Guests[i].Name].Name] > 1 {
			v.Guests[i].Pinned = true
		}
	}
	if len(down) > 0 {
		return v, down
	}
	return v, nil
}

// PinOthers pins every guest that is not a member of pool (with pool "",
// of any pool): they count for the load of their hosts, but only members
// move. Other guests, single domains among them, stay where their owner
// put them.
func (v *View) PinOthers(pool string) {
	for i := range v.Guests {
		if (pool != "" && v.Guests[i].Pool != pool) || v.Where[v.Guests[i].Name].Labels[LabelRole] != RoleMember {
			v.Guests[i].Pinned = true
		}
	}
}

// KeepInPools, for plans that span pools, lets each member of a pool in
// pools move only among that pool's hosts. Members of other pools, whose
// hosts nothing says, are pinned if pinUnknown, else left free.
func (v *View) KeepInPools(pools map[string]Record, pinUnknown bool) {
	for i := range v.Guests {
		g := &v.Guests[i]
		if pr, ok := pools[g.Pool]; ok {
			g.Hosts = pr.Placeable()
		} else if pinUnknown && g.Pool != "" {
			g.Pinned = true
		}
	}
}

// HostsIn lists the view's hosts in the given scheduler state.
func (v *View) HostsIn(state scheduler.HostState) []string {
	var out []string
	for _, h := range v.Hosts {
		if h.State == state {
			out = append(out, h.Name)
		}
	}
	sort.Strings(out)
	return out
}
