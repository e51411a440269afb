package main

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/pool"
)

// testdata/terraform-output.json is what terraform 1.11.4 printed for
// 'terraform output -json' with the outputs of examples/autoscaler/demo
// (the same expressions over literal values: applying the real ones needs
// the lab).
func TestParseStoryOutputsRecorded(t *testing.T) {
	b, err := os.ReadFile("testdata/terraform-output.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseStoryOutputs(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "demo" || !slices.Equal(p.Hosts, []string{"h1", "h2", "h3"}) || p.Size != 2 || p.IPBase != "192.0.2.171/24" ||
		p.Policy.Mode != "consolidate" || p.Policy.CPUHigh != 0.8 {
		t.Fatalf("parsed %+v", p)
	}
	if got, want := p.String(), "pool demo (2 members, hosts h1,h2,h3), migration policy (consolidate, cpu_high 80%)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	for n, want := range map[int]string{1: "192.0.2.171", 3: "192.0.2.173"} {
		if ip, err := p.memberIP(n); err != nil || ip != want {
			t.Errorf("memberIP(%d) = %q, %v; want %q", n, ip, err, want)
		}
	}
}

func TestParseStoryOutputsErrors(t *testing.T) {
	policy := `"migration_policy": {"value": {"mode": "consolidate", "cpu_high": 0.8}}`
	tests := []struct {
		name, json, want string
	}{
		{"not JSON", `Error: no state`, "terraform outputs"},
		{"no outputs (an older main.tf)", `{}`, "want outputs pool and migration_policy"},
		{"no policy output", `{"pool": {"value": {"name": "demo", "hosts": ["h1"], "ip_base": "192.0.2.171/24"}}}`,
			"want outputs pool and migration_policy"},
		{"no hosts", `{"pool": {"value": {"name": "demo", "hosts": [], "ip_base": "192.0.2.171/24"}}, ` + policy + `}`,
			"want a name and hosts"},
		{"no name", `{"pool": {"value": {"hosts": ["h1"], "ip_base": "192.0.2.171/24"}}, ` + policy + `}`,
			"want a name and hosts"},
		{"no ip_base", `{"pool": {"value": {"name": "demo", "hosts": ["h1"]}}, ` + policy + `}`, "ip_base"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseStoryOutputs([]byte(tc.json)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

func TestStoryPoolCheckHosts(t *testing.T) {
	p := storyPool{Name: "demo", Hosts: []string{"h1", "h2", "h3"}}
	tests := []struct {
		name string
		lab  []string
		want string // "" for no error
	}{
		{"the same hosts", []string{"h1", "h2", "h3"}, ""},
		{"more hosts", []string{"h1", "h2", "h3", "h4"}, ""},
		{"a host missing", []string{"h1", "h2"}, `unknown host "h3"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inv := pool.Inventory{}
			for _, h := range tc.lab {
				inv[h] = pool.HostEntry{Name: h}
			}
			err := p.checkHosts(inv)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
