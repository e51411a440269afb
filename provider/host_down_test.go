package provider

import (
	"context"
	"fmt"
	"regexp"
	"testing"
	"time"

	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/pool"
)

// TestAccHostDown: with h3 crashed, a pool that does not use it is planned
// and scaled as usual; one that does keeps its member there in state (no
// replacement planned) and refuses a change with an error naming h3.
// Once h3 is fenced, dn is restored on h2; when h3 is back (its guests
// stopped, as after a power loss), nothing starts them, the stale copy
// does not count, and everything is destroyed as usual.
func TestAccHostDown(t *testing.T) {
	needAcc(t)
	const up, upIP = "vpt-up", 181 // on h1, h2
	const dn, dnIP = "vpt-dn", 186 // on h2, h3: one member on each
	h3 := mustHost(t, "h3")
	// dn's anti-affinity puts one member on each host; it is lifted once
	// h3 is fenced, for h2 to take the replacement.
	config := func(upSize, dnSize int, dnApart bool) string {
		return providerConfig() + poolBlock("up", up, []string{"h1", "h2"}, upSize, upIP, false) +
			poolBlock("dn", dn, []string{"h2", "h3"}, dnSize, dnIP, dnApart)
	}
	crash := func() {
		if err := lab.Crash(context.Background(), h3); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if err := lab.Start(context.Background(), h3); err != nil {
			t.Error(err)
		}
	})
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             tfresource.ComposeTestCheckFunc(checkNothingLeft(up), checkNothingLeft(dn)),
		Steps: []tfresource.TestStep{
			{
				Config: config(1, 2, true),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkMembers(up, 1, []string{"h1", "h2"}, false),
					checkMembers(dn, 2, []string{"h2", "h3"}, true),
				),
			},
			{
				// h3 down: the refresh keeps dn's member there; only up changes.
				PreConfig: crash,
				Config:    config(2, 2, true),
				ConfigPlanChecks: tfresource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("virtpool_pool.up", plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction("virtpool_pool.dn", plancheck.ResourceActionNoop),
				}},
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.up", "members.#", "2"),
					runningOn(t, up, 2, "h1", "h2"),
					tfresource.TestCheckResourceAttr("virtpool_pool.dn", "size", "2"),
					tfresource.TestCheckResourceAttr("virtpool_pool.dn", "members.#", "2"),
				),
			},
			{
				Config:      config(2, 1, true),
				ExpectError: regexp.MustCompile(`(?s)host h3 did not answer`),
			},
			{
				// The agent fences h3 (here the test notes it, as the agent
				// does): dn's member there is gone, and dn is restored on h2.
				PreConfig: func() {
					ctx := context.Background()
					ops := &pool.Ops{Hosts: theLab.Inventory(), Driver: func(context.Context) (driver.Driver, error) { return drv, nil }}
					pr, _, found, err := ops.ReadPool(ctx, dn, nil)
					if !found {
						t.Fatalf("pool %s: %v", dn, err)
					}
					pr.Fences = []pool.Fence{{Host: "h3", At: time.Now()}}
					if _, err := ops.WritePool(ctx, pr, nil); err != nil {
						t.Fatal(err)
					}
				},
				Config: config(2, 2, false),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.dn", "size", "2"),
					runningOn(t, dn, 2, "h2"),
				),
			},
			{
				// h3 back, as after a power loss: its member is defined but
				// stopped, stale: nothing starts it, and it does not count.
				PreConfig: func() {
					if err := lab.Start(context.Background(), h3); err != nil {
						t.Fatal(err)
					}
				},
				Config: config(2, 2, false),
				ConfigPlanChecks: tfresource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("virtpool_pool.dn", plancheck.ResourceActionNoop),
				}},
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.dn", "size", "2"),
					runningOn(t, dn, 0, "h3"),
				),
			},
		},
	})
}

// runningOn checks that n members of the pool run on the given hosts (the
// others may be down).
func runningOn(t *testing.T, poolName string, n int, hosts ...string) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		got := 0
		for _, h := range hosts {
			doms, err := drv.ListDomains(context.Background(), mustHost(t, h).URI)
			if err != nil {
				return fmt.Errorf("list %s: %w", h, err)
			}
			for _, d := range doms {
				if d.Labels[pool.LabelPool] == poolName && d.State == driver.StateRunning {
					got++
				}
			}
		}
		if got != n {
			return fmt.Errorf("%d members of %s run on %v, want %d", got, poolName, hosts, n)
		}
		return nil
	}
}
