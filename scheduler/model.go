package scheduler

import (
	"errors"
	"fmt"
	"math"
)

// HostState says whether a host may receive guests.
type HostState int

const (
	// Active hosts run guests and may receive more.
	Active HostState = iota
	// Standby hosts are powered down or idle; Spread and Evacuate may ask
	// for them to be powered on (Plan.PowerOn).
	Standby
	// Maintenance hosts never receive guests.
	Maintenance
)

func (s HostState) String() string {
	switch s {
	case Active:
		return "active"
	case Standby:
		return "standby"
	case Maintenance:
		return "maintenance"
	}
	return fmt.Sprintf("HostState(%d)", int(s))
}

// Host is one hypervisor.
type Host struct {
	Name        string
	Cores       float64 // CPU cores available to guests
	MemoryBytes int64   // memory available to guests
	// VCPURatio is how many vCPUs the host may carry per core; 0 means
	// Policy.VCPURatio (an operator's per-host allocation ratio, as
	// OpenStack's cpu_allocation_ratio).
	VCPURatio float64
	State     HostState
	Labels    map[string]string // informational; not used for decisions
}

// Guest is one virtual machine.
type Guest struct {
	Name        string
	VCPUs       int
	MemoryBytes int64   // configured memory; what a host must reserve
	CPUDemand   float64 // cores used, averaged over the measurement window
	MemoryUsed  int64   // measured memory in use; bytes a migration copies
	Pool        string
	// AntiAffinity names a group whose members must run on distinct hosts.
	// Empty means no constraint. Groups are global; prefix with the pool
	// name if groups of different pools may share names.
	AntiAffinity string
	Pinned       bool   // never migrated
	Host         string // current host; empty for a guest not yet placed
	// Hosts, if not empty, are the only hosts a move may take the guest
	// to (its pool's hosts, when a plan spans several pools). Names of
	// hosts not in the cluster are ignored. Place does not read it.
	Hosts []string
}

// Cluster is the input to every decision. Decisions do not modify it.
type Cluster struct {
	Hosts  []Host
	Guests []Guest
}

// ErrInvalid wraps errors about malformed input (bad names, negative or
// absurd sizes, bad policy).
var ErrInvalid = errors.New("invalid input")

// ErrInfeasible wraps errors of Place and Victims when the request cannot be
// met.
var ErrInfeasible = errors.New("infeasible")

// Input bounds keep every sum well inside int64 so all capacity arithmetic is
// exact.
const (
	maxGuests      = 1 << 18
	maxHosts       = 1 << 16
	maxHostMemory  = int64(1) << 50 // 1 PiB
	maxGuestMemory = int64(1) << 44 // 16 TiB
	maxCores       = 1 << 20
	maxVCPUs       = 1 << 16
	maxVCPURatio   = 1024
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Check reports the first problem with the cluster description: empty or
// duplicate names, sizes out of range, a guest on an unknown host.
func (c *Cluster) Check() error {
	if len(c.Hosts) > maxHosts {
		return invalid("%d hosts, at most %d", len(c.Hosts), maxHosts)
	}
	if len(c.Guests) > maxGuests {
		return invalid("%d guests, at most %d", len(c.Guests), maxGuests)
	}
	hosts := make(map[string]bool, len(c.Hosts))
	for _, h := range c.Hosts {
		switch {
		case h.Name == "":
			return invalid("host with empty name")
		case hosts[h.Name]:
			return invalid("duplicate host %q", h.Name)
		case !(h.Cores > 0 && h.Cores <= maxCores):
			return invalid("host %q: cores %v out of range (0, %d]", h.Name, h.Cores, maxCores)
		case h.MemoryBytes <= 0 || h.MemoryBytes > maxHostMemory:
			return invalid("host %q: memory %d out of range (0, %d]", h.Name, h.MemoryBytes, maxHostMemory)
		case !(h.VCPURatio >= 0 && h.VCPURatio <= maxVCPURatio):
			return invalid("host %q: vcpu ratio %v out of range [0, %d]", h.Name, h.VCPURatio, maxVCPURatio)
		case h.State < Active || h.State > Maintenance:
			return invalid("host %q: unknown state %d", h.Name, int(h.State))
		}
		hosts[h.Name] = true
	}
	guests := make(map[string]bool, len(c.Guests))
	for _, g := range c.Guests {
		if err := checkGuest(g); err != nil {
			return err
		}
		if guests[g.Name] {
			return invalid("duplicate guest %q", g.Name)
		}
		if g.Host != "" && !hosts[g.Host] {
			return invalid("guest %q on unknown host %q", g.Name, g.Host)
		}
		guests[g.Name] = true
	}
	return nil
}

// checkGuest validates one guest's own fields (also used for Place templates).
func checkGuest(g Guest) error {
	switch {
	case g.Name == "":
		return invalid("guest with empty name")
	case g.VCPUs < 0 || g.VCPUs > maxVCPUs:
		return invalid("guest %q: vcpus %d out of range [0, %d]", g.Name, g.VCPUs, maxVCPUs)
	case g.MemoryBytes < 0 || g.MemoryBytes > maxGuestMemory:
		return invalid("guest %q: memory %d out of range [0, %d]", g.Name, g.MemoryBytes, maxGuestMemory)
	case g.MemoryUsed < 0 || g.MemoryUsed > maxGuestMemory:
		return invalid("guest %q: memory used %d out of range [0, %d]", g.Name, g.MemoryUsed, maxGuestMemory)
	case !(g.CPUDemand >= 0 && g.CPUDemand <= maxCores):
		return invalid("guest %q: cpu demand %v out of range [0, %d]", g.Name, g.CPUDemand, maxCores)
	}
	return nil
}

// milli converts cores to millicores, rounding demand up so that rounding
// never hides load.
func milli(cores float64) int64 { return int64(math.Ceil(cores * 1000)) }

// copyBytes is what migrating g costs: the measured memory in use, or the
// configured memory when nothing was measured.
func copyBytes(g Guest) int64 {
	if g.MemoryUsed > 0 {
		return g.MemoryUsed
	}
	return g.MemoryBytes
}

// Clone returns a deep copy of the cluster.
func (c *Cluster) Clone() *Cluster {
	out := &Cluster{Hosts: make([]Host, len(c.Hosts)), Guests: append([]Guest(nil), c.Guests...)}
	for i, h := range c.Hosts {
		if h.Labels != nil {
			l := make(map[string]string, len(h.Labels))
			for k, v := range h.Labels {
				l[k] = v
			}
			h.Labels = l
		}
		out.Hosts[i] = h
	}
	return out
}
