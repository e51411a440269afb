package fleet

import (
	"sort"
	"sync"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

// Round is one sample of every reachable host, taken together.
type Round struct {
	Time  time.Time
	Hosts map[string]HostSample // by host name
	// Pools maps each pool found in the records to its hosts.
	Pools map[string][]string
	// Down lists the hosts of the topology that did not answer.
	Down []string
}

// HostSample is one host's stats and state in a round, with the capacity
// its entry gives it.
type HostSample struct {
	Stats    driver.HostStats
	State    pool.HostState
	Capacity pool.Capacity
}

// History is a bounded in-memory history of rounds: at most max rounds,
// none older than retention before the newest.
type History struct {
	mu        sync.RWMutex
	rounds    []Round
	max       int
	retention time.Duration
}

// NewHistory returns an empty history.
func NewHistory(maxRounds int, retention time.Duration) *History {
	return &History{max: max(maxRounds, 2), retention: retention}
}

// Add appends a round (rounds must come in time order) and drops what
// falls outside the bounds.
func (h *History) Add(r Round) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rounds = append(h.rounds, r)
	drop := 0
	for drop < len(h.rounds)-1 && (len(h.rounds)-drop > h.max || r.Time.Sub(h.rounds[drop].Time) > h.retention) {
		drop++
	}
	if drop > 0 {
		h.rounds = append(h.rounds[:0:0], h.rounds[drop:]...)
	}
}

// Len is the number of rounds kept.
func (h *History) Len() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.rounds)
}

// Span returns the times of the oldest and newest rounds kept.
func (h *History) Span() (oldest, newest time.Time) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.rounds) == 0 {
		return
	}
	return h.rounds[0].Time, h.rounds[len(h.rounds)-1].Time
}

// Latest returns the newest round.
func (h *History) Latest() (Round, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if len(h.rounds) == 0 {
		return Round{}, false
	}
	return h.rounds[len(h.rounds)-1], true
}

// Frame is what happened between two consecutive rounds: rates derived
// from the counters, stamped with the later round's time.
type Frame struct {
	Time  time.Time
	Dt    time.Duration
	Hosts map[string]*HostFrame
	Pools map[string][]string
	// Up tells, for every host of the topology, whether it answered the
	// frame's round (a host with no rate yet is up but not in Hosts).
	Up map[string]bool
	// Migrating holds the guests (UUIDs) active on two hosts in either
	// of the frame's rounds: migrating during it.
	Migrating map[string]bool
}

// HostFrame is one host in a frame.
type HostFrame struct {
	Name string
	// Cores and MemoryBytes are the capacity virtpool plans with (the
	// host's, as its pool.Capacity says); loads are fractions of them.
	Cores       float64
	MemoryBytes int64
	// Busy is the host's own CPU use (user+system over all CPU time), a
	// fraction: everything running on the host, guests or not.
	Busy   float64
	State  pool.HostState
	Guests []GuestFrame
}

// Totals are a host's guests summed over a frame.
type Totals struct {
	CPU                   float64 // cores
	DiskBps, NetBps       float64
	MemoryBytes, RSSBytes uint64
}

// Totals sums the host's guests.
func (h *HostFrame) Totals() Totals {
	var t Totals
	for _, g := range h.Guests {
		t.CPU += g.CPU
		t.DiskBps += g.DiskBps
		t.NetBps += g.NetBps
		t.MemoryBytes += g.MemoryBytes
		t.RSSBytes += g.RSSBytes
	}
	return t
}

// Load is the guests' CPU and configured memory as fractions of the
// host's capacity: the host load virtpool plans with.
func (h *HostFrame) Load() (cpu, memory float64) {
	t := h.Totals()
	if h.Cores > 0 {
		cpu = t.CPU / h.Cores
	}
	if h.MemoryBytes > 0 {
		memory = float64(t.MemoryBytes) / float64(h.MemoryBytes)
	}
	return cpu, memory
}

// GuestFrame is one running guest in a frame.
type GuestFrame struct {
	Name   string
	UUID   string
	Labels map[string]string
	VCPUs  int
	// CPU is the cores the guest used on average over the frame.
	CPU         float64
	MemoryBytes uint64 // configured (balloon)
	RSSBytes    uint64
	DiskBps     float64 // read + written, bytes/s
	NetBps      float64 // received + sent, bytes/s
}

// Pool returns the guest's pool label ("" for none).
func (g GuestFrame) Pool() string { return g.Labels[pool.LabelPool] }

// Member reports whether the guest is a member of pool.
func (g GuestFrame) Member(p string) bool {
	return g.Labels[pool.LabelPool] == p && g.Labels[pool.LabelRole] == pool.RoleMember
}

// delta is b-a for counters; false when the counter went back (a new QEMU
// process, e.g. after a migration).
func delta(a, b uint64) (uint64, bool) {
	if b < a {
		return 0, false
	}
	return b - a, true
}

// frame derives the rates between two rounds. A guest counts on a host
// only if it ran there in both rounds with counters that did not restart.
func frame(prev, cur Round) Frame {
	f := Frame{Time: cur.Time, Dt: cur.Time.Sub(prev.Time), Hosts: map[string]*HostFrame{}, Pools: cur.Pools, Up: map[string]bool{},
		Migrating: map[string]bool{}}
	for _, r := range []Round{prev, cur} {
		on := map[string]int{}
		for _, hs := range r.Hosts {
			for _, d := range hs.Stats.Domains {
				if driver.Active(d.State) {
					on[d.UUID]++
				}
			}
		}
		for u, n := range on {
			if n > 1 {
				f.Migrating[u] = true
			}
		}
	}
	for _, n := range cur.Down {
		f.Up[n] = false
	}
	for name := range cur.Hosts {
		f.Up[name] = true
	}
	for name, hc := range cur.Hosts {
		hp, ok := prev.Hosts[name]
		if !ok {
			continue
		}
		a, b := hp.Stats, hc.Stats
		dt := b.Time.Sub(a.Time).Seconds()
		if dt <= 0 {
			continue
		}
		cores, mem, err := hc.Capacity.Of(b.CPUs, b.MemoryTotalBytes)
		if err != nil {
			continue // Sample refused it already, saying why
		}
		hf := &HostFrame{Name: name, Cores: cores, MemoryBytes: mem, State: hc.State}
		hf.Busy, _ = driver.CPUBusy(a, b) // 0 without a rate (the host rebooted)
		before := map[string]driver.DomainStats{}
		for _, d := range a.Domains {
			if driver.Active(d.State) {
				before[d.UUID] = d
			}
		}
		for _, d := range b.Domains {
			p, ok := before[d.UUID]
			if !ok || !driver.Active(d.State) {
				continue
			}
			cpu, ok1 := delta(p.CPUTimeNs, d.CPUTimeNs)
			rd, ok2 := delta(p.BlockRdBytes+p.BlockWrBytes, d.BlockRdBytes+d.BlockWrBytes)
			net, ok3 := delta(p.NetRxBytes+p.NetTxBytes, d.NetRxBytes+d.NetTxBytes)
			if !ok1 {
				continue // restarted: no rate for this interval
			}
			g := GuestFrame{Name: d.Name, UUID: d.UUID, Labels: d.Labels, VCPUs: d.VCPUs,
				CPU: float64(cpu) / 1e9 / dt, MemoryBytes: d.BalloonKiB << 10, RSSBytes: d.RSSKiB << 10}
			if ok2 {
				g.DiskBps = float64(rd) / dt
			}
			if ok3 {
				g.NetBps = float64(net) / dt
			}
			hf.Guests = append(hf.Guests, g)
		}
		sort.Slice(hf.Guests, func(i, j int) bool { return hf.Guests[i].Name < hf.Guests[j].Name })
		f.Hosts[name] = hf
	}
	return f
}

// LastSeen returns the newest sample of host, if the history has one.
func (h *History) LastSeen(host string) (HostSample, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for i := len(h.rounds) - 1; i >= 0; i-- {
		if hs, ok := h.rounds[i].Hosts[host]; ok {
			return hs, true
		}
	}
	return HostSample{}, false
}

// Frames returns the frames whose time is in [from, to], oldest first.
func (h *History) Frames(from, to time.Time) []Frame {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []Frame
	for i := 1; i < len(h.rounds); i++ {
		t := h.rounds[i].Time
		if t.Before(from) || t.After(to) {
			continue
		}
		out = append(out, frame(h.rounds[i-1], h.rounds[i]))
	}
	return out
}

// Demand is a guest's measured load over a window.
type Demand struct {
	CPU      float64 // cores, time-weighted average
	RSSBytes int64   // latest
	Covered  time.Duration
}

// Demand returns every guest's load (by UUID) over the window ending at
// the newest round. A guest is followed across hosts: a migrated guest's
// frames on its old host count as well as those on its new one. The
// frames of its migration (Frame.Migrating: up to the first round that
// sees it on one host, whose counter still holds the incoming copy's
// work) do not count while others do: QEMU's CPU is then mostly copying
// and encrypting memory, not the guest's demand. Counted, it would make
// the host a guest was just moved to look hot, and move something back.
func (h *History) Demand(window time.Duration) map[string]Demand {
	_, newest := h.Span()
	frames := h.Frames(newest.Add(-window).Add(time.Nanosecond), newest)
	type acc struct {
		sum     float64 // core-seconds
		covered time.Duration
	}
	steady, moving := map[string]acc{}, map[string]acc{}
	rss := map[string]int64{}
	for _, f := range frames {
		// A guest with a rate on two hosts in one frame (mid-migration)
		// counts once, with its larger rate.
		seen := map[string]GuestFrame{}
		for _, hf := range f.Hosts {
			for _, g := range hf.Guests {
				if o, ok := seen[g.UUID]; !ok || g.CPU > o.CPU {
					seen[g.UUID] = g
				}
			}
		}
		for u, g := range seen {
			into := steady
			if f.Migrating[u] {
				into = moving
			}
			a := into[u]
			a.sum += g.CPU * f.Dt.Seconds()
			a.covered += f.Dt
			into[u] = a
			rss[u] = int64(g.RSSBytes)
		}
	}
	out := map[string]Demand{}
	for u := range rss {
		a, ok := steady[u]
		if !ok { // migrating all along: what there is
			a = moving[u]
		}
		d := Demand{RSSBytes: rss[u], Covered: a.covered}
		if a.covered > 0 {
			d.CPU = a.sum / a.covered.Seconds()
		}
		out[u] = d
	}
	return out
}
