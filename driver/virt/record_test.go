package virt

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/virtpool/virtpool/driver"
)

func TestRecordLifecycle(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	// Values that XML must escape, and JSON as the provider stores it.
	v1 := driver.Record{Kind: driver.RecordPool, Name: "rec-web.1", Generation: 1,
		Data: map[string]string{"spec": `{"name":"web","cmdline":"a<b & c>d \"q\""}`, "policy": ""}}
	v2 := driver.Record{Kind: driver.RecordPool, Name: "rec-web.1", Generation: 2,
		Data: map[string]string{"spec": `{"size":5}`}}
	host := driver.Record{Kind: driver.RecordHost, Name: "rec-h1", Generation: 3, Data: map[string]string{"maintenance": "true"}}
	t.Cleanup(func() {
		_ = d.DeleteRecord(ctx, testURI, v1.Kind, v1.Name)
		_ = d.DeleteRecord(ctx, testURI, host.Kind, host.Name)
	})

	steps := []struct {
		name string
		do   func() error
		want []driver.Record // records with rec- names expected after the step
	}{
		{"put", func() error { return d.PutRecord(ctx, testURI, v1) }, []driver.Record{v1}},
		{"put again is idempotent", func() error { return d.PutRecord(ctx, testURI, v1) }, []driver.Record{v1}},
		{"replace", func() error { return d.PutRecord(ctx, testURI, v2) }, []driver.Record{v2}},
		{"another kind", func() error { return d.PutRecord(ctx, testURI, host) }, []driver.Record{host, v2}},
		{"delete", func() error { return d.DeleteRecord(ctx, testURI, v2.Kind, v2.Name) }, []driver.Record{host}},
		{"delete missing", func() error { return d.DeleteRecord(ctx, testURI, v2.Kind, v2.Name) }, []driver.Record{host}},
		{"delete last", func() error { return d.DeleteRecord(ctx, testURI, host.Kind, host.Name) }, nil},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		all, err := d.ListRecords(ctx, testURI)
		if err != nil {
			t.Fatalf("%s: list: %v", s.name, err)
		}
		var got []driver.Record
		for _, r := range all {
			if strings.HasPrefix(r.Name, "rec-") {
				got = append(got, r)
			}
		}
		if !reflect.DeepEqual(got, s.want) {
			t.Fatalf("%s: records\n got %+v\nwant %+v", s.name, got, s.want)
		}
	}
}

// Records are data, not guests: ListDomains and Stats must not show them,
// or the scheduler would count them and the autoscaler would try to move them.
func TestRecordsHiddenFromDomains(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	r := driver.Record{Kind: driver.RecordPool, Name: "hidden", Generation: 1, Data: map[string]string{"k": "v"}}
	if err := d.PutRecord(ctx, testURI, r); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.DeleteRecord(ctx, testURI, r.Kind, r.Name) })
	dname := RecordDomainName(r.Kind, r.Name)
	doms, err := d.ListDomains(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	for _, dd := range doms {
		if dd.Name == dname {
			t.Errorf("ListDomains shows record %s", dname)
		}
	}
	hs, err := d.Stats(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	for _, ds := range hs.Domains {
		if ds.Name == dname {
			t.Errorf("Stats shows record %s", dname)
		}
	}
	// The domain itself exists, defined and not running.
	c, err := d.conns.get(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	dom, err := c.LookupDomainByName(dname)
	if err != nil {
		t.Fatalf("record domain: %v", err)
	}
	defer dom.Free()
	active, _ := dom.IsActive()
	persistent, _ := dom.IsPersistent()
	if active || !persistent {
		t.Errorf("record domain active=%v persistent=%v, want defined and stopped", active, persistent)
	}
	x, err := dom.GetXMLDesc(0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(x, "virtpool record") || !strings.Contains(x, "must not be started") {
		t.Errorf("record domain XML does not say what it is:\n%s", x)
	}
}

// A guest whose name looks like a record's is never overwritten or removed.
func TestRecordNeverClobbersAGuest(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	guest := kernelSpec(RecordDomainName("pool", "clash"))
	if _, err := d.CreateDomain(ctx, testURI, guest); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = d.ShutdownDomain(ctx, testURI, guest.Name, 0)
		_ = d.UndefineDomain(ctx, testURI, guest.Name, driver.UndefineOptions{})
	})
	cases := []struct {
		name string
		do   func() error
	}{
		{"put", func() error { return d.PutRecord(ctx, testURI, driver.Record{Kind: "pool", Name: "clash"}) }},
		{"delete", func() error { return d.DeleteRecord(ctx, testURI, "pool", "clash") }},
	}
	for _, c := range cases {
		err := c.do()
		if driver.CodeOf(err) != driver.CodeOperationInvalid || !strings.Contains(err.Error(), "not a virtpool record") {
			t.Errorf("%s: got %v, want a refusal saying it is not a record", c.name, err)
		}
	}
	doms, err := d.ListDomains(ctx, testURI)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, dd := range doms {
		found = found || dd.Name == guest.Name && dd.State == driver.StateRunning
	}
	if !found {
		t.Error("the guest is gone or stopped")
	}
}

func TestRecordValidation(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	cases := []struct {
		name string
		r    driver.Record
		want string
	}{
		{"empty kind", driver.Record{Name: "a"}, "record kind"},
		{"kind with dash", driver.Record{Kind: "po-ol", Name: "a"}, "record kind"},
		{"empty name", driver.Record{Kind: "pool"}, "record name"},
		{"name with slash", driver.Record{Kind: "pool", Name: "a/b"}, "record name"},
		{"negative generation", driver.Record{Kind: "pool", Name: "a", Generation: -1}, "negative"},
		{"empty data key", driver.Record{Kind: "pool", Name: "a", Data: map[string]string{"": "x"}}, "empty key"},
		{"control character", driver.Record{Kind: "pool", Name: "a", Data: map[string]string{"k": "a\x01"}}, "control"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := d.PutRecord(ctx, testURI, c.r)
			if driver.CodeOf(err) != driver.CodeInvalidArg || !strings.Contains(err.Error(), c.want) {
				t.Errorf("got %v, want an invalid-argument error mentioning %q", err, c.want)
			}
		})
	}
	if err := d.DeleteRecord(ctx, testURI, "pool", "../x"); driver.CodeOf(err) != driver.CodeInvalidArg {
		t.Errorf("delete with a bad name: %v, want invalid argument", err)
	}
}

func TestInternal(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{{kvmProbePrefix + "1764601234", true}, {"web-1", false}, {"virtpool-kvm", false}} {
		if got := internal(nil, tc.name, true); got != tc.want {
			t.Errorf("internal(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRecordWritersRace: writers that store a record new on a host at
// once (the agent and the provider noting one placement) all succeed:
// the last one's is kept, none fails on the name the others took.
func TestRecordWritersRace(t *testing.T) {
	ctx := context.Background()
	d := newTestDriver(t)
	for round := range 20 {
		r := driver.Record{Kind: driver.RecordDomain, Name: fmt.Sprintf("rec-race-%d", round), Data: map[string]string{"host": "h1"}}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := r
				r.Generation = int64(w + 1)
				errs <- d.PutRecord(ctx, testURI, r)
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if err := d.DeleteRecord(ctx, testURI, r.Kind, r.Name); err != nil {
			t.Fatal(err)
		}
	}
}
