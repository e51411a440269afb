package pool

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/scheduler"
)

func TestProtectionCheck(t *testing.T) {
	ok := Protection{Interval: 2 * time.Second, OnFailure: OnFailureRestore}
	for _, tc := range []struct {
		name    string
		p       Protection
		memory  uint64
		primary string
		standby []string
		want    string // "" : accepted
	}{
		{"default, 128 MiB", ok, 128, "h1", []string{"h2"}, ""},
		{"primary among others", ok, 128, "h1", []string{"h1", "h2"}, ""},
		{"standby is the primary", ok, 128, "h1", []string{"h1"}, "standby host h1 is the primary host"},
		{"no standby", ok, 128, "h1", nil, "no standby host"},
		{"interval below the floor", Protection{Interval: 500 * time.Millisecond, OnFailure: OnFailureRestore}, 128, "h1", []string{"h2"},
			"interval 500ms is below 1s"},
		{"interval below a big guest's capture", ok, 4096, "h1", []string{"h2"}, "interval 2s is below 32s, the least for a guest of 4096 MiB"},
		{"bad on_failure", Protection{Interval: 2 * time.Second, OnFailure: "pray"}, 128, "h1", []string{"h2"}, `on_failure "pray"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Check(tc.memory, tc.primary, tc.standby)
			if tc.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestProtectionLabel(t *testing.T) {
	p := Protection{Interval: 2500 * time.Millisecond, OnFailure: OnFailureRestart}
	s, err := p.Label()
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := ProtectionOf(map[string]string{LabelProtection: s})
	if err != nil || !ok || got != p {
		t.Fatalf("ProtectionOf(%s) = %+v, %v, %v; want %+v", s, got, ok, err, p)
	}
	if _, ok, err := ProtectionOf(map[string]string{}); ok || err != nil {
		t.Errorf("no label: ok %v, err %v", ok, err)
	}
	if _, ok, err := ProtectionOf(map[string]string{LabelProtection: `{"interval":"soon"}`}); !ok || err == nil {
		t.Errorf("bad interval: ok %v, err %v", ok, err)
	}
}

func TestStandby(t *testing.T) {
	up := func(down ...string) func(string) bool {
		return func(h string) bool { return !strings.Contains(strings.Join(down, ","), h) }
	}
	for _, tc := range []struct {
		standby []string
		primary string
		up      func(string) bool
		want    string
	}{
		{[]string{"h1", "h2", "h3"}, "h1", up(), "h2"},
		{[]string{"h1", "h2", "h3"}, "h2", up(), "h1"},
		{[]string{"h1", "h2", "h3"}, "h2", up("h1"), "h3"},
		{[]string{"h1"}, "h1", up(), ""},
		{[]string{"h2", "h3"}, "h1", up("h2", "h3"), ""},
	} {
		if got := Standby(tc.standby, tc.primary, tc.up); got != tc.want {
			t.Errorf("Standby(%v, %s) = %q, want %q", tc.standby, tc.primary, got, tc.want)
		}
	}
}

func TestProtectionCheckPool(t *testing.T) {
	ok := Protection{Interval: 2 * time.Second, OnFailure: OnFailureRestore}
	for _, tc := range []struct {
		name   string
		p      Protection
		memory uint64
		hosts  []string
		want   string // "": accepted
	}{
		{"two hosts", ok, 128, []string{"h1", "h2"}, ""},
		{"one host", ok, 128, []string{"h1"}, "the pool has 1 host (h1): a member's standby must be another of the pool's hosts"},
		{"interval below the floor", Protection{Interval: time.Second, OnFailure: OnFailureRestore}, 1024, []string{"h1", "h2"},
			"interval 1s is below 8s, the least for a guest of 1024 MiB"},
		{"bad on_failure", Protection{Interval: 2 * time.Second, OnFailure: "pray"}, 128, []string{"h1", "h2"}, `on_failure "pray"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.CheckPool(tc.memory, tc.hosts)
			if tc.want == "" && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("error %v, want one with %q", err, tc.want)
			}
		})
	}
}

// TestPoolProtectionStored: a pool's protection survives its record.
func TestPoolProtectionStored(t *testing.T) {
	for _, p := range []*Protection{nil, {Interval: 3 * time.Second, OnFailure: OnFailureRestart}} {
		r, err := EncodeRecord(Record{Spec: Spec{Name: "web", Protection: p}})
		if err != nil {
			t.Fatal(err)
		}
		pr, err := DecodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if (pr.Spec.Protection == nil) != (p == nil) || p != nil && *pr.Spec.Protection != *p {
			t.Errorf("stored %v, read %v (%s)", p, pr.Spec.Protection, r.Data[RecordKeySpec])
		}
	}
}

// TestStandbyFor: a member's standby is the scheduler's choice among the
// hosts given, never the member's own, with the reserved room counted.
func TestStandbyFor(t *testing.T) {
	const gib = 1 << 30
	c := scheduler.Cluster{
		Hosts: []scheduler.Host{{Name: "h1", Cores: 2, MemoryBytes: 4 * gib}, {Name: "h2", Cores: 2, MemoryBytes: 4 * gib},
			{Name: "h3", Cores: 2, MemoryBytes: 4 * gib}},
		Guests: []scheduler.Guest{{Name: "m1", VCPUs: 1, MemoryBytes: gib, Host: "h1"}, {Name: "x", VCPUs: 1, MemoryBytes: gib, Host: "h2"}},
	}
	m1 := c.Guests[0]
	res := func(host string, n int) []scheduler.Guest {
		var out []scheduler.Guest
		for i := range n {
			out = append(out, scheduler.Guest{Name: fmt.Sprintf("r%d", i), VCPUs: 1, MemoryBytes: gib, Host: host})
		}
		return out
	}
	pol := SchedulerPolicy(PlacementSpread, nil)
	for _, tc := range []struct {
		name     string
		hosts    []string
		reserved []scheduler.Guest
		want     string // a host, or part of the error
	}{
		{"the least loaded other host", []string{"h1", "h2", "h3"}, nil, "h3"},
		{"reservations count", []string{"h1", "h2", "h3"}, res("h3", 2), "h2"},
		{"only the hosts given", []string{"h1", "h2"}, nil, "h2"},
		{"never its own host", []string{"h1"}, nil, "no active host has room"},
		{"no room left", []string{"h1", "h2"}, res("h2", 2), "no active host has room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := StandbyFor(c, m1, "h1", tc.hosts, tc.reserved, pol)
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) || got == "h1" {
				t.Errorf("standby %q, want %q", got, tc.want)
			}
		})
	}
}
