package pool_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

func TestNewestOffer(t *testing.T) {
	rec := func(name string, gen int64, owner string) pool.Record {
		return pool.Record{Generation: gen, Spec: pool.Spec{Name: name}, Owner: owner}
	}
	tests := []struct {
		name   string
		offers []pool.Record
		kept   []bool
		want   map[string]string // pool: owner of the record kept
	}{
		{"first is kept", []pool.Record{rec("web", 1, "a")}, []bool{true}, map[string]string{"web": "a"}},
		{"higher generation wins", []pool.Record{rec("web", 1, "a"), rec("web", 3, "b"), rec("web", 2, "c")},
			[]bool{true, true, false}, map[string]string{"web": "b"}},
		{"tie: the first stays", []pool.Record{rec("web", 2, "a"), rec("web", 2, "b")}, []bool{true, false},
			map[string]string{"web": "a"}},
		{"pools apart", []pool.Record{rec("web", 5, "a"), rec("db", 1, "b")}, []bool{true, true},
			map[string]string{"web": "a", "db": "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := pool.Newest{}
			for i, pr := range tc.offers {
				if got := n.Offer(pr.Spec.Name, pr); got != tc.kept[i] {
					t.Errorf("offer %d (generation %d): kept %v, want %v", i, pr.Generation, got, tc.kept[i])
				}
			}
			got := map[string]string{}
			for name, pr := range n {
				got[name] = pr.Owner
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("kept %v, want %v", got, tc.want)
			}
		})
	}
}

// ReadPool returns the newest generation found on any host, and fails only
// if that one is unreadable.
func TestReadPoolNewest(t *testing.T) {
	good := func(gen int64, size int64) driver.Record {
		r, err := pool.EncodeRecord(pool.Record{Generation: gen, Spec: pool.Spec{Name: "web", Size: size}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	bad := func(gen int64) driver.Record {
		return driver.Record{Kind: driver.RecordPool, Name: "web", Generation: gen,
			Data: map[string]string{pool.RecordKeySpec: "{"}}
	}
	tests := []struct {
		name     string
		records  []driver.Record // on h1, h2, h3; zero: none
		wantSize int64
		wantErr  bool
		where    string
	}{
		{"newest of three", []driver.Record{good(1, 1), good(3, 3), good(2, 2)}, 3, false, "h1 h2 h3"},
		{"missing on one host", []driver.Record{{}, good(2, 2), good(1, 1)}, 2, false, "h2 h3"},
		{"an older unreadable one is ignored", []driver.Record{bad(1), good(2, 2), {}}, 2, false, "h1 h2"},
		{"the newest unreadable is an error", []driver.Record{good(1, 1), bad(2), {}}, 0, true, "h1 h2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fd := pooltest.New(2, 8, "fake:///h1", "fake:///h2", "fake:///h3")
			inv := pool.Inventory{}
			for i, h := range hostNames {
				inv[h] = pool.HostEntry{Name: h, URI: "fake:///" + h}
				if tc.records[i].Kind != "" {
					if err := fd.PutRecord(context.Background(), "fake:///"+h, tc.records[i]); err != nil {
						t.Fatal(err)
					}
				}
			}
			ops := &pool.Ops{Hosts: inv, Driver: func(context.Context) (driver.Driver, error) { return fd, nil }}
			pr, where, found, err := ops.ReadPool(context.Background(), "web", nil)
			if got := strings.Join(where, " "); got != tc.where {
				t.Errorf("found on %q, want %q", got, tc.where)
			}
			if tc.wantErr {
				if err == nil || found {
					t.Fatalf("found %v, error %v; want an error", found, err)
				}
				return
			}
			if err != nil || !found || pr.Spec.Size != tc.wantSize {
				t.Fatalf("size %d found %v error %v, want size %d", pr.Spec.Size, found, err, tc.wantSize)
			}
		})
	}
}
