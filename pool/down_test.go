package pool_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

// hanging is a driver whose reads of one host never answer (until
// release), like a host cut from the network: only the caller's deadline
// ends them.
type hanging struct {
	driver.Driver
	uri     string
	release chan struct{}
}

func (h hanging) wait(uri string) {
	if uri == h.uri {
		<-h.release
	}
}

func (h hanging) HostInfo(ctx context.Context, uri string) (driver.HostInfo, error) {
	h.wait(uri)
	return h.Driver.HostInfo(ctx, uri)
}

func (h hanging) ListDomains(ctx context.Context, uri string) ([]driver.Domain, error) {
	h.wait(uri)
	return h.Driver.ListDomains(ctx, uri)
}

func (h hanging) ListRecords(ctx context.Context, uri string) ([]driver.Record, error) {
	h.wait(uri)
	return h.Driver.ListRecords(ctx, uri)
}

// twoPools stores pool web on h1, h2 and pool db on h2, h3, each with two
// members (db-1 on h3), over hosts that fail as fail says: "crash" (every
// call refused) or "hang" (reads never answer).
func twoPools(t *testing.T, fail string) *pool.Ops {
	t.Helper()
	fd := pooltest.New(4, 8, "fake:///h1", "fake:///h2", "fake:///h3")
	var d driver.Driver = fd
	ops := &pool.Ops{Hosts: pool.Inventory{}, Driver: func(context.Context) (driver.Driver, error) { return d, nil },
		HostTimeout: 50 * time.Millisecond}
	for _, h := range hostNames {
		ops.Hosts[h] = pool.HostEntry{Name: h, URI: "fake:///" + h}
	}
	ctx := context.Background()
	for _, p := range []struct {
		name  string
		hosts []string
	}{{"web", []string{"h1", "h2"}}, {"db", []string{"h2", "h3"}}} {
		spec := pool.Spec{Name: p.name, MaxSize: 5, Placement: pool.PlacementSpread,
			Template: pool.Template{VCPUs: 1, MemoryMiB: 128, Kernel: "/k", Cmdline: "ip={ip}", IPBase: "192.0.2.161/24"}}
		for _, h := range p.hosts {
			spec.Hosts = append(spec.Hosts, pool.HostEntry{Name: h, URI: "fake:///" + h})
		}
		if _, err := ops.WritePool(ctx, pool.Record{Spec: spec}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := ops.ScaleTo(ctx, p.name, 2); err != nil {
			t.Fatal(err)
		}
	}
	switch fail {
	case "crash":
		fd.Host("fake:///h3").Down = true
	case "hang":
		release := make(chan struct{})
		t.Cleanup(func() { close(release) })
		d = hanging{Driver: fd, uri: "fake:///h3", release: release}
	}
	return ops
}

// TestHostDown: a host that is down, refusing or not answering, stops only
// what needs it; what needs it fails with an error naming it and changes
// nothing.
func TestHostDown(t *testing.T) {
	ctx := context.Background()
	for _, fail := range []string{"crash", "hang"} {
		tests := []struct {
			name    string
			op      func(ops *pool.Ops) error
			wantErr string // "" for success
			want    string // placements of web and db afterwards
		}{
			{name: "scale a pool on hosts that answer", op: func(ops *pool.Ops) error { _, err := ops.ScaleTo(ctx, "web", 3); return err },
				want: "web-1@h1 web-2@h2 web-3@h1 | db-2@h2"},
			{name: "scale in a pool on hosts that answer", op: func(ops *pool.Ops) error { _, err := ops.ScaleTo(ctx, "web", 1); return err },
				want: "web-2@h2 | db-2@h2"},
			{name: "scale a pool with a member on the host down", op: func(ops *pool.Ops) error { _, err := ops.ScaleTo(ctx, "db", 3); return err },
				wantErr: "pool db: its members on h3 are unknown: host h3 did not answer", want: "web-1@h1 web-2@h2 | db-2@h2"},
			{name: "find a guest that runs elsewhere", op: func(ops *pool.Ops) error {
				at, ok, err := ops.FindDomain(ctx, "web-2")
				if err == nil && (!ok || at.Host != "h2") {
					t.Errorf("web-2 found %v on %q, want on h2", ok, at.Host)
				}
				return err
			}, want: "web-1@h1 web-2@h2 | db-2@h2"},
			{name: "a guest not found may be on the host down", op: func(ops *pool.Ops) error { _, _, err := ops.FindDomain(ctx, "db-1"); return err },
				wantErr: "domain db-1: cannot tell where it runs: host h3 did not answer", want: "web-1@h1 web-2@h2 | db-2@h2"},
			{name: "evacuate a host that answers", op: func(ops *pool.Ops) error { return ops.Evacuate(ctx, "h1") },
				want: "web-1@h2 web-2@h2 | db-2@h2"},
			{name: "evacuate the host down", op: func(ops *pool.Ops) error { return ops.Evacuate(ctx, "h3") },
				wantErr: "host h3 did not answer", want: "web-1@h1 web-2@h2 | db-2@h2"},
		}
		for _, tc := range tests {
			t.Run(fail+"/"+tc.name, func(t *testing.T) {
				ops := twoPools(t, fail)
				start := time.Now()
				err := tc.op(ops)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Fatalf("error %v", err)
				case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				case tc.wantErr != "" && !errors.As(err, new(pool.HostsDown)):
					t.Errorf("error %v is not a HostsDown", err)
				}
				got := []string{}
				for _, p := range []string{"web", "db"} {
					ms, err := ops.Members(ctx, p)
					if pool.Needed(err, []string{"h1", "h2"}) != nil {
						t.Fatal(err)
					}
					got = append(got, render(ms))
				}
				if g := strings.Join(got, " | "); g != tc.want {
					t.Errorf("members %q, want %q", g, tc.want)
				}
				t.Logf("took %s", time.Since(start).Round(time.Millisecond))
			})
		}
	}
}

// TestViewWithHostDown: the view leaves the host out and names it.
func TestViewWithHostDown(t *testing.T) {
	ops := twoPools(t, "hang")
	v, err := ops.View(context.Background(), nil)
	if pool.Needed(err, []string{"h1", "h2"}) != nil || err == nil {
		t.Fatalf("view error %v, want a HostsDown of h3 only", err)
	}
	var hosts []string
	for _, h := range v.Hosts {
		hosts = append(hosts, h.Name)
	}
	if strings.Join(hosts, " ") != "h1 h2" || strings.Join(v.Down.Names(), " ") != "h3" || len(v.Guests) != 3 {
		t.Errorf("view hosts %v, down %v, %d guests; want h1 h2, h3, 3", hosts, v.Down.Names(), len(v.Guests))
	}
	if !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Errorf("error %q does not say the host did not answer in time", err)
	}
}

// TestFence: once h3 is fenced (a Fence in db's record), db is restored
// without it on the host left, under a name never used; h3 back, its stale
// copy is removed (not started) and the fence dropped.
func TestFence(t *testing.T) {
	ctx := context.Background()
	for _, fail := range []string{"crash", "hang"} {
		t.Run(fail, func(t *testing.T) {
			ops := twoPools(t, fail)
			pr, _, found, err := ops.ReadPool(ctx, "db", nil)
			if !found || pool.Needed(err, []string{"h2"}) != nil {
				t.Fatalf("read db: found %v, %v", found, err)
			}
			pr.Fences = []pool.Fence{{Host: "h3", At: time.Unix(1_700_000_000, 0), Members: []string{"db-1"}}}
			if _, err := ops.WritePool(ctx, pr, nil); err != nil {
				t.Fatalf("store the fence: %v", err)
			}
			if _, err := ops.ScaleTo(ctx, "db", 2); err != nil {
				t.Fatalf("restore: %v", err)
			}
			ms, err := ops.Members(ctx, "db")
			if pool.Needed(err, []string{"h1", "h2"}) != nil {
				t.Fatal(err)
			}
			if got := render(ms); got != "db-2@h2 db-3@h2" {
				t.Errorf("restored db: %q, want db-2@h2 db-3@h2", got)
			}
		})
	}
	// h3 answers again: what db ran there is stale.
	fd := pooltest.New(4, 8, "fake:///h1", "fake:///h2", "fake:///h3")
	ops := &pool.Ops{Hosts: pool.Inventory{}, Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
	for _, h := range hostNames {
		ops.Hosts[h] = pool.HostEntry{Name: h, URI: "fake:///" + h}
	}
	spec := pool.Spec{Name: "db", Size: 1, MaxSize: 5, Template: pool.Template{VCPUs: 1, MemoryMiB: 128, Kernel: "/k"},
		Hosts: []pool.HostEntry{ops.Hosts["h2"], ops.Hosts["h3"]}}
	fd.AddDomain("fake:///h3", driver.Domain{Name: "db-1", VCPUs: 1, MemoryMiB: 128, State: driver.StateShutoff,
		Labels: map[string]string{pool.LabelPool: "db", pool.LabelRole: pool.RoleMember, pool.LabelIndex: "1"}}, 0)
	fd.AddDomain("fake:///h2", driver.Domain{Name: "db-2", VCPUs: 1, MemoryMiB: 128,
		Labels: map[string]string{pool.LabelPool: "db", pool.LabelRole: pool.RoleMember, pool.LabelIndex: "2"}}, 0)
	pr, err := ops.WritePool(ctx, pool.Record{Spec: spec, Fences: []pool.Fence{{Host: "h3", Members: []string{"db-1"}}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ops.Reconcile(ctx, pr); err != nil {
		t.Fatal(err)
	}
	ms, err := ops.Members(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	after, _, _, err := ops.ReadPool(ctx, "db", nil)
	if got := render(ms); got != "db-2@h2" || err != nil || len(after.Fences) != 0 {
		t.Errorf("after h3 is back: members %q, fences %v (%v); want db-2@h2 and no fence", got, after.Fences, err)
	}
}

// TestOff: a host known to be off is not waited for: it is down at once.
func TestOff(t *testing.T) {
	ops := twoPools(t, "hang")
	ops.Off = map[string]bool{"h3": true}
	_, err := ops.View(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "host h3 did not answer: powered off (fenced)") {
		t.Errorf("view error %v, want h3 down as powered off", err)
	}
}

// TestLateOnce: a host that missed its deadline is not waited for again in
// the same Ops: it costs its deadline once per operation.
func TestLateOnce(t *testing.T) {
	ops := twoPools(t, "hang")
	ctx := context.Background()
	if _, err := ops.View(ctx, nil); err == nil || strings.Contains(err.Error(), "earlier read") {
		t.Fatalf("first view: %v, want h3 late", err)
	}
	_, err := ops.Members(ctx, "db")
	if err == nil || !strings.Contains(err.Error(), "host h3 did not answer: no answer within 50ms: context deadline exceeded (in an earlier read)") {
		t.Errorf("second read: %v, want h3 down from the first one", err)
	}
}
