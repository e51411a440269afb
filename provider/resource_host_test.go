package provider

import (
	"context"
	"fmt"
	"testing"

	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/virtpool/virtpool/driver"
)

// checkHostEmpty checks that no guest runs on host.
func checkHostEmpty(host string) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		doms, err := drv.ListDomains(context.Background(), theLab.Hosts[hostIndex(host)].URI)
		if err != nil {
			return err
		}
		for _, d := range doms {
			if d.State == driver.StateRunning || d.State == driver.StatePaused {
				return fmt.Errorf("host %s in maintenance still runs %s", host, d.Name)
			}
		}
		return nil
	}
}

func hostIndex(name string) int {
	for i, h := range theLab.Hosts {
		if h.Name == name {
			return i
		}
	}
	return -1
}

// checkHostRecord checks the host's record says maintenance (or, with
// want=false, that there is no record).
func checkHostRecord(host string, want bool) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		on, recs, err := recordHosts(driver.RecordHost, host)
		if err != nil {
			return err
		}
		switch {
		case !want && len(on) > 0:
			return fmt.Errorf("host %s record left on %v", host, on)
		case want && (len(on) != 1 || on[0] != host):
			return fmt.Errorf("host %s record on %v, want [%s]", host, on, host)
		case want && recs[0].Data["maintenance"] != "true":
			return fmt.Errorf("host %s record %v, want maintenance", host, recs[0].Data)
		}
		return nil
	}
}

// TestAccHostMaintenance: a pool lives on h3; h3 goes into maintenance;
// apply live-migrates its members to the other host the pool may use (h1),
// and h3 ends empty. Then the pool's hosts change to h2 only: its members
// are live-migrated there and its record leaves h1 and h3. Import the host;
// destroy leaves no record.
func TestAccHostMaintenance(t *testing.T) {
	needAcc(t)
	const pool, ipBase = "vpt-maint", 171
	maint := `
resource "virtpool_host" "h3" {
  name        = "h3"
  maintenance = true
  depends_on  = [virtpool_pool.p]
}

data "virtpool_hosts" "all" {
  depends_on = [virtpool_host.h3]
}
`
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy: tfresource.ComposeAggregateTestCheckFunc(
			checkNothingLeft(pool),
			checkHostRecord("h3", false),
		),
		Steps: []tfresource.TestStep{
			{
				Config: poolConfig(pool, []string{"h3"}, 2, ipBase, false, ""),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkMembers(pool, 2, []string{"h3"}, false),
					checkPoolRecord(pool, []string{"h3"}, 2, ""),
				),
			},
			{
				Config: poolConfig(pool, []string{"h1", "h3"}, 2, ipBase, false, maint),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkMembers(pool, 2, []string{"h1"}, false),
					checkHostEmpty("h3"),
					checkHostRecord("h3", true),
					checkPoolRecord(pool, []string{"h1", "h3"}, 2, ""),
					checkGuestsAnswer(t, ipBase, 1, 2),
					tfresource.TestCheckResourceAttr("virtpool_host.h3", "maintenance", "true"),
					tfresource.TestCheckResourceAttr("virtpool_host.h3", "uri", mustHost(t, "h3").URI),
					tfresource.TestCheckResourceAttr("virtpool_host.h3", "guests.#", "0"),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.#", "3"),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.2.name", "h3"),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.2.state", "maintenance"),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.2.guests.#", "0"),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.0.state", "active"),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.0.vcpus_allocated", "2"),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.0.memory_allocated_bytes", "134217728"),
				),
			},
			{
				Config: poolConfig(pool, []string{"h2"}, 2, ipBase, false, maint),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkMembers(pool, 2, []string{"h2"}, false),
					checkPoolRecord(pool, []string{"h2"}, 2, ""),
					checkHostEmpty("h3"),
					checkGuestsAnswer(t, ipBase, 1, 2),
				),
			},
			{
				ResourceName:      "virtpool_host.h3",
				ImportState:       true,
				ImportStateId:     "h3",
				ImportStateVerify: true,
			},
		},
	})
}
