package schedbench

import (
	"slices"

	"github.com/virtpool/virtpool/scheduler"
)

// model is a plain mutable cluster for the baselines, independent of the
// scheduler's internals. Only active hosts take part.
type model struct {
	c      *scheduler.Cluster
	pol    scheduler.Policy
	hosts  []int   // indices into c.Hosts of active hosts
	hostOf []int   // guest → position in hosts, -1 if elsewhere
	on     [][]int // position in hosts → guests
	cpu    []float64
	mem    []int64
	vcpu   []int
	groups []map[string]int
	moved  []bool
}

func newModel(c *scheduler.Cluster, pol scheduler.Policy) *model {
	c = c.Clone()
	m := &model{c: c, pol: pol, hostOf: make([]int, len(c.Guests)), moved: make([]bool, len(c.Guests))}
	pos := map[string]int{}
	for i, h := range c.Hosts {
		if h.State == scheduler.Active {
			pos[h.Name] = len(m.hosts)
			m.hosts = append(m.hosts, i)
		}
	}
	n := len(m.hosts)
	m.on, m.cpu, m.mem, m.vcpu = make([][]int, n), make([]float64, n), make([]int64, n), make([]int, n)
	m.groups = make([]map[string]int, n)
	for i := range m.groups {
		m.groups[i] = map[string]int{}
	}
	for gi, g := range c.Guests {
		p, ok := pos[g.Host]
		if !ok {
			m.hostOf[gi] = -1
			continue
		}
		m.add(gi, p)
	}
	return m
}

func (m *model) add(gi, p int) {
	g := &m.c.Guests[gi]
	m.hostOf[gi] = p
	m.on[p] = append(m.on[p], gi)
	m.cpu[p] += g.CPUDemand
	m.mem[p] += g.MemoryBytes
	m.vcpu[p] += g.VCPUs
	if g.AntiAffinity != "" {
		m.groups[p][g.AntiAffinity]++
	}
}

func (m *model) move(gi, to int) {
	g := &m.c.Guests[gi]
	p := m.hostOf[gi]
	m.on[p] = slices.DeleteFunc(m.on[p], func(x int) bool { return x == gi })
	m.cpu[p] -= g.CPUDemand
	m.mem[p] -= g.MemoryBytes
	m.vcpu[p] -= g.VCPUs
	if g.AntiAffinity != "" {
		m.groups[p][g.AntiAffinity]--
	}
	m.add(gi, to)
	m.moved[gi] = true
}

func (m *model) host(p int) *scheduler.Host { return &m.c.Hosts[m.hosts[p]] }

func (m *model) cpuUtil(p int) float64 { return m.cpu[p] / m.host(p).Cores }
func (m *model) memUtil(p int) float64 {
	return float64(m.mem[p]) / float64(m.host(p).MemoryBytes)
}
func (m *model) load(p int) float64 { return max(m.cpuUtil(p), m.memUtil(p)) }

// size is g's share of host p.
func (m *model) size(gi, p int) float64 {
	g := &m.c.Guests[gi]
	h := m.host(p)
	return max(g.CPUDemand/h.Cores, float64(g.MemoryBytes)/float64(h.MemoryBytes))
}

// fits reports whether gi fits on p within the CPU and memory fractions,
// the vCPU ratio and anti-affinity.
func (m *model) fits(gi, p int, cpuFrac, memFrac float64) bool {
	g := &m.c.Guests[gi]
	h := m.host(p)
	if m.hostOf[gi] == p || g.AntiAffinity != "" && m.groups[p][g.AntiAffinity] > 0 {
		return false
	}
	return m.cpu[p]+g.CPUDemand <= h.Cores*cpuFrac+1e-9 &&
		float64(m.mem[p]+g.MemoryBytes) <= float64(h.MemoryBytes)*memFrac &&
		float64(m.vcpu[p]+g.VCPUs) <= h.Cores*m.pol.VCPURatio
}

// result returns the cluster after the baseline's moves.
func (m *model) result() *scheduler.Cluster {
	for gi, p := range m.hostOf {
		if p >= 0 {
			m.c.Guests[gi].Host = m.host(p).Name
		}
	}
	return m.c
}
