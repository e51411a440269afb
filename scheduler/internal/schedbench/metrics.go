package schedbench

import (
	"math"
	"time"

	"github.com/virtpool/virtpool/scheduler"
)

// Metrics describe one algorithm's result on one trace.
type Metrics struct {
	Time       time.Duration // planning time (median of runs)
	Hosts      int           // active hosts holding at least one guest after
	LowerBound int           // see LowerBound
	Migrations int           // guests whose host changed
	Bytes      int64         // memory those guests copy
	MaxUtil    float64       // highest host utilisation after
	StdUtil    float64       // standard deviation of host utilisation after
	Err        error         // the plan failed validation
}

// LowerBound is the fewest hosts of average size that can hold the demand
// at the target utilisation: ceil(total / per-host capacity), taking the
// largest over CPU, memory and vCPUs.
func LowerBound(c *scheduler.Cluster, pol scheduler.Policy) int {
	var cpu, mem, vcpu, cores, hmem float64
	n := 0
	for _, h := range c.Hosts {
		if h.State == scheduler.Active {
			cores += h.Cores
			hmem += float64(h.MemoryBytes)
			n++
		}
	}
	if n == 0 {
		return 0
	}
	cores, hmem = cores/float64(n), hmem/float64(n)
	for _, g := range c.Guests {
		if g.Host != "" {
			cpu += g.CPUDemand
			mem += float64(g.MemoryBytes)
			vcpu += float64(g.VCPUs)
		}
	}
	return int(math.Ceil(max(cpu/(cores*pol.TargetCPU), mem/(hmem*pol.TargetMem), vcpu/(cores*pol.VCPURatio)) - 1e-9))
}

// Measure compares the cluster before and after a plan.
func Measure(before, after *scheduler.Cluster, pol scheduler.Policy, d time.Duration) Metrics {
	m := Metrics{Time: d, LowerBound: LowerBound(before, pol)}
	was := map[string]string{}
	for _, g := range before.Guests {
		was[g.Name] = g.Host
	}
	type load struct {
		cpu float64
		mem int64
		n   int
	}
	loads := map[string]*load{}
	for _, h := range after.Hosts {
		if h.State == scheduler.Active {
			loads[h.Name] = &load{}
		}
	}
	for _, g := range after.Guests {
		if g.Host != was[g.Name] {
			m.Migrations++
			if g.MemoryUsed > 0 {
				m.Bytes += g.MemoryUsed
			} else {
				m.Bytes += g.MemoryBytes
			}
		}
		if l, ok := loads[g.Host]; ok {
			l.cpu += g.CPUDemand
			l.mem += g.MemoryBytes
			l.n++
		}
	}
	var utils []float64
	for _, h := range after.Hosts {
		if l, ok := loads[h.Name]; ok && l.n > 0 {
			utils = append(utils, max(l.cpu/h.Cores, float64(l.mem)/float64(h.MemoryBytes)))
		}
	}
	m.Hosts = len(utils)
	var sum, sq float64
	for _, u := range utils {
		m.MaxUtil = max(m.MaxUtil, u)
		sum += u
	}
	if len(utils) > 0 {
		mean := sum / float64(len(utils))
		for _, u := range utils {
			sq += (u - mean) * (u - mean)
		}
		m.StdUtil = math.Sqrt(sq / float64(len(utils)))
	}
	return m
}
