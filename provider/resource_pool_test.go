package provider

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/types"
	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/pool"
)

func TestPoolSchemaValid(t *testing.T) {
	ctx := context.Background()
	for _, r := range []resource.Resource{NewPoolResource(), NewDomainResource(), NewHostResource(), NewMigrationPolicyResource()} {
		var resp resource.SchemaResponse
		r.Schema(ctx, resource.SchemaRequest{}, &resp)
		if resp.Diagnostics.HasError() {
			t.Fatalf("%T: %v", r, resp.Diagnostics)
		}
		if diags := resp.Schema.ValidateImplementation(ctx); diags.HasError() {
			t.Fatalf("%T: %v", r, diags)
		}
	}
}

func TestValidateSizes(t *testing.T) {
	cases := []struct {
		size, lo, hi int64
		want         string // "" for valid
	}{
		{2, 0, 4, ""},
		{0, 0, 1, ""},
		{4, 4, 4, ""},
		{5, 0, 4, "size 5 must be between min_size 0 and max_size 4"},
		{1, 2, 4, "size 1 must be between min_size 2 and max_size 4"},
		{3, 5, 4, "min_size 5 must not exceed max_size 4"},
	}
	for _, c := range cases {
		var diags diag.Diagnostics
		validateSizes(types.Int64Value(c.size), types.Int64Value(c.lo), types.Int64Value(c.hi), &diags)
		got := diagText(diags)
		if (c.want == "") != !diags.HasError() || !strings.Contains(got, c.want) {
			t.Errorf("size %d in [%d, %d]: %q, want %q", c.size, c.lo, c.hi, got, c.want)
		}
	}
	// Unknown values (from other resources) are checked at apply, not refused.
	var diags diag.Diagnostics
	validateSizes(types.Int64Unknown(), types.Int64Value(3), types.Int64Value(1), &diags)
	if diags.HasError() {
		t.Errorf("unknown size: %v", diagText(diags))
	}
}

func TestPoolValidate(t *testing.T) {
	type tweak func(*poolModel)
	model := func(tw ...tweak) poolModel {
		m := poolModel{
			Name: types.StringValue("web"), Hosts: stringList([]string{"h1", "h2", "h3"}),
			Size: types.Int64Value(2), MinSize: types.Int64Value(0), MaxSize: types.Int64Value(3),
			AntiAffinity: types.BoolValue(false),
			Template: &poolTemplateModel{templateModel: templateModel{
				VCPUs: types.Int64Value(1), MemoryMiB: types.Int64Value(64), Kernel: types.StringValue("/k"),
				Cmdline: types.StringValue("ip={ip} name={name} n={index}"),
			}, IPBase: types.StringValue("192.0.2.10/24")},
		}
		for _, f := range tw {
			f(&m)
		}
		return m
	}
	cases := []struct {
		name string
		m    poolModel
		want string // "" for valid; else in the diagnostics
	}{
		{"ok", model(), ""},
		{"anti-affinity within hosts", model(func(m *poolModel) { m.AntiAffinity = types.BoolValue(true) }), ""},
		{"anti-affinity below max_size", model(func(m *poolModel) {
			m.AntiAffinity, m.MaxSize = types.BoolValue(true), types.Int64Value(5)
		}), "max_size 5 with anti_affinity needs 5 hosts (one per member); hosts lists 3: lower max_size to 3 or add hosts."},
		{"unknown placeholder", model(func(m *poolModel) { m.Template.Cmdline = types.StringValue("host={hostname}") }),
			`template.cmdline "host={hostname}": unknown placeholder {hostname}: the known ones are {name}, {index}, {ip}`},
		{"ip_base runs out before max_size", model(func(m *poolModel) {
			m.Template.IPBase, m.MaxSize = types.StringValue("192.0.2.250/24"), types.Int64Value(10)
		}), "template.ip_base 192.0.2.250/24 has no room for member 10"},
		{"ip_base reaches the broadcast address", model(func(m *poolModel) {
			m.Template.IPBase = types.StringValue("192.0.2.253/24")
		}), "member 3 would get 192.0.2.255, the broadcast address of 192.0.2.0/24"},
		{"ip_base at the network address", model(func(m *poolModel) {
			m.Template.IPBase = types.StringValue("192.0.2.0/24")
		}), "member 1 would get 192.0.2.0, the network address"},
		{"unknown max_size", model(func(m *poolModel) {
			m.Template.IPBase, m.MaxSize = types.StringValue("192.0.2.250/24"), types.Int64Unknown()
			m.Size = types.Int64Unknown()
		}), ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var diags diag.Diagnostics
			c.m.validate(&diags)
			got := diagText(diags)
			if (c.want == "") != !diags.HasError() || !strings.Contains(got, c.want) {
				t.Errorf("diagnostics %q, want %q", got, c.want)
			}
		})
	}
}

func TestFitsSomeHost(t *testing.T) {
	inv := pool.Inventory{
		"h1": {Name: "h1", Capacity: pool.Capacity{MemoryMiB: 2048}},
		"h2": {Name: "h2", Capacity: pool.Capacity{MemoryMiB: 8192, ReservedMemoryMiB: 1024}},
		"h3": {Name: "h3"}, // what it has is known at apply
	}
	cases := []struct {
		hosts []string
		mem   int64
		want  string
	}{
		{[]string{"h1", "h2"}, 7168, ""},
		{[]string{"h1", "h2"}, 7169, "template.memory_mib 7169 is larger than any of the pool's hosts: the largest, h2, has " +
			"memory_mib 8192 less reserved_memory_mib 1024 = 7168 MiB for guests"},
		{[]string{"h1"}, 4096, "the largest, h1, has memory_mib 2048 less reserved_memory_mib 0 = 2048 MiB"},
		{[]string{"h1", "h3"}, 4096, ""},
	}
	for _, c := range cases {
		err := fitsSomeHost(inv, c.hosts, c.mem)
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v, %d MiB: %v, want %q", c.hosts, c.mem, err, c.want)
		}
	}
}

// --- acceptance -------------------------------------------------------------

// poolConfig is a pool of lab guests (64 MiB, 1 vCPU, direct kernel boot)
// whose members answer at 192.0.2.<ipBase+n>.
func poolConfig(name string, hosts []string, size, ipBase int, antiAffinity bool, extra string) string {
	return providerConfig() + poolBlock("p", name, hosts, size, ipBase, antiAffinity) + extra
}

// poolBlock is a virtpool_pool resource res for the lab.
func poolBlock(res, name string, hosts []string, size, ipBase int, antiAffinity bool) string {
	img := labImage()
	maxSize := 4
	if antiAffinity {
		maxSize = len(hosts) // one host per member
	}
	q := make([]string, len(hosts))
	for i, h := range hosts {
		q[i] = fmt.Sprintf("%q", h)
	}
	return fmt.Sprintf(`
resource "virtpool_pool" %q {
  name          = %q
  hosts         = [%s]
  size          = %d
  min_size      = 0
  max_size      = %d
  anti_affinity = %v
  template = {
    vcpus       = 1
    memory_mib  = 64
    kernel      = %q
    initrd      = %q
    cmdline     = "%s virtpool.ip={ip} virtpool.name={name}"
    ip_base     = "192.0.2.%d/24"
    bridge      = %q
    accelerator = %q
  }
}
`, res, name, strings.Join(q, ", "), size, maxSize, antiAffinity, img.Kernel, img.Initrd, img.Cmdline, ipBase, lab.GuestBridge, accel())
}

func accel() string {
	if theLab != nil && theLab.Accelerator != "" {
		return theLab.Accelerator
	}
	return "auto"
}

// checkMembers checks that the pool has n running members, each on exactly
// one host among allowed, on distinct hosts if distinct.
func checkMembers(pool string, n int, allowed []string, distinct bool) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		ms, err := poolMembers(pool)
		if err != nil {
			return err
		}
		if len(ms) != n {
			return fmt.Errorf("pool %s has %d members on the hosts, want %d: %v", pool, len(ms), n, ms)
		}
		used := map[string]int{}
		for name, m := range ms {
			if !driver.Active(m.State) { // paused: a protected member's checkpoint ends
				return fmt.Errorf("member %s on %s is %s", name, m.Host, m.State)
			}
			if !contains(allowed, m.Host) {
				return fmt.Errorf("member %s on %s, outside the pool's hosts %v", name, m.Host, allowed)
			}
			used[m.Host]++
		}
		if distinct {
			for h, k := range used {
				if k > 1 {
					return fmt.Errorf("anti-affinity broken: %d members on %s", k, h)
				}
			}
		}
		return nil
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// checkPoolRecord checks that exactly the hosts hold the pool's record, all
// at the same generation, with the given size, and a policy of that mode
// ("" for none).
func checkPoolRecord(poolName string, hosts []string, size int64, mode string) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		on, recs, err := recordHosts(driver.RecordPool, poolName)
		if err != nil {
			return err
		}
		sort.Strings(on)
		want := append([]string(nil), hosts...)
		sort.Strings(want)
		if !reflect.DeepEqual(on, want) {
			return fmt.Errorf("pool %s record on %v, want %v", poolName, on, want)
		}
		for _, r := range recs {
			if r.Generation != recs[0].Generation {
				return fmt.Errorf("pool %s records at generations %d and %d", poolName, r.Generation, recs[0].Generation)
			}
			pr, err := pool.DecodeRecord(r)
			if err != nil {
				return err
			}
			if pr.Spec.Size != size {
				return fmt.Errorf("pool %s record size %d, want %d", poolName, pr.Spec.Size, size)
			}
			got := ""
			if pr.Policy != nil {
				got = pr.Policy.Mode
			}
			if got != mode {
				return fmt.Errorf("pool %s policy %q, want %q", poolName, got, mode)
			}
		}
		return nil
	}
}

// checkGuestsAnswer waits until members 1..n of a pool answer on the network.
func checkGuestsAnswer(t *testing.T, ipBase int, members ...int) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		for _, n := range members {
			waitGuest(t, fmt.Sprintf("192.0.2.%d", ipBase+n-1))
		}
		return nil
	}
}

// checkNothingLeft is CheckDestroy for a pool: no member, no record.
func checkNothingLeft(pool string) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		ms, err := poolMembers(pool)
		if err != nil {
			return err
		}
		if len(ms) > 0 {
			return fmt.Errorf("pool %s destroyed but members remain: %v", pool, ms)
		}
		on, _, err := recordHosts(driver.RecordPool, pool)
		if err != nil {
			return err
		}
		if len(on) > 0 {
			return fmt.Errorf("pool %s destroyed but its record remains on %v", pool, on)
		}
		return nil
	}
}

// TestAccPool: create a pool, check members and records on the hosts,
// scale up and down, see a member removed by hand as drift and heal it,
// import, destroy.
func TestAccPool(t *testing.T) {
	needAcc(t)
	const pool, ipBase = "vpt-pool", 151
	all := []string{"h1", "h2", "h3"}
	policy := `
resource "virtpool_migration_policy" "p" {
  pool            = virtpool_pool.p.name
  mode            = "balance"
  cpu_high        = 0.75
  bandwidth_mib   = 2000
  max_downtime_ms = 100
}

data "virtpool_pool" "p" {
  name       = virtpool_pool.p.name
  depends_on = [virtpool_pool.p, virtpool_migration_policy.p]
}
`
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             checkNothingLeft(pool),
		Steps: []tfresource.TestStep{
			{
				Config: poolConfig(pool, all, 2, ipBase, true, policy),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "size", "2"),
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "members.#", "2"),
					tfresource.TestCheckResourceAttr("data.virtpool_pool.p", "members.#", "2"),
					tfresource.TestCheckResourceAttr("data.virtpool_pool.p", "policy_mode", "balance"),
					tfresource.TestCheckResourceAttr("data.virtpool_pool.p", "desired_size", "2"),
					checkMembers(pool, 2, all, true),
					checkPoolRecord(pool, all, 2, "balance"),
					checkGuestsAnswer(t, ipBase, 1, 2),
				),
			},
			{
				Config: poolConfig(pool, all, 3, ipBase, true, policy),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "size", "3"),
					tfresource.TestCheckResourceAttr("data.virtpool_pool.p", "members.#", "3"),
					checkMembers(pool, 3, all, true),
					checkPoolRecord(pool, all, 3, "balance"),
					checkGuestsAnswer(t, ipBase, 3),
				),
			},
			{
				Config: poolConfig(pool, all, 1, ipBase, true, policy),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "size", "1"),
					checkMembers(pool, 1, all, true),
					checkPoolRecord(pool, all, 1, "balance"),
				),
			},
			{
				// A template change is in place: the member stays as it is.
				Config: bigger(poolConfig(pool, all, 1, ipBase, true, policy)),
				ConfigPlanChecks: tfresource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					plancheck.ExpectResourceAction("virtpool_pool.p", plancheck.ResourceActionUpdate),
				}},
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "template.memory_mib", "96"),
					checkMembers(pool, 1, all, true),
					checkMemberMemory(pool, 64),
				),
			},
			{
				// A member removed by hand is drift: the plan puts it back.
				PreConfig: func() {
					ms, err := poolMembers(pool)
					if err != nil || len(ms) != 1 {
						t.Fatalf("members before drift: %v %v", ms, err)
					}
					for name, m := range ms {
						uri := mustHost(t, m.Host).URI
						if err := drv.ShutdownDomain(context.Background(), uri, name, 0); err != nil {
							t.Fatal(err)
						}
						if err := drv.UndefineDomain(context.Background(), uri, name, driver.UndefineOptions{}); err != nil {
							t.Fatal(err)
						}
					}
				},
				Config:             bigger(poolConfig(pool, all, 1, ipBase, true, policy)),
				PlanOnly:           true,
				ExpectNonEmptyPlan: true,
			},
			{
				// Healed with a new member, built from the new template.
				Config: bigger(poolConfig(pool, all, 1, ipBase, true, policy)),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_pool.p", "size", "1"),
					checkMembers(pool, 1, all, true),
					checkMemberMemory(pool, 96),
				),
			},
			{
				ResourceName:      "virtpool_pool.p",
				ImportState:       true,
				ImportStateId:     pool,
				ImportStateVerify: true,
			},
			{
				ResourceName:      "virtpool_migration_policy.p",
				ImportState:       true,
				ImportStateId:     pool,
				ImportStateVerify: true,
			},
		},
	})
}

// bigger changes the pool template's memory from 64 to 96 MiB.
func bigger(config string) string {
	return strings.Replace(config, "memory_mib  = 64", "memory_mib  = 96", 1)
}

// checkMemberMemory checks every member of the pool has memMiB.
func checkMemberMemory(pool string, memMiB uint64) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		ms, err := poolMembers(pool)
		if err != nil {
			return err
		}
		for name, m := range ms {
			if m.MemoryMiB != memMiB {
				return fmt.Errorf("member %s has %d MiB, want %d", name, m.MemoryMiB, memMiB)
			}
		}
		return nil
	}
}

func mustHost(t *testing.T, name string) lab.Host {
	t.Helper()
	h, err := theLab.Host(name)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
