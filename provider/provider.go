// Package provider is virtpool's Terraform provider: hosts, VM pools,
// migration policies and single domains on plain libvirt hosts, where
// changing a domain's host live-migrates it. It talks to libvirt only
// through the virtpool driver process (go-plugin), places pool members
// with package scheduler, and keeps each pool's specification on its hosts
// as a libvirt record (see templates/guides/pool-design.md.tmpl).
package provider

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/float64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/mapvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/provider"
	"github.com/hashicorp/terraform-plugin-framework/provider/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

// Address is the provider's registry address, which dev_overrides and
// required_providers name.
const Address = "registry.terraform.io/virtpool/virtpool"

// Defaults of the provider's settings.
const (
	defaultShutdownTimeout = 30 * time.Second
	defaultTimeout         = 20 * time.Minute
)

var _ provider.Provider = (*Provider)(nil)

// Provider is the virtpool provider.
type Provider struct {
	version string
}

// New returns the provider factory providerserver needs.
func New(version string) func() provider.Provider {
	return func() provider.Provider { return &Provider{version: version} }
}

type providerModel struct {
	Hosts                 types.Map    `tfsdk:"hosts"`
	DriverPath            types.String `tfsdk:"driver_path"`
	ShutdownTimeout       types.String `tfsdk:"shutdown_timeout"`
	DefaultTimeout        types.String `tfsdk:"default_timeout"`
	MigrationBandwidthMiB types.Int64  `tfsdk:"migration_bandwidth_mib"`
	MigrationMaxDowntime  types.Int64  `tfsdk:"migration_max_downtime_ms"`
	MigrationAutoConverge types.Bool   `tfsdk:"migration_auto_converge"`
	MigrationTLS          types.Bool   `tfsdk:"migration_tls"`
	MigrationPostCopy     types.Bool   `tfsdk:"migration_post_copy"`
	MigrationProgress     types.String `tfsdk:"migration_progress_timeout"`
	MigrationCompletion   types.String `tfsdk:"migration_completion_timeout_per_gib"`
}

var hostEntryAttrTypes = map[string]attr.Type{
	"uri": types.StringType, "peer_uri": types.StringType, "migration_uri": types.StringType,
	"username": types.StringType, "password": types.StringType,
	pool.CapacityCPUs: types.Float64Type, pool.CapacityMemoryMiB: types.Int64Type,
	pool.CapacityReservedCPUs: types.Float64Type, pool.CapacityReservedMemoryMiB: types.Int64Type,
	pool.CapacityVCPURatio: types.Float64Type,
}

type hostEntryModel struct {
	URI               types.String  `tfsdk:"uri"`
	PeerURI           types.String  `tfsdk:"peer_uri"`
	MigrationURI      types.String  `tfsdk:"migration_uri"`
	Username          types.String  `tfsdk:"username"`
	Password          types.String  `tfsdk:"password"`
	CPUs              types.Float64 `tfsdk:"cpus"`
	MemoryMiB         types.Int64   `tfsdk:"memory_mib"`
	ReservedCPUs      types.Float64 `tfsdk:"reserved_cpus"`
	ReservedMemoryMiB types.Int64   `tfsdk:"reserved_memory_mib"`
	VCPURatio         types.Float64 `tfsdk:"vcpu_ratio"`
}

// capacity is the entry's pool.Capacity (null attributes are zero).
func (h hostEntryModel) capacity() pool.Capacity {
	return pool.Capacity{CPUs: h.CPUs.ValueFloat64(), MemoryMiB: h.MemoryMiB.ValueInt64(),
		ReservedCPUs: h.ReservedCPUs.ValueFloat64(), ReservedMemoryMiB: h.ReservedMemoryMiB.ValueInt64(),
		VCPURatio: h.VCPURatio.ValueFloat64()}
}

func (h hostEntryModel) unknown() bool {
	for _, v := range []attr.Value{h.URI, h.PeerURI, h.MigrationURI, h.Username, h.Password, h.CPUs, h.MemoryMiB, h.ReservedCPUs, h.ReservedMemoryMiB, h.VCPURatio} {
		if v.IsUnknown() {
			return true
		}
	}
	return false
}

func (p *Provider) Metadata(_ context.Context, _ provider.MetadataRequest, resp *provider.MetadataResponse) {
	resp.TypeName = "virtpool"
	resp.Version = p.version
}

func (p *Provider) Schema(_ context.Context, _ provider.SchemaRequest, resp *provider.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "virtpool turns plain libvirt hosts into an elastic cluster: VM pools placed by a scheduler, " +
			"host maintenance by live migration, and domains whose `host` change is a live migration.",
		Attributes: map[string]schema.Attribute{
			"hosts": schema.MapNestedAttribute{
				Description: "The hypervisor hosts, by name. Resources name hosts by these keys.",
				Required:    true,
				Validators:  []validator.Map{mapvalidator.SizeAtLeast(1), mapvalidator.KeysAre(hostNameValidator{})},
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"uri": schema.StringAttribute{
						Description: "libvirt URI the provider connects to, e.g. `qemu+tls://h1.example/system` or " +
							"`qemu+unix:///system?socket=/run/libvirt/libvirt-sock`: `driver[+transport]://[host]/path[?params]`, " +
							"driver `qemu`, `xen` or `test`, transport `unix`, `tcp`, `tls`, `ssh`, `libssh`, `libssh2` or `ext` " +
							"(all but `unix` and `ext` need a host). No two hosts may share a URI.",
						Required:   true,
						Validators: []validator.String{libvirtURIValidator{}},
					},
					"peer_uri": schema.StringAttribute{
						Description: "libvirt URI other hosts' libvirtd use to reach this one in a live migration " +
							"(peer to peer). Defaults to `uri`; required when `uri` is local to the machine running Terraform " +
							"(no host, or localhost) and there is more than one host.",
						Optional:   true,
						Validators: []validator.String{libvirtURIValidator{}},
					},
					"username": schema.StringAttribute{
						Description: "User name for a libvirtd that asks for a login (SASL, e.g. `auth_tls = \"sasl\"`). " +
							"Given with `password`. Without them libvirt's own auth.conf (`LIBVIRT_AUTH_FILE`) still applies.",
						Optional:   true,
						Validators: []validator.String{stringvalidator.LengthAtLeast(1)},
					},
					"password": schema.StringAttribute{
						Description: "Password for `username`. Sensitive: never shown or logged; it reaches the driver process " +
							"in its environment only. Use a variable marked sensitive, or an environment variable (`TF_VAR_…`).",
						Optional:   true,
						Sensitive:  true,
						Validators: []validator.String{stringvalidator.LengthAtLeast(1)},
					},
					"migration_uri": schema.StringAttribute{
						Description: "Where QEMU sends migration data, e.g. `tcp://10.0.0.2`. Defaults to libvirt's choice.",
						Optional:    true,
						Validators:  []validator.String{migrationURIValidator{}},
					},
					pool.CapacityCPUs: schema.Float64Attribute{
						Description: "CPU capacity virtpool plans with on this host, in cores (fractions allowed): " +
							"placement, balancing and the host loads the autoscaler plugins report are against it. " +
							"Default: the CPUs the host reports. At most that many.",
						Optional:   true,
						Validators: []validator.Float64{float64validator.AtLeast(0)},
					},
					pool.CapacityMemoryMiB: schema.Int64Attribute{
						Description: "Memory for guests virtpool plans with on this host, in MiB. Default: what the host reports. At most that much.",
						Optional:    true,
						Validators:  []validator.Int64{int64validator.AtLeast(0)},
					},
					pool.CapacityReservedCPUs: schema.Float64Attribute{
						Description: "Cores kept for the hypervisor itself (libvirtd, QEMU's own threads, the host OS), " +
							"taken off `cpus`, as OpenStack's `reserved_host_cpus`.",
						Optional:   true,
						Validators: []validator.Float64{float64validator.AtLeast(0)},
					},
					pool.CapacityVCPURatio: schema.Float64Attribute{
						Description: "vCPUs this host may carry per core of its capacity (OpenStack's `cpu_allocation_ratio`). Default 4.",
						Optional:    true,
						Validators:  []validator.Float64{float64validator.Between(0, 1024)},
					},
					pool.CapacityReservedMemoryMiB: schema.Int64Attribute{
						Description: "Memory kept for the hypervisor itself (QEMU's overhead per guest, the host OS), in MiB, " +
							"taken off `memory_mib`, as OpenStack's `reserved_host_memory_mb`.",
						Optional:   true,
						Validators: []validator.Int64{int64validator.AtLeast(0)},
					},
				}},
			},
			"driver_path": schema.StringAttribute{
				Description: "Path of the `virtpool-driver` binary. Default: beside the provider binary, then `$PATH`.",
				Optional:    true,
				Validators:  []validator.String{stringvalidator.LengthAtLeast(1)},
			},
			"shutdown_timeout": schema.StringAttribute{
				Description: "How long a guest being removed may take to power off before it is destroyed (Go duration). Default `30s`.",
				Optional:    true,
				Validators:  []validator.String{durationValidator{}},
			},
			"default_timeout": schema.StringAttribute{
				Description: "Timeout of create, update and delete operations without a `timeouts` block (Go duration). Default `20m`.",
				Optional:    true,
				Validators:  []validator.String{durationValidator{min: time.Second}},
			},
			"migration_bandwidth_mib": schema.Int64Attribute{
				Description: "Live migration bandwidth cap in MiB/s for guests whose pool has no migration policy saying otherwise. " +
					"0 (default) is libvirt's default, which is low: set it.",
				Optional:   true,
				Validators: []validator.Int64{int64validator.AtLeast(0)},
			},
			"migration_max_downtime_ms": schema.Int64Attribute{
				Description: "Longest pause of a guest at the end of a live migration, in milliseconds, unless its pool's policy says otherwise. " +
					"0 (default) is libvirt's default (300).",
				Optional:   true,
				Validators: []validator.Int64{int64validator.AtLeast(0)},
			},
			"migration_auto_converge": schema.BoolAttribute{
				Description: "Let a live migration that does not converge throttle the guest's vCPUs, unless its pool's policy says otherwise. " +
					"Default false.",
				Optional: true,
			},
			"migration_tls": schema.BoolAttribute{
				Description: "Encrypt every live migration's stream (memory, and disks when copied) with TLS (libvirt's " +
					"VIR_MIGRATE_TLS): each host's QEMU needs its x509 certificates (`migrate_tls_x509_cert_dir` in qemu.conf). " +
					"A pool's policy can turn it on too, never off. Default false. The connection between the libvirt daemons is " +
					"as `peer_uri` says: use `qemu+tls://` or `qemu+ssh://` there.",
				Optional: true,
			},
			"migration_post_copy": schema.BoolAttribute{
				Description: "Let a live migration that does not converge (after auto-converge, if allowed) or reaches its completion " +
					"deadline switch to post-copy, unless its pool's policy says otherwise. Default false: such a migration is aborted, " +
					"the guest staying on its source.",
				Optional: true,
			},
			"migration_progress_timeout": schema.StringAttribute{
				Description: "A live migration whose memory left to send has not shrunk for this long is ended " +
					"(post-copy if allowed, else aborted), unless its pool's policy says otherwise (Go duration). Default `150s`.",
				Optional:   true,
				Validators: []validator.String{durationValidator{min: time.Second}},
			},
			"migration_completion_timeout_per_gib": schema.StringAttribute{
				Description: "A live migration still running after this long per GiB of guest memory (counting at least one GiB) is ended " +
					"(post-copy if allowed, else aborted), unless its pool's policy says otherwise (Go duration). Default `150s`.",
				Optional:   true,
				Validators: []validator.String{durationValidator{min: time.Second}},
			},
		},
	}
}

func (p *Provider) Configure(ctx context.Context, req provider.ConfigureRequest, resp *provider.ConfigureResponse) {
	var m providerModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	cfg, diags := configFromModel(ctx, m)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	c := &Client{cfg: cfg}
	resp.ResourceData = c
	resp.DataSourceData = c
}

// configFromModel resolves the provider configuration, with diagnostics that
// name the attribute at fault.
func configFromModel(ctx context.Context, m providerModel) (Config, diag.Diagnostics) {
	var diags diag.Diagnostics
	cfg := Config{
		Hosts:           pool.Inventory{},
		DriverPath:      m.DriverPath.ValueString(),
		ShutdownTimeout: defaultShutdownTimeout,
		DefaultTimeout:  defaultTimeout,
		Migration: driver.MigrateOptions{
			BandwidthMiBs: uint64(m.MigrationBandwidthMiB.ValueInt64()),
			MaxDowntime:   msDuration(m.MigrationMaxDowntime.ValueInt64()),
			AutoConverge:  m.MigrationAutoConverge.ValueBool(),
			PostCopy:      m.MigrationPostCopy.ValueBool(),
			TLS:           m.MigrationTLS.ValueBool(),
			// 0: the driver's defaults.
		},
	}
	if m.Hosts.IsUnknown() {
		diags.AddAttributeError(path.Root("hosts"), "Hosts not known yet",
			"The provider's hosts must be known when Terraform plans: do not derive them from resources created in the same run.")
		return cfg, diags
	}
	var hosts map[string]hostEntryModel
	diags.Append(m.Hosts.ElementsAs(ctx, &hosts, false)...)
	for name, h := range hosts {
		if h.unknown() {
			diags.AddAttributeError(path.Root("hosts").AtMapKey(name), "Host not known yet",
				"The provider's hosts (addresses and capacity) must be known when Terraform plans.")
			continue
		}
		e := pool.HostEntry{Name: name, URI: h.URI.ValueString(), PeerURI: h.PeerURI.ValueString(),
			MigrationURI: h.MigrationURI.ValueString(), Capacity: h.capacity()}
		if err := e.Capacity.Validate(); err != nil {
			diags.AddAttributeError(path.Root("hosts").AtMapKey(name), "Invalid host capacity",
				fmt.Sprintf("host %s: %v", name, err))
			continue
		}
		if h.Username.IsNull() != h.Password.IsNull() {
			diags.AddAttributeError(path.Root("hosts").AtMapKey(name), "Incomplete login",
				fmt.Sprintf("hosts.%s: username and password go together: set both, or neither.", name))
			continue
		}
		if !h.Username.IsNull() {
			if cfg.Credentials == nil {
				cfg.Credentials = map[string]driver.Credential{}
			}
			cfg.Credentials[e.URI] = driver.Credential{Username: h.Username.ValueString(), Password: h.Password.ValueString()}
		}
		cfg.Hosts[name] = e
	}
	checkInventory(cfg.Hosts, &diags)
	for _, d := range []struct {
		attr string
		v    types.String
		dst  *time.Duration
	}{{"shutdown_timeout", m.ShutdownTimeout, &cfg.ShutdownTimeout}, {"default_timeout", m.DefaultTimeout, &cfg.DefaultTimeout},
		{"migration_progress_timeout", m.MigrationProgress, &cfg.Migration.ProgressTimeout},
		{"migration_completion_timeout_per_gib", m.MigrationCompletion, &cfg.Migration.CompletionPerGiB}} {
		if d.v.IsNull() || d.v.IsUnknown() {
			continue
		}
		v, err := time.ParseDuration(d.v.ValueString())
		if err != nil {
			diags.AddAttributeError(path.Root(d.attr), "Invalid duration", err.Error())
			continue
		}
		*d.dst = v
	}
	return cfg, diags
}

// checkInventory reports what spans hosts: two names for one libvirtd
// (one URI), and, with more than one host (a live migration goes from one
// to another), a host whose uri is local to this machine without the
// peer_uri other hosts' libvirtd reach it at.
func checkInventory(inv pool.Inventory, diags *diag.Diagnostics) {
	byURI := map[string]string{}
	for _, name := range inv.Names() {
		h := inv[name]
		key := normalURI(h.URI)
		if other, dup := byURI[key]; dup {
			diags.AddAttributeError(path.Root("hosts").AtMapKey(name).AtName("uri"), "Two hosts with one URI",
				fmt.Sprintf("hosts.%s.uri %q is also hosts.%s.uri: one libvirtd must have one name (two would count its guests twice); "+
					"remove one host or correct its uri.", name, h.URI, other))
			continue
		}
		byURI[key] = name
		if len(inv) > 1 && h.PeerURI == "" && isLocalURI(h.URI) {
			diags.AddAttributeError(path.Root("hosts").AtMapKey(name).AtName("peer_uri"), "peer_uri needed",
				fmt.Sprintf("hosts.%s.uri %q is local to the machine running Terraform, so the other hosts' libvirtd cannot "+
					"reach it in a live migration: set hosts.%s.peer_uri to an address they can reach, e.g. qemu+tcp://10.0.0.1/system.",
					name, h.URI, name))
		}
	}
}

// normalURI is a URI as compared for duplicates: scheme and host are not
// case-sensitive.
func normalURI(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return s
	}
	u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	return u.String()
}

func (p *Provider) Resources(context.Context) []func() resource.Resource {
	return []func() resource.Resource{NewHostResource, NewPoolResource, NewMigrationPolicyResource, NewDomainResource}
}

func (p *Provider) DataSources(context.Context) []func() datasource.DataSource {
	return []func() datasource.DataSource{NewHostsDataSource, NewPoolDataSource, NewProtectionDataSource}
}

// clientFrom takes the *Client from a Configure request's provider data.
// It is nil before the provider is configured (Terraform validates
// configurations that way), which callers must allow.
func clientFrom(data any, diags *diag.Diagnostics) *Client {
	if data == nil {
		return nil
	}
	c, ok := data.(*Client)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("got %T, want *provider.Client: this is a bug in the provider", data))
		return nil
	}
	return c
}

// stringList converts a list of strings to a Terraform list value.
func stringList(s []string) types.List {
	vals := make([]attr.Value, len(s))
	for i, v := range s {
		vals[i] = types.StringValue(v)
	}
	return types.ListValueMust(types.StringType, vals)
}
