// Package schedbench generates cluster traces, implements two published
// baselines and measures the scheduler against them. It backs
// cmd/bench-scheduler and the package's go test benchmarks.
package schedbench

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/virtpool/virtpool/scheduler"
)

// Dist is the shape of the guests' CPU demand.
type Dist int

const (
	// Uniform demand: 10–90 % of each guest's vCPUs.
	Uniform Dist = iota
	// Skewed demand: Pareto-distributed, most guests nearly idle, a few busy.
	Skewed
	// Bimodal demand: 70 % idle guests, 30 % busy ones.
	Bimodal
)

func (d Dist) String() string {
	return [...]string{"uniform", "skewed", "bimodal"}[d]
}

// Spec describes a generated trace.
type Spec struct {
	Guests, Hosts int
	Dist          Dist
	// AntiAffinity is the share of guests in anti-affinity groups of three.
	AntiAffinity float64
	// Utilisation is the mean CPU and memory utilisation the hosts are sized
	// for.
	Utilisation float64
	Seed        uint64
}

func (s Spec) String() string {
	return fmt.Sprintf("%d/%d %s", s.Guests, s.Hosts, s.Dist)
}

// Specs returns the standard benchmark traces: 100/10, 1,000/100 and
// 10,000/1,000 guests/hosts, each with uniform, skewed and bimodal demand and
// 20 % of guests in anti-affinity groups.
func Specs() []Spec {
	var out []Spec
	for _, n := range []int{100, 1000, 10000} {
		for _, d := range []Dist{Uniform, Skewed, Bimodal} {
			out = append(out, Spec{Guests: n, Hosts: n / 10, Dist: d, AntiAffinity: 0.2, Utilisation: 0.42,
				Seed: uint64(n)*10 + uint64(d)})
		}
	}
	return out
}

const gib = int64(1) << 30

// Generate builds the trace: homogeneous active hosts sized so the mean
// utilisation is spec.Utilisation, and guests placed unevenly (30 % of hosts
// draw twice as many guests) so that some hosts start hot and others nearly
// idle. Placement respects full host capacity and anti-affinity.
func Generate(spec Spec) *scheduler.Cluster {
	r := rand.New(rand.NewPCG(spec.Seed, 0x5eed))
	c := &scheduler.Cluster{}
	var cpu, vcpu float64
	var mem int64
	var maxCPU float64
	var maxMem int64
	pools := []string{"web", "db", "batch"}
	grouped := int(float64(spec.Guests) * spec.AntiAffinity)
	for i := range spec.Guests {
		v := []int{1, 2, 2, 4, 4, 4, 8, 8, 16}[r.IntN(9)]
		m := int64(v) * []int64{2, 4, 4, 8}[r.IntN(4)] * gib
		var frac float64
		switch spec.Dist {
		case Uniform:
			frac = 0.1 + 0.8*r.Float64()
		case Skewed:
			frac = min(0.95, 0.04/math.Pow(1-r.Float64(), 1/1.1))
		case Bimodal:
			if r.Float64() < 0.7 {
				frac = 0.02 + 0.13*r.Float64()
			} else {
				frac = 0.6 + 0.35*r.Float64()
			}
		}
		d := math.Round(float64(v)*frac*1000) / 1000
		g := scheduler.Guest{
			Name:        fmt.Sprintf("g%05d", i),
			VCPUs:       v,
			MemoryBytes: m,
			CPUDemand:   d,
			MemoryUsed:  int64(float64(m) * (0.3 + 0.7*r.Float64())),
			Pool:        pools[r.IntN(len(pools))],
		}
		if i < grouped {
			g.AntiAffinity = fmt.Sprintf("aa%04d", i/3)
		}
		c.Guests = append(c.Guests, g)
		cpu, vcpu, mem = cpu+d, vcpu+float64(v), mem+m
		maxCPU, maxMem = max(maxCPU, d), max(maxMem, m)
	}
	hn := float64(spec.Hosts)
	u := spec.Utilisation
	cores := math.Ceil(max(cpu/(hn*u), vcpu/(hn*4*u), maxCPU/0.5, 16)/4) * 4
	hmem := int64(math.Ceil(max(float64(mem)/(hn*u), float64(maxMem)/0.5)/float64(16*gib))) * 16 * gib
	weight := make([]float64, spec.Hosts)
	total := 0.0
	for i := range spec.Hosts {
		c.Hosts = append(c.Hosts, scheduler.Host{Name: fmt.Sprintf("h%04d", i), Cores: cores, MemoryBytes: hmem})
		weight[i] = 1
		if r.Float64() < 0.3 {
			weight[i] = 2
		}
		total += weight[i]
	}
	place(r, c, weight, total)
	return c
}

// place puts each guest on a weighted random host that can hold it.
func place(r *rand.Rand, c *scheduler.Cluster, weight []float64, total float64) {
	type load struct {
		cpu, vcpu float64
		mem       int64
		groups    map[string]bool
	}
	loads := make([]load, len(c.Hosts))
	fits := func(h int, g *scheduler.Guest) bool {
		l, hs := loads[h], c.Hosts[h]
		return l.cpu+g.CPUDemand <= hs.Cores*0.95 && l.mem+g.MemoryBytes <= hs.MemoryBytes*95/100 &&
			l.vcpu+float64(g.VCPUs) <= hs.Cores*4 && (g.AntiAffinity == "" || !l.groups[g.AntiAffinity])
	}
	pick := func() int {
		x := r.Float64() * total
		for i, w := range weight {
			if x -= w; x < 0 {
				return i
			}
		}
		return len(weight) - 1
	}
	for i := range c.Guests {
		g := &c.Guests[i]
		h := -1
		for range 50 {
			if k := pick(); fits(k, g) {
				h = k
				break
			}
		}
		for k := 0; h < 0 && k < len(c.Hosts); k++ {
			if fits(k, g) {
				h = k
			}
		}
		if h < 0 {
			continue // left unplaced; never happens with the standard specs
		}
		g.Host = c.Hosts[h].Name
		l := &loads[h]
		l.cpu, l.mem, l.vcpu = l.cpu+g.CPUDemand, l.mem+g.MemoryBytes, l.vcpu+float64(g.VCPUs)
		if g.AntiAffinity != "" {
			if l.groups == nil {
				l.groups = map[string]bool{}
			}
			l.groups[g.AntiAffinity] = true
		}
	}
}
