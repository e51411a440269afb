package scheduler

import (
	"fmt"
	"math"
	"strings"
	"testing"
)

const gib = int64(1) << 30

// host returns an active host with cores and memory in GiB.
func host(name string, cores float64, memGiB int64) Host {
	return Host{Name: name, Cores: cores, MemoryBytes: memGiB * gib}
}

func standby(h Host) Host     { h.State = Standby; return h }
func maintenance(h Host) Host { h.State = Maintenance; return h }

type opt func(*Guest)

func pinned(g *Guest)        { g.Pinned = true }
func groupX(g *Guest)        { g.AntiAffinity = "x" }
func poolDB(g *Guest)        { g.Pool = "db" }
func usedGiB(n int64) opt    { return func(g *Guest) { g.MemoryUsed = n * gib } }
func vcpus(n int) opt        { return func(g *Guest) { g.VCPUs = n } }
func onlyOn(h ...string) opt { return func(g *Guest) { g.Hosts = h } }

// guest returns a guest on host using cpu cores and memGiB of memory, half of
// it in use, with one vCPU per core used (at least one).
func guest(name, host string, cpu float64, memGiB int64, o ...opt) Guest {
	g := Guest{Name: name, Host: host, CPUDemand: cpu, MemoryBytes: memGiB * gib, MemoryUsed: memGiB * gib / 2,
		VCPUs: max(1, int(math.Ceil(cpu))), Pool: "web"}
	for _, f := range o {
		f(&g)
	}
	return g
}

// many returns n identical guests named prefix00, prefix01, ...
func many(prefix, host string, n int, cpu float64, memGiB int64, o ...opt) []Guest {
	var out []Guest
	for i := range n {
		out = append(out, guest(fmt.Sprintf("%s%02d", prefix, i), host, cpu, memGiB, o...))
	}
	return out
}

func cluster(hosts []Host, guests ...[]Guest) *Cluster {
	c := &Cluster{Hosts: hosts}
	for _, gs := range guests {
		c.Guests = append(c.Guests, gs...)
	}
	return c
}

// moves renders a plan's moves as "guest>to" in order.
func moves(p Plan) string {
	var s []string
	for _, m := range p.Moves {
		s = append(s, m.Guest+">"+m.To)
	}
	return strings.Join(s, " ")
}

// hostLoads computes each host's load (max of CPU and memory utilisation)
// independently of the planners. Hosts in any state count: guests on a
// standby host still load it once it is powered on.
func hostLoads(c *Cluster) map[string]float64 {
	cpu, mem := map[string]float64{}, map[string]float64{}
	for _, g := range c.Guests {
		cpu[g.Host] += g.CPUDemand
		mem[g.Host] += float64(g.MemoryBytes)
	}
	out := map[string]float64{}
	for _, h := range c.Hosts {
		out[h.Name] = max(cpu[h.Name]/h.Cores, mem[h.Name]/float64(h.MemoryBytes))
	}
	return out
}

func maxLoad(c *Cluster) float64 {
	m := 0.0
	for _, l := range hostLoads(c) {
		m = max(m, l)
	}
	return m
}

// hotHosts lists active hosts above a high watermark.
func hotHosts(c *Cluster, pol Policy) []string {
	cpu, mem := map[string]float64{}, map[string]int64{}
	for _, g := range c.Guests {
		cpu[g.Host] += float64(milli(g.CPUDemand))
		mem[g.Host] += g.MemoryBytes
	}
	var out []string
	for _, h := range c.Hosts {
		l := pol.highLimits(h)
		if h.State == Active && (int64(cpu[h.Name]) > l.cpu || mem[h.Name] > l.mem) {
			out = append(out, h.Name)
		}
	}
	return out
}

// usedHosts counts active hosts holding at least one guest.
func usedHosts(c *Cluster) int {
	busy := map[string]bool{}
	for _, g := range c.Guests {
		busy[g.Host] = true
	}
	n := 0
	for _, h := range c.Hosts {
		if h.State == Active && busy[h.Name] {
			n++
		}
	}
	return n
}

// applyOK validates p and returns the cluster after it.
func applyOK(t *testing.T, c *Cluster, p Plan, pol Policy) *Cluster {
	t.Helper()
	after, err := c.Apply(p, pol)
	if err != nil {
		t.Fatalf("plan does not validate: %v\nplan: %+v", err, p)
	}
	return after
}
