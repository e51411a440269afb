package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// TestExamples loads every agent configuration in examples/agent, and the
// one the Nomad job file writes, as the agent would.
func TestExamples(t *testing.T) {
	for _, name := range []string{"agent.hcl", "production.hcl"} {
		c, err := LoadConfig(filepath.Join("..", "examples", "agent", name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(c.Seeds) < 2 || len(c.Fence) == 0 {
			t.Errorf("%s: %d hosts, %d fence actions", name, len(c.Seeds), len(c.Fence))
		}
	}
	path := filepath.Join("..", "examples", "agent", "agent.nomad.hcl")
	src, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	// The template's configuration, with Nomad's address filled in.
	body := string(f.Bytes)
	start, end := strings.Index(body, "<<-EOT\n"), strings.Index(body, "EOT\n      }")
	if start < 0 || end < 0 {
		t.Fatal("no template heredoc in the job file")
	}
	cfg := strings.ReplaceAll(body[start+len("<<-EOT\n"):end], `{{ env "NOMAD_ADDR_http" }}`, "10.0.0.5:8480")
	if _, err := ParseConfig([]byte(cfg), "template"); err != nil {
		t.Errorf("the job's agent configuration: %v\n%s", err, cfg)
	}
}
