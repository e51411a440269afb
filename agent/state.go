package agent

import (
	"sort"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
)

// Host states as the agent reports them.
const (
	HostActive      = "active"
	HostStandby     = "standby"
	HostMaintenance = "maintenance"
	HostDown        = "down" // did not answer in the last sample
	HostOff         = "off"  // powered off on standby by the agent (DPM): answers nothing, runs nothing
)

// GuestUnknown is the state of a guest last seen on a host that is down:
// it may run there still, nobody can tell.
const GuestUnknown = "unknown"

// State is the cluster as the last sample saw it: what the API, the page
// and the metrics show.
type State struct {
	Time       time.Time   `json:"time"`
	Hosts      []Host      `json:"hosts"`
	Pools      []Pool      `json:"pools"`
	Migrations []Migration `json:"migrations"`
	Finished   []Finished  `json:"finished"` // the last ones, newest first
	// Protections are the protected domains' checkpoint loops.
	Protections []Protection `json:"protections"`
}

// Host is one host. Ratios are of the capacity virtpool plans with
// (pool.Capacity), as the autoscaler sees them (fleet.HostFrame.Load).
type Host struct {
	Name  string `json:"name"`
	URI   string `json:"uri"`
	State string `json:"state"`
	// Error says why a down host could not be sampled.
	Error string `json:"error,omitempty"`
	// Fenced: a pool record notes its fence (powered off by the agent's
	// failover, or on standby: state off); while down it runs nothing.
	Fenced              bool    `json:"fenced,omitempty"`
	CapacityCPUs        float64 `json:"capacity_cpus"`
	CapacityMemoryBytes int64   `json:"capacity_memory_bytes"`
	// CPURatio is the guests' CPU over the capacity, MemoryRatio their
	// configured memory; BusyRatio is the host's own CPU use (everything
	// on it) over all its CPUs.
	CPURatio    float64 `json:"cpu_ratio"`
	MemoryRatio float64 `json:"memory_ratio"`
	BusyRatio   float64 `json:"busy_ratio"`
	// DiskBps and NetBps are its guests' disk and network rates summed
	// (each guest's as in Guest), over the last interval.
	DiskBps float64 `json:"disk_bytes_per_second"`
	NetBps  float64 `json:"network_bytes_per_second"`
	Guests  []Guest `json:"guests"`
}

// Guest is one domain on a host.
type Guest struct {
	Name        string  `json:"name"`
	UUID        string  `json:"uuid"`
	Host        string  `json:"host"`
	Pool        string  `json:"pool,omitempty"`
	Role        string  `json:"role,omitempty"`
	State       string  `json:"state"`
	VCPUs       int     `json:"vcpus"`
	CPUCores    float64 `json:"cpu_cores"` // average over the last interval
	MemoryBytes uint64  `json:"memory_bytes"`
	RSSBytes    uint64  `json:"rss_bytes"`
	DiskBps     float64 `json:"disk_bytes_per_second"`
	NetBps      float64 `json:"network_bytes_per_second"`
}

// Pool is one pool: its record's bounds and the members running.
type Pool struct {
	Name string `json:"name"`
	// Size counts the members running, and those last seen running on a
	// host now down (Unknown of them).
	Size    int      `json:"size"`
	Unknown int      `json:"unknown"`
	Desired int64    `json:"desired"`
	Min     int64    `json:"min"`
	Max     int64    `json:"max"`
	Hosts   []string `json:"hosts"`
}

// Migration is a guest seen on two hosts at once: running on its source,
// paused on its destination while its memory is copied. The numbers are
// the source's job stats (zero when they could not be read).
type Migration struct {
	Guest              string    `json:"guest"`
	UUID               string    `json:"uuid"`
	From               string    `json:"from"`
	To                 string    `json:"to"`
	Since              time.Time `json:"since"`
	ElapsedMs          int64     `json:"elapsed_ms"`
	DataTotal          uint64    `json:"data_total_bytes"`
	DataProcessed      uint64    `json:"data_processed_bytes"`
	DataRemaining      uint64    `json:"data_remaining_bytes"`
	ExpectedDowntimeMs int64     `json:"expected_downtime_ms"`
	DirtyRate          uint64    `json:"dirty_bytes_per_second"`
}

// Finished is a migration seen to end, with what the destination measured
// (zero when it could not be read).
type Finished struct {
	Guest      string    `json:"guest"`
	From       string    `json:"from"`
	To         string    `json:"to"`
	Time       time.Time `json:"time"`
	ElapsedMs  int64     `json:"elapsed_ms"`
	DowntimeMs int64     `json:"downtime_ms"`
	Bytes      uint64    `json:"bytes"`
}

// keepFinished is how many finished migrations the state lists.
const keepFinished = 20

// Guests lists every guest of every host.
func (s State) Guests() []Guest {
	var out []Guest
	for _, h := range s.Hosts {
		out = append(out, h.Guests...)
	}
	return out
}

// buildState turns a round (and the frame that ends with it, if any) into
// a State. prev is the state before: the guests last seen on a host that is
// now down, where a migration started and how long it has run.
func buildState(t fleet.Topology, r fleet.Round, f *fleet.Frame, prev State) State {
	s := State{Time: r.Time}
	fenced, off := fencedHosts(t)
	for _, name := range sortedKeys(t.Hosts) {
		e := t.Hosts[name]
		h := Host{Name: name, URI: e.URI, State: hostState(t.States[name]), Fenced: fenced[name] || off[name]}
		hs, ok := r.Hosts[name]
		if !ok {
			why := "not sampled"
			if err, bad := t.Errors[e.URI]; bad {
				why = err.Error()
			}
			h = downHost(h, prev, why)
			if off[name] {
				h.State, h.Error = HostOff, ""
			}
			s.Hosts = append(s.Hosts, h)
			continue
		}
		h.CapacityCPUs, h.CapacityMemoryBytes, _ = hs.Capacity.Of(hs.Stats.CPUs, hs.Stats.MemoryTotalBytes) // checked by Sample
		rates := map[string]fleet.GuestFrame{}
		if f != nil {
			if hf := f.Hosts[name]; hf != nil {
				h.BusyRatio = hf.Busy
				h.CPURatio, h.MemoryRatio = hf.Load()
				tot := hf.Totals()
				h.DiskBps, h.NetBps = tot.DiskBps, tot.NetBps
				for _, g := range hf.Guests {
					rates[g.UUID] = g
				}
			}
		}
		for _, d := range hs.Stats.Domains {
			g := Guest{Name: d.Name, UUID: d.UUID, Host: name, Pool: d.Labels[pool.LabelPool],
				Role: d.Labels[pool.LabelRole], State: d.State, VCPUs: d.VCPUs,
				MemoryBytes: d.BalloonKiB << 10, RSSBytes: d.RSSKiB << 10}
			if rf, ok := rates[d.UUID]; ok {
				g.CPUCores, g.DiskBps, g.NetBps = rf.CPU, rf.DiskBps, rf.NetBps
			}
			h.Guests = append(h.Guests, g)
		}
		sort.Slice(h.Guests, func(i, j int) bool { return h.Guests[i].Name < h.Guests[j].Name })
		s.Hosts = append(s.Hosts, h)
	}
	s.Migrations = migrations(s, prev)
	s.Pools = pools(t, s)
	return s
}

// downHost is h, which did not answer, with the guests prev saw there,
// now of unknown state (none if it is fenced: it is off).
func downHost(h Host, prev State, why string) Host {
	h.State, h.Error = HostDown, why
	for _, p := range prev.Hosts {
		if p.Name == h.Name && h.Fenced {
			h.CapacityCPUs, h.CapacityMemoryBytes = p.CapacityCPUs, p.CapacityMemoryBytes
			return h
		}
		if p.Name != h.Name {
			continue
		}
		h.CapacityCPUs, h.CapacityMemoryBytes = p.CapacityCPUs, p.CapacityMemoryBytes
		for _, g := range p.Guests {
			h.Guests = append(h.Guests, Guest{Name: g.Name, UUID: g.UUID, Host: g.Host, Pool: g.Pool, Role: g.Role,
				State: GuestUnknown, VCPUs: g.VCPUs, MemoryBytes: g.MemoryBytes})
		}
	}
	return h
}

// rank orders the copies of a guest by how surely it runs there: running,
// then paused (the destination of a migration, or paused by hand), then
// last seen on a host now down; 0 for a guest that does not run.
func (g Guest) rank() int {
	switch g.State {
	case driver.StateRunning:
		return 3
	case driver.StatePaused:
		return 2
	case GuestUnknown:
		return 1
	}
	return 0
}

func hostState(st pool.HostState) string {
	switch {
	case st.Maintenance:
		return HostMaintenance
	case st.InStandby():
		return HostStandby
	default:
		return HostActive
	}
}

func pools(t fleet.Topology, s State) []Pool {
	members := map[string]map[string]string{} // pool → member → state
	for _, g := range running(s) {
		if g.Role == pool.RoleMember {
			if members[g.Pool] == nil {
				members[g.Pool] = map[string]string{}
			}
			members[g.Pool][g.Name] = g.State
		}
	}
	var out []Pool
	for _, name := range t.PoolNames() {
		sp := t.Pools[name].Spec
		p := Pool{Name: name, Size: len(members[name]), Desired: sp.Size, Min: sp.MinSize, Max: sp.MaxSize, Hosts: sp.HostNames()}
		for _, st := range members[name] {
			if st == GuestUnknown {
				p.Unknown++
			}
		}
		out = append(out, p)
	}
	return out
}

// running returns, by UUID, every guest that runs as far as anyone knows,
// where it runs: a guest in migration on its source until only one copy is
// left, since libvirt resumes the destination before the source lets go
// (Finish before Confirm) and post-copy runs it there before the end;
// any other guest where it surely runs (see rank).
func running(s State) map[string]Guest {
	from := map[string]string{}
	for _, m := range s.Migrations {
		from[m.UUID] = m.From
	}
	out := map[string]Guest{}
	for _, g := range s.Guests() {
		o, ok := out[g.UUID]
		switch src := from[g.UUID]; {
		case g.rank() == 0:
		case src != "":
			if g.Host == src {
				out[g.UUID] = g
			}
		case !ok || g.rank() > o.rank():
			out[g.UUID] = g
		}
	}
	return out
}

// migrations finds guests active on two hosts: one running, the other
// paused while memory is copied (before the switch of a post-copy
// migration, the other way round). The source is where the guest ran
// before, if the previous state saw it.
func migrations(s State, prev State) []Migration {
	since := map[string]time.Time{}
	for _, m := range prev.Migrations {
		since[m.UUID] = m.Since
	}
	ranBefore := running(prev)
	where := map[string][]Guest{}
	for _, g := range s.Guests() {
		if driver.Active(g.State) {
			where[g.UUID] = append(where[g.UUID], g)
		}
	}
	var out []Migration
	for _, u := range sortedKeys(where) {
		gs := where[u]
		if len(gs) != 2 {
			continue
		}
		src, dst := gs[0], gs[1]
		if was, ok := ranBefore[u]; ok && was.Host == dst.Host || !ok && src.State != driver.StateRunning {
			src, dst = dst, src
		}
		m := Migration{Guest: src.Name, UUID: u, From: src.Host, To: dst.Host, Since: s.Time}
		if t, ok := since[u]; ok {
			m.Since = t
		}
		out = append(out, m)
	}
	return out
}
