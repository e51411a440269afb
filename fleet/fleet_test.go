package fleet

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

func TestParseHosts(t *testing.T) {
	tests := []struct {
		in      string
		want    []Seed
		wantErr string
	}{
		{in: "qemu:///system", want: []Seed{{URI: "qemu:///system"}}},
		{in: "h1=qemu+unix:///system?socket=/run/h1.sock, h2=qemu+tcp://10.0.0.2/system",
			want: []Seed{{Name: "h1", URI: "qemu+unix:///system?socket=/run/h1.sock"}, {Name: "h2", URI: "qemu+tcp://10.0.0.2/system"}}},
		{in: "h1=qemu+tls://h1/system;cpus=0.5;memory_mib=2048, qemu+tls://h2/system;reserved_cpus=2",
			want: []Seed{{Name: "h1", URI: "qemu+tls://h1/system", Capacity: pool.Capacity{CPUs: 0.5, MemoryMiB: 2048}},
				{URI: "qemu+tls://h2/system", Capacity: pool.Capacity{ReservedCPUs: 2}}}},
		{in: "h1=qemu+tls://h1/system;cpu=2", wantErr: `h1=qemu+tls://h1/system;cpu=2: capacity: unknown setting "cpu"`},
		{in: "h1=qemu+tls://h1/system;cpus=-1", wantErr: "cpus = -1: want a number of cores"},
		{in: "qemu+tls://a/system\n  qemu+tls://b/system", want: []Seed{{URI: "qemu+tls://a/system"}, {URI: "qemu+tls://b/system"}}},
		{in: "", wantErr: "hosts: empty"},
		{in: "h1=nouri", wantErr: `hosts: h1=nouri: "nouri" is not a libvirt URI`},
		{in: "bad name!=qemu:///system", wantErr: `is not a libvirt URI`},
		{in: "b@d=qemu:///system", wantErr: `hosts: b@d=qemu:///system: host name "b@d": use letters`},
		{in: strings.Repeat("h", 64) + "=qemu:///system", wantErr: "=qemu:///system: host name \"hhhh"},
		{in: "qemu:///system,qemu:///system", wantErr: "listed twice"},
		{in: "h1=qemu:///system,h1=qemu+tcp://b/system", wantErr: "hosts: host name h1 given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHosts(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("seed %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseConfig(t *testing.T) {
	ok := map[string]string{ConfigKeyHosts: "qemu:///system"}
	with := func(k, v string) map[string]string {
		m := map[string]string{ConfigKeyHosts: "qemu:///system"}
		m[k] = v
		return m
	}
	tests := []struct {
		name    string
		cfg     map[string]string
		wantErr string
	}{
		{"defaults", ok, ""},
		{"no hosts", map[string]string{}, "hosts: empty"},
		{"bad interval", with(ConfigKeySampleInterval, "often"), `sample_interval: "often" is not a duration`},
		{"zero interval", with(ConfigKeySampleInterval, "0s"), "sample_interval: 0s must be positive"},
		{"retention too short", with(ConfigKeyRetention, "5s"), "retention: 5s keeps fewer than two samples"},
		{"max samples", with(ConfigKeyMaxSamples, "1"), "max_samples: 1 out of range"},
		{"max samples not a number", with(ConfigKeyMaxSamples, "many"), `max_samples: "many" is not an integer`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.SampleInterval != DefaultSampleInterval || c.Retention != DefaultRetention || c.MaxSamples != DefaultMaxSamples {
					t.Errorf("defaults: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheckKeys(t *testing.T) {
	tests := []struct {
		cfg     map[string]string
		wantErr string
	}{
		{map[string]string{"a": "1", "nomad_address": "http://x"}, ""}, // the agent's keys pass
		{map[string]string{"a": "1", "zz": "2", "bb": "3"}, `p: unknown key "bb" (known keys: a, b)`},
	}
	for _, tc := range tests {
		err := CheckKeys("p", tc.cfg, "b", "a")
		if (err == nil) != (tc.wantErr == "") || err != nil && err.Error() != tc.wantErr {
			t.Errorf("CheckKeys(%v) = %v, want %q", tc.cfg, err, tc.wantErr)
		}
	}
}

func TestHistoryBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name      string
		max       int
		retention time.Duration
		add       int // rounds, one a second
		wantLen   int
	}{
		{"under both bounds", 10, time.Minute, 5, 5},
		{"max rounds", 4, time.Minute, 10, 4},
		{"retention", 100, 3 * time.Second, 10, 4}, // rounds at t-3s..t
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory(tc.max, tc.retention)
			for i := range tc.add {
				h.Add(Round{Time: t0.Add(time.Duration(i) * time.Second)})
			}
			if h.Len() != tc.wantLen {
				t.Errorf("len %d, want %d", h.Len(), tc.wantLen)
			}
			_, newest := h.Span()
			if !newest.Equal(t0.Add(time.Duration(tc.add-1) * time.Second)) {
				t.Errorf("newest %v", newest)
			}
		})
	}
}

// fakeFleet is a fleet over three fake hosts with a pool "web" on h1, h2.
func fakeFleet(t *testing.T) (*pooltest.Driver, *Fleet) {
	t.Helper()
	fd := pooltest.New(2, 8, "fake:///h1", "fake:///h2", "fake:///h3")
	spec := pool.Spec{Name: "web", Hosts: []pool.HostEntry{{Name: "h1", URI: "fake:///h1"}, {Name: "h2", URI: "fake:///h2"}}}
	ops := &pool.Ops{Hosts: spec.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
	if _, err := ops.WritePool(context.Background(), pool.Record{Spec: spec}, nil); err != nil {
		t.Fatal(err)
	}
	f := &Fleet{Seeds: []Seed{{URI: "fake:///h1"}, {Name: "h3", URI: "fake:///h3"}},
		Driver: func(context.Context) (driver.Driver, error) { return fd, nil }, Now: fd.Now, History: NewHistory(100, time.Hour)}
	return fd, f
}

func TestRefreshFindsHostsThroughPools(t *testing.T) {
	_, f := fakeFleet(t)
	topo, err := f.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// h1 and h2 are named by the pool record (h2 was never a seed), h3 by
	// its seed.
	if got := strings.Join(topo.Hosts.Names(), ","); got != "h1,h2,h3" {
		t.Errorf("hosts %s", got)
	}
	if got := strings.Join(topo.PoolNames(), ","); got != "web" {
		t.Errorf("pools %s", got)
	}
}

// A host's capacity comes from the pool record's entry, unless the
// plugin's own hosts setting gives one, which wins; operations on a pool
// get it too.
func TestRefreshCapacity(t *testing.T) {
	fd := pooltest.New(2, 8, "fake:///h1", "fake:///h2")
	spec := pool.Spec{Name: "web", Hosts: []pool.HostEntry{
		{Name: "h1", URI: "fake:///h1", Capacity: pool.Capacity{CPUs: 1}},
		{Name: "h2", URI: "fake:///h2", Capacity: pool.Capacity{CPUs: 1}}}}
	ops := &pool.Ops{Hosts: spec.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
	if _, err := ops.WritePool(context.Background(), pool.Record{Spec: spec}, nil); err != nil {
		t.Fatal(err)
	}
	f := &Fleet{Seeds: []Seed{{URI: "fake:///h1"}, {URI: "fake:///h2", Capacity: pool.Capacity{ReservedCPUs: 0.5}}},
		Driver: func(context.Context) (driver.Driver, error) { return fd, nil }, Now: fd.Now, History: NewHistory(100, time.Hour)}
	topo, err := f.Refresh(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]pool.Capacity{"h1": {CPUs: 1}, "h2": {ReservedCPUs: 0.5}}
	for n, c := range want {
		if got := topo.Hosts[n].Capacity; got != c {
			t.Errorf("topology: %s capacity %+v, want %+v", n, got, c)
		}
		if got := topo.WithCapacity(spec.Inventory())[n].Capacity; got != c {
			t.Errorf("pool inventory: %s capacity %+v, want %+v", n, got, c)
		}
	}
}

func TestDemandFollowsMigratedGuest(t *testing.T) {
	fd, f := fakeFleet(t)
	ctx := context.Background()
	labels := map[string]string{pool.LabelPool: "web", pool.LabelRole: pool.RoleMember}
	fd.AddDomain("fake:///h1", driver.Domain{Name: "web-1", VCPUs: 1, MemoryMiB: 128, Labels: labels}, 0.8)
	fd.AddDomain("fake:///h1", driver.Domain{Name: "web-2", VCPUs: 1, MemoryMiB: 128, Labels: labels}, 0.2)
	sample := func() {
		t.Helper()
		if err := f.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sample()
	for range 3 {
		fd.Advance(time.Second)
		sample()
	}
	// Move web-1 to h2: its counter restarts there.
	req := driver.MigrateRequest{Domain: "web-1", SourceURI: "fake:///h1", DestURI: "fake:///h2"}
	if _, err := fd.Migrate(ctx, req, nil); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		fd.Advance(time.Second)
		sample()
	}
	uuid := func(name string) string {
		for _, h := range []string{"fake:///h1", "fake:///h2"} {
			if d, ok := fd.Host(h).Domains[name]; ok {
				return d.UUID
			}
		}
		t.Fatalf("%s not found", name)
		return ""
	}
	d := f.History.Demand(10 * time.Second)
	if got := d[uuid("web-1")]; math.Abs(got.CPU-0.8) > 1e-9 || got.Covered != 5*time.Second {
		// 6 intervals, the one across the move has no rate.
		t.Errorf("web-1 demand %+v, want 0.8 cores over 5s", got)
	}
	if got := d[uuid("web-2")]; math.Abs(got.CPU-0.2) > 1e-9 {
		t.Errorf("web-2 demand %+v, want 0.2", got)
	}
	// The newest frame puts web-1 on h2.
	frames := f.History.Frames(fd.Now(), fd.Now())
	if len(frames) != 1 {
		t.Fatalf("%d frames", len(frames))
	}
	h2 := frames[0].Hosts["h2"]
	if h2 == nil || len(h2.Guests) != 1 || h2.Guests[0].Name != "web-1" || math.Abs(h2.Guests[0].CPU-0.8) > 1e-9 {
		t.Errorf("h2 in the last frame: %+v", h2)
	}
	if got := frames[0].Hosts["h1"].Busy; math.Abs(got-0.1) > 1e-9 {
		t.Errorf("h1 busy %.3f, want 0.1 (0.2 of 2 CPUs)", got)
	}
}

func TestFleetTime(t *testing.T) {
	fake := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		now  func() time.Time
		want func(time.Time) bool
	}{
		{"its clock", func() time.Time { return fake }, func(got time.Time) bool { return got.Equal(fake) }},
		{"the wall clock by default", nil, func(got time.Time) bool { return time.Since(got) < time.Minute }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := (&Fleet{Now: tc.now}).Time(); !tc.want(got) {
				t.Errorf("Time() = %s", got)
			}
		})
	}
}

func TestParseSettings(t *testing.T) {
	a := Seed{Name: "a", URI: "qemu+tls://a/system"}
	tests := []struct {
		name    string
		seeds   []Seed
		wantErr string
	}{
		{"one", []Seed{a}, ""},
		{"none", nil, "hosts: none given"},
		{"same URI twice", []Seed{a, {Name: "b", URI: a.URI}}, "hosts: qemu+tls://a/system listed twice"},
		{"same name twice", []Seed{a, {Name: "a", URI: "qemu+tls://b/system"}}, "hosts: host name a given twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseSettings(map[string]string{ConfigKeySampleInterval: "1s"}, tc.seeds)
			if tc.wantErr == "" {
				if err != nil || len(c.Seeds) != len(tc.seeds) || c.SampleInterval != time.Second {
					t.Fatalf("%+v, %v", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestHostFrameLoad(t *testing.T) {
	h := &HostFrame{Cores: 2, MemoryBytes: 8 << 30, Guests: []GuestFrame{
		{CPU: 0.5, MemoryBytes: 1 << 30, RSSBytes: 1 << 29, DiskBps: 100, NetBps: 10},
		{CPU: 0.25, MemoryBytes: 3 << 30, RSSBytes: 1 << 29, DiskBps: 50, NetBps: 5},
	}}
	if got, want := h.Totals(), (Totals{CPU: 0.75, DiskBps: 150, NetBps: 15, MemoryBytes: 4 << 30, RSSBytes: 1 << 30}); got != want {
		t.Errorf("Totals = %+v, want %+v", got, want)
	}
	if cpu, mem := h.Load(); cpu != 0.375 || mem != 0.5 {
		t.Errorf("Load = %v, %v; want 0.375, 0.5", cpu, mem)
	}
	if cpu, mem := (&HostFrame{Guests: h.Guests}).Load(); cpu != 0 || mem != 0 {
		t.Errorf("Load without capacity = %v, %v; want 0, 0", cpu, mem)
	}
}

// TestDemandLeavesMigrationOut: a guest's demand is its CPU outside its
// migration. While it runs on two hosts, and in the frame after (its
// destination's counter holds the incoming copy's work), QEMU mostly copies
// memory: those frames count only for a guest seen migrating all along.
func TestDemandLeavesMigrationOut(t *testing.T) {
	t0 := time.Unix(1000, 0)
	// cores the guest's QEMU used in each second, on each host; 0: not there.
	type step struct{ h1, h2 float64 }
	for _, tc := range []struct {
		name  string
		steps []step
		want  float64
	}{
		{"steady", []step{{0.4, 0}, {0.4, 0}, {0.4, 0}, {0.4, 0}}, 0.4},
		{"migrated h1 → h2", []step{{0.4, 0}, {0.4, 0}, {0.9, 0.6}, {0.9, 0.6}, {0, 0.8}, {0, 0.4}, {0, 0.4}}, 0.4},
		{"migrating all along", []step{{0.9, 0.6}, {0.9, 0.6}, {0.9, 0.6}}, 0.9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := NewHistory(100, time.Hour)
			counters := map[string]uint64{}
			for i, st := range append([]step{{0, 0}}, tc.steps...) {
				at := t0.Add(time.Duration(i) * time.Second)
				r := Round{Time: at, Hosts: map[string]HostSample{}}
				for host, cores := range map[string]float64{"h1": st.h1, "h2": st.h2} {
					hs := driver.HostStats{Time: at, CPUs: 2, MemoryTotalBytes: 1 << 30}
					if i == 0 || cores > 0 {
						if i > 0 {
							counters[host] += uint64(cores * 1e9)
						}
						hs.Domains = []driver.DomainStats{{Name: "g", UUID: "u", State: driver.StateRunning, CPUTimeNs: counters[host]}}
					}
					if i == 0 && host == "h2" && tc.steps[0].h2 == 0 {
						hs.Domains = nil
					}
					r.Hosts[host] = HostSample{Stats: hs}
				}
				h.Add(r)
			}
			if got := h.Demand(time.Minute)["u"]; math.Abs(got.CPU-tc.want) > 1e-9 {
				t.Errorf("demand %+v, want %.1f cores", got, tc.want)
			}
		})
	}
}
