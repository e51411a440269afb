package main

import (
	"os"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// pluginConfigs decodes the config of every plugin block of an agent
// configuration, by "type/label".
func pluginConfigs(t *testing.T, src []byte) map[string]map[string]string {
	t.Helper()
	f, diags := hclsyntax.ParseConfig(src, "out.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%v in\n%s", diags, src)
	}
	out := map[string]map[string]string{}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		attr, ok := b.Body.Attributes["config"]
		if !ok {
			continue
		}
		v, diags := attr.Expr.Value(nil)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		m := map[string]string{}
		for k, x := range v.AsValueMap() {
			m[k] = x.AsString()
		}
		out[b.Type+"/"+strings.Join(b.Labels, "/")] = m
	}
	return out
}

func TestWithPluginKey(t *testing.T) {
	demo, err := os.ReadFile("../../examples/autoscaler/demo/agent.hcl")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		src     string
		value   string
		wantErr string
	}{
		{"the demo's configuration", string(demo), "/tmp/virtpool-demo-events.jsonl", ""},
		{"one line, quoted keys", `target "t" {
  driver = "virtpool-target"
  config = { "hosts" = "h1=test:///default" }
}
`, "/tmp/e.jsonl", ""},
		{"a value HCL would interpolate", `target "t" {
  driver = "virtpool-target"
  config = {
    hosts = "x"
  }
}
`, `/tmp/${x}%{y}"q"\e.jsonl`, ""},
		{"key set already", `target "t" {
  driver = "virtpool-target"
  config = {
    event_log = "x"
  }
}
`, "/tmp/e", `config sets event_log already`},
		{"quoted key set already", `target "t" {
  driver = "virtpool-target"
  config = { "event_log" = "x" }
}
`, "/tmp/e", `config sets event_log already`},
		{"no such target", `target "nomad" {
  driver = "nomad-target"
}
`, "/tmp/e", `want one target block with driver = "virtpool-target", found 0`},
		{"no config", `target "t" {
  driver = "virtpool-target"
}
`, "/tmp/e", `no config`},
		{"not HCL", `target {`, "/tmp/e", `in.hcl:1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := withPluginKey([]byte(tc.src), "in.hcl", "target", "virtpool-target", "event_log", tc.value)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			before, after := pluginConfigs(t, []byte(tc.src)), pluginConfigs(t, out)
			for name, cfg := range before {
				if strings.HasPrefix(name, "target/") {
					cfg["event_log"] = tc.value
				}
				if got := after[name]; len(got) != len(cfg) {
					t.Fatalf("%s: config %v, want %v; out:\n%s", name, got, cfg, out)
				}
				for k, v := range cfg {
					if after[name][k] != v {
						t.Fatalf("%s: %s = %q, want %q; out:\n%s", name, k, after[name][k], v, out)
					}
				}
			}
			// The rest stays as it was.
			if tc.name == "the demo's configuration" && !strings.Contains(string(out), `dir                         = "policies"`) {
				t.Errorf("policy block changed:\n%s", out)
			}
		})
	}
}
