package target

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet/fleettest"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

// fixture is the target plugin over three fake 2-CPU hosts and a pool web
// on all of them.
type fixture struct {
	t      *testing.T
	fd     *pooltest.Driver
	p      *Plugin
	ops    *pool.Ops
	events string // the plugin's event log
	read   int64  // how far events has read it
}

func newFixture(t *testing.T, size, minSize, maxSize int64, pol *pool.Policy) *fixture {
	t.Helper()
	// h4 is no host of the pool's.
	fd := pooltest.New(2, 8, "fake:///h1", "fake:///h2", "fake:///h3", "fake:///h4")
	spec := pool.Spec{Name: "web", Size: size, MinSize: minSize, MaxSize: maxSize, Placement: "spread",
		Template: pool.Template{VCPUs: 1, MemoryMiB: 128, Kernel: "/k"}}
	for _, h := range []string{"h1", "h2", "h3"} {
		spec.Hosts = append(spec.Hosts, pool.HostEntry{Name: h, URI: "fake:///" + h})
	}
	ops := &pool.Ops{Hosts: spec.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
	if _, err := ops.WritePool(context.Background(), pool.Record{Spec: spec, Policy: pol}, nil); err != nil {
		t.Fatal(err)
	}
	p := newPlugin(hclog.NewNullLogger(), fleettest.Starter(fd, fd.Now))
	events := filepath.Join(t.TempDir(), "events.jsonl")
	if err := p.SetConfig(map[string]string{"hosts": "fake:///h1, h4=fake:///h4", "sample_interval": "1s", "load_window": "5s",
		"migration_bandwidth_mib": "100", "event_log": events}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &fixture{t: t, fd: fd, p: p, ops: ops, events: events}
}

// newEvents returns the plugin's records since the last call, rendered
// "kind field=value …" with the fields the tests look at.
func (f *fixture) newEvents() []string {
	f.t.Helper()
	evs, off, err := event.ReadFile(f.events, f.read)
	if err != nil {
		f.t.Fatal(err)
	}
	f.read = off
	out := []string{}
	for _, e := range evs {
		s := e.Kind
		add := func(k string, v any, ok bool) {
			if ok {
				s += fmt.Sprintf(" %s=%v", k, v)
			}
		}
		add("pool", e.Pool, e.Pool != "")
		add("cluster", e.Cluster, e.Cluster)
		add("dimension", e.Dimension, e.Dimension != "")
		add("count", e.Count, e.Kind == event.ScaleRequested || e.Kind == event.DryRunPlan)
		add("dry_run", e.DryRun, e.DryRun)
		add("action", e.Action, e.Action != "")
		add("size", e.Size, e.Action == event.ActionScale)
		add("moves", len(e.Moves), e.Kind == event.DryRunPlan && e.Action != event.ActionScale)
		add("guest", e.Guest, e.Guest != "")
		add("error", "…", e.Error != "")
		if e.Time.IsZero() {
			s += " (no time)"
		}
		out = append(out, s)
	}
	return out
}

// member adds pool member n on host with load (cores).
func (f *fixture) member(host string, n int, load float64) {
	spec := pool.Spec{Name: "web"}
	f.fd.AddDomain("fake:///"+host, driver.Domain{Name: pool.MemberName("web", n), VCPUs: 1, MemoryMiB: 128,
		Labels: pool.MemberLabels(spec, n)}, load)
}

// fence notes a fence of host in web's record, as virtpool agent does,
// and sets web's size.
func (f *fixture) fence(host string, size int64) {
	f.t.Helper()
	ctx := context.Background()
	pr, _, _, err := f.ops.ReadPool(ctx, "web", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	pr.Spec.Size, pr.Fences = size, []pool.Fence{{Host: host}}
	if _, err := f.ops.WritePool(ctx, pr, nil); err != nil {
		f.t.Fatal(err)
	}
}

// sample lets the clock run for n seconds, sampling every second.
func (f *fixture) sample(n int) {
	f.t.Helper()
	for i := 0; i <= n; i++ {
		if i > 0 {
			f.fd.Advance(time.Second)
		}
		if err := f.p.sampler.Fleet.Sample(context.Background()); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) status(dim string) *sdk.TargetStatus {
	f.t.Helper()
	st, err := f.p.Status(map[string]string{"pool": "web", "dimension": dim})
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

// placement renders where members run: "web-1@h1 web-2@h2".
func (f *fixture) placement() string {
	ms, err := f.ops.Members(context.Background(), "web")
	if err != nil {
		f.t.Fatal(err)
	}
	var s []string
	for _, m := range ms {
		s = append(s, m.Name+"@"+m.Host)
	}
	sort.Strings(s)
	return strings.Join(s, " ")
}

func hotPolicy() *pool.Policy {
	return &pool.Policy{Mode: "balance", CPULow: 0.1, CPUHigh: 0.6, MemoryLow: 0.1, MemoryHigh: 0.85,
		TargetUtilisation: 0.5, MaxMigrationsPerRound: 2, MaxParallel: 1, BandwidthMiB: 500, MaxDowntimeMs: 40,
		AutoConverge: true}
}

func TestStatus(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(f *fixture)
		dim       string
		count     int64
		ready     bool
		hot       string
		down      string
		restoring bool
		samples   int
	}{
		{name: "size counts stopped members too", dim: DimensionSize, count: 3, ready: true, samples: 0,
			setup: func(f *fixture) {
				f.member("h1", 1, 0)
				f.member("h2", 2, 0)
				f.member("h3", 3, 0)
				if err := f.fd.ShutdownDomain(context.Background(), "fake:///h3", "web-3", 0); err != nil {
					f.t.Fatal(err)
				}
			}},
		{name: "hosts in use exclude standby", dim: DimensionHosts, count: 2, ready: true, samples: 2,
			setup: func(f *fixture) {
				if err := f.ops.SetAutoStandby(context.Background(), "h3", true); err != nil {
					f.t.Fatal(err)
				}
			}},
		{name: "hot hosts", dim: DimensionHotHosts, count: 1, ready: true, hot: "h1", samples: 3,
			setup: func(f *fixture) {
				f.member("h1", 1, 0.8)
				f.member("h1", 2, 0.8)
				f.member("h2", 3, 0.8)
			}},
		{name: "hot hosts need samples", dim: DimensionHotHosts, count: 0, ready: false, samples: 0,
			setup: func(f *fixture) {
				f.member("h1", 1, 0.8)
				f.member("h1", 2, 0.8)
			}},
		{name: "busy pool is not ready", dim: DimensionSize, count: 0, ready: false, samples: 1,
			setup: func(f *fixture) { f.p.track.try(policyConfig{Pool: "web"}, "size to 3") }},
		{name: "a host of the pool down: counts the others, not ready, no error", dim: DimensionSize, count: 1, ready: false,
			samples: 1, down: "h2",
			setup: func(f *fixture) {
				f.member("h1", 1, 0)
				f.member("h2", 2, 0)
				f.fd.Host("fake:///h2").Down = true
			}},
		{name: "a fenced host down: not waited for; short of members, restoring", dim: DimensionSize, count: 1, ready: false,
			samples: 1, restoring: true,
			setup: func(f *fixture) {
				f.member("h1", 1, 0)
				f.member("h2", 2, 0)
				f.fence("h2", 2)
				f.fd.Host("fake:///h2").Down = true
			}},
		{name: "a fenced host down, pool restored: ready", dim: DimensionSize, count: 2, ready: true, samples: 1,
			setup: func(f *fixture) {
				f.member("h1", 1, 0)
				f.member("h2", 2, 0)
				f.member("h3", 3, 0)
				f.fence("h2", 2)
				f.fd.Host("fake:///h2").Down = true
			}},
		{name: "a host down outside the pool does not matter", dim: DimensionSize, count: 1, ready: true, samples: 1,
			setup: func(f *fixture) {
				f.member("h1", 1, 0)
				f.fd.Host("fake:///h4").Down = true
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol := hotPolicy()
			if tc.dim == DimensionHosts {
				pol.Mode = pool.ModeConsolidate // the hosts dimension needs it
			}
			f := newFixture(t, 0, 0, 5, pol)
			f.sample(0) // topology
			tc.setup(f)
			if tc.samples > 0 {
				f.sample(tc.samples)
			}
			st := f.status(tc.dim)
			if st.Count != tc.count || st.Ready != tc.ready {
				t.Errorf("status count %d ready %v, want %d %v (meta %v)", st.Count, st.Ready, tc.count, tc.ready, st.Meta)
			}
			if tc.hot != "" && st.Meta[metaHot] != tc.hot {
				t.Errorf("hot hosts %q, want %q", st.Meta[metaHot], tc.hot)
			}
			if st.Meta[metaDown] != tc.down {
				t.Errorf("hosts down %q, want %q", st.Meta[metaDown], tc.down)
			}
			if got := st.Meta[metaRestoring] == "true"; got != tc.restoring {
				t.Errorf("restoring %v, want %v", got, tc.restoring)
			}
		})
	}
}

func TestStatusUnknownPool(t *testing.T) {
	f := newFixture(t, 0, 0, 5, nil)
	_, err := f.p.Status(map[string]string{"pool": "db", "dimension": "size"})
	if err == nil || !strings.Contains(err.Error(), `pool "db": pool not found on hosts h1, h2, h3, h4 (pools there: web)`) {
		t.Fatalf("error %v", err)
	}
	_, err = f.p.Status(map[string]string{"pool": "web", "dimension": "sizes"})
	if err == nil || !strings.Contains(err.Error(), "dimension") {
		t.Fatalf("bad dimension: error %v", err)
	}
}

func scale(t *testing.T, f *fixture, dim string, count int64) error {
	t.Helper()
	return f.p.Scale(sdk.ScalingAction{Count: count, Reason: "test"}, map[string]string{"pool": "web", "dimension": dim})
}

func TestScaleHotHosts(t *testing.T) {
	f := newFixture(t, 0, 0, 5, hotPolicy())
	f.member("h1", 1, 0.8)
	f.member("h1", 2, 0.8)
	f.member("h2", 3, 0.1)
	f.sample(5)
	if st := f.status(DimensionHotHosts); st.Count != 1 || !st.Ready {
		t.Fatalf("before: %+v", st)
	}
	if err := scale(t, f, DimensionHotHosts, 0); err != nil {
		t.Fatal(err)
	}
	scaled := f.fd.Now()
	if len(f.fd.Migrations) != 1 {
		t.Fatalf("%d migrations, want 1", len(f.fd.Migrations))
	}
	m := f.fd.Migrations[0]
	// The pool's migration policy: bandwidth, downtime, auto-converge; the
	// definition follows the guest.
	o := m.Options
	if o.BandwidthMiBs != 500 || o.MaxDowntime != 40*time.Millisecond || !o.AutoConverge || !o.Persistent || !o.UndefineSource {
		t.Errorf("migration options %+v", o)
	}
	if m.SourceURI != "fake:///h1" || m.DestURI == "fake:///h1" {
		t.Errorf("moved %s from %s to %s", m.Domain, m.SourceURI, m.DestURI)
	}
	f.sample(1)
	st := f.status(DimensionHotHosts)
	if st.Count != 0 {
		t.Errorf("hot hosts after Scale: %d (%v)", st.Count, st.Meta)
	}
	// The last event is on the fleet's clock.
	if got, want := st.Meta[sdk.TargetStatusMetaKeyLastEvent], strconv.FormatInt(scaled.UnixNano(), 10); got != want {
		t.Errorf("last event %q after a scale that moved a guest, want %q", got, want)
	}
	// Nothing hot: Scale does nothing.
	if err := scale(t, f, DimensionHotHosts, 0); err != nil {
		t.Fatal(err)
	}
	if len(f.fd.Migrations) != 1 {
		t.Errorf("%d migrations after a no-op scale", len(f.fd.Migrations))
	}
}

func TestScaleHotHostsOnlyToZero(t *testing.T) {
	f := newFixture(t, 0, 0, 5, hotPolicy())
	f.member("h1", 1, 0.8)
	f.member("h1", 2, 0.8)
	f.sample(3)
	err := scale(t, f, DimensionHotHosts, 1)
	if want := `dimension = "hot_hosts": the policy asks for 1 hot hosts; the only target is 0: use strategy "fixed-value" { value = 0 }`; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	if len(f.fd.Migrations) != 0 {
		t.Error("migrated anyway")
	}
}

func TestScaleSize(t *testing.T) {
	f := newFixture(t, 1, 1, 3, nil)
	f.member("h1", 1, 0.5)
	f.sample(2)
	tests := []struct {
		count   int64
		want    string
		wantErr string
	}{
		{3, "web-1@h1 web-2@h2 web-3@h3", ""},
		// The policy's max above the pool's: named, nothing changes.
		{9, "web-1@h1 web-2@h2 web-3@h3", "count 9 is outside pool web's min_size 1 … max_size 3: set the scaling policy's min and max within them"},
		{0, "web-1@h1 web-2@h2 web-3@h3", "count 0 is outside pool web's min_size 1"},
		{1, "web-1@h1", ""},
	}
	for _, tc := range tests {
		err := scale(t, f, DimensionSize, tc.count)
		if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Fatalf("Scale(%d): error %v, want %q", tc.count, err, tc.wantErr)
		}
		if tc.wantErr == "" && err != nil {
			t.Fatal(err)
		}
		if got := f.placement(); got != tc.want {
			t.Errorf("after Scale(%d): %s, want %s", tc.count, got, tc.want)
		}
		if st := f.status(DimensionSize); st.Count != int64(strings.Count(tc.want, "@")) {
			t.Errorf("Status count %d after Scale(%d)", st.Count, tc.count)
		}
	}
}

func TestScaleHosts(t *testing.T) {
	pol := hotPolicy()
	pol.Mode = "consolidate"
	pol.CPUHigh, pol.TargetUtilisation = 0.9, 0.8
	f := newFixture(t, 3, 3, 3, pol)
	f.member("h1", 1, 0.1)
	f.member("h2", 2, 0.1)
	f.member("h3", 3, 0.1)
	f.sample(3)
	if err := scale(t, f, DimensionHosts, 1); err != nil {
		t.Fatal(err)
	}
	st := f.status(DimensionHosts)
	if st.Count != 1 {
		t.Fatalf("hosts in use after consolidation: %d (%v), placement %s", st.Count, st.Meta, f.placement())
	}
	home := st.Meta[metaHosts]
	for _, h := range []string{"h1", "h2", "h3"} {
		hs, _ := f.ops.HostState(context.Background(), h)
		if hs.AutoStandby == (h == home) {
			t.Errorf("%s standby=%v (pool on %s)", h, hs.AutoStandby, home)
		}
	}
	if got := f.placement(); strings.Count(got, "@"+home) != 3 {
		t.Errorf("placement %s, want all on %s", got, home)
	}
	// Load returns: spread back onto three hosts.
	f.fd.SetLoad("web-1", 0.9)
	f.fd.SetLoad("web-2", 0.9)
	f.fd.SetLoad("web-3", 0.9)
	f.sample(6)
	if err := scale(t, f, DimensionHosts, 3); err != nil {
		t.Fatal(err)
	}
	if st := f.status(DimensionHosts); st.Count != 3 {
		t.Errorf("hosts in use after spreading: %d", st.Count)
	}
	if got := f.placement(); strings.Count(got, "@h1") != 1 || strings.Count(got, "@h2") != 1 || strings.Count(got, "@h3") != 1 {
		t.Errorf("placement after spreading: %s", got)
	}
}

func TestScaleHostsNeedsConsolidateMode(t *testing.T) {
	f := newFixture(t, 2, 2, 2, hotPolicy()) // mode balance
	f.member("h1", 1, 0.1)
	f.member("h2", 2, 0.1)
	f.sample(2)
	want := `dimension = "hosts": pool web's virtpool_migration_policy mode is "balance", and hosts are freed only with mode = "consolidate": set that mode, or use dimension = "hot_hosts"`
	err := scale(t, f, DimensionHosts, 1)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v, want %q", err, want)
	}
	// At policy load: Status names it too.
	if _, err := f.p.Status(map[string]string{"pool": "web", "dimension": DimensionHosts}); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Status: error %v, want %q", err, want)
	}
	if len(f.fd.Migrations) != 0 {
		t.Error("migrated anyway")
	}
}

func TestDryRun(t *testing.T) {
	pol := hotPolicy()
	pol.Mode = "consolidate"
	for _, dim := range []string{DimensionHotHosts, DimensionSize, DimensionHosts} {
		t.Run(dim, func(t *testing.T) {
			f := newFixture(t, 2, 1, 3, pol)
			f.member("h1", 1, 0.8)
			f.member("h1", 2, 0.8)
			f.sample(3)
			pr, _, _, _ := f.ops.ReadPool(context.Background(), "web", nil)
			before := f.placement()
			calls := map[string]int{}
			for k, v := range f.fd.Calls {
				calls[k] = v
			}
			a := sdk.ScalingAction{Count: 3}
			if dim == DimensionHotHosts {
				a.Count = 0 // its only target
			}
			a.SetDryRun() // as the agent does with dry-run = "true"
			if err := f.p.Scale(a, map[string]string{"pool": "web", "dimension": dim}); err != nil {
				t.Fatal(err)
			}
			for _, m := range []string{"Migrate", "CreateDomain", "ShutdownDomain", "UndefineDomain", "PutRecord"} {
				if f.fd.Calls[m] != calls[m] {
					t.Errorf("dry run called %s", m)
				}
			}
			after, _, _, _ := f.ops.ReadPool(context.Background(), "web", nil)
			if f.placement() != before || after.Generation != pr.Generation {
				t.Errorf("dry run changed something: %s → %s, generation %d → %d", before, f.placement(), pr.Generation, after.Generation)
			}
		})
	}
}

func TestBusyAndInFlight(t *testing.T) {
	f := newFixture(t, 0, 0, 5, hotPolicy())
	f.member("h1", 1, 0.8)
	f.member("h1", 2, 0.8)
	f.sample(3)
	var mid, midCluster *sdk.TargetStatus
	var midScale, midClusterScale error
	var once sync.Once
	cluster := map[string]string{"dimension": DimensionHosts}
	f.fd.DuringMigrate = func(driver.MigrateRequest) error {
		once.Do(func() {
			// The fake calls this without holding its lock.
			st, err := f.p.Status(map[string]string{"pool": "web", "dimension": DimensionHotHosts})
			if err != nil {
				midScale = err
				return
			}
			mid = st
			midScale = scale(t, f, DimensionSize, 3)
			// The cluster includes the pool: it waits too.
			if midCluster, err = f.p.Status(cluster); err != nil {
				midClusterScale = err
				return
			}
			midClusterScale = f.p.Scale(sdk.ScalingAction{Count: 1, Reason: "test"}, cluster)
		})
		return nil
	}
	if err := scale(t, f, DimensionHotHosts, 0); err != nil {
		t.Fatal(err)
	}
	if mid == nil || mid.Ready || mid.Meta[metaBusy] != "hot_hosts to 0" || mid.Meta[metaInFlight] == "" {
		t.Errorf("status mid-migration: %+v", mid)
	}
	var noop *sdk.TargetScalingNoOpError
	if !errors.As(midScale, &noop) || !strings.Contains(midScale.Error(), "pool web is busy (hot_hosts to 0)") {
		t.Errorf("second scale mid-migration: %v, want a no-op error naming the busy action", midScale)
	}
	if midCluster == nil || midCluster.Ready || midCluster.Meta[metaBusy] != "hot_hosts to 0" {
		t.Errorf("cluster status mid-migration: %+v", midCluster)
	}
	if !errors.As(midClusterScale, &noop) || !strings.Contains(midClusterScale.Error(), "the cluster is busy (hot_hosts to 0)") {
		t.Errorf("cluster scale mid-migration: %v, want a no-op error naming the busy action", midClusterScale)
	}
	if st := f.status(DimensionSize); !st.Ready || st.Count != 2 {
		t.Errorf("after: %+v", st)
	}
}

// A driver that fails mid-migration (its process killed): the guest stays
// on its source, Scale reports the error, and the next Scale finishes.
func TestScaleAfterDriverFailure(t *testing.T) {
	f := newFixture(t, 0, 0, 5, hotPolicy())
	f.member("h1", 1, 0.8)
	f.member("h1", 2, 0.8)
	f.sample(3)
	f.fd.DuringMigrate = func(driver.MigrateRequest) error { return errors.New("rpc error: code = Unavailable") }
	err := scale(t, f, DimensionHotHosts, 0)
	if err == nil || !strings.Contains(err.Error(), "Unavailable") {
		t.Fatalf("error %v", err)
	}
	if got := f.placement(); got != "web-1@h1 web-2@h1" {
		t.Fatalf("placement after a failed migration: %s", got)
	}
	f.fd.DuringMigrate = nil
	f.sample(1)
	if st := f.status(DimensionHotHosts); !st.Ready || st.Count != 1 {
		t.Fatalf("status after the failure: %+v", st)
	}
	if err := scale(t, f, DimensionHotHosts, 0); err != nil {
		t.Fatal(err)
	}
	if got := f.placement(); strings.Count(got, "@h1") != 1 {
		t.Errorf("placement after the retry: %s", got)
	}
}

// A policy without a pool acts on the whole cluster: members of every pool
// move, each only among its own pool's hosts, and other guests stay put.
func TestScaleClusterHosts(t *testing.T) {
	f := newFixture(t, 2, 1, 3, nil)
	ctx := context.Background()
	db := pool.Spec{Name: "db", Size: 1, MinSize: 1, MaxSize: 1, Placement: "spread",
		Hosts:    []pool.HostEntry{{Name: "h3", URI: "fake:///h3"}, {Name: "h4", URI: "fake:///h4"}},
		Template: pool.Template{VCPUs: 1, MemoryMiB: 128, Kernel: "/k"}}
	dbOps := &pool.Ops{Hosts: db.Inventory(), Driver: f.ops.Driver}
	if _, err := dbOps.WritePool(ctx, pool.Record{Spec: db}, nil); err != nil {
		t.Fatal(err)
	}
	f.member("h1", 1, 0.1)
	f.member("h3", 2, 0.1)
	f.fd.AddDomain("fake:///h4", driver.Domain{Name: "db-1", VCPUs: 1, MemoryMiB: 128, Labels: pool.MemberLabels(db, 1)}, 0.1)
	f.fd.AddDomain("fake:///h2", driver.Domain{Name: "solo", VCPUs: 1, MemoryMiB: 128,
		Labels: map[string]string{pool.LabelRole: pool.RoleDomain}}, 0.1)
	f.sample(3)
	cluster := map[string]string{"dimension": "hosts", "cpu_high": "0.9", "target_utilisation": "0.8",
		"max_migrations_per_round": "10"}
	st, err := f.p.Status(cluster)
	if err != nil {
		t.Fatal(err)
	}
	if st.Count != 4 || st.Meta[metaMembers] != "3" {
		t.Fatalf("before: %d hosts in use, meta %v; want 4 hosts, 3 members", st.Count, st.Meta)
	}
	if err := f.p.Scale(sdk.ScalingAction{Count: 1, Reason: "test"}, cluster); err != nil {
		t.Fatal(err)
	}
	where := map[string]string{}
	every := &pool.Ops{Hosts: pool.Inventory{}, Driver: f.ops.Driver}
	for _, h := range []string{"h1", "h2", "h3", "h4"} {
		every.Hosts[h] = pool.HostEntry{Name: h, URI: "fake:///" + h}
	}
	for _, h := range every.Hosts.Names() {
		all, err := every.ListAll(ctx, []string{h})
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range all[h] {
			where[d.Name] += h
		}
	}
	// solo keeps h2, so web's members join it there; db-1 may only use h3
	// and h4, so a second host stays in use.
	if where["solo"] != "h2" || where["web-1"] != "h2" || where["web-2"] != "h2" || (where["db-1"] != "h3" && where["db-1"] != "h4") {
		t.Errorf("placement after consolidating the cluster: %v", where)
	}
	if st, _ := f.p.Status(cluster); st.Count != 2 {
		t.Errorf("%d hosts in use after consolidating (%v), want 2", st.Count, st.Meta)
	}
}

// The plugin's event log has what it was asked, what a dry run would do,
// what it did (migrations, members), and how each action ended, each
// record naming the policy's pool and dimension.
func TestEventLog(t *testing.T) {
	consolidate := hotPolicy()
	consolidate.Mode = "consolidate"
	tests := []struct {
		name   string
		pol    *pool.Policy
		dim    string
		count  int64
		dryRun bool
		want   []string
	}{
		{"hot hosts", hotPolicy(), DimensionHotHosts, 0, false, []string{
			"scale_requested pool=web dimension=hot_hosts count=0",
			"migration_started pool=web guest=web-1", "migration_progress pool=web guest=web-1", "migration_finished pool=web guest=web-1",
			"scale_done pool=web dimension=hot_hosts"}},
		{"size up", nil, DimensionSize, 3, false, []string{
			"scale_requested pool=web dimension=size count=3",
			"member_created pool=web guest=web-3",
			"scale_done pool=web dimension=size"}},
		{"size outside the pool's bounds", nil, DimensionSize, 9, false, []string{
			"scale_requested pool=web dimension=size count=9",
			"scale_failed pool=web dimension=size error=…"}},
		{"dry run, hot hosts", hotPolicy(), DimensionHotHosts, 0, true, []string{
			"scale_requested pool=web dimension=hot_hosts count=0 dry_run=true",
			"dry_run pool=web dimension=hot_hosts count=0 dry_run=true action=balance moves=1",
			"scale_done pool=web dimension=hot_hosts dry_run=true"}},
		{"dry run, size", nil, DimensionSize, 3, true, []string{
			"scale_requested pool=web dimension=size count=3 dry_run=true",
			"dry_run pool=web dimension=size count=3 dry_run=true action=scale size=3",
			"scale_done pool=web dimension=size dry_run=true"}},
		{"dry run, hosts", consolidate, DimensionHosts, 1, true, []string{
			"scale_requested pool=web dimension=hosts count=1 dry_run=true",
			"dry_run pool=web dimension=hosts count=1 dry_run=true action=consolidate moves=1",
			"scale_done pool=web dimension=hosts dry_run=true"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 2, 1, 3, tc.pol)
			f.member("h1", 1, 0.8)
			f.member("h1", 2, 0.8)
			if tc.dim == DimensionHosts {
				f.member("h2", 3, 0.1)
				f.fd.SetLoad("web-1", 0.1)
				f.fd.SetLoad("web-2", 0.1)
			}
			f.sample(3)
			a := sdk.ScalingAction{Count: tc.count}
			if tc.dryRun {
				a.SetDryRun()
			}
			err := f.p.Scale(a, map[string]string{"pool": "web", "dimension": tc.dim})
			if failed := slices.ContainsFunc(tc.want, func(s string) bool { return strings.HasPrefix(s, event.ScaleFailed) }); (err != nil) != failed {
				t.Fatalf("Scale: %v", err)
			}
			if got := f.newEvents(); !slices.Equal(got, tc.want) {
				t.Fatalf("records\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

// A cluster policy's records say so, and name no pool.
func TestEventLogCluster(t *testing.T) {
	f := newFixture(t, 2, 1, 3, nil)
	f.member("h1", 1, 0.1)
	f.sample(3)
	a := sdk.ScalingAction{Count: 2}
	a.SetDryRun()
	if err := f.p.Scale(a, map[string]string{"dimension": DimensionHosts}); err != nil {
		t.Fatal(err)
	}
	got := f.newEvents()
	if len(got) == 0 || got[0] != "scale_requested cluster=true dimension=hosts count=2 dry_run=true" {
		t.Fatalf("records %q", got)
	}
}
