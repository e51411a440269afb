package fleet

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

// Fleet is the hosts a plugin looks after: found from the seeds and the
// pool records on them, sampled into a History.
type Fleet struct {
	Seeds []Seed
	// Driver returns the driver (a driver/plugin.Supervisor's, or a fake in
	// tests).
	Driver func(ctx context.Context) (driver.Driver, error)
	Log    hclog.Logger
	// Now is the clock rounds are stamped with (default time.Now).
	Now     func() time.Time
	History *History
	// CallTimeout bounds each host's calls in a round (default 10s), so
	// that a hung host does not stall the others' samples.
	CallTimeout time.Duration
	// HostTimeout, if set, bounds the calls to the host at a URI instead
	// (at most CallTimeout): a caller that must know by some moment
	// whether a host answers (virtpool agent's failover grace) waits no
	// longer for it.
	HostTimeout func(uri string) time.Duration

	mu   sync.RWMutex
	topo Topology
}

// Topology is what the records say: the hosts, the pools and the hosts'
// states.
type Topology struct {
	Time   time.Time
	Hosts  pool.Inventory
	Pools  map[string]pool.Record
	States map[string]pool.HostState
	// Placements says where single domains that may be restarted
	// elsewhere run, by domain name (pool.Placement).
	Placements map[string]pool.Placement
	// Errors holds, by URI, the hosts that could not be read.
	Errors map[string]error
}

// PoolNames lists the pools found, sorted.
func (t Topology) PoolNames() []string {
	out := make([]string, 0, len(t.Pools))
	for n := range t.Pools {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// WithCapacity returns inv (a pool's hosts) with the capacity the
// topology gives each host, so that a plugin's own hosts setting applies to
// every pool's operations too.
func (t Topology) WithCapacity(inv pool.Inventory) pool.Inventory {
	out := make(pool.Inventory, len(inv))
	for n, h := range inv {
		if th, ok := t.Hosts[n]; ok {
			h.Capacity = th.Capacity
		}
		out[n] = h
	}
	return out
}

// Time is the time on the fleet's clock (Now).
func (f *Fleet) Time() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

func (f *Fleet) log() hclog.Logger {
	if f.Log == nil {
		return hclog.NewNullLogger()
	}
	return f.Log
}

func (f *Fleet) withTimeout(ctx context.Context, uri string) (context.Context, context.CancelFunc) {
	d := f.CallTimeout
	if d <= 0 {
		d = 10 * time.Second
	}
	if f.HostTimeout != nil {
		d = min(d, f.HostTimeout(uri))
	}
	return context.WithTimeout(ctx, d)
}

// Topology returns the last topology read.
func (f *Fleet) Topology() Topology {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.topo
}

// Refresh reads the records of the seeds and of every host the pool
// records name, and returns the topology they describe. Hosts that cannot
// be read are listed in Topology.Errors; Refresh fails only if none can.
func (f *Fleet) Refresh(ctx context.Context) (Topology, error) {
	d, err := f.Driver(ctx)
	if err != nil {
		return Topology{}, err
	}
	t := Topology{Time: f.Time(), Hosts: pool.Inventory{}, Pools: map[string]pool.Record{},
		States: map[string]pool.HostState{}, Errors: map[string]error{}}
	records := map[string][]driver.Record{} // by URI
	var mu sync.Mutex
	read := func(uris []string) {
		var wg sync.WaitGroup
		for _, u := range uris {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cctx, cancel := f.withTimeout(ctx, u)
				defer cancel()
				rs, err := d.ListRecords(cctx, u)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errors[u] = err
					return
				}
				records[u] = rs
			}()
		}
		wg.Wait()
	}
	var seeds []string
	for _, s := range f.Seeds {
		seeds = append(seeds, s.URI)
	}
	read(seeds)
	// Pools from every host read, the newest of each.
	collect := func() {
		for _, rs := range records {
			for _, r := range rs {
				if r.Kind != driver.RecordPool {
					continue
				}
				pr, err := pool.DecodeRecord(r)
				if err != nil {
					f.log().Warn("unreadable pool record", "pool", r.Name, "error", err)
					continue
				}
				pool.Newest(t.Pools).Offer(pr.Spec.Name, pr)
			}
		}
	}
	collect()
	// Hosts: the pool records' entries (they carry migration addresses),
	// then the seeds not named by any pool.
	byURI := map[string]string{}
	for _, name := range t.PoolNames() {
		for _, h := range t.Pools[name].Spec.Hosts {
			if _, ok := t.Hosts[h.Name]; !ok {
				t.Hosts[h.Name] = h
				byURI[h.URI] = h.Name
			}
		}
	}
	for _, s := range f.Seeds {
		if name, ok := byURI[s.URI]; ok {
			if !s.Capacity.IsZero() { // the plugin's own setting wins
				h := t.Hosts[name]
				h.Capacity = s.Capacity
				t.Hosts[name] = h
			}
			continue
		}
		name := s.Name
		if name == "" {
			name = s.URI
		}
		if _, dup := t.Hosts[name]; dup {
			continue
		}
		t.Hosts[name] = pool.HostEntry{Name: name, URI: s.URI, Capacity: s.Capacity}
		byURI[s.URI] = name
	}
	// Read the hosts only the pool records named.
	var more []string
	for _, h := range t.Hosts {
		if _, done := records[h.URI]; !done {
			if _, failed := t.Errors[h.URI]; !failed {
				more = append(more, h.URI)
			}
		}
	}
	if len(more) > 0 {
		read(more)
		collect()
	}
	for name, h := range t.Hosts {
		t.States[name] = pool.HostStateOf(name, records[h.URI])
	}
	t.Placements = pool.Placements(slices.Collect(maps.Values(records))...)
	if len(records) == 0 {
		var errs []error
		for u, e := range t.Errors {
			errs = append(errs, fmt.Errorf("%s: %w", u, e))
		}
		return t, fmt.Errorf("no host could be read: %w", errors.Join(errs...))
	}
	f.mu.Lock()
	f.topo = t
	f.mu.Unlock()
	return t, nil
}

// Sample refreshes the topology and adds a round of stats of every host
// to the history.
func (f *Fleet) Sample(ctx context.Context) error {
	t, err := f.Refresh(ctx)
	if err != nil {
		return err
	}
	d, err := f.Driver(ctx)
	if err != nil {
		return err
	}
	r := Round{Time: f.Time(), Hosts: map[string]HostSample{}, Pools: map[string][]string{}}
	for n, pr := range t.Pools {
		r.Pools[n] = pr.Spec.HostNames()
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var failed []string
	for name, h := range t.Hosts {
		if err, bad := t.Errors[h.URI]; bad {
			r.Down = append(r.Down, name) // Refresh could not read it
			failed = append(failed, fmt.Sprintf("%s (%v)", name, err))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := f.withTimeout(ctx, h.URI)
			defer cancel()
			st, err := d.Stats(cctx, h.URI)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				_, _, err = h.Capacity.Of(st.CPUs, st.MemoryTotalBytes)
			}
			if err != nil {
				r.Down = append(r.Down, name)
				failed = append(failed, fmt.Sprintf("%s (%v)", name, err))
				return
			}
			r.Hosts[name] = HostSample{Stats: st, State: t.States[name], Capacity: h.Capacity}
		}()
	}
	wg.Wait()
	sort.Strings(r.Down)
	if len(failed) > 0 {
		sort.Strings(failed)
		f.log().Warn("hosts not sampled", "hosts", strings.Join(failed, "; "))
	}
	if len(r.Hosts) == 0 {
		return errors.New("no host could be sampled")
	}
	f.History.Add(r)
	return nil
}

// Run samples every interval until ctx ends.
func (f *Fleet) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := f.Sample(ctx); err != nil && ctx.Err() == nil {
			f.log().Warn("sampling failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
