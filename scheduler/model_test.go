package scheduler

import (
	"errors"
	"math"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	ok := []Host{host("a", 10, 100)}
	tests := []struct {
		name    string
		c       *Cluster
		wantErr string
	}{
		{name: "valid", c: cluster(ok, []Guest{guest("g", "a", 1, 1), guest("u", "", 1, 1)})},
		{name: "empty cluster", c: &Cluster{}},
		{name: "host without name", c: cluster([]Host{host("", 1, 1)}), wantErr: "host with empty name"},
		{name: "duplicate host", c: cluster([]Host{host("a", 1, 1), host("a", 1, 1)}), wantErr: `duplicate host "a"`},
		{name: "zero cores", c: cluster([]Host{host("a", 0, 1)}), wantErr: "cores 0 out of range"},
		{name: "NaN cores", c: cluster([]Host{host("a", math.NaN(), 1)}), wantErr: "cores NaN"},
		{name: "zero memory", c: cluster([]Host{host("a", 1, 0)}), wantErr: "memory 0 out of range"},
		{name: "absurd memory", c: cluster([]Host{{Name: "a", Cores: 1, MemoryBytes: math.MaxInt64}}), wantErr: "out of range"},
		{name: "bad state", c: cluster([]Host{{Name: "a", Cores: 1, MemoryBytes: 1, State: 7}}), wantErr: "unknown state 7"},
		{name: "negative vcpu ratio", c: cluster([]Host{{Name: "a", Cores: 1, MemoryBytes: 1, VCPURatio: -1}}), wantErr: "vcpu ratio -1"},
		{name: "guest without name", c: cluster(ok, []Guest{guest("", "a", 1, 1)}), wantErr: "guest with empty name"},
		{name: "duplicate guest", c: cluster(ok, []Guest{guest("g", "a", 1, 1), guest("g", "a", 1, 1)}), wantErr: `duplicate guest "g"`},
		{name: "negative vcpus", c: cluster(ok, []Guest{guest("g", "a", 1, 1, vcpus(-1))}), wantErr: "vcpus -1"},
		{name: "negative memory", c: cluster(ok, []Guest{guest("g", "a", 1, -1)}), wantErr: "memory -1073741824"},
		{name: "infinite demand", c: cluster(ok, []Guest{guest("g", "a", math.Inf(1), 1)}), wantErr: "cpu demand +Inf"},
		{name: "unknown host", c: cluster(ok, []Guest{guest("g", "zz", 1, 1)}), wantErr: `unknown host "zz"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Check()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid with %q", err, tt.wantErr)
			}
			// Every decision refuses the same input.
			if _, err := tt.c.Balance(DefaultPolicy()); !errors.Is(err, ErrInvalid) {
				t.Errorf("Balance accepted invalid input: %v", err)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	mod := func(f func(*Policy)) Policy { p := DefaultPolicy(); f(&p); return p }
	tests := []struct {
		name    string
		p       Policy
		wantErr string
	}{
		{name: "default", p: DefaultPolicy()},
		{name: "high above 1", p: mod(func(p *Policy) { p.HighCPU = 1.2 }), wantErr: "HighCPU"},
		{name: "zero low", p: mod(func(p *Policy) { p.LowMem = 0 }), wantErr: "LowMem"},
		{name: "target too close to high", p: mod(func(p *Policy) { p.TargetCPU = 0.78 }), wantErr: "target above high"},
		{name: "low above target", p: mod(func(p *Policy) { p.LowCPU = 0.72 }), wantErr: "low watermark above target"},
		{name: "negative hysteresis", p: mod(func(p *Policy) { p.Hysteresis = -0.1 }), wantErr: "Hysteresis"},
		{name: "no parallelism", p: mod(func(p *Policy) { p.MaxParallelPerHost = 0 }), wantErr: "MaxParallelPerHost"},
		{name: "no vcpus", p: mod(func(p *Policy) { p.VCPURatio = 0 }), wantErr: "VCPURatio"},
		{name: "negative cap", p: mod(func(p *Policy) { p.MaxMigrations = -1 }), wantErr: "negative"},
		{name: "unknown placement", p: mod(func(p *Policy) { p.Placement = 9 }), wantErr: "placement"},
		{name: "zero value", p: Policy{}, wantErr: "HighCPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid with %q", err, tt.wantErr)
			}
		})
	}
}

func TestRecommend(t *testing.T) {
	four := []Host{host("a", 10, 100), host("b", 10, 100), host("c", 10, 100), host("d", 10, 100)}
	withStandby := append(four[:2:2], standby(host("s", 10, 100)), standby(host("t", 10, 100)))
	tests := []struct {
		name string
		c    *Cluster
		want int
	}{
		{name: "in band keeps the count", c: cluster(four, many("g", "a", 20, 1, 1)), want: 4},        // 50 %
		{name: "low load asks for fewer", c: cluster(four, many("g", "a", 8, 1, 1)), want: 2},         // 8 cores / 7 per host
		{name: "high load asks for more", c: cluster(withStandby, many("g", "a", 16, 1, 1)), want: 3}, // 80 % of 2 hosts
		{name: "capped by standby hosts", c: cluster(withStandby, many("g", "a", 30, 1, 1)), want: 4}, // wants 5
		{name: "memory counts too", c: cluster(withStandby, many("g", "a", 2, 0.1, 85)), want: 3},     // 170 GiB / 75
		{name: "no active host", c: cluster([]Host{standby(host("s", 1, 1))}), want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.Recommend(DefaultPolicy())
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	for v, want := range map[string]string{
		Active.String(): "active", Standby.String(): "standby", Maintenance.String(): "maintenance",
		HostState(9).String(): "HostState(9)", SpreadPlacement.String(): "spread", BinpackPlacement.String(): "binpack",
		Strategy(5).String(): "Strategy(5)",
	} {
		if v != want {
			t.Errorf("got %q, want %q", v, want)
		}
	}
}
