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

// TestAccHostMaintenance: two pools live on h3, p (may use h1 and h3)
// and q (may use h2 and h3); h3 goes into maintenance; apply live-migrates
// each member to a host of its own pool (p's to h1, q's to h2), and h3 ends
// empty. Then p's hosts change to h2 only: its members are live-migrated
// there and its record leaves h1 and h3. Import the host; destroy leaves
// no record.
func TestAccHostMaintenance(t *testing.T) {
	needAcc(t)
	const pool, ipBase = "vpt-maint", 171
	const other, otherIP = "vpt-maint-q", 176
	q := func(hosts ...string) string { return poolBlock("q", other, hosts, 1, otherIP, false) }
	maint := `
resource "virtpool_host" "h3" {
  name        = "h3"
  maintenance = true
  depends_on  = [virtpool_pool.p, virtpool_pool.q]
}

data "virtpool_hosts" "all" {
  depends_on = [virtpool_host.h3]
}
`
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy: tfresource.ComposeAggregateTestCheckFunc(
			checkNothingLeft(pool),
			checkNothingLeft(other),
			checkHostRecord("h3", false),
		),
		Steps: []tfresource.TestStep{
			{
				Config: poolConfig(pool, []string{"h3"}, 2, ipBase, false, q("h3")),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkMembers(pool, 2, []string{"h3"}, false),
					checkMembers(other, 1, []string{"h3"}, false),
					checkPoolRecord(pool, []string{"h3"}, 2, ""),
				),
			},
			{
				Config: poolConfig(pool, []string{"h1", "h3"}, 2, ipBase, false, q("h2", "h3")+maint),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkMembers(pool, 2, []string{"h1"}, false),
					checkMembers(other, 1, []string{"h2"}, false),
					checkHostEmpty("h3"),
					checkHostRecord("h3", true),
					checkPoolRecord(pool, []string{"h1", "h3"}, 2, ""),
					checkGuestsAnswer(t, ipBase, 1, 2),
					checkGuestsAnswer(t, otherIP, 1, 1),
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
					// The lab host's budget, not the machine's cores.
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.0.capacity_cpus", fmt.Sprint(mustHost(t, "h1").CPUs)),
					tfresource.TestCheckResourceAttr("data.virtpool_hosts.all", "hosts.0.capacity_memory_bytes",
						fmt.Sprint(mustHost(t, "h1").MemoryMiB<<20)),
				),
			},
			{
				Config: poolConfig(pool, []string{"h2"}, 2, ipBase, false, q("h2", "h3")+maint),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkMembers(pool, 2, []string{"h2"}, false),
					checkMembers(other, 1, []string{"h2"}, false),
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
