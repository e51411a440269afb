package scheduler

import (
	"fmt"
	"math"
)

// Strategy chooses among hosts that fit a new guest.
type Strategy int

const (
	// SpreadPlacement puts each new guest on the least loaded host.
	SpreadPlacement Strategy = iota
	// BinpackPlacement puts each new guest on the most loaded host that
	// still fits, keeping other hosts free for consolidation.
	BinpackPlacement
)

func (s Strategy) String() string {
	switch s {
	case SpreadPlacement:
		return "spread"
	case BinpackPlacement:
		return "binpack"
	}
	return fmt.Sprintf("Strategy(%d)", int(s))
}

// Policy holds the knobs of every decision. Utilisations are fractions
// (0.8 = 80 %). Start from DefaultPolicy and change what you need.
type Policy struct {
	// HighCPU and HighMem: a host above either is hot; no plan makes a
	// receiving host exceed them.
	HighCPU, HighMem float64
	// LowCPU and LowMem: when the whole cluster is below both, Recommend
	// asks for fewer hosts.
	LowCPU, LowMem float64
	// TargetCPU and TargetMem: how full Consolidate packs hosts and the
	// level Recommend sizes for. Must not exceed High minus Hysteresis.
	TargetCPU, TargetMem float64
	// Hysteresis is the headroom kept below the high watermarks on every
	// destination so that a move made in one round is not undone in the
	// next one.
	Hysteresis float64
	// Placement is the strategy of Place.
	Placement Strategy
	// MaxMigrations caps the moves of one Balance, Consolidate or Spread
	// round; 0 means no cap.
	MaxMigrations int
	// MaxBytes caps the memory copied by one such round; 0 means no cap.
	MaxBytes int64
	// MaxParallelPerHost caps the migrations a host takes part in (as source
	// or destination) within one wave. At least 1.
	MaxParallelPerHost int
	// VCPURatio is how many vCPUs a host may carry per core, unless the
	// host says otherwise (Host.VCPURatio).
	VCPURatio float64
}

// DefaultPolicy returns sensible defaults: 80 % high, 30 % low and 70 %
// target watermarks, 5 % hysteresis, spread placement, two parallel
// migrations per host, 4 vCPUs per core, no per-round caps.
func DefaultPolicy() Policy {
	return Policy{
		HighCPU: 0.8, HighMem: 0.85,
		LowCPU: 0.3, LowMem: 0.3,
		TargetCPU: 0.7, TargetMem: 0.75,
		Hysteresis:         0.05,
		Placement:          SpreadPlacement,
		MaxParallelPerHost: 2,
		VCPURatio:          4,
	}
}

// Validate reports the first inconsistent setting.
func (p Policy) Validate() error {
	frac := func(name string, v float64) error {
		if !(v > 0 && v <= 1) {
			return invalid("policy: %s %v not in (0, 1]", name, v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"HighCPU", p.HighCPU}, {"HighMem", p.HighMem}, {"LowCPU", p.LowCPU}, {"LowMem", p.LowMem},
		{"TargetCPU", p.TargetCPU}, {"TargetMem", p.TargetMem}} {
		if err := frac(f.name, f.v); err != nil {
			return err
		}
	}
	switch {
	case !(p.Hysteresis >= 0 && p.Hysteresis < math.Min(p.HighCPU, p.HighMem)):
		return invalid("policy: Hysteresis %v not in [0, min(HighCPU, HighMem))", p.Hysteresis)
	case p.LowCPU > p.TargetCPU || p.LowMem > p.TargetMem:
		return invalid("policy: low watermark above target")
	case p.TargetCPU > p.HighCPU-p.Hysteresis+1e-12 || p.TargetMem > p.HighMem-p.Hysteresis+1e-12:
		return invalid("policy: target above high watermark minus hysteresis")
	case p.Placement != SpreadPlacement && p.Placement != BinpackPlacement:
		return invalid("policy: unknown placement %d", int(p.Placement))
	case p.MaxMigrations < 0 || p.MaxBytes < 0:
		return invalid("policy: negative migration cap")
	case p.MaxParallelPerHost < 1:
		return invalid("policy: MaxParallelPerHost %d < 1", p.MaxParallelPerHost)
	case !(p.VCPURatio > 0 && p.VCPURatio <= 1024):
		return invalid("policy: VCPURatio %v not in (0, 1024]", p.VCPURatio)
	}
	return nil
}

// limits are a host's capacities in exact integer units.
type limits struct{ cpu, mem, vcpu int64 }

func (l limits) holds(cpu, mem, vcpu int64) bool {
	return cpu <= l.cpu && mem <= l.mem && vcpu <= l.vcpu
}

// limitsAt returns h's capacity at the given CPU and memory fractions.
func limitsAt(h Host, cpuFrac, memFrac, vcpuRatio float64) limits {
	return limits{
		cpu:  int64(math.Floor(h.Cores * 1000 * cpuFrac)),
		mem:  int64(math.Floor(float64(h.MemoryBytes) * memFrac)),
		vcpu: int64(math.Floor(h.Cores * h.vcpuRatio(vcpuRatio))),
	}
}

// vcpuRatio is the host's own vCPU ratio, or def.
func (h Host) vcpuRatio(def float64) float64 {
	if h.VCPURatio > 0 {
		return h.VCPURatio
	}
	return def
}

// highLimits is what Validate enforces: the high watermarks.
func (p Policy) highLimits(h Host) limits {
	return limitsAt(h, p.HighCPU, p.HighMem, p.VCPURatio)
}

// destLimits is what planners allow a destination to reach.
func (p Policy) destLimits(h Host) limits {
	return limitsAt(h, p.HighCPU-p.Hysteresis, p.HighMem-p.Hysteresis, p.VCPURatio)
}

// targetLimits is how full Consolidate packs a host.
func (p Policy) targetLimits(h Host) limits {
	return limitsAt(h, p.TargetCPU, p.TargetMem, p.VCPURatio)
}
