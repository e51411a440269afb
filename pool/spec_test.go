package pool_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// The pool record format, member naming and the policy translation, which
// the provider and the autoscaler plugins share.

func TestExpandCmdline(t *testing.T) {
	tm := pool.Template{Cmdline: "console=ttyS0 virtpool.ip={ip} virtpool.name={name} n={index}", IPBase: "192.0.2.151/24"}
	cases := []struct {
		t       pool.Template
		n       int
		want    string
		wantErr string
	}{
		{tm, 1, "console=ttyS0 virtpool.ip=192.0.2.151/24 virtpool.name=web-1 n=1", ""},
		{tm, 3, "console=ttyS0 virtpool.ip=192.0.2.153/24 virtpool.name=web-3 n=3", ""},
		{pool.Template{Cmdline: "a {unknown} b"}, 2, "", `cmdline "a {unknown} b": unknown placeholder {unknown}: the known ones are {name}, {index}, {ip}`},
		{pool.Template{Cmdline: "a {Name} b"}, 2, "", "unknown placeholder {Name}"},
		{pool.Template{Cmdline: "json={\"a\": 1} x={}"}, 2, "json={\"a\": 1} x={}", ""}, // not placeholders
		{pool.Template{Cmdline: "ip={ip}"}, 1, "", "ip_base is not set"},
		{pool.Template{Cmdline: "ip={ip}", IPBase: "192.0.2.253/24"}, 3, "", "member 3 would get 192.0.2.255, the broadcast address of 192.0.2.0/24"},
		{pool.Template{Cmdline: "ip={ip}", IPBase: "192.0.2.0/24"}, 1, "", "member 1 would get 192.0.2.0, the network address of 192.0.2.0/24: start at 192.0.2.1"},
		{pool.Template{Cmdline: "ip={ip}", IPBase: "192.0.2.254/31"}, 2, "ip=192.0.2.255/31", ""}, // RFC 3021: no broadcast
		{pool.Template{Cmdline: "ip={ip}", IPBase: "2001:db8::ff/120"}, 2, "", "no room for member 2"},
		{pool.Template{Cmdline: "ip={ip}", IPBase: "192.0.2.7"}, 1, "", "prefix length"},
	}
	for _, c := range cases {
		got, err := pool.ExpandCmdline(c.t, pool.MemberName("web", c.n), c.n)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("%q member %d: error %v, want %q", c.t.Cmdline, c.n, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q member %d: %q, %v; want %q", c.t.Cmdline, c.n, got, err, c.want)
		}
	}
}

func TestValidIPBase(t *testing.T) {
	cases := []struct {
		base    string
		maxSize int64
		wantErr string
	}{
		{"192.0.2.121/24", 10, ""},
		{"192.0.2.1/24", 254, ""},
		{"192.0.2.1/24", 255, "ip_base 192.0.2.1/24: member 255 would get 192.0.2.255, the broadcast address of 192.0.2.0/24: start lower, lower max_size, or use a shorter prefix (max_size is 255)"},
		{"192.0.2.250/24", 10, "ip_base 192.0.2.250/24 has no room for member 10: 192.0.2.0/24 ends at member 6"},
		{"10.0.0.0/16", 3, "the network address of 10.0.0.0/16"},
		{"10.0.1.0/16", 3, ""}, // inside a /16, x.y.1.0 is an address like any other
		{"2001:db8::1/64", 1000, ""},
		{"192.0.2.7", 1, "want an address with prefix length"},
	}
	for _, c := range cases {
		err := pool.ValidIPBase(c.base, c.maxSize)
		if (c.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.wantErr)) {
			t.Errorf("ValidIPBase(%q, %d) = %v, want %q", c.base, c.maxSize, err, c.wantErr)
		}
	}
}

// A record with every field of the spec and a policy: the JSON field names
// are the contract with every reader of the hosts (the provider, the
// autoscaler plugins), and what one writes the other reads whole.
func TestRecordFullSpec(t *testing.T) {
	spec := pool.Spec{
		Name: "web", Size: 3, MinSize: 1, MaxSize: 6, Placement: pool.PlacementBinpack, AntiAffinity: true,
		Hosts: []pool.HostEntry{{Name: "h1", URI: "qemu:///system", PeerURI: "qemu+tcp://10.0.0.1/system", MigrationURI: "tcp://10.0.0.1"},
			{Name: "h2", URI: "qemu+tls://h2/system", Capacity: pool.Capacity{ReservedCPUs: 1}}},
		Template: pool.Template{VCPUs: 2, MemoryMiB: 512, Kernel: "/k", Initrd: "/i", Cmdline: "ip={ip}", IPBase: "10.0.1.10/24",
			Bridge: "br0", Accelerator: "auto"},
	}
	pol := pool.DefaultPolicy()
	pol.Mode, pol.BandwidthMiB, pol.PostCopy = pool.ModeConsolidate, 500, true
	cases := []struct {
		name string
		pr   pool.Record
	}{
		// The provider writes itself as the owner, and reads it back.
		{"without policy", pool.Record{Generation: 4, Spec: spec, Owner: pool.OwnerTerraform}},
		{"with policy", pool.Record{Generation: 5, Spec: spec, Policy: &pol, Owner: pool.OwnerTerraform}},
	}
	for _, c := range cases {
		r, err := pool.EncodeRecord(c.pr)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != driver.RecordPool || r.Name != "web" || r.Generation != c.pr.Generation || r.Data[pool.RecordKeyOwner] != pool.OwnerTerraform {
			t.Errorf("%s: record %+v", c.name, r)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(r.Data[pool.RecordKeySpec]), &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"name", "hosts", "size", "min_size", "max_size", "placement", "anti_affinity", "template"} {
			if _, ok := raw[k]; !ok {
				t.Errorf("%s: spec JSON lacks %q: %s", c.name, k, r.Data[pool.RecordKeySpec])
			}
		}
		got, err := pool.DecodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c.pr) {
			t.Errorf("%s: round trip\n got %+v\nwant %+v", c.name, got, c.pr)
		}
	}
	if _, err := pool.DecodeRecord(driver.Record{Kind: "pool", Name: "x", Data: map[string]string{pool.RecordKeySpec: "{"}}); err == nil {
		t.Error("decoding a corrupt spec succeeded")
	}
}

func TestSchedulerPolicy(t *testing.T) {
	p := pool.DefaultPolicy()
	p.CPULow, p.CPUHigh, p.MemoryLow, p.MemoryHigh, p.TargetUtilisation = 0.2, 0.6, 0.3, 0.9, 0.95
	cases := []struct {
		name      string
		placement string
		pol       *pool.Policy
		check     func(scheduler.Policy) error
	}{
		{"default spread", pool.PlacementSpread, nil, func(sp scheduler.Policy) error {
			if sp != scheduler.DefaultPolicy() {
				return fmt.Errorf("%+v", sp)
			}
			return nil
		}},
		{"binpack", pool.PlacementBinpack, nil, func(sp scheduler.Policy) error {
			if sp.Placement != scheduler.BinpackPlacement {
				return fmt.Errorf("placement %v", sp.Placement)
			}
			return nil
		}},
		{"watermarks, target clamped below high", pool.PlacementSpread, &p, func(sp scheduler.Policy) error {
			if sp.HighCPU != 0.6 || sp.LowMem != 0.3 || sp.TargetCPU > sp.HighCPU-sp.Hysteresis {
				return fmt.Errorf("%+v", sp)
			}
			return nil
		}},
	}
	for _, c := range cases {
		sp := pool.SchedulerPolicy(c.placement, c.pol)
		if err := sp.Validate(); err != nil {
			t.Errorf("%s: planner refuses the policy: %v", c.name, err)
		}
		if err := c.check(sp); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestMemberMAC(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"web", "workers", "vpt-pool"} {
		for n := 1; n <= 50; n++ {
			mac := pool.MemberMAC(name, n)
			if !regexp.MustCompile(`^52:54:00(:[0-9a-f]{2}){3}$`).MatchString(mac) {
				t.Fatalf("%s/%d: %q is not a QEMU locally administered MAC", name, n, mac)
			}
			if prev, dup := seen[mac]; dup {
				t.Errorf("%s/%d and %s have the same MAC %s", name, n, prev, mac)
			}
			seen[mac] = fmt.Sprintf("%s/%d", name, n)
			if pool.MemberMAC(name, n) != mac {
				t.Errorf("%s/%d: MAC not stable", name, n)
			}
		}
	}
}

// The placement names are the scheduler's (which cannot import pool), and
// a pool without a policy balances.
func TestPlacementAndModeNames(t *testing.T) {
	for _, c := range []struct {
		placement string
		want      scheduler.Strategy
	}{
		{pool.PlacementSpread, scheduler.SpreadPlacement},
		{pool.PlacementBinpack, scheduler.BinpackPlacement},
		{"", scheduler.SpreadPlacement},
	} {
		got := pool.SchedulerPolicy(c.placement, nil).Placement
		if got != c.want {
			t.Errorf("placement %q: scheduler placement %v, want %v", c.placement, got, c.want)
		}
		if c.placement != "" && got.String() != c.placement {
			t.Errorf("placement %q is called %q by the scheduler", c.placement, got)
		}
	}
	if m := pool.DefaultPolicy().Mode; m != pool.ModeBalance {
		t.Errorf("default mode %q, want %q", m, pool.ModeBalance)
	}
}

func TestMigrateOptionsTLS(t *testing.T) {
	tests := []struct {
		name   string
		caller bool
		policy *pool.Policy
		want   bool
	}{
		{"off", false, nil, false},
		{"caller", true, nil, true},
		{"policy", false, &pool.Policy{TLS: true}, true},
		{"policy cannot turn it off", true, &pool.Policy{TLS: false}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := pool.MigrateOptions(driver.MigrateOptions{TLS: tc.caller}, tc.policy, false).TLS; got != tc.want {
				t.Fatalf("TLS %t, want %t", got, tc.want)
			}
		})
	}
}

func TestPolicyCheck(t *testing.T) {
	with := func(f func(*pool.Policy)) pool.Policy {
		p := pool.DefaultPolicy()
		f(&p)
		return p
	}
	cases := []struct {
		name  string
		p     pool.Policy
		field string // "" for valid
		want  string
	}{
		{"defaults", pool.DefaultPolicy(), "", ""},
		{"edges", with(func(p *pool.Policy) { p.CPULow, p.CPUHigh, p.TargetUtilisation = 0.01, 1, 0.5 }), "", ""},
		{"low zero", with(func(p *pool.Policy) { p.CPULow = 0 }), "cpu_low", "cpu_low must be above 0, got 0."},
		{"low negative", with(func(p *pool.Policy) { p.MemoryLow = -0.1 }), "memory_low", "memory_low must be above 0"},
		{"high above 1", with(func(p *pool.Policy) { p.CPUHigh = 1.2 }), "cpu_high", "cpu_high must be at most 1 (a fraction of the host), got 1.2."},
		{"out of order", with(func(p *pool.Policy) { p.CPULow, p.CPUHigh = 0.8, 0.3 }), "cpu_high", "cpu_low (0.8) must be below cpu_high (0.3)."},
		{"equal", with(func(p *pool.Policy) { p.MemoryLow, p.MemoryHigh = 0.5, 0.5 }), "memory_high", "must be below"},
		{"target above", with(func(p *pool.Policy) { p.TargetUtilisation = 0.95 }), "target_utilisation",
			"target_utilisation 0.95 must lie between the low and high watermarks (cpu_low 0.3 … cpu_high 0.8)"},
		{"target below memory", with(func(p *pool.Policy) { p.MemoryLow, p.TargetUtilisation = 0.5, 0.4 }), "target_utilisation",
			"(memory_low 0.5 … memory_high"},
	}
	for _, c := range cases {
		errs := c.p.Check()
		if c.field == "" {
			if len(errs) > 0 {
				t.Errorf("%s: %v, want none", c.name, errs)
			}
			continue
		}
		if len(errs) == 0 || errs[0].Field != c.field || !strings.Contains(errs[0].Msg, c.want) {
			t.Errorf("%s: %+v, want %s: %q", c.name, errs, c.field, c.want)
		}
	}
}
