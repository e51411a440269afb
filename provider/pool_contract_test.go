package provider

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/virtpool/virtpool/pool"
)

// The pool record is a contract between the provider and the autoscaler
// plugins (package pool): a record either writes, the other reads whole.
func TestPoolRecordContract(t *testing.T) {
	pol := defaultPolicy()
	pol.Mode, pol.BandwidthMiB, pol.PostCopy = "consolidate", 500, true
	spec := PoolSpec{
		Name: "web", Size: 3, MinSize: 1, MaxSize: 6, Placement: "binpack", AntiAffinity: true,
		Hosts: []HostEntry{{Name: "h1", URI: "qemu:///system", PeerURI: "qemu+tcp://10.0.0.1/system", MigrationURI: "tcp://10.0.0.1"},
			{Name: "h2", URI: "qemu+tls://h2/system"}},
		Template: Template{VCPUs: 2, MemoryMiB: 512, Kernel: "/k", Initrd: "/i", Cmdline: "ip={ip} n={name}",
			IPBase: "10.0.1.10/24", Bridge: "br0", Accelerator: "tcg"},
	}
	cases := []struct {
		name string
		pr   PoolRecord
	}{
		{"spec only", PoolRecord{Generation: 2, Spec: spec, Owner: ownerTerraform}},
		{"spec and policy", PoolRecord{Generation: 9, Spec: spec, Policy: &pol, Owner: ownerTerraform}},
	}
	for _, c := range cases {
		// provider → pool
		r, err := encodePoolRecord(c.pr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := pool.DecodeRecord(r)
		if err != nil {
			t.Fatalf("%s: pool cannot read the provider's record: %v", c.name, err)
		}
		if got.Generation != c.pr.Generation || got.Owner != ownerTerraform {
			t.Errorf("%s: pool read generation %d owner %q", c.name, got.Generation, got.Owner)
		}
		sameJSON(t, c.name+": spec", got.Spec, c.pr.Spec)
		if (got.Policy == nil) != (c.pr.Policy == nil) {
			t.Fatalf("%s: policy %v, want %v", c.name, got.Policy, c.pr.Policy)
		}
		if got.Policy != nil {
			sameJSON(t, c.name+": policy", *got.Policy, *c.pr.Policy)
		}
		// pool → provider
		r2, err := pool.EncodeRecord(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodePoolRecord(r2)
		if err != nil {
			t.Fatalf("%s: the provider cannot read pool's record: %v", c.name, err)
		}
		if !reflect.DeepEqual(back, c.pr) {
			t.Errorf("%s: round trip through pool\n got %+v\nwant %+v", c.name, back, c.pr)
		}
	}
	// Members are found by the same labels.
	var ps pool.Spec
	b, _ := json.Marshal(spec)
	if err := json.Unmarshal(b, &ps); err != nil {
		t.Fatal(err)
	}
	if got, want := pool.MemberLabels(ps, 4), memberLabels(spec, 4); !reflect.DeepEqual(got, want) {
		t.Errorf("member labels differ:\n pool     %v\n provider %v", got, want)
	}
	if pool.MemberName("web", 4) != memberName("web", 4) {
		t.Errorf("member names differ: %s, %s", pool.MemberName("web", 4), memberName("web", 4))
	}
}

// sameJSON fails unless a and b encode to the same JSON object.
func sameJSON(t *testing.T, what string, a, b any) {
	t.Helper()
	object := func(v any) ([]byte, map[string]any) {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return j, m
	}
	ja, ma := object(a)
	jb, mb := object(b)
	if !reflect.DeepEqual(ma, mb) {
		t.Errorf("%s differs:\n pool     %s\n provider %s", what, ja, jb)
	}
}
