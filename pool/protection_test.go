package pool

import (
	"strings"
	"testing"
	"time"
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
