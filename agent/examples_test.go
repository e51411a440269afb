package agent

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"
)

// TestExamples loads every agent configuration in examples/agent, and the
// one the Nomad job file writes with its variables' defaults, as the agent
// would.
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
	cfg, err := jobTemplate(filepath.Join("..", "examples", "agent", "agent.nomad.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	// Nomad's address filled in, as consul-template would.
	cfg = strings.ReplaceAll(cfg, `{{ env "NOMAD_ADDR_http" }}`, "10.0.0.5:8480")
	c, err := ParseConfig([]byte(cfg), "template")
	if err != nil {
		t.Fatalf("the job's agent configuration: %v\n%s", err, cfg)
	}
	if len(c.Seeds) != 2 || c.DriverPath != "/usr/local/libexec/virtpool/virtpool-driver" {
		t.Errorf("the job's agent configuration has %d hosts and driver_path %q, want the 2 example hosts and the default path\n%s",
			len(c.Seeds), c.DriverPath, cfg)
	}
}

// jobTemplate is the data of the agent task's template in a Nomad job
// file, its ${var.…} filled in with the variables' defaults as 'nomad job
// run' without -var does (make testacc-nomad runs the file with Nomad
// itself).
func jobTemplate(path string) (string, error) {
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		return "", diags
	}
	top, _, diags := f.Body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "variable", LabelNames: []string{"name"}}, {Type: "job", LabelNames: []string{"name"}},
	}})
	if diags.HasErrors() {
		return "", diags
	}
	vars := map[string]cty.Value{}
	var job *hcl.Block
	for _, b := range top.Blocks {
		if b.Type == "job" {
			job = b
			continue
		}
		attrs, diags := b.Body.JustAttributes()
		if diags.HasErrors() {
			return "", diags
		}
		def, ok := attrs["default"]
		if !ok {
			return "", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "variable " + b.Labels[0] + " has no default", Subject: &b.DefRange}}
		}
		if vars[b.Labels[0]], diags = def.Expr.Value(nil); diags.HasErrors() {
			return "", diags
		}
	}
	if job == nil {
		return "", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: path + ": no job block"}}
	}
	body := job.Body
	for _, typ := range []string{"group", "task", "template"} {
		labels := []string{"name"}
		if typ == "template" {
			labels = nil
		}
		c, _, diags := body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: typ, LabelNames: labels}}})
		if diags.HasErrors() {
			return "", diags
		}
		if len(c.Blocks) != 1 {
			return "", hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "want one " + typ + " block", Subject: &job.DefRange}}
		}
		body = c.Blocks[0].Body
	}
	c, _, diags := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "data", Required: true}}})
	if diags.HasErrors() {
		return "", diags
	}
	v, diags := c.Attributes["data"].Expr.Value(&hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)}})
	if diags.HasErrors() {
		return "", diags
	}
	return v.AsString(), nil
}
