package provider

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"
	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
	"github.com/virtpool/virtpool/pool"
)

func TestTemplateValidate(t *testing.T) {
	s, null := types.StringValue, types.StringNull()
	cases := []struct {
		name string
		t    templateModel
		want string // attribute path of the error; "" for valid
	}{
		{"kernel", templateModel{Kernel: s("/k"), BaseImage: null, Initrd: s("/i"), OverlayDir: null}, ""},
		{"disk", templateModel{Kernel: null, BaseImage: s("/b.qcow2"), Initrd: null, OverlayDir: s("/o")}, ""},
		{"both", templateModel{Kernel: s("/k"), BaseImage: s("/b.qcow2"), Initrd: null, OverlayDir: null}, "base_image"},
		{"neither", templateModel{Kernel: null, BaseImage: null, Initrd: null, OverlayDir: null}, "kernel"},
		{"initrd without kernel", templateModel{Kernel: null, BaseImage: s("/b"), Initrd: s("/i"), OverlayDir: null}, "initrd"},
		{"overlay dir without disk", templateModel{Kernel: s("/k"), BaseImage: null, Initrd: null, OverlayDir: s("/o")}, "overlay_dir"},
		{"unknown kernel", templateModel{Kernel: types.StringUnknown(), BaseImage: null, Initrd: null, OverlayDir: null}, ""},
	}
	for _, c := range cases {
		var diags diag.Diagnostics
		c.t.validate(path.Root("template"), &diags)
		if c.want == "" {
			if diags.HasError() {
				t.Errorf("%s: %s", c.name, diagText(diags))
			}
			continue
		}
		if len(diags) != 1 {
			t.Errorf("%s: %d diagnostics (%s), want 1", c.name, len(diags), diagText(diags))
			continue
		}
		if p := diags[0].(diag.DiagnosticWithPath).Path(); !p.Equal(path.Root("template").AtName(c.want)) {
			t.Errorf("%s: diagnostic at %s, want template.%s", c.name, p, c.want)
		}
	}
}

func TestTemplateConversion(t *testing.T) {
	want := pool.Template{VCPUs: 2, MemoryMiB: 128, Kernel: "/k", Initrd: "/i", Cmdline: "console=ttyS0", Bridge: "br0", Accelerator: "tcg"}
	m := templateFromSpec(want)
	if !m.BaseImage.IsNull() || !m.OverlayDir.IsNull() {
		t.Errorf("empty fields must read as null (as left out), got %v %v", m.BaseImage, m.OverlayDir)
	}
	if got := m.toSpec(); got != want {
		t.Errorf("round trip\n got %+v\nwant %+v", got, want)
	}
	if got := templateFromSpec(pool.Template{}).Accelerator.ValueString(); got != "auto" {
		t.Errorf("accelerator default %q, want auto", got)
	}
	ds, err := want.DomainSpec("vm", 0, map[string]string{"a": "b"})
	if err != nil {
		t.Fatal(err)
	}
	if ds.Name != "vm" || ds.VCPUs != 2 || ds.MemoryMiB != 128 || ds.Kernel != "/k" || ds.Bridge != "br0" ||
		ds.Accelerator != "tcg" || ds.Labels["a"] != "b" || ds.Cmdline != "console=ttyS0" {
		t.Errorf("domain spec %+v", ds)
	}
}

func TestMigrateOptions(t *testing.T) {
	c := &Client{cfg: Config{Migration: driver.MigrateOptions{BandwidthMiBs: 1000, MaxDowntime: 50 * time.Millisecond,
		PostCopy: true, ProgressTimeout: time.Minute, CompletionPerGiB: 2 * time.Minute}}}
	pol := pool.DefaultPolicy()
	pol.BandwidthMiB, pol.MaxDowntimeMs, pol.AutoConverge, pol.ProgressTimeoutS = 300, 200, true, 30
	cases := []struct {
		name string
		pol  *pool.Policy
		disk bool
		want driver.MigrateOptions
	}{
		{"provider defaults", nil, false, driver.MigrateOptions{BandwidthMiBs: 1000, MaxDowntime: 50 * time.Millisecond,
			PostCopy: true, ProgressTimeout: time.Minute, CompletionPerGiB: 2 * time.Minute, Persistent: true, UndefineSource: true}},
		{"policy wins, disk is unsafe", &pol, true, driver.MigrateOptions{BandwidthMiBs: 300, MaxDowntime: 200 * time.Millisecond,
			AutoConverge: true, ProgressTimeout: 30 * time.Second, CompletionPerGiB: 2 * time.Minute,
			Persistent: true, UndefineSource: true, Unsafe: true}},
	}
	for _, cs := range cases {
		if got := pool.MigrateOptions(c.migrationDefaults(), cs.pol, cs.disk); got != cs.want {
			t.Errorf("%s:\n got %+v\nwant %+v", cs.name, got, cs.want)
		}
	}
}

// --- acceptance -------------------------------------------------------------

const domIP = "192.0.2.160"

func domainConfig(host string) string {
	return domainConfigWith(providerConfig(), "vpt-dom", domIP, host, `failover_hosts = ["h2", "h3"]`)
}

func domainConfigWith(provider, name, ip, host, extra string) string {
	img := labImage()
	return provider + fmt.Sprintf(`
resource "virtpool_domain" "d" {
  name        = %q
  host        = %q
  vcpus       = 1
  memory_mib  = 64
  kernel      = %q
  initrd      = %q
  cmdline     = "%s virtpool.ip=%s/24 virtpool.name=%s"
  bridge      = %q
  accelerator = %q
  labels      = { owner = "provider-acc" }
  %s
}
`, name, host, img.Kernel, img.Initrd, img.Cmdline, ip, name, lab.GuestBridge, accel(), extra)
}

// checkOnlyOn checks the domain runs on exactly host, with the UUID first
// seen (recorded in *uuid the first time).
func checkOnlyOn(t *testing.T, name, host string, uuid *string) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		var running []string
		for _, l := range where(t, name) {
			if l.State == driver.StateRunning {
				running = append(running, l.Host)
				if *uuid == "" {
					*uuid = l.UUID
				}
				if l.UUID != *uuid {
					return fmt.Errorf("%s on %s has UUID %s, want %s", name, l.Host, l.UUID, *uuid)
				}
			}
		}
		if len(running) != 1 || running[0] != host {
			return fmt.Errorf("%s runs on %v, want exactly [%s]", name, running, host)
		}
		return nil
	}
}

// checkDestroyed checks the domain is defined nowhere.
func checkDestroyed(t *testing.T, name string) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		if l := where(t, name); len(l) > 0 {
			return fmt.Errorf("domain destroyed but still defined: %+v", l)
		}
		return nil
	}
}

// checkLabel checks a label of the domain as libvirt keeps it.
func checkLabel(t *testing.T, name, key, want string) tfresource.TestCheckFunc {
	return func(*terraform.State) error {
		for _, l := range where(t, name) {
			if got := l.Labels[key]; got != want {
				return fmt.Errorf("%s on %s: label %s = %q, want %q", name, l.Host, key, got, want)
			}
		}
		return nil
	}
}

// TestAccDomainHostChange: changing host is an in-place update that
// live-migrates the guest: same UUID, and a TCP stream from the guest
// survives both moves (A→B→A). A move made by hand shows as drift of
// host and is undone by the next apply. Then import (failover_hosts read
// back from the domain's labels) and destroy.
func TestAccDomainHostChange(t *testing.T) {
	needAcc(t)
	const name = "vpt-dom"
	var uuid string
	var stream *probe.Stream
	update := func() tfresource.ConfigPlanChecks {
		return tfresource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
			plancheck.ExpectResourceAction("virtpool_domain.d", plancheck.ResourceActionUpdate),
		}}
	}
	checkStream := func(t *testing.T) tfresource.TestCheckFunc {
		return func(s *terraform.State) error {
			if err := stream.WaitAdvance(50, 20*time.Second); err != nil {
				return fmt.Errorf("stream from the guest after migration: %w", err)
			}
			if err := stream.Err(); err != nil {
				return err
			}
			rs := s.RootModule().Resources["virtpool_domain.d"]
			el, _ := strconv.Atoi(rs.Primary.Attributes["last_migration_elapsed_ms"])
			dt, _ := strconv.Atoi(rs.Primary.Attributes["last_migration_downtime_ms"])
			t.Logf("migration to %s: %d ms, downtime %d ms; stream at %d lines, unbroken",
				rs.Primary.Attributes["host"], el, dt, stream.Lines())
			if el <= 0 {
				return fmt.Errorf("last_migration_elapsed_ms = %d, want > 0", el)
			}
			return nil
		}
	}
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             checkDestroyed(t, name),
		Steps: []tfresource.TestStep{
			{
				Config: domainConfig("h1"),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkOnlyOn(t, name, "h1", &uuid),
					tfresource.TestCheckResourceAttr("virtpool_domain.d", "state", driver.StateRunning),
					tfresource.TestCheckResourceAttrPtr("virtpool_domain.d", "uuid", &uuid),
					tfresource.TestCheckResourceAttr("virtpool_domain.d", "failover_hosts.1", "h3"),
					checkLabel(t, name, pool.LabelFailoverHosts, "h2,h3"),
				),
			},
			{
				PreConfig: func() {
					waitGuest(t, domIP)
					var err error
					if stream, err = client.FollowTCP(domIP); err != nil {
						t.Fatal(err)
					}
					if err := stream.WaitAdvance(20, 20*time.Second); err != nil {
						t.Fatal(err)
					}
				},
				Config:           domainConfig("h2"),
				ConfigPlanChecks: update(),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkOnlyOn(t, name, "h2", &uuid),
					tfresource.TestCheckResourceAttrPtr("virtpool_domain.d", "uuid", &uuid),
					tfresource.TestCheckResourceAttr("virtpool_domain.d", "host", "h2"),
					checkStream(t),
				),
			},
			{
				Config:           domainConfig("h1"),
				ConfigPlanChecks: update(),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkOnlyOn(t, name, "h1", &uuid),
					checkStream(t),
				),
			},
			{
				// Moved by hand to h3: Read finds it there, the plan moves it back.
				PreConfig: func() {
					req := lab.MigrateRequest(name, mustHost(t, "h1"), mustHost(t, "h3"),
						driver.MigrateOptions{BandwidthMiBs: 2000, Persistent: true, UndefineSource: true})
					if _, err := drv.Migrate(context.Background(), req, nil); err != nil {
						t.Fatal(err)
					}
				},
				Config:           domainConfig("h1"),
				ConfigPlanChecks: update(),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkOnlyOn(t, name, "h1", &uuid),
					checkStream(t),
				),
			},
			{
				ResourceName:            "virtpool_domain.d",
				ImportState:             true,
				ImportStateId:           name,
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"last_migration_elapsed_ms", "last_migration_downtime_ms"},
			},
		},
	})
	if stream == nil {
		return
	}
	if s := stream.Stop(); s.Err != nil {
		t.Errorf("stream: %v", s.Err)
	} else {
		t.Logf("stream: %d lines, longest stall %s, across 3 live migrations", s.Lines, s.MaxStall.Round(time.Millisecond))
	}
}

// TestAccDomainMigrationTimeout: a migration that cannot finish within the
// update timeout (bandwidth capped at 1 MiB/s) is aborted; the apply fails
// naming host, the guest keeps running on the source only, with its UUID,
// and the state says so (the next plan for the old host is empty).
func TestAccDomainMigrationTimeout(t *testing.T) {
	needAcc(t)
	const name, ip = "vpt-slow", "192.0.2.161"
	slow := providerConfigBW(1)
	var uuid string
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             checkDestroyed(t, name),
		Steps: []tfresource.TestStep{
			{
				Config: domainConfigWith(slow, name, ip, "h1", ""),
				Check:  checkOnlyOn(t, name, "h1", &uuid),
			},
			{
				PreConfig:   func() { waitGuest(t, ip) },
				Config:      domainConfigWith(slow, name, ip, "h2", `timeouts = { update = "3s" }`),
				ExpectError: regexp.MustCompile(`(?s)Live migration failed.*keeps running where it was`),
			},
			{
				PreConfig: func() {
					if err := checkOnlyOn(t, name, "h1", &uuid)(nil); err != nil {
						t.Fatalf("after the aborted migration: %v", err)
					}
				},
				Config:   domainConfigWith(slow, name, ip, "h1", `timeouts = { update = "3s" }`),
				PlanOnly: true,
			},
		},
	})
}

// TestAccDomainMigrationDoesNotConverge: a guest dirtying memory faster
// than the bandwidth (24 MiB rewritten continuously, 16 MiB/s) is not
// migrated for ever: the apply fails in bounded time, naming the cause and
// the provider settings that would let it finish, and the guest runs on
// the source only; with migration_post_copy the same move completes.
func TestAccDomainMigrationDoesNotConverge(t *testing.T) {
	needAcc(t)
	const name, ip = "vpt-dirty", "192.0.2.162"
	strict, postCopy := providerConfigBW(16), providerConfigBW(16, "migration_post_copy = true")
	var uuid string
	var start time.Time
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             checkDestroyed(t, name),
		Steps: []tfresource.TestStep{
			{
				Config: domainConfigWith(strict, name, ip, "h1", ""),
				Check:  checkOnlyOn(t, name, "h1", &uuid),
			},
			{
				PreConfig: func() {
					waitGuest(t, ip)
					if err := client.SetLoad(context.Background(), ip, 0, 24); err != nil {
						t.Fatal(err)
					}
					start = time.Now()
				},
				Config: domainConfigWith(strict, name, ip, "h2", ""),
				ExpectError: regexp.MustCompile(`(?s)Live migration failed.*aborted: not converging.*guest dirties.*` +
					`migration_auto_converge.*migration_post_copy.*migration_bandwidth_mib`),
			},
			{
				PreConfig: func() {
					t.Logf("the migration that did not converge failed after %s", time.Since(start).Round(100*time.Millisecond))
					if err := checkOnlyOn(t, name, "h1", &uuid)(nil); err != nil {
						t.Fatalf("after the aborted migration: %v", err)
					}
				},
				Config:   domainConfigWith(strict, name, ip, "h1", ""),
				PlanOnly: true,
			},
			{
				Config: domainConfigWith(postCopy, name, ip, "h2", ""),
				Check: tfresource.ComposeAggregateTestCheckFunc(
					checkOnlyOn(t, name, "h2", &uuid),
					func(*terraform.State) error { return client.SetLoad(context.Background(), ip, 0, 0) },
				),
			},
		},
	})
}

// TestAccDomainProtection: a protection block becomes the domain's labels
// as virtpool agent reads them (its standby hosts as its failover hosts,
// its interval and on_failure), with the defaults filled in; Read gives
// the same block back (the next plan is empty), and import rebuilds it.
func TestAccDomainProtection(t *testing.T) {
	needAcc(t)
	const name, ip = "vpt-prot", "192.0.2.163"
	cfg := domainConfigWith(providerConfig(), name, ip, "h1", `protection = { standby_hosts = ["h2", "h3"] }`)
	tfresource.Test(t, tfresource.TestCase{
		ProtoV6ProviderFactories: accProviders,
		CheckDestroy:             checkDestroyed(t, name),
		Steps: []tfresource.TestStep{
			{
				Config: cfg,
				Check: tfresource.ComposeTestCheckFunc(
					tfresource.TestCheckResourceAttr("virtpool_domain.d", "protection.interval", "2s"),
					tfresource.TestCheckResourceAttr("virtpool_domain.d", "protection.on_failure", "restore"),
					tfresource.TestCheckNoResourceAttr("virtpool_domain.d", "failover_hosts"),
					func(*terraform.State) error {
						at := where(t, name)
						if len(at) != 1 {
							return fmt.Errorf("%s on %d hosts", name, len(at))
						}
						p, ok, err := pool.ProtectionOf(at[0].Labels)
						if err != nil || !ok || p.Interval != 2*time.Second || p.OnFailure != pool.OnFailureRestore {
							return fmt.Errorf("protection label %q: %+v, %v: %w", at[0].Labels[pool.LabelProtection], p, ok, err)
						}
						if fh := pool.FailoverHosts(at[0].Labels); strings.Join(fh, ",") != "h2,h3" {
							return fmt.Errorf("failover hosts %v, want the standby hosts h2,h3", fh)
						}
						return nil
					},
				),
			},
			{Config: cfg, PlanOnly: true},
			// Its state reads paused while a checkpoint ends (libvirt's).
			{ResourceName: "virtpool_domain.d", ImportState: true, ImportStateId: name, ImportStateVerify: true,
				ImportStateVerifyIgnore: []string{"timeouts", "last_migration_elapsed_ms", "last_migration_downtime_ms", "labels", "state"}},
		},
	})
}
