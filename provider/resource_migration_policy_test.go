package provider

import (
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"

	"github.com/virtpool/virtpool/pool"
)

// The policy resource is exercised on the lab by TestAccPool (stored in the
// pool record, imported) and at plan time by TestAccValidation.
func TestCheckWatermarks(t *testing.T) {
	cases := []struct {
		lo, hi float64
		want   string // "" for valid
	}{
		{0.3, 0.8, ""},
		{0.01, 1, ""},
		{0, 0.8, "cpu_low must be above 0"},
		{-0.1, 0.8, "cpu_low must be above 0"},
		{0.3, 1.2, "cpu_high must be at most 1"},
		{0.8, 0.3, "cpu_low (0.8) must be below cpu_high (0.3)"},
		{0.5, 0.5, "must be below"},
	}
	for _, c := range cases {
		var diags diag.Diagnostics
		checkWatermarks("cpu_low", "cpu_high", c.lo, c.hi, &diags)
		got := diagText(diags)
		if (c.want == "") == diags.HasError() || !strings.Contains(got, c.want) {
			t.Errorf("low %v high %v: %q, want %q", c.lo, c.hi, got, c.want)
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
