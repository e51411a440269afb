package pool_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

// onH3 lists the guests running (or paused) on h3, the host evacuated.
func onH3(fd *pooltest.Driver) []string {
	var out []string
	for name, d := range fd.Host("fake:///h3").Domains {
		if d.State == driver.StateRunning || d.State == driver.StatePaused {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func TestEvacuate(t *testing.T) {
	tests := []struct {
		name    string
		members int64 // of pool web (on h1, h2, h3 in turn)
		// prepare adds guests; during runs while each migration is in
		// flight (see pooltest.Driver.DuringMigrate).
		prepare func(t *testing.T, fd *pooltest.Driver, ops *pool.Ops)
		during  func(fd *pooltest.Driver, n int) error // n counts migrations from 1
		check   func(t *testing.T, fd *pooltest.Driver, ops *pool.Ops, err error)
	}{
		{
			name: "every guest leaves, members only to their pool's hosts", members: 3,
			prepare: func(t *testing.T, fd *pooltest.Driver, ops *pool.Ops) {
				// Pool db may use h1 and h3 only; h1 is the fuller host.
				db := pool.Spec{Name: "db", Size: 1, MinSize: 1, MaxSize: 1, Placement: pool.PlacementSpread,
					Template: pool.Template{VCPUs: 1, MemoryMiB: 128, Kernel: "/k"},
					Hosts:    []pool.HostEntry{{Name: "h1", URI: "fake:///h1"}, {Name: "h3", URI: "fake:///h3"}}}
				if _, err := ops.WritePool(context.Background(), pool.Record{Spec: db}, nil); err != nil {
					t.Fatal(err)
				}
				fd.AddDomain("fake:///h3", driver.Domain{Name: "db-1", VCPUs: 1, MemoryMiB: 128, Labels: pool.MemberLabels(db, 1)}, 0)
				fd.AddDomain("fake:///h3", driver.Domain{Name: "solo", VCPUs: 1, MemoryMiB: 128}, 0)
				fd.AddDomain("fake:///h1", driver.Domain{Name: "filler", VCPUs: 1, MemoryMiB: 4096}, 0)
			},
			check: func(t *testing.T, fd *pooltest.Driver, _ *pool.Ops, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if on := onH3(fd); len(on) != 0 {
					t.Errorf("h3 still runs %v", on)
				}
				if w := fd.Where("db-1"); len(w) != 1 || w["fake:///h1"] != driver.StateRunning {
					t.Errorf("db-1 on %v, want h1 (its pool's only other host)", w)
				}
				// Each guest with its pool's policy, or the defaults.
				want := map[string]uint64{"web-3": 77, "db-1": 10, "solo": 10}
				if len(fd.Migrations) != len(want) {
					t.Errorf("%d migrations, want %d", len(fd.Migrations), len(want))
				}
				for _, m := range fd.Migrations {
					if m.Options.BandwidthMiBs != want[m.Domain] || !m.Options.Persistent || !m.Options.UndefineSource {
						t.Errorf("%s migrated with %+v, want bandwidth %d, persistent, source undefined", m.Domain, m.Options, want[m.Domain])
					}
				}
			},
		},
		{
			name: "an empty host is left as it is", members: 2,
			check: func(t *testing.T, fd *pooltest.Driver, _ *pool.Ops, err error) {
				if err != nil || len(fd.Migrations) != 0 {
					t.Errorf("error %v, %d migrations; want none", err, len(fd.Migrations))
				}
			},
		},
		{
			name: "a guest started meanwhile moves in the next round", members: 3,
			during: func(fd *pooltest.Driver, n int) error {
				if n == 1 {
					startOnH3(fd, "late")
				}
				return nil
			},
			check: func(t *testing.T, fd *pooltest.Driver, _ *pool.Ops, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if on := onH3(fd); len(on) != 0 {
					t.Errorf("h3 still runs %v", on)
				}
				if len(fd.Migrations) != 2 {
					t.Errorf("%d migrations, want web-3 and late", len(fd.Migrations))
				}
			},
		},
		{
			name: "guests that keep coming: it gives up after three rounds", members: 3,
			during: func(fd *pooltest.Driver, n int) error {
				startOnH3(fd, fmt.Sprintf("late-%d", n))
				return nil
			},
			check: func(t *testing.T, fd *pooltest.Driver, _ *pool.Ops, err error) {
				if err == nil || !strings.Contains(err.Error(), "host h3 still runs 1 guests after 3 rounds") {
					t.Errorf("error %v, want the round limit", err)
				}
				if len(fd.Migrations) != 3 {
					t.Errorf("%d migrations, want one per round", len(fd.Migrations))
				}
			},
		},
		{
			name: "no room elsewhere: nothing moves", members: 3,
			prepare: func(t *testing.T, fd *pooltest.Driver, _ *pool.Ops) {
				fd.AddDomain("fake:///h1", driver.Domain{Name: "filler-1", VCPUs: 1, MemoryMiB: 4096}, 0)
				fd.AddDomain("fake:///h2", driver.Domain{Name: "filler-2", VCPUs: 1, MemoryMiB: 4096}, 0)
				fd.AddDomain("fake:///h3", driver.Domain{Name: "big", VCPUs: 1, MemoryMiB: 6144}, 0)
			},
			check: func(t *testing.T, fd *pooltest.Driver, _ *pool.Ops, err error) {
				if err == nil || !strings.Contains(err.Error(), "cannot empty host h3: guest big") {
					t.Errorf("error %v, want big to fit nowhere", err)
				}
				if len(fd.Migrations) != 0 {
					t.Errorf("%d migrations, want none (all or nothing)", len(fd.Migrations))
				}
			},
		},
		{
			name: "a failed move stops it; running it again finishes", members: 3,
			prepare: func(t *testing.T, fd *pooltest.Driver, _ *pool.Ops) {
				fd.AddDomain("fake:///h3", driver.Domain{Name: "solo", VCPUs: 1, MemoryMiB: 128}, 0)
			},
			during: func(_ *pooltest.Driver, n int) error {
				if n == 1 {
					return errors.New("connection to the driver lost")
				}
				return nil
			},
			check: func(t *testing.T, fd *pooltest.Driver, ops *pool.Ops, err error) {
				if err == nil || !strings.Contains(err.Error(), "evacuate h3: wave 1 of 2") ||
					!strings.Contains(err.Error(), "connection to the driver lost") {
					t.Fatalf("error %v, want the failed first wave", err)
				}
				if on := onH3(fd); len(on) != 2 {
					t.Errorf("h3 runs %v after the failure, want both guests still there", on)
				}
				if err := ops.Evacuate(context.Background(), "h3"); err != nil {
					t.Fatalf("second run: %v", err)
				}
				if on := onH3(fd); len(on) != 0 {
					t.Errorf("h3 still runs %v after the second run", on)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pol := pool.DefaultPolicy()
			pol.BandwidthMiB = 77
			fd, ops, _ := setup(t, 3, &pol)
			ctx := context.Background()
			if _, err := ops.ScaleTo(ctx, "web", tc.members); err != nil {
				t.Fatal(err)
			}
			ops.Migration = driver.MigrateOptions{BandwidthMiBs: 10}
			if tc.prepare != nil {
				tc.prepare(t, fd, ops)
			}
			// Maintenance first, as virtpool_host does.
			if err := ops.PutHostState(ctx, "h3", pool.HostState{Maintenance: true, Generation: 1}); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			calls, inFlight, mostInFlight := 0, 0, 0
			fd.DuringMigrate = func(driver.MigrateRequest) error {
				mu.Lock()
				calls++
				n := calls
				inFlight++
				mostInFlight = max(mostInFlight, inFlight)
				mu.Unlock()
				defer func() {
					mu.Lock()
					inFlight--
					mu.Unlock()
				}()
				if tc.during != nil {
					return tc.during(fd, n)
				}
				return nil
			}
			err := ops.Evacuate(ctx, "h3")
			tc.check(t, fd, ops, err)
			if mostInFlight > 1 {
				t.Errorf("%d migrations at once off h3, want one at a time", mostInFlight)
			}
		})
	}
}

// startOnH3 starts a small guest on h3.
func startOnH3(fd *pooltest.Driver, name string) {
	fd.AddDomain("fake:///h3", driver.Domain{Name: name, VCPUs: 1, MemoryMiB: 128}, 0)
}
