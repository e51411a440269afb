package scheduler

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"
)

// fuzzReader hands out fuzz bytes; zeros once they run out.
type fuzzReader struct{ b []byte }

func (r *fuzzReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// pick returns one of vals.
func pick[T any](r *fuzzReader, vals ...T) T { return vals[int(r.next())%len(vals)] }

// odd returns an odd value for a byte of 248 or more, else a normal one.
func odd[T any](r *fuzzReader, normal []T, odd ...T) T {
	if v := r.next(); v >= 248 {
		return odd[int(v)%len(odd)]
	}
	return pick(r, normal...)
}

// decodeCluster builds a cluster and policy from fuzz bytes. Values are
// mostly sensible; a 255 byte after a host or guest corrupts it (NaN,
// negative, duplicate or unknown names) to exercise input checking.
func decodeCluster(data []byte) (*Cluster, Policy) {
	r := &fuzzReader{b: data}
	c := &Cluster{}
	nh := 1 + int(r.next())%8
	for i := range nh {
		h := Host{Name: fmt.Sprintf("h%d", i),
			Cores:       pick(r, 4.0, 8, 16, 32, 1, 0.5, 64),
			MemoryBytes: pick(r, 16*gib, 32*gib, 64*gib, 128*gib, 8*gib, 1),
			State:       pick(r, Active, Active, Active, Active, Standby, Maintenance)}
		if r.next() == 255 {
			switch r.next() % 5 {
			case 0:
				h.Name = "h0"
			case 1:
				h.Cores = math.NaN()
			case 2:
				h.MemoryBytes = maxHostMemory + 1
			case 3:
				h.State = 3
			default:
				h.Cores = 0
			}
		}
		c.Hosts = append(c.Hosts, h)
	}
	ng := int(r.next()) % 40
	for i := range ng {
		g := Guest{Name: fmt.Sprintf("g%d", i),
			VCPUs:        pick(r, 1, 2, 4, 8, 16, 0),
			MemoryBytes:  pick(r, gib, 2*gib, 4*gib, 8*gib, 16*gib, 0, 64*gib),
			CPUDemand:    pick(r, 0.1, 0.5, 1, 2, 4, 0, 8, 3.3),
			Pool:         pick(r, "web", "db"),
			Pinned:       r.next()%8 == 0,
			AntiAffinity: pick(r, "", "", "a", "b", "c"),
		}
		g.MemoryUsed = g.MemoryBytes / int64(1+r.next()%4)
		if k := int(r.next()) % (nh + 1); k < nh {
			g.Host = c.Hosts[k].Name
		}
		if r.next() == 255 {
			switch r.next() % 6 {
			case 0:
				g.Name = "g0"
			case 1:
				g.Host = "unknown"
			case 2:
				g.VCPUs = -1
			case 3:
				g.MemoryBytes = -1
			case 4:
				g.CPUDemand = math.Inf(1)
			default:
				g.Name = ""
			}
		}
		c.Guests = append(c.Guests, g)
	}
	pol := DefaultPolicy()
	if r.next()%2 == 1 {
		pol.HighCPU = odd(r, []float64{0.8, 0.9, 1, 0.5}, 1.5)
		pol.HighMem = pick(r, 0.85, 0.9, 1, 0.6)
		pol.Hysteresis = odd(r, []float64{0.05, 0, 0.1}, -1)
		pol.TargetCPU = pick(r, 0.4, 0.3)
		pol.TargetMem = pick(r, 0.4, 0.3)
		pol.LowCPU, pol.LowMem = 0.2, 0.2
		pol.MaxParallelPerHost = odd(r, []int{1, 2, 3}, 0)
		pol.MaxMigrations = pick(r, 0, 0, 1, 3)
		pol.MaxBytes = pick(r, 0, 0, 4*gib)
		pol.VCPURatio = pick(r, 4.0, 1, 2, 16)
		pol.Placement = pick(r, SpreadPlacement, BinpackPlacement)
	}
	return c, pol
}

func fuzzSeeds(f *testing.F) {
	for seed := range 8 {
		r := rand.New(rand.NewPCG(uint64(seed), 9))
		b := make([]byte, 200)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{7, 0, 0, 0, 0, 1, 1, 1, 0, 30})
}

// FuzzDecisions: no decision panics on any input, invalid input is refused
// with ErrInvalid, and valid input satisfies every invariant.
func FuzzDecisions(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, pol := decodeCluster(data)
		h := fnv.New64a()
		h.Write(data)
		x := rand.New(rand.NewPCG(h.Sum64(), 5))
		if c.Check() != nil || pol.Validate() != nil {
			_, errB := c.Balance(pol)
			_, errC := c.Consolidate(1, pol)
			_, errE := c.Evacuate("h0", pol)
			_, errS := c.Spread(3, pol)
			_, errP := c.Place(Guest{VCPUs: 1}, 1, pol)
			_, errR := c.Recommend(pol)
			for _, err := range []error{errB, errC, errE, errS, errP, errR} {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("invalid input accepted: %v", err)
				}
			}
			if c.Check() != nil {
				if _, err := c.Victims("web", 1); !errors.Is(err, ErrInvalid) {
					t.Fatalf("victims accepted invalid input: %v", err)
				}
			}
			return
		}
		checkDecisions(t, c, pol, x)
	})
}

// FuzzValidate: Validate and Apply never panic on arbitrary plans, and a
// plan Validate accepts applies cleanly.
func FuzzValidate(f *testing.F) {
	fuzzSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, pol := decodeCluster(data)
		if pol.Validate() != nil {
			pol = DefaultPolicy()
		}
		r := &fuzzReader{b: data}
		var p Plan
		names := func() string {
			if k := int(r.next()) % (len(c.Hosts) + 1); k < len(c.Hosts) {
				return c.Hosts[k].Name
			}
			return "nowhere"
		}
		for range int(r.next()) % 12 {
			m := Move{Guest: fmt.Sprintf("g%d", int(r.next())%42), From: names(), To: names(), Wave: int(r.next()) % 3}
			if m.Wave >= len(p.Waves) {
				p.Waves = append(p.Waves, make([][]int, m.Wave+1-len(p.Waves))...)
			}
			p.Waves[m.Wave] = append(p.Waves[m.Wave], len(p.Moves))
			p.Moves = append(p.Moves, m)
		}
		if r.next()%4 == 0 {
			p.PowerOn = []string{names()}
		}
		if r.next()%4 == 0 {
			p.PowerOff = []string{names()}
		}
		err := c.Validate(p, pol)
		after, aerr := c.Apply(p, pol)
		if (err == nil) != (aerr == nil) {
			t.Fatalf("Validate %v but Apply %v", err, aerr)
		}
		if err == nil && after.Check() != nil {
			t.Fatalf("valid plan produced an invalid cluster: %v", after.Check())
		}
	})
}

// TestFuzzDecoder keeps the fuzz harness honest: most inputs must be valid,
// or the fuzzers would only exercise input checking.
func TestFuzzDecoder(t *testing.T) {
	valid, withGuests := 0, 0
	for seed := range 200 {
		r := rand.New(rand.NewPCG(uint64(seed), 11))
		b := make([]byte, 300)
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		c, pol := decodeCluster(b)
		if c.Check() == nil && pol.Validate() == nil {
			valid++
			if len(c.Guests) > 0 {
				withGuests++
			}
		}
	}
	if valid < 100 || withGuests < 80 {
		t.Fatalf("%d of 200 decoded inputs valid, %d with guests", valid, withGuests)
	}
}
