package schedbench

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/scheduler"
)

func TestGenerate(t *testing.T) {
	for _, s := range Specs()[:6] {
		t.Run(s.String(), func(t *testing.T) {
			c := Generate(s)
			if !reflect.DeepEqual(c, Generate(s)) {
				t.Fatal("same spec, different trace")
			}
			if err := c.Check(); err != nil {
				t.Fatal(err)
			}
			if len(c.Guests) != s.Guests || len(c.Hosts) != s.Hosts {
				t.Fatalf("%d guests on %d hosts", len(c.Guests), len(c.Hosts))
			}
			groups := map[[2]string]bool{}
			grouped := 0
			var cpu, cores, mem, hmem float64
			for _, g := range c.Guests {
				if g.Host == "" {
					t.Fatalf("guest %s unplaced", g.Name)
				}
				if g.AntiAffinity != "" {
					grouped++
					k := [2]string{g.Host, g.AntiAffinity}
					if groups[k] {
						t.Fatalf("group %s twice on %s", g.AntiAffinity, g.Host)
					}
					groups[k] = true
				}
				cpu += g.CPUDemand
				mem += float64(g.MemoryBytes)
			}
			for _, h := range c.Hosts {
				cores += h.Cores
				hmem += float64(h.MemoryBytes)
			}
			if want := int(float64(s.Guests) * s.AntiAffinity); grouped != want {
				t.Errorf("%d guests in groups, want %d", grouped, want)
			}
			// Hosts are sized for the scarcer resource.
			if u := max(cpu/cores, mem/hmem); u < s.Utilisation-0.05 || u > s.Utilisation+0.01 {
				t.Errorf("mean utilisation %.2f, sized for %.2f", u, s.Utilisation)
			}
		})
	}
}

func tiny() *scheduler.Cluster {
	h := func(n string) scheduler.Host { return scheduler.Host{Name: n, Cores: 10, MemoryBytes: 100 * gib} }
	g := func(n, host string, cpu float64) scheduler.Guest {
		return scheduler.Guest{Name: n, Host: host, CPUDemand: cpu, VCPUs: 1, MemoryBytes: gib, MemoryUsed: gib / 2}
	}
	return &scheduler.Cluster{
		Hosts:  []scheduler.Host{h("a"), h("b"), h("c")},
		Guests: []scheduler.Guest{g("a1", "a", 4), g("a2", "a", 3), g("a3", "a", 2), g("b1", "b", 1), g("c1", "c", 2)},
	}
}

func hostOf(c *scheduler.Cluster) map[string]string {
	out := map[string]string{}
	for _, g := range c.Guests {
		out[g.Name] = g.Host
	}
	return out
}

func TestGreedyBalance(t *testing.T) {
	// a is at 90 %: the largest guest (a1) goes to the least loaded host (b).
	after := GreedyBalance(tiny(), scheduler.DefaultPolicy())
	want := map[string]string{"a1": "b", "a2": "a", "a3": "a", "b1": "b", "c1": "c"}
	if got := hostOf(after); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestFirstFitDecreasing(t *testing.T) {
	// Offload: a (90 %) sheds its least CPU-hungry guest a3 onto the most
	// utilised host that fits it under 70 %: c (20 %). Consolidation then
	// empties b (10 %) into the most utilised host that still fits: c, as a
	// is full at 70 %.
	after := FirstFitDecreasing(tiny(), scheduler.DefaultPolicy())
	want := map[string]string{"a1": "a", "a2": "a", "a3": "c", "b1": "c", "c1": "c"}
	if got := hostOf(after); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestMeasure(t *testing.T) {
	before := tiny()
	after := GreedyBalance(before, scheduler.DefaultPolicy())
	m := Measure(before, after, scheduler.DefaultPolicy(), time.Millisecond)
	// Loads after: a 0.5, b 0.5, c 0.2.
	if m.Migrations != 1 || m.Bytes != gib/2 || m.Hosts != 3 || m.MaxUtil != 0.5 {
		t.Fatalf("%+v", m)
	}
	if d := m.StdUtil - 0.1414; d < -1e-3 || d > 1e-3 {
		t.Fatalf("std %.4f, want 0.1414", m.StdUtil)
	}
	// 12 cores over hosts of 10 at 70 %: 2 hosts.
	if m.LowerBound != 2 {
		t.Fatalf("lower bound %d, want 2", m.LowerBound)
	}
}

func TestReport(t *testing.T) {
	var buf bytes.Buffer
	specs := []Spec{{Guests: 100, Hosts: 10, Dist: Uniform, AntiAffinity: 0.2, Utilisation: 0.42, Seed: 7}}
	Report(&buf, specs, scheduler.DefaultPolicy(), 1, Goals{MaxTime: time.Second, HostsFactor: 2})
	out := buf.String()
	for _, want := range []string{"consolidate", "ffd", "balance", "greedy", "| ffd", "| greedy", "goals:"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "INVALID") {
		t.Errorf("a plan failed validation:\n%s", out)
	}
}
