package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/listplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/mapplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

var (
	_ resource.ResourceWithConfigure      = (*domainResource)(nil)
	_ resource.ResourceWithValidateConfig = (*domainResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*domainResource)(nil)
	_ resource.ResourceWithImportState    = (*domainResource)(nil)
)

// NewDomainResource is the virtpool_domain resource.
func NewDomainResource() resource.Resource { return &domainResource{} }

type domainResource struct{ client *Client }

type domainModel struct {
	ID   types.String `tfsdk:"id"`
	Name types.String `tfsdk:"name"`
	Host types.String `tfsdk:"host"`
	templateModel
	MAC                     types.String     `tfsdk:"mac"`
	FailoverHosts           types.List       `tfsdk:"failover_hosts"`
	Protection              *protectionModel `tfsdk:"protection"`
	Labels                  types.Map        `tfsdk:"labels"`
	UUID                    types.String     `tfsdk:"uuid"`
	State                   types.String     `tfsdk:"state"`
	LastMigrationElapsedMs  types.Int64      `tfsdk:"last_migration_elapsed_ms"`
	LastMigrationDowntimeMs types.Int64      `tfsdk:"last_migration_downtime_ms"`
	Timeouts                timeouts.Value   `tfsdk:"timeouts"`
}

func (r *domainResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_domain"
}

func (r *domainResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	a := templateAttributes(true)
	a["id"] = schema.StringAttribute{Description: "The domain name.", Computed: true,
		PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}}
	a["name"] = schema.StringAttribute{Description: "Domain name, unique across the hosts: letters, digits, '_', '.', '-', " +
		"at most 50. " + replacesDomain, Required: true,
		PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
		Validators: []validator.String{stringvalidator.RegexMatches(regexpMust(poolNamePattern),
			"letters, digits, '_', '.', '-', at most 50, starting with a letter or digit")}}
	a["host"] = schema.StringAttribute{
		Description: "Host (a key of the provider's `hosts`) the guest runs on. **Changing it live-migrates the running " +
			"guest in place**: same domain, same UUID, never stopped. Read reports where the guest really is, so a guest " +
			"moved by the autoscaler or by hand shows as a change of `host`. The host must not be in maintenance or standby.",
		Required: true, Validators: []validator.String{hostNameValidator{}},
	}
	a["mac"] = schema.StringAttribute{Description: "MAC address of the network interface. Default: libvirt's choice. " + replacesDomain,
		Optional: true, PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
		Validators: []validator.String{stringvalidator.RegexMatches(regexpMust(`^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$`), "a MAC address such as 52:54:00:12:34:56")}}
	a["failover_hosts"] = schema.ListAttribute{Description: "Hosts (keys of the provider's `hosts`) where `virtpool agent` " +
		"may restart the guest, from its template, after its host failed and was fenced (HA restart: the guest boots again, " +
		"what it had in memory is lost; set `mac` so that it keeps its MAC). Its disk (the `base_image` overlay) must be " +
		"on storage those hosts share, as for live migration; it boots from that same overlay again, with what it wrote " +
		"there (the overlay must be of its `base_image`, which must exist, or the restart fails saying why), and " +
		"the stale copy on the failed host, once it is back, is removed without it. Without it, a failed host's domain " +
		"stays down with it. After a restart, `host` reads where the guest runs now. Where the guest runs is also kept " +
		"in a record on these hosts, so that an agent started after the failure restarts it too. " + replacesDomain,
		Optional: true, ElementType: types.StringType,
		PlanModifiers: []planmodifier.List{listplanmodifier.RequiresReplace()},
		Validators: []validator.List{listvalidator.SizeAtLeast(1), listvalidator.UniqueValues(),
			listvalidator.ValueStringsAre(hostNameValidator{})}}
	a["protection"] = protectionSchema()
	a["labels"] = schema.MapAttribute{Description: "Your labels, kept in the domain's virtpool metadata " +
		"(keys starting with `virtpool.` are virtpool's). " + replacesDomain, Optional: true, ElementType: types.StringType,
		PlanModifiers: []planmodifier.Map{mapplanmodifier.RequiresReplace()}}
	a["uuid"] = schema.StringAttribute{Description: "Domain UUID; a live migration keeps it.", Computed: true,
		PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}}
	a["state"] = schema.StringAttribute{Description: guestStates, Computed: true}
	a["last_migration_elapsed_ms"] = schema.Int64Attribute{Computed: true,
		Description: "Duration of the live migration of the last apply that changed `host`, as libvirt measured it."}
	a["last_migration_downtime_ms"] = schema.Int64Attribute{Computed: true,
		Description: "Time the guest was paused during that migration."}
	a["timeouts"] = timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true})
	resp.Schema = schema.Schema{
		Description: "One guest on a named host. Changing `host` is an in-place update that live-migrates the running guest.",
		Attributes:  a,
	}
}

func (r *domainResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *domainResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m domainModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	m.validate(path.Empty(), &resp.Diagnostics)
	if m.Protection != nil && !m.FailoverHosts.IsNull() {
		resp.Diagnostics.AddAttributeError(path.Root("failover_hosts"), "Conflicting failover hosts",
			"A protected domain's failover hosts are its protection's standby_hosts: leave failover_hosts out.")
	}
	for k := range m.Labels.Elements() {
		if strings.HasPrefix(k, "virtpool.") {
			resp.Diagnostics.AddAttributeError(path.Root("labels").AtMapKey(k), "Reserved label",
				"Label keys starting with virtpool. are virtpool's own.")
		}
	}
}

func (r *domainResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.client == nil {
		return
	}
	var m domainModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || m.Host.IsUnknown() {
		return
	}
	host := m.Host.ValueString()
	if _, err := r.client.cfg.Hosts.Lookup(host); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("host"), "Unknown host", err.Error())
		return
	}
	var failover []string
	resp.Diagnostics.Append(m.FailoverHosts.ElementsAs(ctx, &failover, true)...)
	for i, h := range failover {
		if _, err := r.client.cfg.Hosts.Lookup(h); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("failover_hosts").AtListIndex(i), "Unknown host", err.Error())
		}
	}
	if m.Protection != nil {
		m.Protection.check(ctx, r.client.cfg.Hosts, host, uint64(m.MemoryMiB.ValueInt64()), &resp.Diagnostics)
	}
	m.checkFiles(path.Empty(), allLocal(r.client.cfg.Hosts, []string{host}), &resp.Diagnostics)
	// Placed on, or moved to, a host: it must receive guests. A host that
	// does not answer now is apply's to report.
	var prior domainModel
	if !req.State.Raw.IsNull() {
		resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	}
	if req.State.Raw.IsNull() || prior.Host.ValueString() != host {
		if st, err := r.client.ops(ctx).HostState(ctx, host); err == nil {
			if err := st.Receives(host); err != nil {
				resp.Diagnostics.AddAttributeError(path.Root("host"), "Host receives no guest", "host: "+err.Error())
			}
		}
	}
}

func (m domainModel) labels(ctx context.Context) (map[string]string, diag.Diagnostics) {
	var l map[string]string
	diags := m.Labels.ElementsAs(ctx, &l, false)
	if l == nil {
		l = map[string]string{} // labels left out
	}
	t, err := json.Marshal(m.toSpec())
	if err != nil {
		diags.AddError("Cannot encode template", err.Error())
	}
	l[pool.LabelRole] = pool.RoleDomain
	// The template's JSON, so that Read and import can rebuild every
	// attribute from the host (the driver does not report kernel paths and
	// the like), and virtpool agent restart the domain elsewhere.
	l[pool.LabelTemplate] = string(t)
	var failover []string
	diags.Append(m.FailoverHosts.ElementsAs(ctx, &failover, true)...)
	if m.Protection != nil {
		// Its standby hosts are the hosts it may run on after a failure.
		diags.Append(m.Protection.StandbyHosts.ElementsAs(ctx, &failover, true)...)
		p, err := m.Protection.protection()
		if err == nil {
			l[pool.LabelProtection], err = p.Label()
		}
		if err != nil {
			diags.AddAttributeError(path.Root("protection"), "Invalid protection", err.Error())
		}
	}
	if len(failover) > 0 {
		l[pool.LabelFailoverHosts] = strings.Join(failover, ",")
		if mac := m.MAC.ValueString(); mac != "" {
			l[pool.LabelMAC] = mac
		}
	}
	return l, diags
}

func (r *domainResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m domainModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Create(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name, host := m.Name.ValueString(), m.Host.ValueString()
	// One name, one guest, across all hosts.
	if at, found, err := r.client.ops(ctx).FindDomain(ctx, name); err != nil {
		resp.Diagnostics.AddError("Cannot look for domain "+name, err.Error())
		return
	} else if found {
		resp.Diagnostics.AddAttributeError(path.Root("name"), "Domain exists",
			fmt.Sprintf("a domain named %s already exists on host %s; import it (terraform import) or choose another name.", name, at.Host))
		return
	}
	labels, diags := m.labels(ctx)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	spec, err := m.templateModel.toSpec().DomainSpec(name, 0, labels)
	if err != nil {
		resp.Diagnostics.AddError("Invalid template", err.Error())
		return
	}
	spec.MAC = m.MAC.ValueString()
	d, err := r.client.Driver(ctx)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("host"), "Driver unavailable", err.Error())
		return
	}
	tflog.Info(ctx, "creating domain", map[string]any{"domain": name, "host": host})
	dom, err := d.CreateDomain(ctx, r.client.cfg.Hosts[host].URI, spec)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("host"), "Cannot create domain "+name,
			fmt.Sprintf("on host %s: %v", host, err))
		return
	}
	m.ID, m.UUID, m.State = types.StringValue(name), types.StringValue(dom.UUID), types.StringValue(dom.State)
	m.LastMigrationElapsedMs, m.LastMigrationDowntimeMs = types.Int64Null(), types.Int64Null()
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
	r.notePlacement(ctx, name, host, labels, &resp.Diagnostics)
}

// notePlacement keeps, on a domain's failover hosts, where it runs, so
// that an agent that never saw it can restart it if its host fails.
// Failing that is a warning: the domain runs, and an agent that sees it
// records it too.
func (r *domainResource) notePlacement(ctx context.Context, name, host string, labels map[string]string, diags *diag.Diagnostics) {
	if err := r.client.ops(ctx).NotePlacement(ctx, name, host, labels); err != nil {
		diags.AddAttributeWarning(path.Root("failover_hosts"), "Failover record not stored",
			fmt.Sprintf("%v. Until it is (virtpool agent writes it when it sees %s), only an agent that saw %s running on %s can restart it elsewhere.",
				err, name, name, host))
	}
}

func (r *domainResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m domainModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	if name == "" {
		name = m.ID.ValueString() // import
	}
	at, found, err := r.client.ops(ctx).FindDomain(ctx, name)
	if errors.As(err, new(pool.HostsDown)) && !m.ID.IsNull() {
		resp.Diagnostics.AddWarning("Domain "+name+" not checked", fmt.Sprintf("%v; its state is kept as last read.", err))
		return
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read domain "+name, err.Error())
		return
	}
	if !found {
		tflog.Warn(ctx, "domain not found on any host; removing from state", map[string]any{"domain": name})
		resp.State.RemoveResource(ctx)
		return
	}
	resp.Diagnostics.Append(m.fromDomain(ctx, at)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

// fromDomain fills the model from the domain as the host reports it.
func (m *domainModel) fromDomain(ctx context.Context, at pool.Located) diag.Diagnostics {
	var diags diag.Diagnostics
	m.ID, m.Name, m.Host = types.StringValue(at.Name), types.StringValue(at.Name), types.StringValue(at.Host)
	m.UUID, m.State = types.StringValue(at.UUID), types.StringValue(at.State)
	if s, ok := at.Labels[pool.LabelTemplate]; ok {
		var t pool.Template
		if err := json.Unmarshal([]byte(s), &t); err != nil {
			diags.AddWarning("Unreadable template label", fmt.Sprintf("domain %s: %s: %v", at.Name, pool.LabelTemplate, err))
		} else {
			m.templateModel = templateFromSpec(t)
		}
	}
	m.FailoverHosts, m.Protection = types.ListNull(types.StringType), nil
	if s := at.Labels[pool.LabelFailoverHosts]; s != "" {
		fh, d := types.ListValueFrom(ctx, types.StringType, strings.Split(s, ","))
		diags.Append(d...)
		m.FailoverHosts = fh
	}
	if p, ok, err := pool.ProtectionOf(at.Labels); err != nil {
		diags.AddWarning("Unreadable protection label", fmt.Sprintf("domain %s: %v", at.Name, err))
	} else if ok {
		// Its failover hosts are its standby hosts.
		m.Protection = &protectionModel{StandbyHosts: m.FailoverHosts, Interval: types.StringValue(p.Interval.String()),
			OnFailure: types.StringValue(p.OnFailure)}
		m.FailoverHosts = types.ListNull(types.StringType)
	}
	// What libvirt itself reports wins: a guest resized by hand is drift.
	m.VCPUs, m.MemoryMiB = types.Int64Value(int64(at.VCPUs)), types.Int64Value(int64(at.MemoryMiB))
	user := map[string]string{}
	for k, v := range at.Labels {
		if !strings.HasPrefix(k, "virtpool.") {
			user[k] = v
		}
	}
	if len(user) > 0 || !m.Labels.IsNull() {
		lv, d := types.MapValueFrom(ctx, types.StringType, user)
		diags.Append(d...)
		m.Labels = lv
	}
	if m.LastMigrationElapsedMs.IsUnknown() {
		m.LastMigrationElapsedMs = types.Int64Null()
	}
	if m.LastMigrationDowntimeMs.IsUnknown() {
		m.LastMigrationDowntimeMs = types.Int64Null()
	}
	return diags
}

// Update live-migrates the guest when host changed; nothing else can change
// in place.
func (r *domainResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior domainModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Update(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name, to := m.Name.ValueString(), m.Host.ValueString()
	// Where it is now, not where the state says: a retry after an
	// interrupted apply, or a move by the autoscaler, starts from there.
	at, found, err := r.client.ops(ctx).FindDomain(ctx, name)
	if err != nil {
		resp.Diagnostics.AddError("Cannot find domain "+name, err.Error())
		return
	}
	if !found {
		resp.Diagnostics.AddError("Domain vanished", fmt.Sprintf("domain %s is on no host any more; run terraform apply again to create it.", name))
		return
	}
	if !prior.UUID.IsNull() && at.UUID != prior.UUID.ValueString() {
		resp.Diagnostics.AddError("Different domain", fmt.Sprintf("domain %s on %s has UUID %s, not %s: it was replaced outside Terraform; "+
			"remove it from the state (terraform state rm) and import it.", name, at.Host, at.UUID, prior.UUID.ValueString()))
		return
	}
	m.LastMigrationElapsedMs, m.LastMigrationDowntimeMs = prior.LastMigrationElapsedMs, prior.LastMigrationDowntimeMs
	if at.Host != to {
		if at.State != driver.StateRunning && at.State != driver.StatePaused {
			resp.Diagnostics.AddAttributeError(path.Root("host"), "Cannot live-migrate a stopped guest",
				fmt.Sprintf("domain %s on %s is %s; start it first.", name, at.Host, at.State))
			return
		}
		res, err := r.client.ops(ctx).Migrate(ctx, name, at.Host, to, pool.MigrateOptions(r.client.migrationDefaults(), nil, m.BaseImage.ValueString() != ""))
		if err != nil {
			hint := ""
			if driver.CodeOf(err) == driver.CodeOperationAborted {
				hint = " A domain's migrations follow the provider's migration_auto_converge, migration_post_copy, " +
					"migration_bandwidth_mib and migration timeouts."
			}
			resp.Diagnostics.AddAttributeError(path.Root("host"), "Live migration failed",
				fmt.Sprintf("%v. The guest keeps running where it was; fix the cause and apply again.%s", err, hint))
			// Say where it is now, so that the next plan starts from there
			// (with a fresh deadline: the timeout may be what ended it).
			fresh, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if now, ok, ferr := r.client.ops(fresh).FindDomain(fresh, name); ferr == nil && ok {
				resp.Diagnostics.Append(m.fromDomain(fresh, now)...)
				resp.Diagnostics.Append(resp.State.Set(fresh, m)...)
			} else {
				resp.Diagnostics.Append(resp.State.Set(fresh, prior)...)
			}
			return
		}
		if res.UUID != at.UUID {
			resp.Diagnostics.AddError("UUID changed in migration", fmt.Sprintf("domain %s: %s before, %s after", name, at.UUID, res.UUID))
			return
		}
		m.LastMigrationElapsedMs = types.Int64Value(res.Elapsed.Milliseconds())
		m.LastMigrationDowntimeMs = types.Int64Value(res.Downtime.Milliseconds())
	}
	now, ok, err := r.client.ops(ctx).FindDomain(ctx, name)
	if err != nil || !ok {
		resp.Diagnostics.AddError("Cannot read domain after update", fmt.Sprintf("%s: found=%v, %v", name, ok, err))
		return
	}
	resp.Diagnostics.Append(m.fromDomain(ctx, now)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
	if now.Host != at.Host {
		r.notePlacement(ctx, name, now.Host, now.Labels, &resp.Diagnostics)
	}
}

func (r *domainResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m domainModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Delete(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := m.Name.ValueString()
	at, found, err := r.client.ops(ctx).FindDomain(ctx, name)
	if err != nil {
		resp.Diagnostics.AddError("Cannot find domain "+name, err.Error())
		return
	}
	if !found {
		return
	}
	if !m.UUID.IsNull() && at.UUID != m.UUID.ValueString() {
		resp.Diagnostics.AddError("Different domain", fmt.Sprintf("domain %s on %s has UUID %s, not %s: not removing a guest Terraform did not make.",
			name, at.Host, at.UUID, m.UUID.ValueString()))
		return
	}
	if err := r.client.ops(ctx).RemoveGuest(ctx, at.Host, name); err != nil {
		resp.Diagnostics.AddError("Cannot delete domain "+name, err.Error())
		return
	}
	if fh := pool.FailoverHosts(at.Labels); len(fh) > 0 {
		if err := r.client.ops(ctx).DropPlacement(ctx, name, append(fh, at.Host)); err != nil {
			resp.Diagnostics.AddWarning("Failover record of "+name+" not removed everywhere",
				fmt.Sprintf("%v. The domain is deleted; what a host down still holds is outranked and never restarts it.", err))
		}
	}
}

func (r *domainResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID)...)
}
