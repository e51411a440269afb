package pool

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Capacity says how much of a host virtpool may plan with, where that is
// not simply what the host reports: operators keep CPU and memory for the
// hypervisor itself (as OpenStack's reserved_host_cpus and
// reserved_host_memory_mb, or vSphere's admission control, do), and the lab
// gives each of its hosts a CPU and memory budget of its own. The zero
// value plans with the whole host.
//
// What virtpool plans with is (CPUs, or the host's CPUs) − ReservedCPUs,
// and likewise for memory. It is the capacity of every decision (the
// planner's hosts) and of every host load the plugins report (a host's
// "cpu" is its guests' CPU over this capacity).
type Capacity struct {
	// CPUs is the host's CPU capacity in cores (fractions allowed); 0:
	// the CPUs the host reports.
	CPUs float64 `json:"cpus,omitempty"`
	// MemoryMiB is the host's memory for guests; 0: what the host reports.
	MemoryMiB int64 `json:"memory_mib,omitempty"`
	// ReservedCPUs and ReservedMemoryMiB are kept for the hypervisor.
	ReservedCPUs      float64 `json:"reserved_cpus,omitempty"`
	ReservedMemoryMiB int64   `json:"reserved_memory_mib,omitempty"`
	// VCPURatio is how many vCPUs the host may carry per core of its
	// capacity (OpenStack's cpu_allocation_ratio); 0: the planner's
	// default, 4.
	VCPURatio float64 `json:"vcpu_ratio,omitempty"`
}

// Capacity setting names, as the provider's hosts block and the plugins'
// hosts key spell them.
const (
	CapacityCPUs              = "cpus"
	CapacityMemoryMiB         = "memory_mib"
	CapacityReservedCPUs      = "reserved_cpus"
	CapacityReservedMemoryMiB = "reserved_memory_mib"
	CapacityVCPURatio         = "vcpu_ratio"
)

var capacitySettings = []string{CapacityCPUs, CapacityMemoryMiB, CapacityReservedCPUs, CapacityReservedMemoryMiB, CapacityVCPURatio}

// Bounds that keep every setting meaningful (and the planner's sums exact).
const (
	maxCapacityCPUs      = 1 << 20
	maxCapacityMemoryMiB = 1 << 30 // 1 PiB
	maxVCPURatio         = 1024
)

// IsZero reports whether nothing is overridden.
func (c Capacity) IsZero() bool { return c == Capacity{} }

// Validate says which setting is out of range, naming it.
func (c Capacity) Validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{CapacityCPUs, c.CPUs}, {CapacityReservedCPUs, c.ReservedCPUs}} {
		if math.IsNaN(f.v) || f.v < 0 || f.v > maxCapacityCPUs {
			return fmt.Errorf("%s = %v: want a number of cores in [0, %d]", f.name, f.v, maxCapacityCPUs)
		}
	}
	if math.IsNaN(c.VCPURatio) || c.VCPURatio < 0 || c.VCPURatio > maxVCPURatio {
		return fmt.Errorf("%s = %v: want vCPUs per core in [0, %d]", CapacityVCPURatio, c.VCPURatio, maxVCPURatio)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{CapacityMemoryMiB, c.MemoryMiB}, {CapacityReservedMemoryMiB, c.ReservedMemoryMiB}} {
		if f.v < 0 || f.v > maxCapacityMemoryMiB {
			return fmt.Errorf("%s = %d: want MiB in [0, %d]", f.name, f.v, maxCapacityMemoryMiB)
		}
	}
	if c.CPUs > 0 && c.ReservedCPUs >= c.CPUs {
		return fmt.Errorf("%s = %v leaves nothing of %s = %v", CapacityReservedCPUs, c.ReservedCPUs, CapacityCPUs, c.CPUs)
	}
	if c.MemoryMiB > 0 && c.ReservedMemoryMiB >= c.MemoryMiB {
		return fmt.Errorf("%s = %d leaves nothing of %s = %d", CapacityReservedMemoryMiB, c.ReservedMemoryMiB,
			CapacityMemoryMiB, c.MemoryMiB)
	}
	return nil
}

// Of returns the cores and memory bytes to plan with on a host that
// reports cpus and memoryBytes. An override larger than the host itself,
// or a reservation that leaves nothing, is an error naming the setting:
// virtpool would otherwise plan load the host cannot carry.
func (c Capacity) Of(cpus int, memoryBytes uint64) (cores float64, memBytes int64, err error) {
	if err := c.Validate(); err != nil {
		return 0, 0, err
	}
	cores, memBytes = float64(cpus), int64(min(memoryBytes, math.MaxInt64))
	if c.CPUs > 0 {
		if c.CPUs > cores {
			return 0, 0, fmt.Errorf("%s = %v exceeds the %d CPUs the host has", CapacityCPUs, c.CPUs, cpus)
		}
		cores = c.CPUs
	}
	if c.MemoryMiB > 0 {
		b := c.MemoryMiB << 20
		if b > memBytes {
			return 0, 0, fmt.Errorf("%s = %d exceeds the %d MiB the host has", CapacityMemoryMiB, c.MemoryMiB, memBytes>>20)
		}
		memBytes = b
	}
	if cores -= c.ReservedCPUs; cores <= 0 {
		return 0, 0, fmt.Errorf("%s = %v leaves none of the host's %v CPUs", CapacityReservedCPUs, c.ReservedCPUs, cores+c.ReservedCPUs)
	}
	if memBytes -= c.ReservedMemoryMiB << 20; memBytes <= 0 {
		return 0, 0, fmt.Errorf("%s = %d leaves none of the host's memory", CapacityReservedMemoryMiB, c.ReservedMemoryMiB)
	}
	return cores, memBytes, nil
}

// String is the settings as the plugins' hosts key writes them
// ("cpus=0.5;memory_mib=2048"), empty for the zero value.
func (c Capacity) String() string {
	var parts []string
	add := func(k, v string) { parts = append(parts, k+"="+v) }
	if c.CPUs > 0 {
		add(CapacityCPUs, strconv.FormatFloat(c.CPUs, 'g', -1, 64))
	}
	if c.MemoryMiB > 0 {
		add(CapacityMemoryMiB, strconv.FormatInt(c.MemoryMiB, 10))
	}
	if c.ReservedCPUs > 0 {
		add(CapacityReservedCPUs, strconv.FormatFloat(c.ReservedCPUs, 'g', -1, 64))
	}
	if c.ReservedMemoryMiB > 0 {
		add(CapacityReservedMemoryMiB, strconv.FormatInt(c.ReservedMemoryMiB, 10))
	}
	if c.VCPURatio > 0 {
		add(CapacityVCPURatio, strconv.FormatFloat(c.VCPURatio, 'g', -1, 64))
	}
	return strings.Join(parts, ";")
}

// ParseCapacity reads settings written as String writes them: key=value
// pairs separated by ';'.
func ParseCapacity(s string) (Capacity, error) {
	var c Capacity
	if s == "" {
		return c, nil
	}
	seen := map[string]bool{}
	for _, kv := range strings.Split(s, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || v == "" {
			return c, fmt.Errorf("%q: want key=value (%s)", kv, strings.Join(capacitySettings, ", "))
		}
		if seen[k] {
			return c, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		var err error
		switch k {
		case CapacityCPUs:
			c.CPUs, err = strconv.ParseFloat(v, 64)
		case CapacityReservedCPUs:
			c.ReservedCPUs, err = strconv.ParseFloat(v, 64)
		case CapacityMemoryMiB:
			c.MemoryMiB, err = strconv.ParseInt(v, 10, 64)
		case CapacityReservedMemoryMiB:
			c.ReservedMemoryMiB, err = strconv.ParseInt(v, 10, 64)
		case CapacityVCPURatio:
			c.VCPURatio, err = strconv.ParseFloat(v, 64)
		default:
			return c, fmt.Errorf("unknown setting %q (known: %s)", k, strings.Join(capacitySettings, ", "))
		}
		if err != nil {
			return c, fmt.Errorf("%s = %q is not a number", k, v)
		}
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	return c, nil
}
