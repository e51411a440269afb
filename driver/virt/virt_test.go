package virt

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
)

// These are fast unit tests against libvirt's in-process test driver. They
// prove the logic and error paths, not the integration with QEMU: that is
// acctest's job, on the lab's real libvirt daemons.
const testURI = "test:///default"

func newTestDriver(t *testing.T) *Driver {
	t.Helper()
	d := New(nil)
	t.Cleanup(func() { d.Close() })
	return d
}

func kernelSpec(name string) driver.DomainSpec {
	return driver.DomainSpec{
		Name: name, VCPUs: 1, MemoryMiB: 64,
		Kernel: "/boot/vmlinux", Initrd: "/boot/initrd", Cmdline: "console=ttyS0",
		Labels: map[string]string{"pool": "web", "role": "member"},
	}
}

func TestHostInfo(t *testing.T) {
	d := newTestDriver(t)
	hi, err := d.HostInfo(context.Background(), testURI)
	if err != nil {
		t.Fatal(err)
	}
	if hi.CPUs <= 0 || hi.MemoryBytes == 0 || hi.Hypervisor != "TEST" || len(hi.Accelerators) == 0 {
		t.Fatalf("incomplete host info: %+v", hi)
	}
}

func TestCreateListStatsShutdownUndefine(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	spec := kernelSpec("vp-unit-1")
	got, err := d.CreateDomain(ctx, testURI, spec)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != driver.StateRunning || got.VCPUs != 1 || got.MemoryMiB != 64 || !got.Persistent {
		t.Fatalf("created domain: %+v", got)
	}
	doms, err := d.ListDomains(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, dd := range doms {
		if dd.Name == spec.Name {
			found = true
			if dd.Labels["pool"] != "web" || dd.Labels["role"] != "member" || len(dd.Labels) != 2 {
				t.Errorf("labels = %v, want %v", dd.Labels, spec.Labels)
			}
		}
	}
	if !found {
		t.Fatalf("%s not listed in %+v", spec.Name, doms)
	}
	hs, err := d.Stats(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	if hs.CPUs <= 0 || hs.MemoryTotalBytes == 0 {
		t.Errorf("host stats: %+v", hs)
	}
	var ds *driver.DomainStats
	for i := range hs.Domains {
		if hs.Domains[i].Name == spec.Name {
			ds = &hs.Domains[i]
		}
	}
	if ds == nil || ds.State != driver.StateRunning || ds.Labels["pool"] != "web" {
		t.Fatalf("domain stats for %s: %+v", spec.Name, ds)
	}

	if err := d.UndefineDomain(ctx, testURI, spec.Name, driver.UndefineOptions{}); driver.CodeOf(err) != driver.CodeOperationInvalid {
		t.Fatalf("undefine of a running domain: got %v, want operation-invalid", err)
	}
	if err := d.ShutdownDomain(ctx, testURI, spec.Name, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.ShutdownDomain(ctx, testURI, spec.Name, time.Second); err != nil {
		t.Fatalf("second shutdown should be a no-op: %v", err)
	}
	if err := d.UndefineDomain(ctx, testURI, spec.Name, driver.UndefineOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := d.UndefineDomain(ctx, testURI, spec.Name, driver.UndefineOptions{}); err != nil {
		t.Fatalf("second undefine should be a no-op: %v", err)
	}
	doms, _ = d.ListDomains(ctx, testURI)
	for _, dd := range doms {
		if dd.Name == spec.Name {
			t.Fatalf("%s still defined after undefine", spec.Name)
		}
	}
}

func TestCreateDomainInvalidSpec(t *testing.T) {
	d := newTestDriver(t)
	tests := []struct {
		name string
		mod  func(*driver.DomainSpec)
		want string
	}{
		{"no name", func(s *driver.DomainSpec) { s.Name = "" }, "name is empty"},
		{"zero vcpus", func(s *driver.DomainSpec) { s.VCPUs = 0 }, "vcpus must be positive"},
		{"zero memory", func(s *driver.DomainSpec) { s.MemoryMiB = 0 }, "memory_mib must be positive"},
		{"no boot source", func(s *driver.DomainSpec) { s.Kernel = "" }, "set kernel or base_image"},
		{"bad accel", func(s *driver.DomainSpec) { s.Accelerator = "hvf" }, `accelerator "hvf"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := kernelSpec("vp-unit-bad")
			tt.mod(&s)
			_, err := d.CreateDomain(context.Background(), testURI, s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want error containing %q", err, tt.want)
			}
			if driver.CodeOf(err) != driver.CodeInvalidArg {
				t.Errorf("code = %d, want %d", driver.CodeOf(err), driver.CodeInvalidArg)
			}
		})
	}
}

func TestErrorsKeepLibvirtCode(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	err := d.AbortMigration(ctx, testURI, "no-such-domain")
	var de *driver.Error
	if !errors.As(err, &de) {
		t.Fatalf("got %T %v, want *driver.Error", err, err)
	}
	if de.Code != driver.CodeNoDomain || de.Domain != "no-such-domain" || de.Host != testURI || de.Op != "abort migration" {
		t.Fatalf("error lost its context: %+v", de)
	}
	if !strings.Contains(err.Error(), "abort migration no-such-domain on test:///default") {
		t.Errorf("message %q does not say what failed where", err)
	}

	_, err = d.HostInfo(ctx, "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
	if err == nil || driver.CodeOf(err) == 0 || !strings.Contains(err.Error(), "/nonexistent/libvirt-sock") {
		t.Fatalf("unreachable host: got %v (code %d), want a coded error naming the socket", err, driver.CodeOf(err))
	}

	_, err = d.HostInfo(ctx, "")
	if err == nil || !strings.Contains(err.Error(), "empty libvirt URI") {
		t.Fatalf("empty URI: got %v", err)
	}
}

func TestMigrateErrors(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	_, err := d.Migrate(ctx, driver.MigrateRequest{Domain: "x", SourceURI: testURI, DestURI: testURI}, nil)
	if driver.CodeOf(err) != driver.CodeInvalidArg || !strings.Contains(err.Error(), "same host") {
		t.Fatalf("same host: got %v", err)
	}
	_, err = d.Migrate(ctx, driver.MigrateRequest{Domain: "x", SourceURI: testURI, DestURI: "qemu+unix:///system?socket=/nonexistent/sock"}, nil)
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/sock") {
		t.Fatalf("unreachable destination: got %v", err)
	}
}

func TestMigrateFlags(t *testing.T) {
	base := migrateFlags(driver.MigrateOptions{})
	all := migrateFlags(driver.MigrateOptions{AutoConverge: true, PostCopy: true, Persistent: true,
		UndefineSource: true, CopyStorage: true, Tunnelled: true, Unsafe: true, TLS: true})
	if base == 0 || all == base {
		t.Fatalf("flags: base %#x all %#x", base, all)
	}
	// Every option adds its own bit.
	opts := []driver.MigrateOptions{{AutoConverge: true}, {PostCopy: true}, {Persistent: true},
		{UndefineSource: true}, {CopyStorage: true}, {Tunnelled: true}, {Unsafe: true}, {TLS: true}}
	seen := base
	for _, o := range opts {
		f := migrateFlags(o)
		bit := f &^ base
		if bit == 0 || seen&bit != 0 {
			t.Fatalf("option %+v: bit %#x not distinct", o, bit)
		}
		seen |= bit
	}
	if seen != all {
		t.Fatalf("union %#x != all %#x", seen, all)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	m := newMetadata(map[string]string{"b": "2", "a": "1"}, "/img/x.qcow2")
	s, err := m.marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := `<domain><label key="a">1</label><label key="b">2</label><overlay>/img/x.qcow2</overlay></domain>`; s != want {
		t.Fatalf("marshal = %s, want %s (sorted, stable)", s, want)
	}
}

func TestJobOf(t *testing.T) {
	tests := []struct {
		name string
		in   lv.DomainJobInfo
		want driver.Job
	}{
		{"none", lv.DomainJobInfo{Type: lv.DOMAIN_JOB_NONE}, driver.Job{State: driver.JobNone}},
		{"running", lv.DomainJobInfo{Type: lv.DOMAIN_JOB_UNBOUNDED, TimeElapsed: 1500, DataTotal: 300, DataProcessed: 100,
			DataRemaining: 200, Downtime: 40, MemDirtyRate: 256, MemPageSizeSet: true, MemPageSize: 4096},
			driver.Job{State: driver.JobRunning, Progress: driver.MigrateProgress{Elapsed: 1500 * time.Millisecond, DataTotal: 300,
				DataProcessed: 100, DataRemaining: 200}, Downtime: 40 * time.Millisecond, DirtyRate: 1 << 20}},
		{"page size unknown", lv.DomainJobInfo{Type: lv.DOMAIN_JOB_BOUNDED, MemDirtyRate: 2},
			driver.Job{State: driver.JobRunning, DirtyRate: 8192}},
		{"completed", lv.DomainJobInfo{Type: lv.DOMAIN_JOB_COMPLETED, TimeElapsed: 800, DataProcessed: 1 << 20, Downtime: 25},
			driver.Job{State: driver.JobCompleted, Progress: driver.MigrateProgress{Elapsed: 800 * time.Millisecond, DataProcessed: 1 << 20},
				Downtime: 25 * time.Millisecond}},
		{"cancelled", lv.DomainJobInfo{Type: lv.DOMAIN_JOB_CANCELLED}, driver.Job{State: driver.JobFailed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := jobOf(&tc.in); got != tc.want {
				t.Errorf("jobOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestWatch(t *testing.T) {
	d := newTestDriver(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := make(chan driver.DomainEvent, 16)
	done := make(chan error, 1)
	go func() { done <- d.Watch(ctx, testURI, func(e driver.DomainEvent) { events <- e }) }()
	// The watch is registered once an event of a domain created after it
	// arrives; create until one does (registration is asynchronous).
	var got driver.DomainEvent
	for i := 0; got.Domain == ""; i++ {
		if i == 50 {
			t.Fatal("no event for 50 domains created")
		}
		name := fmt.Sprintf("watched-%d", i)
		if _, err := d.CreateDomain(ctx, testURI, kernelSpec(name)); err != nil {
			t.Fatal(err)
		}
		select {
		case got = <-events:
		case <-time.After(100 * time.Millisecond):
		}
	}
	if got.Kind != driver.EventLifecycle || !strings.HasPrefix(got.Domain, "watched-") || got.UUID == "" {
		t.Errorf("event %+v, want a lifecycle event of a watched-N domain", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch after cancel: %v", err)
	}
}

func TestLifecycleNames(t *testing.T) {
	tests := []struct {
		ev             lv.DomainEventType
		detail         int
		event, detail2 string
	}{
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_MIGRATED), driver.LifecycleStarted, driver.DetailMigrated},
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_BOOTED), driver.LifecycleStarted, driver.DetailBooted},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_MIGRATED), driver.LifecycleStopped, driver.DetailMigrated},
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_DESTROYED), driver.LifecycleStopped, driver.DetailDestroyed},
		{lv.DOMAIN_EVENT_RESUMED, int(lv.DOMAIN_EVENT_RESUMED_POSTCOPY), driver.LifecycleResumed, driver.DetailPostCopy},
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_IOERROR), driver.LifecycleSuspended, ""},
		{lv.DOMAIN_EVENT_PMSUSPENDED, 0, driver.LifecycleOther, ""},
	}
	for _, tc := range tests {
		if e, d := lifecycleNames(tc.ev, tc.detail); e != tc.event || d != tc.detail2 {
			t.Errorf("lifecycleNames(%v, %d) = %s/%s, want %s/%s", tc.ev, tc.detail, e, d, tc.event, tc.detail2)
		}
	}
	for _, tc := range []struct {
		name, event string
		want        bool
	}{
		{kvmProbePrefix + "1", driver.LifecycleStarted, true},
		{recordPrefix + "pool-web", driver.LifecycleDefined, true},
		{recordPrefix + "guest", driver.LifecycleStarted, false},
		{"web-1", driver.LifecycleDefined, false},
	} {
		if got := internalName(tc.name, tc.event); got != tc.want {
			t.Errorf("internalName(%q, %s) = %v, want %v", tc.name, tc.event, got, tc.want)
		}
	}
}
