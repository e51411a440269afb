package apm

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/fleet/fleettest"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

func TestParseQuery(t *testing.T) {
	tests := []struct {
		in      string
		want    string // canonical form
		wantErr string
	}{
		{in: "pool=web metric=cpu agg=avg", want: "pool=web metric=cpu agg=avg"},
		{in: "metric=cpu pool=web", want: "pool=web metric=cpu agg=avg"},
		{in: "pool=web of=hosts metric=cpu agg=max reduce=avg", want: "pool=web of=hosts metric=cpu agg=max reduce=avg"},
		{in: "pool=web of=members metric=memory", want: "pool=web metric=memory agg=avg"},
		{in: "host=h1 metric=host_cpu", want: "host=h1 metric=host_cpu agg=avg"},
		{in: "guest=web-1 metric=net agg=sum", want: "guest=web-1 metric=net agg=sum"},
		{in: "  metric=cpu   agg=max ", want: "metric=cpu agg=max"},
		{in: "", wantErr: "empty query"},
		{in: "pool=web", wantErr: "metric missing"},
		{in: "pool=web metric=cpus", wantErr: "metric=cpus: want one of cpu, cpu_cores, host_cpu"},
		{in: "pool=web metric=cpu agg=mean", wantErr: "agg=mean: want one of avg, min, max, sum, count"},
		{in: "pool=web metric=cpu reduce=sum", wantErr: "reduce=sum: want one of none, avg"},
		{in: "pool=web metric=cpu of=all", wantErr: "of=all: want one of members, hosts"},
		{in: "pool=web metrc=cpu", wantErr: `unknown key "metrc"`},
		{in: "pool=web metric", wantErr: `"metric" is not key=value`},
		{in: "pool= metric=cpu", wantErr: "pool has no value"},
		{in: "pool=a pool=b metric=cpu", wantErr: "pool given twice"},
		{in: "pool=web host=h1 metric=cpu", wantErr: "give at most one"},
		{in: "host=h1 of=hosts metric=cpu", wantErr: "of= needs pool="},
		{in: "pool=web metric=host_cpu", wantErr: "metric=host_cpu measures hosts"},
		{in: "guest=g metric=host_cpu", wantErr: "metric=host_cpu measures hosts"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			q, err := ParseQuery(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if q.String() != tc.want {
				t.Errorf("parsed as %q, want %q", q.String(), tc.want)
			}
		})
	}
}

func TestSetConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     map[string]string
		wantErr string
	}{
		{"ok", map[string]string{"hosts": "h1=fake:///h1", "sample_interval": "1s"}, ""},
		{"agent's nomad keys pass", map[string]string{"hosts": "h1=fake:///h1", "nomad_address": "http://127.0.0.1:4646"}, ""},
		{"unknown key", map[string]string{"hosts": "h1=fake:///h1", "interval": "1s"}, `virtpool-apm: unknown key "interval"`},
		{"no hosts", map[string]string{}, "virtpool-apm: hosts: empty"},
		{"bad retention", map[string]string{"hosts": "h1=fake:///h1", "retention": "1h30"}, `retention: "1h30" is not a duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlugin(hclog.NewNullLogger(), fleettest.Starter(pooltest.New(2, 8, "fake:///h1"), nil))
			err := p.SetConfig(tc.cfg)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
	// The driver binary must exist when no test driver is given.
	p := New(hclog.NewNullLogger())
	err := p.SetConfig(map[string]string{"hosts": "h1=fake:///h1", "driver_path": "/nonexistent/virtpool-driver"})
	if err == nil || !strings.Contains(err.Error(), "driver_path") {
		t.Errorf("missing driver: error %v, want one naming driver_path", err)
	}
}

// fixture is the APM over three fake 2-CPU hosts: pool web (h1, h2) with
// web-1 (1 core) and web-2 (0.5) on h1 and web-3 (0.25) on h2; a guest of
// no pool, other (1 core), on h3; h2 is on standby (autoscaler).
type fixture struct {
	fd *pooltest.Driver
	p  *Plugin
}

func newFixture(t *testing.T, samples int) *fixture {
	t.Helper()
	fd := pooltest.New(2, 8, "fake:///h1", "fake:///h2", "fake:///h3")
	ctx := context.Background()
	spec := pool.Spec{Name: "web", Hosts: []pool.HostEntry{{Name: "h1", URI: "fake:///h1"}, {Name: "h2", URI: "fake:///h2"}}}
	ops := &pool.Ops{Hosts: spec.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
	if _, err := ops.WritePool(ctx, pool.Record{Spec: spec}, nil); err != nil {
		t.Fatal(err)
	}
	member := func(n string) map[string]string {
		return map[string]string{pool.LabelPool: "web", pool.LabelRole: pool.RoleMember, pool.LabelIndex: n}
	}
	fd.AddDomain("fake:///h1", driver.Domain{Name: "web-1", VCPUs: 2, MemoryMiB: 1024, Labels: member("1")}, 1)
	fd.AddDomain("fake:///h1", driver.Domain{Name: "web-2", VCPUs: 1, MemoryMiB: 1024, Labels: member("2")}, 0.5)
	fd.AddDomain("fake:///h2", driver.Domain{Name: "web-3", VCPUs: 1, MemoryMiB: 1024, Labels: member("3")}, 0.25)
	fd.AddDomain("fake:///h3", driver.Domain{Name: "other", VCPUs: 1, MemoryMiB: 2048}, 1)
	p := newPlugin(hclog.NewNullLogger(), fleettest.Starter(fd, fd.Now))
	if err := p.SetConfig(map[string]string{"hosts": "fake:///h1, h3=fake:///h3", "sample_interval": "1s"}); err != nil {
		t.Fatal(err)
	}
	for i := range samples {
		if i > 0 {
			fd.Advance(time.Second)
		}
		if err := p.sampler.Fleet.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return &fixture{fd: fd, p: p}
}

func (f *fixture) window(d time.Duration) sdk.TimeRange {
	now := f.fd.Now()
	return sdk.TimeRange{From: now.Add(-d), To: now}
}

func TestQuery(t *testing.T) {
	f := newFixture(t, 5) // 4 frames
	tests := []struct {
		query  string
		points int
		want   float64
	}{
		// Members: web-1 uses 1 of its 2 vCPUs (50%), web-2 0.5 of 1 (50%),
		// web-3 0.25 of 1 (25%).
		{"pool=web metric=cpu agg=avg", 4, 125.0 / 3},
		{"pool=web metric=cpu agg=max", 4, 50},
		{"pool=web metric=cpu_cores agg=sum", 4, 1.75},
		{"pool=web metric=guests agg=count", 4, 3},
		{"pool=web metric=memory agg=avg", 4, 50}, // the fake's RSS is half the memory
		// Hosts of the pool in use: h1 only (h2 is on standby below).
		{"pool=web of=hosts metric=cpu agg=avg", 4, 100 * (1.5 + 0.25) / 2 / 2},
		{"host=h3 metric=cpu", 4, 50},
		{"host=h1 metric=host_cpu", 4, 75},
		{"host=h1 metric=memory", 4, 100 * 2048.0 / 8192},
		{"guest=web-2 metric=cpu_cores", 4, 0.5},
		// Every host: h1 75%, h2 12.5%, h3 50%.
		{"metric=cpu agg=max", 4, 75},
		{"metric=cpu agg=min reduce=last", 1, 12.5},
		{"metric=guests agg=sum reduce=max", 1, 4},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			ms, err := f.p.Query(tc.query, f.window(10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != tc.points {
				t.Fatalf("%d points, want %d", len(ms), tc.points)
			}
			if got := ms[len(ms)-1].Value; math.Abs(got-tc.want) > 1e-6 {
				t.Errorf("value %.4f, want %.4f", got, tc.want)
			}
			if !ms[len(ms)-1].Timestamp.Equal(f.fd.Now()) {
				t.Errorf("last point at %v, want the newest sample %v", ms[len(ms)-1].Timestamp, f.fd.Now())
			}
		})
	}
}

// standby marks host as put on standby by the autoscaler.
func (f *fixture) standby(t *testing.T, host string) {
	t.Helper()
	ops := &pool.Ops{Hosts: pool.Inventory{host: {Name: host, URI: "fake:///" + host}},
		Driver: func(context.Context) (driver.Driver, error) { return f.fd, nil }}
	if err := ops.SetAutoStandby(context.Background(), host, true); err != nil {
		t.Fatal(err)
	}
}

func TestQueryStandbyAndWindow(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	// Standby h2 (as the target plugin does after consolidating): the
	// pool's hosts in use are h1 alone.
	f.standby(t, "h2")
	f.fd.SetLoad("web-1", 2) // h1 from 75% to 125%… of its 2 CPUs: 2.5 cores
	for range 2 {
		f.fd.Advance(time.Second)
		if err := f.p.sampler.Fleet.Sample(ctx); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		query  string
		window time.Duration
		want   float64
		points int
	}{
		{"pool=web of=hosts metric=cpu agg=avg", 1500 * time.Millisecond, 125, 2}, // h1 only
		{"pool=web of=hosts metric=cpu agg=avg reduce=avg", 2500 * time.Millisecond, (43.75 + 125 + 125) / 3, 1},
		{"pool=web of=hosts metric=cpu agg=count", 1500 * time.Millisecond, 1, 2},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			ms, err := f.p.Query(tc.query, f.window(tc.window))
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != tc.points || math.Abs(ms[len(ms)-1].Value-tc.want) > 1e-6 {
				t.Errorf("got %v, want %d points ending at %.3f", ms, tc.points, tc.want)
			}
		})
	}
}

// TestQueryHostsUp: metric=up counts the hosts that answer, standby ones
// too, and a host down is 0 from the first sample it misses.
func TestQueryHostsUp(t *testing.T) {
	f := newFixture(t, 3)
	ctx := context.Background()
	f.standby(t, "h2")
	f.fd.Host("fake:///h3").Down = true
	f.fd.Advance(time.Second)
	if err := f.p.sampler.Fleet.Sample(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query string
		want  float64
	}{
		{"metric=up agg=sum", 2},
		{"metric=up agg=min", 0},
		{"host=h3 metric=up", 0},
		{"host=h2 metric=up", 1},
		{"pool=web of=hosts metric=up agg=sum", 2}, // h1, and h2 on standby
	} {
		ms, err := f.p.Query(tc.query, f.window(500*time.Millisecond))
		if err != nil {
			t.Fatalf("%s: %v", tc.query, err)
		}
		if got := ms[len(ms)-1].Value; len(ms) != 1 || got != tc.want {
			t.Errorf("%s = %v, want one point of %v", tc.query, ms, tc.want)
		}
	}
	if _, err := ParseQuery("pool=web metric=up"); err == nil || !strings.Contains(err.Error(), "metric=up measures hosts") {
		t.Errorf("up of a pool's members: error %v", err)
	}
}

// A host's capacity (pool.Capacity, from the plugin's hosts key here)
// is what its load is measured against: h3 given 1.5 of its 2 CPUs and 4
// of its 8 GiB, less 0.5 core kept for the hypervisor, runs "other" (1
// core, 2 GiB) at 100% and 50% of it.
func TestQueryHostCapacity(t *testing.T) {
	fd := pooltest.New(2, 8, "fake:///h3")
	fd.AddDomain("fake:///h3", driver.Domain{Name: "other", VCPUs: 1, MemoryMiB: 2048}, 1)
	p := newPlugin(hclog.NewNullLogger(), fleettest.Starter(fd, fd.Now))
	if err := p.SetConfig(map[string]string{"hosts": "h3=fake:///h3;cpus=1.5;reserved_cpus=0.5;memory_mib=4096",
		"sample_interval": "1s"}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if i > 0 {
			fd.Advance(time.Second)
		}
		if err := p.sampler.Fleet.Sample(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for query, want := range map[string]float64{"host=h3 metric=cpu": 100, "host=h3 metric=memory": 50,
		"host=h3 metric=cpu_cores": 1} {
		now := fd.Now()
		ms, err := p.Query(query, sdk.TimeRange{From: now.Add(-10 * time.Second), To: now})
		if err != nil {
			t.Fatal(err)
		}
		if got := ms[len(ms)-1].Value; math.Abs(got-want) > 1e-6 {
			t.Errorf("%s = %.3f, want %.3f", query, got, want)
		}
	}
	// A capacity larger than the host is refused where it is used: the
	// host is not sampled, and says why.
	if err := p.SetConfig(map[string]string{"hosts": "h3=fake:///h3;cpus=4", "sample_interval": "1s"}); err != nil {
		t.Fatal(err)
	}
	if err := p.sampler.Fleet.Sample(context.Background()); err == nil {
		t.Error("a host whose capacity exceeds it was sampled")
	}
}

func TestQueryErrors(t *testing.T) {
	f := newFixture(t, 3)
	empty := newFixture(t, 1)
	tests := []struct {
		name    string
		p       *Plugin
		query   string
		r       sdk.TimeRange
		wantErr string
	}{
		{"bad query", f.p, "pool=web metric=cpu agg=median", f.window(time.Minute), "agg=median"},
		{"unknown pool", f.p, "pool=db metric=cpu", f.window(time.Minute), `pool "db" not found in the pool records (pools: web)`},
		{"unknown host", f.p, "host=h9 metric=cpu", f.window(time.Minute), `host "h9" unknown (hosts: h1, h2, h3)`},
		{"nothing matches", f.p, "guest=nobody metric=cpu", f.window(time.Minute), "nothing to measure"},
		{"window before the samples", f.p, "pool=web metric=cpu",
			sdk.TimeRange{From: f.fd.Now().Add(-time.Hour), To: f.fd.Now().Add(-50 * time.Minute)}, "no samples between"},
		{"not enough samples", empty.p, "pool=web metric=cpu", empty.window(time.Minute), "not enough samples yet (1;"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.Query(tc.query, tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "connection refused") {
				t.Errorf("error %q would make the agent restart its policy manager", err)
			}
		})
	}
	// Not configured.
	if _, err := New(hclog.NewNullLogger()).Query("metric=cpu", f.window(time.Minute)); err == nil {
		t.Error("query before SetConfig succeeded")
	}
}

func TestQueryMultiple(t *testing.T) {
	f := newFixture(t, 3)
	got, err := f.p.QueryMultiple("pool=web metric=cpu agg=max", f.window(time.Minute))
	if err != nil || len(got) != 1 || len(got[0]) != 2 {
		t.Fatalf("QueryMultiple = %v, %v; want one series of 2 points", got, err)
	}
}
