package scheduler

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestPlace(t *testing.T) {
	binpack := DefaultPolicy()
	binpack.Placement = BinpackPlacement
	three := []Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100)}
	base := [][]Guest{{guest("a1", "a", 5, 10, groupX)}, {guest("b1", "b", 1, 10)}, {guest("c1", "c", 2, 10)}}
	oneToOne := DefaultPolicy()
	oneToOne.VCPURatio = 1 // 10 vCPUs per host
	tests := []struct {
		name    string
		c       *Cluster
		tmpl    Guest
		k       int
		pol     Policy
		want    []string
		wantErr string // substring; errors must also wrap ErrInfeasible unless "invalid"
	}{
		{name: "spread fills the least loaded host first", c: cluster(three, base...),
			tmpl: guest("", "", 1, 1), k: 3, pol: DefaultPolicy(), want: []string{"b", "b", "c"}},
		{name: "binpack fills the most loaded host up to the limit", c: cluster(three, base...),
			tmpl: guest("", "", 1, 1), k: 3, pol: binpack, want: []string{"a", "a", "c"}},
		{name: "anti-affinity avoids group members and repeats", c: cluster(three, base...),
			tmpl: guest("", "", 1, 1, groupX), k: 2, pol: binpack, want: []string{"c", "b"}},
		{name: "anti-affinity needs enough hosts", c: cluster(three, base...),
			tmpl: guest("", "", 1, 1, groupX), k: 3, pol: DefaultPolicy(),
			wantErr: "pool web: need 3 hosts for anti-affinity group x, only 2 available"},
		{name: "standby and maintenance hosts are not used",
			c:    cluster([]Host{host("a", 10, 100), standby(host("b", 10, 100)), maintenance(host("c", 10, 100))}),
			tmpl: guest("", "", 1, 1), k: 2, pol: DefaultPolicy(), want: []string{"a", "a"}},
		{name: "no room", c: cluster(three, base...),
			tmpl: guest("", "", 4, 1), k: 3, pol: DefaultPolicy(), wantErr: "no active host has room for new guest 3 of 3"},
		{name: "larger than any host: memory, in MiB", c: cluster(three),
			tmpl: guest("", "", 0, 90), k: 1, pol: DefaultPolicy(),
			wantErr: "pool web: a new guest (92160 MiB, 1 vcpus) is larger than any host: the most memory a host takes is " +
				"81920 MiB on a (memory high watermark 0.85 less hysteresis 0.05 of its 102400 MiB): lower the template's memory_mib"},
		{name: "larger than any host: vcpus", c: cluster(three),
			tmpl: guest("", "", 0, 1, vcpus(12)), k: 1, pol: oneToOne,
			wantErr: "a new guest (1024 MiB, 12 vcpus) is larger than any host: a takes at most 10 vcpus (10.00 cores × vcpu ratio 1)"},
		{name: "larger than any host: cpu demand", c: cluster(three),
			tmpl: guest("", "", 9, 1), k: 1, pol: DefaultPolicy(),
			wantErr: "its expected CPU demand (9.00 cores) is above 7.50 cores on a (cpu high watermark 0.80 less hysteresis 0.05 of 10.00 cores)"},
		{name: "memory limits too", c: cluster(three, base...),
			tmpl: guest("", "", 0.1, 40), k: 4, pol: DefaultPolicy(), wantErr: "new guest 4 of 4"},
		{name: "vCPU ratio limits hosts", c: cluster(three, base...),
			tmpl: guest("", "", 0.1, 1, vcpus(8)), k: 2, pol: oneToOne, want: []string{"b", "c"}},
		{name: "vCPU ratio exhausted", c: cluster(three, base...),
			tmpl: guest("", "", 0.1, 1, vcpus(8)), k: 3, pol: oneToOne, wantErr: "new guest 3 of 3"},
		{name: "a host's own vCPU ratio wins over the policy's", c: cluster(
			[]Host{{Name: "small", Cores: 0.5, MemoryBytes: 100 << 30, VCPURatio: 16}}),
			tmpl: guest("", "", 0, 1, vcpus(4)), k: 2, pol: oneToOne, want: []string{"small", "small"}},
		{name: "a small host at the policy's ratio", c: cluster(
			[]Host{{Name: "small", Cores: 0.5, MemoryBytes: 100 << 30}}),
			tmpl: guest("", "", 0, 1), k: 3, pol: DefaultPolicy(), wantErr: "new guest 3 of 3"},
		{name: "zero guests", c: cluster(three, base...), tmpl: guest("", "", 1, 1), k: 0, pol: DefaultPolicy(), want: []string{}},
		{name: "invalid template", c: cluster(three, base...), tmpl: guest("", "", -1, 1), k: 1, pol: DefaultPolicy(), wantErr: "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Place(tt.tmpl, tt.k, tt.pol)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				want := ErrInfeasible
				if tt.wantErr == "invalid" {
					want = ErrInvalid
				}
				if !errors.Is(err, want) {
					t.Fatalf("err %v does not wrap %v", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
