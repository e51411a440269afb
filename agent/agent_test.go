package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

const (
	uri1 = "test:///h1"
	uri2 = "test:///h2"
)

// lab is two fake hosts of 2 CPUs, each planned with 1 core (cpus = 1),
// a pool "web" of two members on h1, and an agent over them.
type lab struct {
	d *pooltest.Driver
	a *Agent
}

func newLab(t *testing.T) *lab {
	t.Helper()
	d := pooltest.New(2, 8, uri1, uri2)
	spec := pool.Spec{Name: "web", Size: 2, MinSize: 1, MaxSize: 4,
		Hosts: []pool.HostEntry{{Name: "h1", URI: uri1}, {Name: "h2", URI: uri2}}}
	rec, err := pool.EncodeRecord(pool.Record{Generation: 1, Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.PutRecord(context.Background(), uri1, rec); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 2; n++ {
		d.AddDomain(uri1, driver.Domain{Name: pool.MemberName("web", n), VCPUs: 1, MemoryMiB: 1024,
			Labels: pool.MemberLabels(spec, n)}, 0.25)
	}
	cfg := Config{Config: fleet.Config{
		Seeds:          []fleet.Seed{{Name: "h1", URI: uri1, Capacity: pool.Capacity{CPUs: 1}}, {Name: "h2", URI: uri2, Capacity: pool.Capacity{CPUs: 1}}},
		SampleInterval: time.Second, Retention: time.Minute, MaxSamples: 100,
	}, Listen: "127.0.0.1:0", MaxEvents: 100}
	f := fleet.New(cfg.Config, func(context.Context) (driver.Driver, error) { return d, nil }, hclog.NewNullLogger())
	f.Now = d.Now
	return &lab{d: d, a: New(cfg, f, hclog.NewNullLogger())}
}

// step advances the clock a second and samples.
func (l *lab) step(t *testing.T) State {
	t.Helper()
	l.d.Advance(time.Second)
	if err := l.a.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l.a.State()
}

func host(t *testing.T, s State, name string) Host {
	t.Helper()
	for _, h := range s.Hosts {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no host %s in %+v", name, s.Hosts)
	return Host{}
}

func kinds(evs []event.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Kind+":"+e.Guest+e.Host+e.Pool)
	}
	return out
}

func TestStateFollowsLoad(t *testing.T) {
	l := newLab(t)
	l.step(t)
	s := l.step(t)
	h1 := host(t, s, "h1")
	// Two guests at 0.25 core on a host planned with 1 core.
	if h1.State != HostActive || h1.CapacityCPUs != 1 || h1.CPURatio < 0.499 || h1.CPURatio > 0.501 {
		t.Errorf("h1 = %+v, want active, 1 core, cpu 0.5", h1)
	}
	if want := 2048.0 / 8192; h1.MemoryRatio != want {
		t.Errorf("h1 memory ratio %v, want %v", h1.MemoryRatio, want)
	}
	if len(h1.Guests) != 2 || h1.Guests[0].Pool != "web" || h1.Guests[0].CPUCores < 0.249 {
		t.Errorf("h1 guests %+v", h1.Guests)
	}
	if p := s.Pools; len(p) != 1 || p[0].Size != 2 || p[0].Min != 1 || p[0].Max != 4 {
		t.Errorf("pools %+v", p)
	}
	l.d.SetLoad("web-1", 0.75)
	l.d.SetIO("web-1", 3000, 300)
	l.d.SetIO("web-2", 1000, 100)
	s = l.step(t)
	h1 = host(t, s, "h1")
	if h1.CPURatio < 0.999 || h1.CPURatio > 1.001 {
		t.Errorf("after load: h1 cpu %v, want 1", h1.CPURatio)
	}
	// A host's disk and network rates are its guests' summed.
	if h1.DiskBps != 4000 || h1.NetBps != 400 || h1.Guests[0].DiskBps != 3000 || h1.Guests[1].NetBps != 100 {
		t.Errorf("after I/O: h1 disk %v B/s, network %v B/s (guests %+v), want 4000 and 400", h1.DiskBps, h1.NetBps, h1.Guests)
	}
	hist := l.a.History()["h1"]
	if len(hist) != 2 || hist[0].CPURatio > 0.501 || hist[1].CPURatio < 0.999 {
		t.Errorf("history %+v", hist)
	}
}

func TestEvents(t *testing.T) {
	ctx := context.Background()
	l := newLab(t)
	l.step(t)
	if evs := l.a.Events().Since(0); len(evs) != 0 {
		t.Fatalf("first sample made events: %v", kinds(evs))
	}
	// A migration seen in flight, then finished.
	l.d.DuringMigrate = func(driver.MigrateRequest) error {
		s := l.step(t)
		if len(s.Migrations) != 1 || s.Migrations[0].From != "h1" || s.Migrations[0].To != "h2" ||
			s.Migrations[0].DataProcessed != 512<<20 || s.Migrations[0].DataTotal != 1<<30 || s.Migrations[0].ExpectedDowntimeMs != 30 {
			t.Errorf("in flight: %+v, want h1→h2, 512 MiB of 1 GiB sent, 30 ms expected", s.Migrations)
		}
		return nil
	}
	if _, err := l.d.Migrate(ctx, driver.MigrateRequest{Domain: "web-2", SourceURI: uri1, DestURI: uri2}, nil); err != nil {
		t.Fatal(err)
	}
	l.d.DuringMigrate = nil
	l.step(t)
	// A host down: its guests are unknown, not stopped; then up again.
	l.d.Host(uri2).Down = true
	s := l.step(t)
	if h2 := host(t, s, "h2"); h2.State != HostDown || h2.Error == "" {
		t.Errorf("h2 = %+v, want down with its error", h2)
	}
	l.d.Host(uri2).Down = false
	l.step(t)
	// A member stops: the pool shrinks.
	if err := l.d.ShutdownDomain(ctx, uri1, "web-1", 0); err != nil {
		t.Fatal(err)
	}
	l.step(t)
	got := kinds(l.a.Events().Since(0))
	want := []string{"migration_started:web-2", "migration_finished:web-2web", "host_down:h2", "host_up:h2",
		"guest_stopped:web-1h1web", "pool_resized:web"}
	if len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d = %s, want %s (all: %v)", i, got[i], want[i], got)
		}
	}
	evs := l.a.Events().Since(0)
	if e := evs[1]; e.From != "h1" || e.To != "h2" || e.DowntimeMs != 20 || e.Message != "web-2 moved h1 → h2 in 500 ms, downtime 20 ms" {
		t.Errorf("migration event %+v", e)
	}
	if e := evs[5]; e.Direction != "down" || e.Size != 1 {
		t.Errorf("resize event %+v, want down to 1", e)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{l.a})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var resizes []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == "virtpool_pool_resizes_total" {
				resizes = append(resizes, fmt.Sprintf("%v %v", m.GetLabel(), m.GetCounter().GetValue()))
			}
		}
	}
	if len(resizes) != 1 || !strings.Contains(resizes[0], `value:"down"`) || !strings.HasSuffix(resizes[0], " 1") {
		t.Errorf("virtpool_pool_resizes_total: %v, want web down 1", resizes)
	}
	if f := l.a.State().Finished; len(f) != 1 || f[0].Guest != "web-2" || f[0].DowntimeMs != 20 || f[0].ElapsedMs != 500 {
		t.Errorf("finished migrations %+v", f)
	}
	if e := evs[5]; e.Size != 1 {
		t.Errorf("pool event %+v, want size 1", e)
	}
	if n := len(l.a.Events().Since(evs[3].Seq)); n != 2 {
		t.Errorf("since seq %d: %d events, want 2", evs[3].Seq, n)
	}
}

func TestHealth(t *testing.T) {
	l := newLab(t)
	if err := l.a.Health(); err == nil {
		t.Error("healthy before any sample")
	}
	l.step(t)
	if err := l.a.Health(); err != nil {
		t.Errorf("after a sample: %v", err)
	}
	l.d.Host(uri1).Down = true
	l.d.Host(uri2).Down = true
	for range 4 {
		l.d.Advance(time.Second)
		if err := l.a.Step(context.Background()); err == nil {
			t.Fatal("a sample of no host succeeded")
		}
	}
	if err := l.a.Health(); err == nil {
		t.Error("healthy with every host down for 4 intervals")
	}
	s := l.a.State()
	for _, h := range s.Hosts {
		if h.State != HostDown {
			t.Errorf("%s is %s, want down", h.Name, h.State)
		}
	}
}

func TestEventsBoundedAndSlowSubscriber(t *testing.T) {
	e := NewEvents(10)
	past, next, cancel := e.Subscribe(0)
	defer cancel()
	if len(past) != 0 {
		t.Fatalf("past %v", past)
	}
	for i := range 300 { // more than the subscriber's buffer (256)
		e.Add(event.Event{Kind: event.GuestStarted, Guest: string(rune('a' + i%26))})
	}
	if got := e.Since(0); len(got) != 10 || got[0].Seq != 291 {
		t.Errorf("kept %d events from seq %d, want 10 from 291", len(got), got[0].Seq)
	}
	n := 0
	for range next {
		n++
	}
	if n != 256 {
		t.Errorf("slow subscriber got %d events before being dropped, want 256", n)
	}
}

// TestWatchAnnouncesMigration follows the hosts' events: a migration no
// sample sees in flight is announced when its incoming side starts, once,
// even when a sample then sees it in flight too; an event asks for a
// sample.
func TestWatchAnnouncesMigration(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l.step(t)
	l.a.watchHosts(ctx)
	started := func() int {
		n := 0
		for _, e := range l.a.Events().Since(0) {
			if e.Kind == event.MigrationStarted && e.Guest == "web-1" && e.From == "h1" && e.To == "h2" {
				n++
			}
		}
		return n
	}
	// The watches are registered asynchronously: the hook waits for the
	// announcement, and fails the migration (the guest stays on h1) if
	// it does not come, for another try.
	l.d.DuringMigrate = func(driver.MigrateRequest) error {
		for range 100 {
			if started() > 0 {
				l.step(t) // sees it in flight: no second announcement
				return nil
			}
			time.Sleep(10 * time.Millisecond)
		}
		return errors.New("no announcement")
	}
	for i := 0; started() == 0; i++ {
		if i == 20 {
			t.Fatal("no migration start announced in 20 migrations")
		}
		_, _ = l.d.Migrate(ctx, driver.MigrateRequest{Domain: "web-1", SourceURI: uri1, DestURI: uri2}, nil)
	}
	l.step(t)
	if n := started(); n != 1 {
		t.Errorf("%d announcements of the migration, want 1: %v", n, kinds(l.a.Events().Since(0)))
	}
	select {
	case <-l.a.kick:
	default:
		t.Error("the migration's events asked for no sample")
	}
}

// TestSampleThenAnnounce: a sample that sees a migration in flight
// announces its start, and the incoming side's event that races with it
// (before the sample's state is stored) says nothing more.
func TestSampleThenAnnounce(t *testing.T) {
	l := newLab(t)
	start := event.Event{Kind: event.MigrationStarted, UUID: "u-1", Guest: "web-1", From: "h1", To: "h2"}
	l.a.mu.Lock()
	kept := l.a.unannounced([]event.Event{start}, State{Migrations: []Migration{{UUID: "u-1", Guest: "web-1"}}})
	l.a.mu.Unlock()
	if len(kept) != 1 {
		t.Fatalf("the sample's start dropped: %v", kept)
	}
	before := len(l.a.Events().Since(0))
	l.a.announce("h2", driver.DomainEvent{UUID: "u-1", Domain: "web-1", Time: time.Now()})
	if evs := l.a.Events().Since(0); len(evs) != before {
		t.Errorf("announced again after the sample: %v", kinds(evs))
	}
}
