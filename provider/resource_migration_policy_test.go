package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/pool"
)

// The policy resource is exercised on the lab by TestAccPool (stored in the
// pool record, imported) and at plan time by TestAccValidation.
func TestCheckPolicy(t *testing.T) {
	f := types.Float64Value
	cases := []struct {
		name string
		m    policyModel
		at   string // attribute of the error; "" for valid
		want string
	}{
		{"defaults", policyModel{}, "", ""}, // null (zero) attributes: the defaults
		{"valid", policyModel{CPULow: f(0.3), CPUHigh: f(0.8), TargetUtilisation: f(0.75)}, "", ""},
		{"low zero", policyModel{CPULow: f(0)}, "cpu_low", "cpu_low must be above 0"},
		{"high above 1", policyModel{CPUHigh: f(1.2)}, "cpu_high", "cpu_high must be at most 1"},
		{"out of order", policyModel{CPULow: f(0.8), CPUHigh: f(0.3)}, "cpu_high", "cpu_low (0.8) must be below cpu_high (0.3)"},
		{"target above", policyModel{TargetUtilisation: f(0.9)}, "target_utilisation",
			"target_utilisation 0.9 must lie between the low and high watermarks (cpu_low 0.3 … cpu_high 0.8)"},
		{"unknown", policyModel{CPULow: types.Float64Unknown(), CPUHigh: f(2)}, "", ""},
	}
	for _, c := range cases {
		var diags diag.Diagnostics
		checkPolicy(c.m, &diags)
		got := diagText(diags)
		if (c.at == "") == diags.HasError() || !strings.Contains(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
			continue
		}
		if c.at != "" {
			if p, ok := diags[0].(diag.DiagnosticWithPath); !ok || !p.Path().Equal(path.Root(c.at)) {
				t.Errorf("%s: diagnostic at %v, want %s", c.name, diags[0], c.at)
			}
		}
	}
}

func TestPolicyModelRoundTrip(t *testing.T) {
	p := pool.DefaultPolicy()
	p.Mode, p.BandwidthMiB, p.AutoConverge, p.MaxParallel = pool.ModeConsolidate, 750, true, 3
	if got := policyFromSpec("web", p).spec(); got != p {
		t.Errorf("round trip\n got %+v\nwant %+v", got, p)
	}
}
