package plugin

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/virtpool/virtpool/driver"
)

// fakeDriver returns canned values (or err) and records the arguments of
// its last call, so that both directions of each RPC can be checked.
type fakeDriver struct {
	hostInfo driver.HostInfo
	domains  []driver.Domain
	domain   driver.Domain
	stats    driver.HostStats
	progress []driver.MigrateProgress
	result   driver.MigrateResult
	records  []driver.Record
	job      driver.Job
	ckpt     driver.Checkpoint
	events   []driver.DomainEvent
	err      error
	// block makes Migrate wait, after its progress reports, until its ctx
	// ends; it then closes ctxDone.
	block   bool
	ctxDone chan struct{}

	mu   sync.Mutex
	args []any // of the last call, ctx left out
}

var _ driver.Driver = (*fakeDriver)(nil)

func (f *fakeDriver) record(args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.args = args
}

func (f *fakeDriver) lastArgs() []any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.args
}

func (f *fakeDriver) HostInfo(_ context.Context, uri string) (driver.HostInfo, error) {
	f.record(uri)
	if f.err != nil {
		return driver.HostInfo{}, f.err
	}
	return f.hostInfo, nil
}

func (f *fakeDriver) ListDomains(_ context.Context, uri string) ([]driver.Domain, error) {
	f.record(uri)
	if f.err != nil {
		return nil, f.err
	}
	return f.domains, nil
}

func (f *fakeDriver) CreateDomain(_ context.Context, uri string, spec driver.DomainSpec) (driver.Domain, error) {
	f.record(uri, spec)
	if f.err != nil {
		return driver.Domain{}, f.err
	}
	return f.domain, nil
}

func (f *fakeDriver) ShutdownDomain(_ context.Context, uri, name string, timeout time.Duration) error {
	f.record(uri, name, timeout)
	return f.err
}

func (f *fakeDriver) UndefineDomain(_ context.Context, uri, name string, opts driver.UndefineOptions) error {
	f.record(uri, name, opts)
	return f.err
}

func (f *fakeDriver) Stats(_ context.Context, uri string) (driver.HostStats, error) {
	f.record(uri)
	if f.err != nil {
		return driver.HostStats{}, f.err
	}
	return f.stats, nil
}

func (f *fakeDriver) Migrate(ctx context.Context, req driver.MigrateRequest, progress func(driver.MigrateProgress)) (driver.MigrateResult, error) {
	f.record(req)
	if f.err != nil {
		return driver.MigrateResult{}, f.err
	}
	// Called unguarded: the server must always pass a callback.
	for _, p := range f.progress {
		progress(p)
	}
	if f.block {
		<-ctx.Done()
		close(f.ctxDone)
		return driver.MigrateResult{}, &driver.Error{Op: "migrate", Host: req.SourceURI, Domain: req.Domain,
			Code: driver.CodeOperationAborted, Err: ctx.Err()}
	}
	return f.result, nil
}

func (f *fakeDriver) AbortMigration(_ context.Context, uri, name string) error {
	f.record(uri, name)
	return f.err
}

func (f *fakeDriver) CheckpointDomain(_ context.Context, uri, name string, opts driver.CheckpointOptions) (driver.Checkpoint, error) {
	f.record(uri, name, opts)
	return f.ckpt, f.err
}

func (f *fakeDriver) RestoreDomain(_ context.Context, uri, path string) error {
	f.record(uri, path)
	return f.err
}

func (f *fakeDriver) JobStats(_ context.Context, uri, name string) (driver.Job, error) {
	f.record(uri, name)
	return f.job, f.err
}

func (f *fakeDriver) Watch(ctx context.Context, uri string, fn func(driver.DomainEvent)) error {
	f.record(uri)
	for _, e := range f.events {
		fn(e)
	}
	if f.err != nil {
		return f.err
	}
	<-ctx.Done()
	return nil
}

func (f *fakeDriver) PutRecord(_ context.Context, uri string, r driver.Record) error {
	f.record(uri, r)
	return f.err
}

func (f *fakeDriver) ListRecords(_ context.Context, uri string) ([]driver.Record, error) {
	f.record(uri)
	if f.err != nil {
		return nil, f.err
	}
	return f.records, nil
}

func (f *fakeDriver) DeleteRecord(_ context.Context, uri, kind, name string) error {
	f.record(uri, kind, name)
	return f.err
}

// connect serves fake through go-plugin's in-process gRPC harness and
// returns the client side.
func connect(t *testing.T, fake driver.Driver) driver.Driver {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{PluginName: &GRPCPlugin{Impl: fake}})
	// Closing the client stops the server through go-plugin's controller;
	// calling the server's Stop as well would race inside go-plugin.
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := raw.(driver.Driver)
	if !ok {
		t.Fatalf("dispensed %T, not a driver.Driver", raw)
	}
	return d
}

type migration struct {
	Progress []driver.MigrateProgress
	Result   driver.MigrateResult
}

func TestRoundTrip(t *testing.T) {
	labels := map[string]string{"pool": "web", "role": "worker", "template": "alpine"}
	fake := &fakeDriver{
		hostInfo: driver.HostInfo{
			URI: "qemu+tls://h1/system", Hostname: "h1", UUID: "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
			CPUs: 16, MemoryBytes: 64 << 30, FreeMemoryBytes: 1<<40 + 3,
			Hypervisor: "QEMU", HypervisorVersion: "7.2.0", LibvirtVersion: "9.0.0",
			Accelerators: []string{driver.AccelKVM, driver.AccelTCG},
		},
		domains: []driver.Domain{
			{Name: "web-1", UUID: "u1", State: driver.StateRunning, Persistent: true, VCPUs: 2, MemoryMiB: 512, Labels: labels},
			{Name: "other", UUID: "u2", State: driver.StateShutoff, VCPUs: 1, MemoryMiB: 128},
		},
		domain: driver.Domain{Name: "web-2", UUID: "u3", State: driver.StatePaused, Persistent: true, VCPUs: 4, MemoryMiB: 2048, Labels: labels},
		stats: driver.HostStats{
			Time: time.Unix(1700000000, 123456789), CPUs: 8,
			CPUUserNs: 1, CPUSystemNs: 2, CPUIdleNs: 3, CPUIowaitNs: 1 << 62,
			MemoryTotalBytes: 32 << 30, MemoryFreeBytes: 5 << 30,
			Domains: []driver.DomainStats{
				{Name: "web-1", UUID: "u1", State: driver.StateRunning, CPUTimeNs: 99, VCPUs: 2, BalloonKiB: 524288,
					RSSKiB: 300000, BlockRdBytes: 4, BlockWrBytes: 5, NetRxBytes: 6, NetTxBytes: 7, Labels: labels},
				{Name: "other", State: driver.StateCrashed},
			},
		},
		progress: []driver.MigrateProgress{
			{Elapsed: 100 * time.Millisecond, DataTotal: 1000, DataProcessed: 10, DataRemaining: 990},
			{Elapsed: 1500 * time.Millisecond, DataTotal: 1000, DataProcessed: 600, DataRemaining: 400, ThrottlePercent: 30},
			{Elapsed: 3 * time.Second, DataTotal: 1200, DataProcessed: 1150, DataRemaining: 50, PostCopy: true},
		},
		result: driver.MigrateResult{UUID: "u1", Elapsed: 3200 * time.Millisecond, Downtime: 42 * time.Millisecond, Bytes: 1 << 33, PostCopy: true},
		job: driver.Job{State: driver.JobRunning, Progress: driver.MigrateProgress{Elapsed: 2 * time.Second, DataTotal: 1 << 30,
			DataProcessed: 1 << 29, DataRemaining: 1 << 29}, Downtime: 35 * time.Millisecond, DirtyRate: 3 << 20},
		ckpt: driver.Checkpoint{Elapsed: 140 * time.Millisecond, Downtime: -1, Bytes: 23 << 20},
		records: []driver.Record{
			{Kind: driver.RecordHost, Name: "h1", Generation: 1, Data: map[string]string{"maintenance": "true"}},
			{Kind: driver.RecordPool, Name: "web", Generation: 1 << 40, Data: map[string]string{"spec": `{"size":3}`, "policy": ""}},
		},
	}
	rec := driver.Record{Kind: driver.RecordPool, Name: "web", Generation: 7, Data: map[string]string{"spec": "{\"a\":\"<&>\"}"}}
	spec := driver.DomainSpec{
		Name: "web-2", VCPUs: 4, MemoryMiB: 2048, Accelerator: driver.AccelTCG,
		Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0",
		BaseImage: "/img/base.qcow2", OverlayDir: "/var/lib/vp", ReuseOverlay: true,
		Bridge: "br0", MAC: "52:54:00:00:00:01", Labels: labels,
	}
	req := driver.MigrateRequest{
		Domain: "web-1", SourceURI: "qemu+tls://h1/system", DestURI: "qemu+tls://h2/system",
		DestPeerURI: "qemu+tls://10.0.0.2/system", MigrationURI: "tcp://10.0.0.2",
		Options: driver.MigrateOptions{
			BandwidthMiBs: 64, MaxDowntime: 300 * time.Millisecond, AutoConverge: true, PostCopy: true,
			PostCopyAfter: 2 * time.Minute, Persistent: true, UndefineSource: true, CopyStorage: true,
			Tunnelled: true, Unsafe: true, TLS: true, ProgressTimeout: time.Minute, CompletionPerGiB: 90 * time.Second,
		},
	}
	d := connect(t, fake)
	ctx := context.Background()

	cases := []struct {
		name     string
		call     func() (any, error)
		want     any
		wantArgs []any
	}{
		{"HostInfo", func() (any, error) { return d.HostInfo(ctx, "qemu+tls://h1/system") },
			fake.hostInfo, []any{"qemu+tls://h1/system"}},
		{"ListDomains", func() (any, error) { return d.ListDomains(ctx, "qemu:///system") },
			fake.domains, []any{"qemu:///system"}},
		{"CreateDomain", func() (any, error) { return d.CreateDomain(ctx, "test:///default", spec) },
			fake.domain, []any{"test:///default", spec}},
		{"ShutdownDomain", func() (any, error) {
			return nil, d.ShutdownDomain(ctx, "qemu:///system", "web-1", 90*time.Second+1)
		}, nil, []any{"qemu:///system", "web-1", 90*time.Second + 1}},
		{"UndefineDomain", func() (any, error) {
			return nil, d.UndefineDomain(ctx, "qemu:///system", "web-1", driver.UndefineOptions{KeepStorage: true})
		}, nil, []any{"qemu:///system", "web-1", driver.UndefineOptions{KeepStorage: true}}},
		{"UndefineDomain, storage too", func() (any, error) {
			return nil, d.UndefineDomain(ctx, "qemu:///system", "web-1", driver.UndefineOptions{})
		}, nil, []any{"qemu:///system", "web-1", driver.UndefineOptions{}}},
		{"Stats", func() (any, error) { return d.Stats(ctx, "xen:///system") },
			fake.stats, []any{"xen:///system"}},
		{"Migrate", func() (any, error) {
			var m migration
			r, err := d.Migrate(ctx, req, func(p driver.MigrateProgress) { m.Progress = append(m.Progress, p) })
			m.Result = r
			return m, err
		}, migration{fake.progress, fake.result}, []any{req}},
		{"AbortMigration", func() (any, error) { return nil, d.AbortMigration(ctx, "qemu:///system", "web-1") },
			nil, []any{"qemu:///system", "web-1"}},
		{"JobStats", func() (any, error) { return d.JobStats(ctx, "qemu:///system", "web-1") },
			fake.job, []any{"qemu:///system", "web-1"}},
		{"CheckpointDomain", func() (any, error) {
			return d.CheckpointDomain(ctx, "qemu:///system", "web-1", driver.CheckpointOptions{Path: "/c/web-1.img", MaxDowntime: 20*time.Millisecond + 1})
		}, fake.ckpt, []any{"qemu:///system", "web-1", driver.CheckpointOptions{Path: "/c/web-1.img", MaxDowntime: 20*time.Millisecond + 1}}},
		{"RestoreDomain", func() (any, error) { return nil, d.RestoreDomain(ctx, "qemu:///system", "/c/web-1.img") },
			nil, []any{"qemu:///system", "/c/web-1.img"}},
		{"PutRecord", func() (any, error) { return nil, d.PutRecord(ctx, "qemu:///system", rec) },
			nil, []any{"qemu:///system", rec}},
		{"ListRecords", func() (any, error) { return d.ListRecords(ctx, "qemu:///system") },
			fake.records, []any{"qemu:///system"}},
		{"DeleteRecord", func() (any, error) { return nil, d.DeleteRecord(ctx, "qemu:///system", "pool", "web") },
			nil, []any{"qemu:///system", "pool", "web"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.call()
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
			if args := fake.lastArgs(); !reflect.DeepEqual(args, c.wantArgs) {
				t.Errorf("driver got args %+v\nwant %+v", args, c.wantArgs)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	notFound := &driver.Error{Op: "shutdown domain", Host: "qemu:///system", Domain: "vm1",
		Code: driver.CodeNoDomain, LibvirtDomain: 10, Err: errors.New("Domain not found: no domain with matching name 'vm1'")}
	noConnect := &driver.Error{Op: "connect", Host: "qemu+tls://h9/system",
		Code: driver.CodeNoConnect, LibvirtDomain: 7, Err: errors.New("unable to connect to server")}
	errs := []struct {
		name string
		err  error
	}{
		{"not found", notFound},
		{"no connect", noConnect},
		{"no libvirt code nor cause", &driver.Error{Op: "create domain", Host: "test:///default", Domain: "x"}},
		{"wrapped driver error", fmt.Errorf("retrying: %w", noConnect)},
		{"plain error", errors.New("disk full")},
		{"driver's own deadline", fmt.Errorf("wait for shutdown: %w", context.DeadlineExceeded)},
	}
	calls := []struct {
		name string
		call func(context.Context, driver.Driver) error
	}{
		{"HostInfo", func(ctx context.Context, d driver.Driver) error { _, err := d.HostInfo(ctx, "u"); return err }},
		{"ListDomains", func(ctx context.Context, d driver.Driver) error { _, err := d.ListDomains(ctx, "u"); return err }},
		{"CreateDomain", func(ctx context.Context, d driver.Driver) error {
			_, err := d.CreateDomain(ctx, "u", driver.DomainSpec{Name: "x"})
			return err
		}},
		{"ShutdownDomain", func(ctx context.Context, d driver.Driver) error { return d.ShutdownDomain(ctx, "u", "x", time.Second) }},
		{"UndefineDomain", func(ctx context.Context, d driver.Driver) error {
			return d.UndefineDomain(ctx, "u", "x", driver.UndefineOptions{})
		}},
		{"Stats", func(ctx context.Context, d driver.Driver) error { _, err := d.Stats(ctx, "u"); return err }},
		{"Migrate", func(ctx context.Context, d driver.Driver) error {
			_, err := d.Migrate(ctx, driver.MigrateRequest{Domain: "x"}, nil)
			return err
		}},
		{"AbortMigration", func(ctx context.Context, d driver.Driver) error { return d.AbortMigration(ctx, "u", "x") }},
		{"JobStats", func(ctx context.Context, d driver.Driver) error {
			_, err := d.JobStats(ctx, "u", "x")
			return err
		}},
		{"PutRecord", func(ctx context.Context, d driver.Driver) error {
			return d.PutRecord(ctx, "u", driver.Record{Kind: "pool", Name: "x"})
		}},
		{"ListRecords", func(ctx context.Context, d driver.Driver) error { _, err := d.ListRecords(ctx, "u"); return err }},
		{"DeleteRecord", func(ctx context.Context, d driver.Driver) error { return d.DeleteRecord(ctx, "u", "pool", "x") }},
	}
	for _, e := range errs {
		fake := &fakeDriver{err: e.err}
		d := connect(t, fake)
		for _, c := range calls {
			t.Run(e.name+"/"+c.name, func(t *testing.T) {
				got := c.call(context.Background(), d)
				if got == nil {
					t.Fatal("no error")
				}
				if got.Error() != e.err.Error() {
					t.Errorf("message %q, want %q", got.Error(), e.err.Error())
				}
				var want, de *driver.Error
				if !errors.As(e.err, &want) {
					if errors.As(got, &de) {
						t.Errorf("got a *driver.Error %+v from a plain error", de)
					}
				} else {
					if !errors.As(got, &de) {
						t.Fatalf("got %T %v, want a *driver.Error", got, got)
					}
					if de.Op != want.Op || de.Host != want.Host || de.Domain != want.Domain ||
						de.Code != want.Code || de.LibvirtDomain != want.LibvirtDomain {
						t.Errorf("got %+v, want %+v", *de, *want)
					}
					if (de.Err == nil) != (want.Err == nil) || de.Err != nil && de.Err.Error() != want.Err.Error() {
						t.Errorf("cause %v, want %v", de.Err, want.Err)
					}
					if driver.CodeOf(got) != want.Code {
						t.Errorf("CodeOf = %d, want %d", driver.CodeOf(got), want.Code)
					}
				}
				for _, ce := range []error{context.Canceled, context.DeadlineExceeded} {
					if errors.Is(got, ce) != errors.Is(e.err, ce) {
						t.Errorf("errors.Is(%v) = %v, want %v", ce, errors.Is(got, ce), errors.Is(e.err, ce))
					}
				}
			})
		}
	}
}

func TestStatusCodes(t *testing.T) {
	cases := []struct {
		err  error
		want codes.Code
	}{
		{&driver.Error{Code: driver.CodeNoDomain}, codes.NotFound},
		{&driver.Error{Code: driver.CodeNoConnect}, codes.Unavailable},
		{&driver.Error{Code: driver.CodeSystemError}, codes.Unavailable},
		{fmt.Errorf("x: %w", &driver.Error{Code: driver.CodeRPC}), codes.Unavailable},
		{&driver.Error{Code: driver.CodeOperationAborted}, codes.Aborted},
		{&driver.Error{Code: driver.CodeInvalidArg}, codes.Unknown},
		{&driver.Error{}, codes.Unknown},
		{errors.New("plain"), codes.Unknown},
		{context.Canceled, codes.Canceled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
	}
	for _, c := range cases {
		if got := status.Code(toStatus(c.err)); got != c.want {
			t.Errorf("%#v: code %v, want %v", c.err, got, c.want)
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) != nil")
	}
}

func TestMigrateCancel(t *testing.T) {
	fake := &fakeDriver{
		progress: []driver.MigrateProgress{{DataTotal: 100, DataProcessed: 1}},
		block:    true,
		ctxDone:  make(chan struct{}),
	}
	d := connect(t, fake)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := 0
	_, err := d.Migrate(ctx, driver.MigrateRequest{Domain: "vm1"}, func(driver.MigrateProgress) {
		reports++
		cancel() // mid-migration: the driver has started and is blocked
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Migrate: %v, want context.Canceled", err)
	}
	if reports != 1 {
		t.Errorf("%d progress reports, want 1", reports)
	}
	select {
	case <-fake.ctxDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the driver's ctx was not cancelled")
	}
}

func TestMigrateNilProgress(t *testing.T) {
	fake := &fakeDriver{
		progress: []driver.MigrateProgress{{DataTotal: 2, DataProcessed: 1}, {DataTotal: 2, DataProcessed: 2}},
		result:   driver.MigrateResult{UUID: "u1", Bytes: 2},
	}
	d := connect(t, fake)
	got, err := d.Migrate(context.Background(), driver.MigrateRequest{Domain: "vm1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != fake.result {
		t.Errorf("got %+v, want %+v", got, fake.result)
	}
}

// TestWatch streams events through gRPC until the caller cancels, and
// passes the driver's error when the host is lost.
func TestWatch(t *testing.T) {
	evs := []driver.DomainEvent{
		{Time: time.Unix(1700000000, 5), Domain: "web-1", UUID: "u1", Kind: driver.EventLifecycle,
			Event: driver.LifecycleStarted, Detail: driver.DetailMigrated},
		{Time: time.Unix(1700000001, 0), Domain: "web-1", UUID: "u1", Kind: driver.EventJobCompleted,
			Job: driver.Job{State: driver.JobCompleted, Downtime: 25 * time.Millisecond, Progress: driver.MigrateProgress{DataProcessed: 1 << 20}}},
	}
	d := connect(t, &fakeDriver{events: evs})
	ctx, cancel := context.WithCancel(context.Background())
	var got []driver.DomainEvent
	err := d.Watch(ctx, "qemu:///system", func(e driver.DomainEvent) {
		got = append(got, e)
		if len(got) == len(evs) {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("Watch ended with %v after its caller cancelled", err)
	}
	if !reflect.DeepEqual(got, evs) {
		t.Errorf("got  %+v\nwant %+v", got, evs)
	}
	lost := &driver.Error{Op: "watch", Host: "qemu+tls://h9/system", Code: driver.CodeNoConnect, Err: errors.New("connection to the host lost")}
	err = connect(t, &fakeDriver{err: lost}).Watch(context.Background(), "qemu+tls://h9/system", func(driver.DomainEvent) {})
	var de *driver.Error
	if !errors.As(err, &de) || de.Code != driver.CodeNoConnect || de.Host != lost.Host {
		t.Errorf("Watch of a lost host: %v, want %v", err, lost)
	}
}
