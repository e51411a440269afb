package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// randomCluster builds a small, valid, often awkward cluster: mixed host
// sizes and states, hot hosts, pinned guests, anti-affinity groups, unplaced
// guests.
func randomCluster(r *rand.Rand) *Cluster {
	c := &Cluster{}
	nh := 2 + r.IntN(10)
	for i := range nh {
		h := Host{Name: fmt.Sprintf("h%02d", i), Cores: float64([]int{4, 8, 16, 32}[r.IntN(4)]),
			MemoryBytes: []int64{16, 32, 64, 128}[r.IntN(4)] * gib}
		switch r.IntN(10) {
		case 0:
			h.State = Standby
		case 1:
			h.State = Maintenance
		}
		c.Hosts = append(c.Hosts, h)
	}
	type load struct {
		cpu, vcpu float64
		mem       int64
		groups    map[string]bool
	}
	loads := make([]load, nh)
	for i := range r.IntN(8 * nh) {
		g := Guest{Name: fmt.Sprintf("g%03d", i), VCPUs: 1 + r.IntN(8),
			CPUDemand:   float64(r.IntN(4000)) / 1000,
			MemoryBytes: int64(1+r.IntN(16)) * gib / int64(1+r.IntN(2)),
			Pool:        []string{"web", "db"}[r.IntN(2)], Pinned: r.IntN(10) == 0}
		g.MemoryUsed = g.MemoryBytes * int64(r.IntN(11)) / 10
		if r.IntN(3) == 0 {
			g.AntiAffinity = fmt.Sprintf("aa%d", r.IntN(5))
		}
		if g.Pool == "db" && r.IntN(2) == 0 { // db may use only some hosts
			for _, h := range c.Hosts[:1+nh/2] {
				g.Hosts = append(g.Hosts, h.Name)
			}
		}
		if r.IntN(10) > 0 {
			for range 10 {
				k := r.IntN(nh)
				h, l := c.Hosts[k], &loads[k]
				if h.State != Standby && l.cpu+g.CPUDemand <= h.Cores && l.mem+g.MemoryBytes <= h.MemoryBytes &&
					l.vcpu+float64(g.VCPUs) <= 4*h.Cores && !l.groups[g.AntiAffinity] {
					g.Host = h.Name
					l.cpu, l.mem, l.vcpu = l.cpu+g.CPUDemand, l.mem+g.MemoryBytes, l.vcpu+float64(g.VCPUs)
					if g.AntiAffinity != "" {
						if l.groups == nil {
							l.groups = map[string]bool{}
						}
						l.groups[g.AntiAffinity] = true
					}
					break
				}
			}
		}
		c.Guests = append(c.Guests, g)
	}
	return c
}

// randomPolicy returns a valid policy with random watermarks and caps.
func randomPolicy(r *rand.Rand) Policy {
	p := DefaultPolicy()
	p.HighCPU = 0.6 + 0.4*r.Float64()
	p.HighMem = 0.6 + 0.4*r.Float64()
	p.Hysteresis = 0.1 * r.Float64()
	p.TargetCPU = p.HighCPU - p.Hysteresis - 0.2*r.Float64()
	p.TargetMem = p.HighMem - p.Hysteresis - 0.2*r.Float64()
	p.LowCPU, p.LowMem = p.TargetCPU/2, p.TargetMem/2
	p.MaxParallelPerHost = 1 + r.IntN(3)
	p.Placement = Strategy(r.IntN(2))
	if r.IntN(3) == 0 {
		p.MaxMigrations = 1 + r.IntN(10)
	}
	if r.IntN(5) == 0 {
		p.MaxBytes = int64(1+r.IntN(40)) * gib
	}
	p.VCPURatio = []float64{1, 2, 4, 8}[r.IntN(4)]
	return p
}

// shuffled returns c with hosts and guests in another order.
func shuffled(c *Cluster, r *rand.Rand) *Cluster {
	out := c.Clone()
	r.Shuffle(len(out.Hosts), func(i, j int) { out.Hosts[i], out.Hosts[j] = out.Hosts[j], out.Hosts[i] })
	r.Shuffle(len(out.Guests), func(i, j int) { out.Guests[i], out.Guests[j] = out.Guests[j], out.Guests[i] })
	return out
}

func activeHosts(c *Cluster) int {
	n := 0
	for _, h := range c.Hosts {
		if h.State == Active {
			n++
		}
	}
	return n
}

// checkRound holds for every plan of an automatic round.
func checkRound(t *testing.T, what string, c *Cluster, p Plan, pol Policy) *Cluster {
	t.Helper()
	after, err := c.Apply(p, pol)
	if err != nil {
		t.Fatalf("%s: invalid plan: %v\nplan: %+v", what, err, p)
	}
	if pol.MaxMigrations > 0 && len(p.Moves) > pol.MaxMigrations {
		t.Fatalf("%s: %d moves, cap %d", what, len(p.Moves), pol.MaxMigrations)
	}
	if pol.MaxBytes > 0 && p.Bytes() > pol.MaxBytes {
		t.Fatalf("%s: %d bytes, cap %d", what, p.Bytes(), pol.MaxBytes)
	}
	for _, m := range p.Moves {
		if m.Reason == "" || m.Bytes <= 0 && !zeroMemory(c, m.Guest) {
			t.Fatalf("%s: move without reason or cost: %+v", what, m)
		}
	}
	return after
}

func zeroMemory(c *Cluster, guest string) bool {
	for _, g := range c.Guests {
		if g.Name == guest {
			return copyBytes(g) == 0
		}
	}
	return false
}

// checkDecisions runs every decision on c and checks the invariants. x
// supplies the decisions' arguments.
func checkDecisions(t *testing.T, c *Cluster, pol Policy, x *rand.Rand) {
	t.Helper()
	before := maxLoad(c)

	bal, err := c.Balance(pol)
	if err != nil {
		t.Fatalf("balance: %v", err)
	}
	after := checkRound(t, "balance", c, bal, pol)
	if m := maxLoad(after); m > before+1e-9 {
		t.Fatalf("balance raised the max load from %.4f to %.4f", before, m)
	}
	if bal.Feasible() {
		if hot := hotHosts(after, pol); len(hot) > 0 {
			t.Fatalf("balance feasible but %v still hot", hot)
		}
		if again, _ := after.Balance(pol); len(again.Moves) > 0 {
			t.Fatalf("second balance round moved %s", moves(again))
		}
	}

	n := x.IntN(activeHosts(c) + 1)
	con, err := c.Consolidate(n, pol)
	if err != nil {
		t.Fatalf("consolidate: %v", err)
	}
	after = checkRound(t, "consolidate", c, con, pol)
	// Hosts in use are the powered (active) ones; cooling an overloaded
	// host may put guests on an empty active host, which is fine.
	if activeHosts(after) > activeHosts(c) {
		t.Fatalf("consolidate(%d) uses more hosts: %d -> %d", n, activeHosts(c), activeHosts(after))
	}
	if con.Feasible() {
		if n > 0 && activeHosts(after) > n {
			t.Fatalf("consolidate(%d) feasible but %d hosts active", n, activeHosts(after))
		}
		if hot := hotHosts(after, pol); len(hot) > 0 {
			t.Fatalf("consolidate feasible but %v hot", hot)
		}
	}

	sn := x.IntN(len(c.Hosts) + 2)
	spr, err := c.Spread(sn, pol)
	if err != nil {
		t.Fatalf("spread: %v", err)
	}
	after = checkRound(t, "spread", c, spr, pol)
	if m := maxLoad(after); m > before+1e-9 {
		t.Fatalf("spread raised the max load from %.4f to %.4f", before, m)
	}
	if spr.Feasible() && activeHosts(after) < sn {
		t.Fatalf("spread(%d) feasible but %d active", sn, activeHosts(after))
	}

	if len(c.Hosts) > 0 {
		h := c.Hosts[x.IntN(len(c.Hosts))].Name
		ev, err := c.Evacuate(h, pol)
		if err != nil {
			t.Fatalf("evacuate: %v", err)
		}
		after, err := c.Apply(ev, pol)
		if err != nil {
			t.Fatalf("evacuate: invalid plan: %v", err)
		}
		if !ev.Feasible() && len(ev.Moves) > 0 {
			t.Fatalf("infeasible evacuation with moves")
		}
		for _, g := range after.Guests {
			if ev.Feasible() && g.Host == h {
				t.Fatalf("evacuated host %s still runs %s", h, g.Name)
			}
		}
	}

	tmpl := Guest{VCPUs: 1 + x.IntN(4), MemoryBytes: int64(1+x.IntN(8)) * gib, CPUDemand: float64(x.IntN(3000)) / 1000,
		Pool: "web"}
	if x.IntN(2) == 0 {
		tmpl.AntiAffinity = fmt.Sprintf("aa%d", x.IntN(5))
	}
	k := x.IntN(6)
	hosts, err := c.Place(tmpl, k, pol)
	if err != nil && !errors.Is(err, ErrInfeasible) {
		t.Fatalf("place: %v", err)
	}
	if err == nil {
		checkPlacement(t, c, tmpl, hosts, pol)
	}

	pool := []string{"web", "db"}[x.IntN(2)]
	vk := x.IntN(5)
	victims, err := c.Victims(pool, vk)
	if err == nil {
		seen := map[string]bool{}
		for _, v := range victims {
			if seen[v] {
				t.Fatalf("victim %s twice", v)
			}
			seen[v] = true
		}
		for _, g := range c.Guests {
			if seen[g.Name] && g.Pool != pool {
				t.Fatalf("victim %s not in pool %s", g.Name, pool)
			}
		}
		if len(victims) != vk {
			t.Fatalf("%d victims, want %d", len(victims), vk)
		}
	} else if !errors.Is(err, ErrInfeasible) {
		t.Fatalf("victims: %v", err)
	}
}

// checkPlacement adds the placed guests and checks capacity and
// anti-affinity on every host that took one.
func checkPlacement(t *testing.T, c *Cluster, tmpl Guest, hosts []string, pol Policy) {
	t.Helper()
	c = c.Clone()
	for i, h := range hosts {
		g := tmpl
		g.Name, g.Host = fmt.Sprintf("new%d", i), h
		c.Guests = append(c.Guests, g)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("place chose a bad host: %v", err)
	}
	use := map[string]*usage{}
	groups := map[string]int{}
	for _, g := range c.Guests {
		if use[g.Host] == nil {
			use[g.Host] = &usage{}
		}
		u := use[g.Host]
		u.cpu, u.mem, u.vcpu = u.cpu+milli(g.CPUDemand), u.mem+g.MemoryBytes, u.vcpu+int64(g.VCPUs)
		if g.AntiAffinity != "" && g.AntiAffinity == tmpl.AntiAffinity {
			groups[g.Host]++
		}
	}
	for _, hn := range hosts {
		for _, h := range c.Hosts {
			if h.Name != hn {
				continue
			}
			if h.State != Active {
				t.Fatalf("placed on %s host %s", h.State, hn)
			}
			if u := use[hn]; !pol.highLimits(h).holds(u.cpu, u.mem, u.vcpu) {
				t.Fatalf("placement overcommits %s: %+v", hn, *u)
			}
			if groups[hn] > 1 {
				t.Fatalf("placement breaks anti-affinity on %s", hn)
			}
		}
	}
}

func TestProperties(t *testing.T) {
	seeds := 400
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(seed), 1))
			c, pol := randomCluster(r), randomPolicy(r)
			checkDecisions(t, c, pol, rand.New(rand.NewPCG(uint64(seed), 2)))
		})
	}
}

// TestDeterministic checks that input order does not change any decision.
func TestDeterministic(t *testing.T) {
	for seed := range 100 {
		r := rand.New(rand.NewPCG(uint64(seed), 3))
		c, pol := randomCluster(r), randomPolicy(r)
		d := shuffled(c, r)
		type result struct {
			Bal, Con, Spr, Ev Plan
			Place, Vict       []string
		}
		run := func(c *Cluster) result {
			var res result
			res.Bal, _ = c.Balance(pol)
			res.Con, _ = c.Consolidate(0, pol)
			res.Spr, _ = c.Spread(len(c.Hosts), pol)
			res.Ev, _ = c.Evacuate("h00", pol)
			res.Place, _ = c.Place(Guest{VCPUs: 1, MemoryBytes: gib, CPUDemand: 0.5, AntiAffinity: "aa1"}, 2, pol)
			res.Vict, _ = c.Victims("web", 2)
			return res
		}
		if a, b := run(c), run(d); !reflect.DeepEqual(a, b) {
			t.Fatalf("seed %d: shuffled input changed the result\n%+v\n%+v", seed, a, b)
		}
	}
}
