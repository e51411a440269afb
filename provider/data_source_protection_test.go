package provider

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/virtpool/virtpool/agent"
	"github.com/virtpool/virtpool/lab/agenttest"
)

// TestAccProtectionDataSource: a domain applied with a protection block is
// protected by the running virtpool agent (its hosts' checkpoint helpers),
// and virtpool_protection reads that from the agent: the primary, the
// standby, checkpoints shipped; a domain the agent does not protect is a
// diagnostic naming the ones it does.
func TestAccProtectionDataSource(t *testing.T) {
	needAcc(t)
	if theLab.Hosts[0].ShipBin == "" {
		t.Fatal("the lab's hosts run no checkpoint helper: set VIRTPOOL_BIN (make testacc-provider does)")
	}
	ag := agenttest.Start(t, theLab, agenttest.Options{Interval: 500 * time.Millisecond})
	const name, ip = "vpt-protds", "192.0.2.164"
	dom := domainConfigWith(providerConfig(), name, ip, "h1", `protection = { standby_hosts = ["h1", "h2"] }`)
	read := func(domain string) string {
		return dom + fmt.Sprintf(`
data "virtpool_protection" "p" {
  agent_url = %q
  domain    = %s
}
`, ag.URL, domain)
	}
	positive := func(attr string) tfresource.TestCheckFunc {
		return tfresource.TestCheckResourceAttrWith("data.virtpool_protection.p", attr, func(v string) error {
			if n, err := strconv.ParseInt(v, 10, 64); err != nil || n <= 0 {
				return fmt.Errorf("%s = %q, want > 0", attr, v)
			}
			return nil
		})
	}
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             checkDestroyed(t, name),
		Steps: []tfresource.TestStep{
			{Config: dom},
			{
				PreConfig: func() { waitShipped(t, ag, name) },
				Config:    read("virtpool_domain.d.name"),
				Check: tfresource.ComposeTestCheckFunc(
					tfresource.TestCheckResourceAttr("data.virtpool_protection.p", "primary", "h1"),
					tfresource.TestCheckResourceAttr("data.virtpool_protection.p", "standby", "h2"),
					tfresource.TestCheckResourceAttr("data.virtpool_protection.p", "interval_ms", "2000"),
					tfresource.TestCheckResourceAttr("data.virtpool_protection.p", "error", ""),
					positive("checkpoints"), positive("image_bytes"), positive("shipped_bytes"),
					tfresource.TestCheckResourceAttrWith("data.virtpool_protection.p", "checkpoint_at", func(v string) error {
						_, err := time.Parse(time.RFC3339Nano, v)
						return err
					}),
				),
			},
			{Config: read(`"vpt-nope"`), ExpectError: regexp.MustCompile(`(?s)Domain not protected.*protects no domain vpt-nope.*` + name)},
		},
	})
}

// waitShipped waits until the agent has shipped an image of name.
func waitShipped(t *testing.T, ag *agenttest.Agent, name string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var s agent.State
		ag.Get(t, "/api/v1/state", &s)
		if slices.ContainsFunc(s.Protections, func(p agent.Protection) bool { return p.Domain == name && p.Checkpoints > 0 }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent shipped no image of %s by %s (protections %+v)\n%s", name, deadline.Format(time.TimeOnly), s.Protections, ag.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
