package provider

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/providerserver"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/virtpool/virtpool/driver"
	vpplugin "github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/labtest"
	"github.com/virtpool/virtpool/lab/probe"
	"github.com/virtpool/virtpool/pool"
)

// Acceptance tests drive the real terraform binary (terraform-plugin-testing,
// the provider served in-process) against the lab's real libvirt daemons.
// They run only with TF_ACC=1 and VIRTPOOL_ACC=1 (make testacc-provider,
// part of make test); TestMain then brings the lab up, holding the lab lock
// (/tmp/virtpool-lab.lock) for the whole run, and down again unless it was
// already up.
var (
	accEnabled = os.Getenv("TF_ACC") == "1" && os.Getenv("VIRTPOOL_ACC") == "1"
	theLab     *lab.Lab
	// drv is the tests' own driver process, used to look at the hosts
	// independently of the provider under test.
	drv        driver.Driver
	driverPath string
	client     *probe.Client
)

// accProviders serves the provider in-process to terraform.
var accProviders = map[string]func() (tfprotov6.ProviderServer, error){
	"virtpool": providerserver.NewProtocol6WithError(New("test")()),
}

func needAcc(t *testing.T) {
	t.Helper()
	if !accEnabled {
		t.Skip("acceptance test: needs root, terraform and the lab; run with TF_ACC=1 VIRTPOOL_ACC=1 (make testacc-provider)")
	}
}

func TestMain(m *testing.M) {
	if !accEnabled {
		os.Exit(m.Run())
	}
	os.Exit(runWithLab(m))
}

func runWithLab(m *testing.M) int {
	ctx := context.Background()
	log := hclog.New(&hclog.LoggerOptions{Name: "provider-acc", Level: hclog.LevelFromString(labtest.EnvOr("VIRTPOOL_LOG", "warn"))})
	// The provider's address in the test configurations' required_providers.
	os.Setenv("TF_ACC_PROVIDER_NAMESPACE", "virtpool")
	var down func()
	var err error
	if theLab, down, err = labtest.Up(ctx, "provider acc", true, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer down()
	client = probe.New(theLab.ClientNamespace)
	if driverPath, err = labtest.DriverBinary(); err != nil {
		fmt.Fprintln(os.Stderr, "provider acc:", err)
		return 1
	}
	// The tests' own driver logs in as the provider does (over tls).
	creds, err := theLab.Credentials()
	if err != nil {
		fmt.Fprintln(os.Stderr, "provider acc:", err)
		return 1
	}
	env, err := driver.CredentialsEnvEntry(creds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "provider acc:", err)
		return 1
	}
	p, err := vpplugin.Start(driverPath, log, env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "provider acc:", err)
		return 1
	}
	defer p.Close()
	defer CloseDrivers() // the provider's own, started by the tests
	drv = p.Driver
	return m.Run()
}

// providerConfig is the provider block for the lab, plus required_providers.
func providerConfig() string { return providerConfigBW(2000) }

// providerConfigBW is providerConfig with another migration bandwidth
// (MiB/s) and extra provider attributes, one per line.
func providerConfigBW(bandwidth int, extra ...string) string {
	var b strings.Builder
	b.WriteString(`terraform {
  required_providers {
    virtpool = { source = "virtpool/virtpool" }
  }
}

provider "virtpool" {
  driver_path               = "` + driverPath + `"
  shutdown_timeout          = "0s"
  migration_bandwidth_mib   = ` + strconv.Itoa(bandwidth) + `
  migration_max_downtime_ms = 50
`)
	if theLab != nil && theLab.Transport() == lab.TLS {
		extra = append(extra, "migration_tls = true") // the lab's QEMUs refuse migrations in the clear
	}
	for _, l := range extra {
		b.WriteString("  " + l + "\n")
	}
	b.WriteString(`  hosts = {
`)
	hosts := []lab.Host{{Name: "h1", URI: "test:///default"}, {Name: "h2", URI: "test:///default"}, {Name: "h3", URI: "test:///default"}}
	if theLab != nil {
		hosts = theLab.Hosts
	}
	var login string // over tls the hosts ask for a SASL login
	if theLab != nil && theLab.Transport() == lab.TLS {
		l, err := lab.LabLogin()
		if err != nil {
			panic(err)
		}
		login = fmt.Sprintf("      username = %q\n      password = %q\n", l.Username, l.Password)
	}
	for _, h := range hosts {
		fmt.Fprintf(&b, "    %s = {\n      uri = %q\n", h.Name, h.URI)
		if h.PeerURI != "" {
			fmt.Fprintf(&b, "      peer_uri = %q\n      migration_uri = %q\n", h.PeerURI, h.MigrateTo)
		}
		b.WriteString(login)
		if h.CPUs > 0 {
			fmt.Fprintf(&b, "      cpus = %v\n      memory_mib = %d\n      vcpu_ratio = %v\n", h.CPUs, h.MemoryMiB, h.VCPURatio)
		}
		b.WriteString("    }\n")
	}
	b.WriteString("  }\n}\n")
	return b.String()
}

// labImage returns the lab's guest image paths (made up when no lab is up,
// for plan-only tests).
func labImage() lab.Image {
	if theLab != nil {
		return theLab.Image
	}
	return lab.Image{Kernel: "/nonexistent/vmlinux", Initrd: "/nonexistent/initrd", Cmdline: "console=ttyS0"}
}

// --- looking at the hosts ---------------------------------------------------

// where returns every (host, domain) of the lab whose name is name.
func where(t *testing.T, name string) []pool.Located {
	t.Helper()
	var out []pool.Located
	for _, h := range theLab.Hosts {
		doms, err := drv.ListDomains(context.Background(), h.URI)
		if err != nil {
			t.Fatalf("list %s: %v", h.Name, err)
		}
		for _, d := range doms {
			if d.Name == name {
				out = append(out, pool.Located{Host: h.Name, Domain: d})
			}
		}
	}
	return out
}

// poolMembers returns the lab's running domains labelled as members of pool name.
func poolMembers(name string) (map[string]pool.Located, error) {
	out := map[string]pool.Located{}
	for _, h := range theLab.Hosts {
		doms, err := drv.ListDomains(context.Background(), h.URI)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", h.Name, err)
		}
		for _, d := range doms {
			if d.Labels[pool.LabelPool] == name && d.Labels[pool.LabelRole] == pool.RoleMember {
				if prev, dup := out[d.Name]; dup {
					return nil, fmt.Errorf("member %s found on %s and %s", d.Name, prev.Host, h.Name)
				}
				out[d.Name] = pool.Located{Host: h.Name, Domain: d}
			}
		}
	}
	return out, nil
}

// recordHosts returns the lab hosts holding a record of that kind and name.
func recordHosts(kind, name string) ([]string, []driver.Record, error) {
	var hosts []string
	var recs []driver.Record
	for _, h := range theLab.Hosts {
		rs, err := drv.ListRecords(context.Background(), h.URI)
		if err != nil {
			return nil, nil, fmt.Errorf("records of %s: %w", h.Name, err)
		}
		for _, r := range rs {
			if r.Kind == kind && r.Name == name {
				hosts = append(hosts, h.Name)
				recs = append(recs, r)
			}
		}
	}
	return hosts, recs, nil
}

// waitGuest waits until the lab guest at ip answers.
func waitGuest(t *testing.T, ip string) {
	t.Helper()
	start := time.Now()
	if err := client.WaitReady(context.Background(), ip, 90*time.Second); err != nil {
		t.Fatalf("guest %s: %v", ip, err)
	}
	t.Logf("guest %s ready after %s", ip, time.Since(start).Round(time.Millisecond))
}

// --- unit tests of the provider itself ---------------------------------------

func TestProviderSchemaValid(t *testing.T) {
	ctx := context.Background()
	p := New("test")()
	var sresp provider.SchemaResponse
	p.Schema(ctx, provider.SchemaRequest{}, &sresp)
	if sresp.Diagnostics.HasError() {
		t.Fatal(sresp.Diagnostics)
	}
	if diags := sresp.Schema.ValidateImplementation(ctx); diags.HasError() {
		t.Fatal(diags)
	}
	for _, want := range []string{"hosts", "driver_path", "shutdown_timeout", "default_timeout", "migration_bandwidth_mib"} {
		if _, ok := sresp.Schema.Attributes[want]; !ok {
			t.Errorf("provider schema lacks %s", want)
		}
	}
	if n := len(p.Resources(ctx)); n != 4 {
		t.Errorf("%d resources, want 4", n)
	}
	if n := len(p.DataSources(ctx)); n != 3 {
		t.Errorf("%d data sources, want 3", n)
	}
}

func TestConfigFromModel(t *testing.T) {
	ctx := context.Background()
	hostType := types.ObjectType{AttrTypes: hostEntryAttrTypes}
	hostWith := func(uri string, cpus, reservedCPUs float64, memMiB int64) types.Object {
		f := func(v float64) types.Float64 {
			if v == 0 {
				return types.Float64Null()
			}
			return types.Float64Value(v)
		}
		mem := types.Int64Null()
		if memMiB != 0 {
			mem = types.Int64Value(memMiB)
		}
		return types.ObjectValueMust(hostEntryAttrTypes, map[string]attr.Value{
			"uri": types.StringValue(uri), "peer_uri": types.StringNull(), "migration_uri": types.StringValue("tcp://10.0.0.1"),
			"cpus": f(cpus), "memory_mib": mem, "reserved_cpus": f(reservedCPUs), "reserved_memory_mib": types.Int64Null(),
			"vcpu_ratio": types.Float64Null(), "username": types.StringNull(), "password": types.StringNull(),
		})
	}
	host := func(uri string) types.Object { return hostWith(uri, 0, 0, 0) }
	withLogin := func(user, password types.String) types.Map {
		attrs := host("qemu+tls://kvm1/system").Attributes()
		attrs["username"], attrs["password"] = user, password
		return types.MapValueMust(hostType, map[string]attr.Value{"h1": types.ObjectValueMust(hostEntryAttrTypes, attrs)})
	}
	hosts := types.MapValueMust(hostType, map[string]attr.Value{"h1": host("qemu:///system")})
	withCapacity := func(cpus, reservedCPUs float64, memMiB int64) types.Map {
		return types.MapValueMust(hostType, map[string]attr.Value{"h1": hostWith("qemu:///system", cpus, reservedCPUs, memMiB)})
	}
	cases := []struct {
		name    string
		m       providerModel
		wantErr string // substring of the first error's detail; "" for none
		check   func(Config) error
	}{
		{"defaults", providerModel{Hosts: hosts}, "", func(c Config) error {
			if c.ShutdownTimeout != defaultShutdownTimeout || c.DefaultTimeout != defaultTimeout {
				return fmt.Errorf("timeouts %v %v", c.ShutdownTimeout, c.DefaultTimeout)
			}
			if h := c.Hosts["h1"]; h.URI != "qemu:///system" || h.MigrationURI != "tcp://10.0.0.1" || h.Name != "h1" {
				return fmt.Errorf("host %+v", h)
			}
			return nil
		}},
		{"durations", providerModel{Hosts: hosts, ShutdownTimeout: types.StringValue("5s"), DefaultTimeout: types.StringValue("1h")}, "",
			func(c Config) error {
				if c.ShutdownTimeout != 5*time.Second || c.DefaultTimeout != time.Hour {
					return fmt.Errorf("timeouts %v %v", c.ShutdownTimeout, c.DefaultTimeout)
				}
				return nil
			}},
		{"bad duration", providerModel{Hosts: hosts, ShutdownTimeout: types.StringValue("soon")}, "soon", nil},
		{"capacity", providerModel{Hosts: withCapacity(0.5, 0, 2048)}, "", func(c Config) error {
			if got, want := c.Hosts["h1"].Capacity, (pool.Capacity{CPUs: 0.5, MemoryMiB: 2048}); got != want {
				return fmt.Errorf("capacity %+v, want %+v", got, want)
			}
			return nil
		}},
		{"reservation above the capacity", providerModel{Hosts: withCapacity(2, 2, 0)}, "host h1: reserved_cpus = 2 leaves nothing of cpus = 2", nil},
		{"unknown hosts", providerModel{Hosts: types.MapUnknown(hostType)}, "must be known", nil},
		{"two hosts, one URI", providerModel{Hosts: types.MapValueMust(hostType, map[string]attr.Value{
			"h1": host("qemu+tls://kvm1/system"), "h2": host("QEMU+TLS://KVM1/system")})},
			`hosts.h2.uri "QEMU+TLS://KVM1/system" is also hosts.h1.uri`, nil},
		{"local host without peer_uri", providerModel{Hosts: types.MapValueMust(hostType, map[string]attr.Value{
			"h1": host("qemu:///system"), "h2": host("qemu+tls://kvm2/system")})},
			`hosts.h1.uri "qemu:///system" is local to the machine running Terraform, so the other hosts' libvirtd cannot reach it in a live migration: set hosts.h1.peer_uri`, nil},
		{"login", providerModel{Hosts: withLogin(types.StringValue("virtpool"), types.StringValue("s3cret"))}, "",
			func(c Config) error {
				want := map[string]driver.Credential{"qemu+tls://kvm1/system": {Username: "virtpool", Password: "s3cret"}}
				if !reflect.DeepEqual(c.Credentials, want) {
					return fmt.Errorf("credentials %v, want %v", c.Credentials, want)
				}
				return nil
			}},
		{"password without username", providerModel{Hosts: withLogin(types.StringNull(), types.StringValue("s3cret"))},
			"hosts.h1: username and password go together", nil},
		{"remote hosts", providerModel{Hosts: types.MapValueMust(hostType, map[string]attr.Value{
			"h1": host("qemu+tls://kvm1/system"), "h2": host("qemu+ssh://root@kvm2/system?keyfile=/k")})}, "",
			func(c Config) error {
				if len(c.Hosts) != 2 {
					return fmt.Errorf("hosts %v", c.Hosts)
				}
				return nil
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, diags := configFromModel(ctx, c.m)
			if c.wantErr != "" {
				if !diags.HasError() || !strings.Contains(diagText(diags), c.wantErr) {
					t.Fatalf("diagnostics %q, want an error with %q", diagText(diags), c.wantErr)
				}
				return
			}
			if diags.HasError() {
				t.Fatal(diagText(diags))
			}
			if err := c.check(cfg); err != nil {
				t.Error(err)
			}
		})
	}
}

func diagText(d diag.Diagnostics) string {
	var b strings.Builder
	for _, x := range d {
		fmt.Fprintf(&b, "%s: %s; ", x.Summary(), x.Detail())
	}
	return b.String()
}

func TestURIValidation(t *testing.T) {
	cases := []struct {
		uri   string
		ok    bool
		local bool
	}{
		{"qemu:///system", true, true},
		{"qemu+unix:///system?socket=/run/h1/libvirt-sock", true, true},
		{"qemu+tls://h1.example/system", true, false},
		{"qemu+ssh://root@10.0.0.2/system", true, false},
		{"xen:///system", true, true},
		{"test:///default", true, true},
		{"", false, false},
		{"/var/run/libvirt-sock", false, false},
		{"qemu:system", false, false},
		{"qemu+tcp://[::1/system", false, false},
	}
	for _, c := range cases {
		err := pool.ValidLibvirtURI(c.uri) // the rule itself: pool's TestValidLibvirtURI
		if (err == nil) != c.ok {
			t.Errorf("ValidLibvirtURI(%q) = %v, want ok=%v", c.uri, err, c.ok)
		}
		if c.ok && isLocalURI(c.uri) != c.local {
			t.Errorf("isLocalURI(%q) = %v, want %v", c.uri, !c.local, c.local)
		}
	}
	for uri, ok := range map[string]bool{"tcp://10.0.0.2": true, "tcp://10.0.0.2:49152": true, "10.0.0.2": false, "tcp://": false} {
		if err := validMigrationURI(uri); (err == nil) != ok {
			t.Errorf("validMigrationURI(%q) = %v, want ok=%v", uri, err, ok)
		}
	}
}

// --- plan-time validation, through terraform --------------------------------

// TestAccValidation: invalid configurations fail at plan, with a diagnostic
// that names what to fix. They need terraform but no guest.
func TestAccValidation(t *testing.T) {
	needAcc(t)
	img := labImage()
	pool := func(body string) string {
		return providerConfig() + `
resource "virtpool_pool" "p" {
  name     = "vpt-invalid"
` + body + `
}
`
	}
	tmpl := fmt.Sprintf(`
  template = {
    vcpus      = 1
    memory_mib = 64
    kernel     = %q
  }`, img.Kernel)
	cases := []struct {
		name   string
		config string
		want   string // regexp of the diagnostic
	}{
		{"size above max", pool(`hosts = ["h1"]
  size = 5
  min_size = 0
  max_size = 2` + tmpl), `size 5 must be between min_size 0 and max_size 2`},
		{"min above max", pool(`hosts = ["h1"]
  size = 1
  min_size = 3
  max_size = 2` + tmpl), `min_size 3 must not exceed max_size 2`},
		{"unknown host", pool(`hosts = ["h1", "h9"]
  size = 1
  min_size = 0
  max_size = 2` + tmpl), `(?s)Unknown host.*unknown host "h9"`},
		{"memory zero", pool(`hosts = ["h1"]
  size = 1
  min_size = 0
  max_size = 2
  template = {
    vcpus = 1
    memory_mib = 0
    kernel = "` + img.Kernel + `"
  }`), `(?s)template\.memory_mib.*between 16 and`},
		{"vcpus zero", pool(`hosts = ["h1"]
  size = 1
  min_size = 0
  max_size = 2
  template = {
    vcpus = 0
    memory_mib = 64
    kernel = "` + img.Kernel + `"
  }`), `(?s)template\.vcpus.*between 1 and`},
		{"missing kernel file", pool(`hosts = ["h1"]
  size = 1
  min_size = 0
  max_size = 2
  template = {
    vcpus = 1
    memory_mib = 64
    kernel = "/nonexistent/vmlinux-missing"
  }`), `(?s)Image file not found.*vmlinux-missing`},
		{"two boot sources", pool(`hosts = ["h1"]
  size = 1
  min_size = 0
  max_size = 2
  template = {
    vcpus = 1
    memory_mib = 64
    kernel = "` + img.Kernel + `"
    base_image = "/var/lib/img/base.qcow2"
  }`), `Set either kernel`},
		{"anti-affinity needs hosts", pool(`hosts = ["h1", "h2"]
  size = 3
  min_size = 0
  max_size = 3
  anti_affinity = true` + tmpl), `max_size 3 with anti_affinity needs 3 hosts`},
		{"ip placeholder without base", pool(`hosts = ["h1"]
  size = 1
  min_size = 0
  max_size = 2
  template = {
    vcpus = 1
    memory_mib = 64
    kernel = "` + img.Kernel + `"
    cmdline = "ip={ip}"
  }`), `set template\.ip_base`},
		// Protection (issue 14, acceptance 6): each bad input named at plan time.
		{"standby host is the primary", domainConfigWith(providerConfig(), "vpt-prot", "192.0.2.199", "h1",
			`protection = { standby_hosts = ["h1"] }`), `(?s)Invalid protection.*standby host h1 is the primary host`},
		{"interval below the capture time", domainConfigWith(providerConfig(), "vpt-prot", "192.0.2.199", "h1",
			`protection = { standby_hosts = ["h2"], interval = "200ms" }`), `(?s)Invalid protection.*interval 200ms is below 1s, the least for a guest of 64\s+MiB`},
		{"interval below a big guest's capture time", strings.Replace(domainConfigWith(providerConfig(), "vpt-prot", "192.0.2.199", "h1",
			`protection = { standby_hosts = ["h2"], interval = "2s" }`), "memory_mib  = 64", "memory_mib  = 2048", 1),
			`(?s)interval 2s is below 16s, the least for a guest of 2048 MiB.*raise interval`},
		{"unknown standby host", domainConfigWith(providerConfig(), "vpt-prot", "192.0.2.199", "h1",
			`protection = { standby_hosts = ["h2", "h9"] }`), `(?s)Unknown host.*h9`},
		{"protection and failover_hosts", domainConfigWith(providerConfig(), "vpt-prot", "192.0.2.199", "h1",
			`protection = { standby_hosts = ["h2"] }
  failover_hosts = ["h3"]`), `(?s)Conflicting failover hosts.*leave\s+failover_hosts out`},
		{"bad on_failure", domainConfigWith(providerConfig(), "vpt-prot", "192.0.2.199", "h1",
			`protection = { standby_hosts = ["h2"], on_failure = "pray" }`), `(?s)on_failure.*restore.*restart`},
		{"protected pool on one host", pool(`hosts = ["h1"]
  size = 1
  min_size = 0
  max_size = 2
  protection = {}` + tmpl), `(?s)Invalid protection.*the pool has 1 host \(h1\): a member's\s+standby\s+must\s+be\s+another`},
		{"protected pool, interval below the capture time", pool(`hosts = ["h1", "h2"]
  size = 1
  min_size = 0
  max_size = 2
  protection = { interval = "500ms" }` + tmpl), `(?s)Invalid protection.*interval 500ms is below 1s, the least for a guest of 64\s+MiB`},
		{"watermarks out of order", providerConfig() + `
resource "virtpool_migration_policy" "p" {
  pool     = "vpt-invalid"
  mode     = "balance"
  cpu_low  = 0.9
  cpu_high = 0.5
}`, `cpu_low \(0\.9\) must be below cpu_high \(0\.5\)`},
		{"watermark zero", providerConfig() + `
resource "virtpool_migration_policy" "p" {
  pool    = "vpt-invalid"
  mode    = "consolidate"
  cpu_low = 0
}`, `cpu_low must be above 0`},
		{"bad mode", providerConfig() + `
resource "virtpool_migration_policy" "p" {
  pool = "vpt-invalid"
  mode = "shuffle"
}`, `(?s)mode.*value must be one of`},
		{"domain on unknown host", providerConfig() + fmt.Sprintf(`
resource "virtpool_domain" "d" {
  name       = "vpt-invalid"
  host       = "nowhere"
  vcpus      = 1
  memory_mib = 64
  kernel     = %q
}`, img.Kernel), `unknown host "nowhere"`},
		{"host not in inventory", providerConfig() + `
resource "virtpool_host" "h" {
  name        = "h7"
  maintenance = true
}`, `unknown host "h7"`},
		{"bad libvirt URI", strings.Replace(providerConfig(), `uri = "qemu+unix:`, `uri = "`, 1) + `
data "virtpool_hosts" "all" {}`, `(?s)Invalid libvirt URI.*has no\s+scheme`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resource.Test(t, resource.TestCase{
				ProtoV6ProviderFactories: accProviders,
				Steps: []resource.TestStep{{
					Config:      c.config,
					PlanOnly:    true,
					ExpectError: regexp.MustCompile(c.want),
				}},
			})
		})
	}
}
