package pool_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

// TestMemberDisks: a member with a disk has one overlay, on storage every
// host shares, at one path for all its copies. Removing a member deletes
// it; removing a copy that another copy on another host replaces (a stale
// one on a fenced host that is back, what an interrupted migration left)
// keeps it, with what the other copy wrote; the last copy to go takes it.
// After each case, every copy left runs on its disk and no disk is left
// without a copy.
func TestMemberDisks(t *testing.T) {
	const h1, h2, h3 = "fake:///h1", "fake:///h2", "fake:///h3"
	disk := func(n int) string { return fmt.Sprintf("/shared/overlays/db-%d.qcow2", n) }
	type copyOf struct {
		n       int
		uri     string
		stopped bool
	}
	tests := []struct {
		name string
		// copies are made in order (a copy of a member made before shares
		// its overlay), each writing "db-n on <uri>" to its disk.
		copies []copyOf
		size   int64
		fence  bool // h3 is fenced in the record, and answers
		act    func(ctx context.Context, ops *pool.Ops, pr pool.Record) error
		left   []string          // the copies left, name@host sorted
		data   map[string]string // what disks hold, by path
	}{
		{
			name:   "scale-in: the removed member's disk goes",
			copies: []copyOf{{1, h1, false}, {2, h2, true}}, size: 2,
			act: func(ctx context.Context, ops *pool.Ops, _ pool.Record) error {
				_, err := ops.ScaleTo(ctx, "db", 1)
				return err
			},
			left: []string{"db-1@h1"}, data: map[string]string{disk(1): "db-1 on " + h1},
		},
		{
			name:   "fenced host back: its stale member's disk goes, the replacement's stays",
			copies: []copyOf{{1, h3, true}, {2, h2, false}, {3, h2, false}}, size: 2, fence: true,
			act:  func(ctx context.Context, ops *pool.Ops, pr pool.Record) error { return ops.Reconcile(ctx, pr) },
			left: []string{"db-2@h2", "db-3@h2"},
			data: map[string]string{disk(2): "db-2 on " + h2, disk(3): "db-3 on " + h2},
		},
		{
			name:   "fenced host back: a stale copy of a member that runs elsewhere keeps its disk",
			copies: []copyOf{{1, h3, true}, {1, h2, false}}, size: 1, fence: true,
			act:  func(ctx context.Context, ops *pool.Ops, pr pool.Record) error { return ops.Reconcile(ctx, pr) },
			left: []string{"db-1@h2"}, data: map[string]string{disk(1): "db-1 on " + h2},
		},
		{
			name:   "scale-in of a stopped copy of a member that runs elsewhere keeps its disk",
			copies: []copyOf{{1, h3, true}, {1, h2, false}, {2, h1, false}}, size: 2,
			act: func(ctx context.Context, ops *pool.Ops, _ pool.Record) error {
				_, err := ops.ScaleTo(ctx, "db", 1)
				return err
			},
			left: []string{"db-1@h2", "db-2@h1"},
			data: map[string]string{disk(1): "db-1 on " + h2, disk(2): "db-2 on " + h1},
		},
		{
			name:   "scale-in of both copies of a member: its disk goes with the last",
			copies: []copyOf{{1, h3, true}, {1, h2, false}}, size: 1,
			act: func(ctx context.Context, ops *pool.Ops, pr pool.Record) error {
				ms, err := ops.Members(ctx, "db")
				if err != nil {
					return err
				}
				return ops.ScaleIn(ctx, pr, ms, 2)
			},
			data: map[string]string{},
		},
		{
			name:   "a guest removed (terraform destroy): its disk goes",
			copies: []copyOf{{1, h1, false}, {2, h2, false}}, size: 2,
			act: func(ctx context.Context, ops *pool.Ops, _ pool.Record) error {
				return ops.RemoveGuest(ctx, "h1", "db-1")
			},
			left: []string{"db-2@h2"}, data: map[string]string{disk(2): "db-2 on " + h2},
		},
		{
			name:   "a stale copy removed: its disk stays",
			copies: []copyOf{{1, h3, true}, {1, h2, false}}, size: 1,
			act: func(ctx context.Context, ops *pool.Ops, _ pool.Record) error {
				return ops.RemoveStaleCopy(ctx, "h3", "db-1")
			},
			left: []string{"db-1@h2"}, data: map[string]string{disk(1): "db-1 on " + h2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			fd := pooltest.New(4, 8, h1, h2, h3)
			fd.AddImage("/shared/images/base.qcow2")
			ops := &pool.Ops{Hosts: pool.Inventory{}, Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
			for _, h := range hostNames {
				ops.Hosts[h] = pool.HostEntry{Name: h, URI: "fake:///" + h}
			}
			spec := pool.Spec{Name: "db", Size: tc.size, MaxSize: 5, Placement: pool.PlacementSpread,
				Template: pool.Template{VCPUs: 1, MemoryMiB: 128, BaseImage: "/shared/images/base.qcow2", OverlayDir: "/shared/overlays"},
				Hosts:    []pool.HostEntry{ops.Hosts["h1"], ops.Hosts["h2"], ops.Hosts["h3"]}}
			made := map[int]bool{}
			for _, c := range tc.copies {
				name := pool.MemberName("db", c.n)
				ds, err := spec.Template.DomainSpec(name, c.n, pool.MemberLabels(spec, c.n))
				if err != nil {
					t.Fatal(err)
				}
				ds.ReuseOverlay = made[c.n]
				made[c.n] = true
				if _, err := fd.CreateDomain(ctx, c.uri, ds); err != nil {
					t.Fatal(err)
				}
				if err := fd.WriteDisk(c.uri, name, name+" on "+c.uri); err != nil {
					t.Fatal(err)
				}
				if c.stopped {
					if err := fd.ShutdownDomain(ctx, c.uri, name, 0); err != nil {
						t.Fatal(err)
					}
				}
			}
			rec := pool.Record{Spec: spec}
			if tc.fence {
				rec.Fences = []pool.Fence{{Host: "h3", At: time.Unix(1_700_000_000, 0), Members: []string{"db-1"}}}
			}
			pr, err := ops.WritePool(ctx, rec, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.act(ctx, ops, pr); err != nil {
				t.Fatal(err)
			}
			var left, used []string
			for _, h := range hostNames {
				doms, err := fd.ListDomains(ctx, "fake:///"+h)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range doms {
					left = append(left, d.Name+"@"+h)
					used = append(used, fd.Overlay("fake:///"+h, d.Name))
				}
			}
			sort.Strings(left)
			if !slices.Equal(left, tc.left) {
				t.Errorf("copies left %q, want %q", left, tc.left)
			}
			for path, want := range tc.data {
				if dk, ok := fd.Disk(path); !ok || dk.Data != want {
					t.Errorf("disk %s holds %q (exists: %v), want %q", path, dk.Data, ok, want)
				}
			}
			slices.Sort(used)
			if disks := fd.Disks(); !slices.Equal(disks, slices.Compact(used)) {
				t.Errorf("disks %q, want those the copies left use, %q", disks, used)
			}
		})
	}
}
