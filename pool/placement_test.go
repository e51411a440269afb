package pool_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

func placementOps(fd *pooltest.Driver) *pool.Ops {
	ops := &pool.Ops{Hosts: pool.Inventory{}, Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
	for _, h := range hostNames {
		ops.Hosts[h] = pool.HostEntry{Name: h, URI: "fake:///" + h}
	}
	return ops
}

// held lists the hosts whose records hold a placement of name, and what
// all hosts' records make of it.
func held(t *testing.T, fd *pooltest.Driver, name string) ([]string, pool.Placement, bool) {
	t.Helper()
	var on []string
	var all [][]driver.Record
	for _, h := range hostNames {
		rs, err := fd.ListRecords(context.Background(), "fake:///"+h)
		if err != nil {
			continue
		}
		all = append(all, rs)
		if slices.ContainsFunc(rs, func(r driver.Record) bool { return r.Kind == driver.RecordDomain && r.Name == name }) {
			on = append(on, h)
		}
	}
	p, ok := pool.Placements(all...)[name]
	return on, p, ok
}

func TestPlacement(t *testing.T) {
	labels := map[string]string{pool.LabelFailoverHosts: "h2,h3", pool.LabelTemplate: `{"vcpus":1}`}
	for _, tc := range []struct {
		name    string
		down    []string // hosts down while the placement is noted, then the domain moved and deleted
		wantErr string   // of noting it on h1
		on      []string // the hosts that hold it
		// After the move to h2 and the delete: the hosts that still hold a
		// record (a tombstone where a host was down), and whether a reader
		// of every host would still see a placement.
		afterDrop []string
	}{
		{name: "every host answers", on: []string{"h1", "h2", "h3"}},
		{name: "a failover host down", down: []string{"h3"}, on: []string{"h1", "h2"}, afterDrop: []string{"h1", "h2", "h3"}},
		{name: "every failover host down", down: []string{"h2", "h3"}, wantErr: "no failover host took it", on: []string{"h1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := pooltest.New(4, 8, "fake:///h1", "fake:///h2", "fake:///h3")
			ops := placementOps(fd)
			for _, h := range tc.down {
				fd.Host("fake:///" + h).Down = true
			}
			ctx := context.Background()
			err := ops.NotePlacement(ctx, "web", "h1", labels)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NotePlacement: %v, want an error with %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatalf("NotePlacement: %v", err)
			}
			on, p, ok := held(t, fd, "web")
			if !slices.Equal(on, tc.on) || !ok || p.Host != "h1" || p.Labels[pool.LabelTemplate] != labels[pool.LabelTemplate] {
				t.Fatalf("placement on %v: %+v (found %v), want on %v, host h1 and its labels", on, p, ok, tc.on)
			}
			if tc.wantErr != "" {
				return
			}
			// All hosts back; restarted on h2: a newer generation, on every
			// host that holds a copy, wins over h1's.
			for _, h := range tc.down {
				fd.Host("fake:///" + h).Down = false
			}
			if err := ops.NotePlacement(ctx, "web", "h2", labels); err != nil {
				t.Fatalf("NotePlacement h2: %v", err)
			}
			if on, p2, _ := held(t, fd, "web"); p2.Host != "h2" || p2.Generation <= p.Generation || len(on) != 3 {
				t.Fatalf("after the move: %+v on %v, want host h2 above generation %d on every host", p2, on, p.Generation)
			}
			for _, h := range tc.down {
				fd.Host("fake:///" + h).Down = true
			}
			err = ops.DropPlacement(ctx, "web", []string{"h1", "h2", "h3"})
			if (err != nil) != (len(tc.down) > 0) {
				t.Fatalf("DropPlacement with %v down: %v", tc.down, err)
			}
			// The host that was down comes back with its old copy: the
			// tombstones on the others still outrank it.
			for _, h := range tc.down {
				fd.Host("fake:///" + h).Down = false
			}
			if on, p, ok := held(t, fd, "web"); !slices.Equal(on, tc.afterDrop) || ok {
				t.Errorf("after the delete: records on %v, placement %+v (found %v); want records on %v and no placement", on, p, ok, tc.afterDrop)
			}
		})
	}
}

func TestPlacementNeedsFailoverHosts(t *testing.T) {
	fd := pooltest.New(4, 8, "fake:///h1", "fake:///h2", "fake:///h3")
	if err := placementOps(fd).NotePlacement(context.Background(), "solo", "h1", map[string]string{}); err != nil {
		t.Fatal(err)
	}
	if on, _, ok := held(t, fd, "solo"); len(on) > 0 || ok {
		t.Errorf("a domain without failover hosts got placement records on %v", on)
	}
}
