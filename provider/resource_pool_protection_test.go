package provider

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/virtpool/virtpool/agent"
	"github.com/virtpool/virtpool/lab/agenttest"
)

// TestAccPoolProtection (issue 14: every member of a virtpool_pool): a
// pool applied with a protection block has every member protected by the
// running agent, each one's standby another of the pool's hosts (the
// scheduler's choice); virtpool_protection reads a member's; a change of
// interval applies in place to the members that exist (none replaced);
// Read gives the block back (no drift), import too.
func TestAccPoolProtection(t *testing.T) {
	needAcc(t)
	if theLab.Hosts[0].ShipBin == "" {
		t.Fatal("the lab's hosts run no checkpoint helper: set VIRTPOOL_BIN (make testacc-provider does)")
	}
	ag := agenttest.Start(t, theLab, agenttest.Options{Interval: 500 * time.Millisecond})
	const name, ipBase = "vpt-ppool", 131
	all := []string{"h1", "h2", "h3"}
	cfg := func(protection string) string {
		return strings.Replace(poolConfig(name, all, 2, ipBase, false, ""), "  template = {",
			"  protection = "+protection+"\n  template = {", 1)
	}
	member := name + "-1"
	read := fmt.Sprintf(`
data "virtpool_protection" "m" {
  agent_url = %q
  domain    = %q
}
`, ag.URL, member)
	var uuids string
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             checkNothingLeft(name),
		Steps: []tfresource.TestStep{
			{
				Config: cfg("{}"),
				Check: tfresource.ComposeTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "protection.interval", "2s"),
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "protection.on_failure", "restore"),
					checkMembers(name, 2, all, false),
					func(*terraform.State) error {
						ms, err := poolMembers(name)
						for _, n := range slices.Sorted(maps.Keys(ms)) {
							uuids += ms[n].UUID + " "
						}
						return err
					},
				),
			},
			{
				PreConfig: func() { waitMembersProtected(t, ag, name, 2, 2000) },
				Config:    cfg("{}") + read,
				Check: tfresource.ComposeTestCheckFunc(
					tfresource.TestCheckResourceAttr("data.virtpool_protection.m", "interval_ms", "2000"),
					tfresource.TestCheckResourceAttr("data.virtpool_protection.m", "error", ""),
					func(s *terraform.State) error {
						a := s.RootModule().Resources["data.virtpool_protection.m"].Primary.Attributes
						if a["standby"] == a["primary"] || !slices.Contains(all, a["standby"]) {
							return fmt.Errorf("%s on %s: standby %q, want another of the pool's hosts", member, a["primary"], a["standby"])
						}
						return nil
					},
				),
			},
			{
				Config: cfg(`{ interval = "3s" }`),
				ConfigPlanChecks: tfresource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("virtpool_pool.p", plancheck.ResourceActionUpdate),
				}},
				Check: tfresource.ComposeTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "protection.interval", "3s"),
					func(*terraform.State) error {
						waitMembersProtected(t, ag, name, 2, 3000)
						ms, err := poolMembers(name)
						now := ""
						for _, n := range slices.Sorted(maps.Keys(ms)) {
							now += ms[n].UUID + " "
						}
						if err == nil && now != uuids {
							return fmt.Errorf("members %s after the change, were %s: replaced", now, uuids)
						}
						return err
					},
				),
			},
			{Config: cfg(`{ interval = "3s" }`), PlanOnly: true},
			// A member reads paused while a checkpoint ends (libvirt's state).
			{ResourceName: "virtpool_pool.p", ImportState: true, ImportStateId: name, ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"timeouts", "members.0.state", "members.1.state"}},
		},
	})
}

// waitMembersProtected waits until the agent protects n members of the
// pool every intervalMs, each with an image shipped.
func waitMembersProtected(t *testing.T, ag *agenttest.Agent, name string, n int, intervalMs int64) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		var s agent.State
		ag.Get(t, "/api/v1/state", &s)
		var ok []string
		for _, p := range s.Protections {
			if strings.HasPrefix(p.Domain, name+"-") && p.IntervalMs == intervalMs && p.Checkpoints > 0 && p.Standby != p.Primary {
				ok = append(ok, p.Domain)
			}
		}
		if len(ok) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("members of %s protected every %d ms by %s: %v (protections %+v)\n%s", name, intervalMs,
				deadline.Format(time.TimeOnly), ok, s.Protections, ag.Tail(30))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
