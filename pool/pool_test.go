package pool_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
	"github.com/virtpool/virtpool/scheduler"
)

var hostNames = []string{"h1", "h2", "h3"}

// setup returns a fake driver with three 2-CPU hosts, Ops over them and a
// stored pool "web" of size and minimum size 0, at most maxSize (no members
// yet).
func setup(t *testing.T, maxSize int64, pol *pool.Policy) (*pooltest.Driver, *pool.Ops, pool.Spec) {
	t.Helper()
	fd := pooltest.New(2, 8, "fake:///h1", "fake:///h2", "fake:///h3")
	spec := pool.Spec{Name: "web", MaxSize: maxSize, Placement: pool.PlacementSpread,
		Template: pool.Template{VCPUs: 1, MemoryMiB: 128, Kernel: "/k", Cmdline: "ip={ip} n={name}", IPBase: "192.0.2.161/24"}}
	for _, h := range hostNames {
		spec.Hosts = append(spec.Hosts, pool.HostEntry{Name: h, URI: "fake:///" + h})
	}
	ops := &pool.Ops{Hosts: spec.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
	if _, err := ops.WritePool(context.Background(), pool.Record{Spec: spec, Policy: pol}, nil); err != nil {
		t.Fatal(err)
	}
	return fd, ops, spec
}

// placement renders where members run: "web-1@h1 web-2@h2".
func placement(t *testing.T, ops *pool.Ops) string {
	t.Helper()
	ms, err := ops.Members(context.Background(), "web")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, m := range ms {
		s = append(s, fmt.Sprintf("%s@%s", m.Name, m.Host))
	}
	return strings.Join(s, " ")
}

func TestRecordRoundTrip(t *testing.T) {
	pol := pool.DefaultPolicy()
	tests := []struct {
		name string
		rec  pool.Record
	}{
		{"no policy", pool.Record{Generation: 3, Spec: pool.Spec{Name: "a", Size: 2}, Owner: pool.OwnerTerraform}},
		{"policy and owner kept", pool.Record{Generation: 7, Spec: pool.Spec{Name: "b", Hosts: []pool.HostEntry{{Name: "h1", URI: "u"}}},
			Policy: &pol, Owner: "someone"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := pool.EncodeRecord(tc.rec)
			if err != nil {
				t.Fatal(err)
			}
			if r.Kind != driver.RecordPool || r.Name != tc.rec.Spec.Name {
				t.Fatalf("record %s/%s", r.Kind, r.Name)
			}
			got, err := pool.DecodeRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.rec) {
				t.Fatalf("round trip: got %+v, want %+v", got, tc.rec)
			}
		})
	}
	// The JSON field names are a contract with every reader of the hosts.
	r, _ := pool.EncodeRecord(pool.Record{Spec: pool.Spec{Name: "c", MinSize: 1, MaxSize: 3, AntiAffinity: true,
		Template: pool.Template{MemoryMiB: 64, IPBase: "192.0.2.1/24"}}, Policy: &pol})
	for _, want := range []string{`"min_size":1`, `"max_size":3`, `"anti_affinity":true`, `"memory_mib":64`, `"ip_base":"192.0.2.1/24"`} {
		if !strings.Contains(r.Data[pool.RecordKeySpec], want) {
			t.Errorf("spec JSON %s lacks %s", r.Data[pool.RecordKeySpec], want)
		}
	}
	for _, want := range []string{`"cpu_high":0.8`, `"max_parallel_migrations":1`, `"bandwidth_mib":0`} {
		if !strings.Contains(r.Data[pool.RecordKeyPolicy], want) {
			t.Errorf("policy JSON %s lacks %s", r.Data[pool.RecordKeyPolicy], want)
		}
	}
	if r.Data[pool.RecordKeyOwner] != pool.OwnerTerraform {
		t.Errorf("owner %q, want the default %q", r.Data[pool.RecordKeyOwner], pool.OwnerTerraform)
	}
}

func TestScaleTo(t *testing.T) {
	tests := []struct {
		name     string
		start    int64 // members created first
		to       int64
		wantSize int64
		want     string
	}{
		{name: "up from zero spreads", start: 0, to: 3, wantSize: 3, want: "web-1@h1 web-2@h2 web-3@h3"},
		{name: "capped at max_size", start: 0, to: 9, wantSize: 4, want: "web-1@h1 web-2@h2 web-3@h3 web-4@h1"},
		{name: "down to min_size", start: 3, to: 0, wantSize: 1, want: "web-3@h3"}, // hosts emptied in name order
		{name: "no change", start: 2, to: 2, wantSize: 2, want: "web-1@h1 web-2@h2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fd, ops, _ := setup(t, 4, nil)
			ctx := context.Background()
			if tc.start > 0 {
				if _, err := ops.ScaleTo(ctx, "web", tc.start); err != nil {
					t.Fatal(err)
				}
			}
			if tc.to < 1 { // the shrink case: min_size 1
				pr, _, _, _ := ops.ReadPool(ctx, "web", nil)
				pr.Spec.MinSize = 1
				if _, err := ops.WritePool(ctx, pr, nil); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ops.ScaleTo(ctx, "web", tc.to)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.wantSize {
				t.Errorf("size %d, want %d", got, tc.wantSize)
			}
			if p := placement(t, ops); p != tc.want {
				t.Errorf("members %q, want %q", p, tc.want)
			}
			pr, _, _, err := ops.ReadPool(ctx, "web", nil)
			if err != nil || pr.Spec.Size != tc.wantSize {
				t.Errorf("stored size %d (%v), want %d", pr.Spec.Size, err, tc.wantSize)
			}
			// Members get their own address and name on the command line.
			for _, h := range hostNames {
				for _, dom := range fd.Host("fake:///" + h).Domains {
					if dom.Labels[pool.LabelPool] != "web" || dom.Labels[pool.LabelRole] != pool.RoleMember {
						t.Errorf("%s labels %v", dom.Name, dom.Labels)
					}
				}
			}
		})
	}
}

func TestScaleUpWakesAutoStandbyHost(t *testing.T) {
	fd, ops, _ := setup(t, 3, &pool.Policy{CPUHigh: 0.8, MemoryHigh: 0.85, CPULow: 0.3, MemoryLow: 0.3, TargetUtilisation: 0.7})
	ctx := context.Background()
	for _, h := range []string{"h2", "h3"} {
		if err := ops.SetAutoStandby(ctx, h, true); err != nil {
			t.Fatal(err)
		}
	}
	// h1 is full of CPU: a new member does not fit there.
	fd.AddDomain("fake:///h1", driver.Domain{Name: "busy", VCPUs: 2, MemoryMiB: 128}, 2)
	ops.Demand = func(uuid string) (float64, int64, bool) {
		for _, dom := range fd.Host("fake:///h1").Domains {
			if dom.UUID == uuid {
				return dom.Load, 0, true
			}
		}
		return 0, 0, false
	}
	if _, err := ops.ScaleTo(ctx, "web", 1); err != nil {
		t.Fatal(err)
	}
	if p := placement(t, ops); p != "web-1@h2" {
		t.Fatalf("members %q, want web-1 on h2 (woken)", p)
	}
	st, _ := ops.HostState(ctx, "h2")
	if st.AutoStandby {
		t.Error("h2 still on standby after taking a member")
	}
	st3, _ := ops.HostState(ctx, "h3")
	if !st3.AutoStandby {
		t.Error("h3 woken although h2 was enough")
	}
}

// PrepareRemoval gets every candidate in virtpool's order and chooses the
// victims; when it refuses, no member is removed and the stored size goes
// back. AfterRemove runs for each member removed.
func TestScaleInPrepareRemoval(t *testing.T) {
	tests := []struct {
		name      string
		pick      func(cands []pool.Member, k int) ([]pool.Member, error)
		wantErr   string
		want      string // members left
		wantSize  int64
		wantAfter string
	}{
		{name: "last candidates chosen", pick: func(c []pool.Member, k int) ([]pool.Member, error) { return c[len(c)-k:], nil },
			want: "web-1@h1", wantSize: 1, wantAfter: "web-2 web-3"},
		{name: "refused: nothing removed, size back", pick: func([]pool.Member, int) ([]pool.Member, error) {
			return nil, errors.New("drain failed")
		}, wantErr: "drain failed", want: "web-1@h1 web-2@h2 web-3@h3", wantSize: 3},
		{name: "too few chosen: nothing removed", pick: func(c []pool.Member, _ int) ([]pool.Member, error) { return c[:1], nil },
			wantErr: "1 members chosen to remove, want 2", want: "web-1@h1 web-2@h2 web-3@h3", wantSize: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, ops, _ := setup(t, 3, nil)
			ctx := context.Background()
			if _, err := ops.ScaleTo(ctx, "web", 3); err != nil {
				t.Fatal(err)
			}
			var order, after []string
			ops.PrepareRemoval = func(_ context.Context, _ pool.Record, cands []pool.Member, k int) ([]pool.Member, error) {
				for _, m := range cands {
					order = append(order, m.Name)
				}
				return tc.pick(cands, k)
			}
			ops.AfterRemove = func(_ context.Context, m pool.Member) { after = append(after, m.Name) }
			_, err := ops.ScaleTo(ctx, "web", 1)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, pool.ErrNotRemoved) {
					t.Fatalf("error %v, want %q wrapping ErrNotRemoved", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			// Spread over three hosts: hosts emptied in name order.
			if got := strings.Join(order, " "); got != "web-1 web-2 web-3" {
				t.Errorf("candidates %q, want virtpool's order web-1 web-2 web-3", got)
			}
			if p := placement(t, ops); p != tc.want {
				t.Errorf("members %q, want %q", p, tc.want)
			}
			if got := strings.Join(after, " "); got != tc.wantAfter {
				t.Errorf("AfterRemove ran for %q, want %q", got, tc.wantAfter)
			}
			pr, _, _, err := ops.ReadPool(ctx, "web", nil)
			if err != nil || pr.Spec.Size != tc.wantSize {
				t.Errorf("stored size %d (%v), want %d", pr.Spec.Size, err, tc.wantSize)
			}
		})
	}
}

func TestApplyMovesAndInFlight(t *testing.T) {
	fd, ops, spec := setup(t, 3, nil)
	ctx := context.Background()
	if _, err := ops.ScaleTo(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	v, err := ops.View(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan := scheduler.Plan{Moves: []scheduler.Move{{Guest: "web-1", From: "h1", To: "h3"}, {Guest: "web-2", From: "h2", To: "h3"}},
		Waves: [][]int{{0}, {1}}}
	// During the first move, the guest is on two hosts: a view taken then
	// reports it in flight and pins both copies.
	var mid *pool.View
	fd.DuringMigrate = func(req driver.MigrateRequest) error {
		if mid == nil {
			// The fake calls this without its lock held.
			mid, err = ops.View(ctx, nil)
		}
		return nil
	}
	opts := func(pool.Located) driver.MigrateOptions {
		return pool.MigrateOptions(driver.MigrateOptions{BandwidthMiBs: 50}, nil, spec.HasDisk())
	}
	res, err := ops.Apply(ctx, v, plan, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("%d results, want 2", len(res))
	}
	if p := placement(t, ops); p != "web-1@h3 web-2@h3" {
		t.Errorf("members %q after the plan", p)
	}
	if mid == nil || !reflect.DeepEqual(mid.InFlight, []string{"web-1"}) {
		t.Fatalf("in flight mid-migration: %+v", mid)
	}
	pinned := 0
	for _, g := range mid.Guests {
		if g.Pinned {
			pinned++
		}
	}
	if pinned != 2 {
		t.Errorf("%d copies pinned mid-migration, want 2", pinned)
	}
	for _, m := range fd.Migrations {
		if !m.Options.Persistent || !m.Options.UndefineSource || m.Options.BandwidthMiBs != 50 {
			t.Errorf("migration options %+v", m.Options)
		}
	}
	// Applying the same plan again is a no-op: every guest is already there.
	n := len(fd.Migrations)
	if _, err := ops.Apply(ctx, v, plan, opts); err != nil {
		t.Fatalf("re-apply: %v", err)
	}
	if len(fd.Migrations) != n {
		t.Errorf("re-apply migrated again")
	}
}

func TestApplyStopsAfterFailedWave(t *testing.T) {
	fd, ops, _ := setup(t, 3, nil)
	ctx := context.Background()
	if _, err := ops.ScaleTo(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	v, _ := ops.View(ctx, nil)
	plan := scheduler.Plan{Moves: []scheduler.Move{{Guest: "web-1", From: "h1", To: "h3"}, {Guest: "web-2", From: "h2", To: "h3"}},
		Waves: [][]int{{0}, {1}}}
	fd.DuringMigrate = func(req driver.MigrateRequest) error {
		if req.Domain == "web-1" {
			return errors.New("connection to the driver lost")
		}
		return nil
	}
	_, err := ops.Apply(ctx, v, plan, func(pool.Located) driver.MigrateOptions { return driver.MigrateOptions{} })
	if err == nil || !strings.Contains(err.Error(), "wave 1 of 2") {
		t.Fatalf("error %v, want wave 1 failure", err)
	}
	where := fd.Where("web-1")
	if len(where) != 1 || where["fake:///h1"] != driver.StateRunning {
		t.Errorf("web-1 after a failed migration: %v, want running on h1 only", where)
	}
	if w := fd.Where("web-2"); w["fake:///h2"] != driver.StateRunning {
		t.Errorf("web-2 moved although its wave never started: %v", w)
	}
	var names []string
	for _, m := range fd.Migrations {
		names = append(names, m.Domain)
	}
	sort.Strings(names)
	if len(names) != 0 {
		t.Errorf("migrations done: %v", names)
	}
}

// The planner's hosts have the capacity the host entries give them, not
// what the hosts report; an entry asking for more than the host has is an
// error naming the host.
func TestViewHostCapacity(t *testing.T) {
	_, ops, _ := setup(t, 3, nil)
	h1 := ops.Hosts["h1"]
	h1.Capacity = pool.Capacity{CPUs: 1.5, ReservedCPUs: 0.5, MemoryMiB: 4096, VCPURatio: 8}
	ops.Hosts["h1"] = h1
	v, err := ops.View(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]scheduler.Host{}
	for _, h := range v.Hosts {
		got[h.Name] = h
	}
	if h := got["h1"]; h.Cores != 1 || h.MemoryBytes != 4<<30 || h.VCPURatio != 8 {
		t.Errorf("h1: %v cores, %d bytes, vCPU ratio %v; want 1 core, 4 GiB, 8", h.Cores, h.MemoryBytes, h.VCPURatio)
	}
	if h := got["h2"]; h.Cores != 2 || h.MemoryBytes != 8<<30 {
		t.Errorf("h2: %v cores, %d bytes; want the host's 2 CPUs, 8 GiB", h.Cores, h.MemoryBytes)
	}
	h1.Capacity = pool.Capacity{MemoryMiB: 16384}
	ops.Hosts["h1"] = h1
	if _, err := ops.View(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "host h1: capacity: memory_mib = 16384 exceeds") {
		t.Errorf("View with too large a capacity: %v", err)
	}
}

// EachHost calls every host at once (a slow host does not hold the others
// back) and reports every failure.
func TestEachHost(t *testing.T) {
	names := []string{"h1", "h2", "h3"}
	started := make(chan struct{}, len(names))
	release := make(chan struct{})
	done := make(chan error)
	go func() {
		done <- pool.EachHost(names, func(n string) error {
			started <- struct{}{}
			<-release // each call waits until all have started
			if n == "h1" {
				return nil
			}
			return fmt.Errorf("host %s down", n)
		})
	}()
	for range names {
		<-started
	}
	close(release)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "host h2 down") || !strings.Contains(err.Error(), "host h3 down") {
		t.Errorf("EachHost = %v, want both failures", err)
	}
}
