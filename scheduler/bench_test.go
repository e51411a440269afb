package scheduler_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/virtpool/virtpool/scheduler"
	"github.com/virtpool/virtpool/scheduler/internal/schedbench"
)

// big is the largest benchmark trace: 10,000 guests on 1,000 hosts, plus 100
// standby hosts for Spread.
var big = sync.OnceValue(func() *scheduler.Cluster {
	c := schedbench.Generate(schedbench.Spec{Guests: 10000, Hosts: 1000, Dist: schedbench.Bimodal,
		AntiAffinity: 0.2, Utilisation: 0.42, Seed: 1})
	for i := range 100 {
		h := c.Hosts[0]
		h.Name, h.State = fmt.Sprintf("standby%03d", i), scheduler.Standby
		c.Hosts = append(c.Hosts, h)
	}
	return c
})

func BenchmarkPlace(b *testing.B) {
	c, pol := big(), scheduler.DefaultPolicy()
	tmpl := scheduler.Guest{VCPUs: 4, MemoryBytes: 16 << 30, CPUDemand: 1, Pool: "web", AntiAffinity: "new"}
	for b.Loop() {
		if _, err := c.Place(tmpl, 10, pol); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVictims(b *testing.B) {
	c := big()
	for b.Loop() {
		if _, err := c.Victims("web", 100); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPlan(b *testing.B, f func(*scheduler.Cluster, scheduler.Policy) (scheduler.Plan, error)) {
	c, pol := big(), scheduler.DefaultPolicy()
	var p scheduler.Plan
	for b.Loop() {
		var err error
		if p, err = f(c, pol); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(p.Moves)), "moves")
}

func BenchmarkBalance(b *testing.B) { benchPlan(b, (*scheduler.Cluster).Balance) }

func BenchmarkConsolidate(b *testing.B) {
	benchPlan(b, func(c *scheduler.Cluster, p scheduler.Policy) (scheduler.Plan, error) { return c.Consolidate(0, p) })
}

func BenchmarkSpread(b *testing.B) {
	benchPlan(b, func(c *scheduler.Cluster, p scheduler.Policy) (scheduler.Plan, error) { return c.Spread(1100, p) })
}

func BenchmarkEvacuate(b *testing.B) {
	benchPlan(b, func(c *scheduler.Cluster, p scheduler.Policy) (scheduler.Plan, error) { return c.Evacuate("h0000", p) })
}

func BenchmarkValidate(b *testing.B) {
	c, pol := big(), scheduler.DefaultPolicy()
	p, err := c.Consolidate(0, pol)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := c.Validate(p, pol); err != nil {
			b.Fatal(err)
		}
	}
}
