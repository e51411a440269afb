package provider

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

var (
	_ resource.ResourceWithConfigure   = (*hostResource)(nil)
	_ resource.ResourceWithModifyPlan  = (*hostResource)(nil)
	_ resource.ResourceWithImportState = (*hostResource)(nil)
)

// NewHostResource is the virtpool_host resource.
func NewHostResource() resource.Resource { return &hostResource{} }

type hostResource struct{ client *Client }

type hostModel struct {
	ID          types.String   `tfsdk:"id"`
	Name        types.String   `tfsdk:"name"`
	URI         types.String   `tfsdk:"uri"`
	Maintenance types.Bool     `tfsdk:"maintenance"`
	Standby     types.Bool     `tfsdk:"standby"`
	Guests      types.List     `tfsdk:"guests"`
	Timeouts    timeouts.Value `tfsdk:"timeouts"`
}

func (r *hostResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_host"
}

func (r *hostResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "The virtpool state of a hypervisor host of the provider's `hosts`: in maintenance (emptied by live " +
			"migration, receives no guest) or on standby (receives no new guest). The state is kept on the host itself, " +
			"so the autoscaler plugins honour it too. Destroying the resource makes the host active again.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Description: "The host name.", Computed: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{Description: "Host name: a key of the provider's `hosts`.", Required: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:    []validator.String{hostNameValidator{}}},
			"uri": schema.StringAttribute{Description: "The host's libvirt URI, from the provider's `hosts`.", Computed: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"maintenance": schema.BoolAttribute{
				Description: "Put the host in maintenance: apply live-migrates every running guest elsewhere (planned by the " +
					"scheduler; pool members stay on their pool's hosts) and no guest is placed there afterwards. " +
					"Reads true only while the host is marked and runs no guest, so a guest started there since shows as a " +
					"change and the next apply empties the host again.",
				Optional: true, Computed: true, Default: booldefault.StaticBool(false),
			},
			"standby": schema.BoolAttribute{
				Description: "Keep new guests off the host (running guests stay). The scheduler uses a standby host only " +
					"when an evacuation finds no room elsewhere.",
				Optional: true, Computed: true, Default: booldefault.StaticBool(false),
			},
			"guests":   schema.ListAttribute{Description: "Guests running on the host.", Computed: true, ElementType: types.StringType},
			"timeouts": timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

func (r *hostResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (r *hostResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.client == nil {
		return
	}
	var m hostModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || m.Name.IsUnknown() {
		return
	}
	h, err := r.client.cfg.Hosts.Lookup(m.Name.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("name"), "Unknown host", err.Error())
		return
	}
	resp.Diagnostics.Append(resp.Plan.SetAttribute(ctx, path.Root("uri"), h.URI)...)
	if m.Maintenance.ValueBool() && m.Standby.ValueBool() {
		resp.Diagnostics.AddAttributeError(path.Root("standby"), "Both maintenance and standby",
			"A host in maintenance already receives no guest: set one of maintenance or standby.")
	}
}

func (r *hostResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m hostModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Create(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp.Diagnostics.Append(r.apply(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

func (r *hostResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior hostModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Update(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resp.Diagnostics.Append(r.apply(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		// Report the host as it is (still holding guests): the next plan
		// then shows maintenance to do again.
		fresh, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if d := r.read(fresh, &m); !d.HasError() {
			resp.Diagnostics.Append(resp.State.Set(fresh, m)...)
		} else {
			resp.Diagnostics.Append(resp.State.Set(fresh, prior)...)
		}
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

// apply stores the host's state first (so nothing new lands on a host going
// into maintenance, whoever places it), then empties it if in maintenance.
func (r *hostResource) apply(ctx context.Context, m *hostModel) diag.Diagnostics {
	var diags diag.Diagnostics
	name := m.Name.ValueString()
	old, err := r.client.ops(ctx).HostState(ctx, name)
	if err != nil {
		diags.AddAttributeError(path.Root("name"), "Cannot read host state", err.Error())
		return diags
	}
	// The autoscaler's own standby mark (AutoStandby) is kept: it is not
	// Terraform's to change.
	st := pool.HostState{Maintenance: m.Maintenance.ValueBool(), Standby: m.Standby.ValueBool(), AutoStandby: old.AutoStandby,
		Generation: old.Generation + 1}
	if err := r.client.ops(ctx).PutHostState(ctx, name, st); err != nil {
		diags.AddAttributeError(path.Root("name"), "Cannot store host state", err.Error())
		return diags
	}
	if st.Maintenance {
		if err := r.client.ops(ctx).Evacuate(ctx, name); err != nil {
			diags.AddAttributeError(path.Root("maintenance"), "Host not emptied",
				fmt.Sprintf("%v. The host stays marked for maintenance; guests not yet moved keep running there. Fix the cause and apply again.", err))
			return diags
		}
	}
	diags.Append(r.read(ctx, m)...)
	return diags
}

func (r *hostResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m hostModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if m.Name.IsNull() || m.Name.ValueString() == "" {
		m.Name = m.ID // import
	}
	if _, err := r.client.cfg.Hosts.Lookup(m.Name.ValueString()); err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("name"), "Unknown host", err.Error())
		return
	}
	diags := r.read(ctx, &m)
	if diags.HasError() && !m.ID.IsNull() {
		// A host down is no reason to drop it from state, or to stop the
		// plan of everything else.
		for _, d := range diags.Errors() {
			resp.Diagnostics.AddWarning("Host "+m.Name.ValueString()+" not checked", d.Detail()+"; its state is kept as last read.")
		}
		return
	}
	resp.Diagnostics.Append(diags...)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

func (r *hostResource) read(ctx context.Context, m *hostModel) diag.Diagnostics {
	var diags diag.Diagnostics
	name := m.Name.ValueString()
	st, err := r.client.ops(ctx).HostState(ctx, name)
	if err != nil {
		diags.AddError("Cannot read host "+name, err.Error())
		return diags
	}
	all, err := r.client.ops(ctx).ListAll(ctx, []string{name})
	if err != nil {
		diags.AddError("Cannot read host "+name, err.Error())
		return diags
	}
	var running []string
	for _, d := range all[name] {
		if driver.Active(d.State) {
			running = append(running, d.Name)
		}
	}
	m.ID, m.URI = types.StringValue(name), types.StringValue(r.client.cfg.Hosts[name].URI)
	m.Maintenance = types.BoolValue(st.Maintenance && len(running) == 0)
	m.Standby = types.BoolValue(st.Standby)
	m.Guests = stringList(running)
	return diags
}

// Delete makes the host active again; guests are not moved back.
func (r *hostResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m hostModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	d, err := r.client.Driver(ctx)
	if err != nil {
		resp.Diagnostics.AddError("Driver unavailable", err.Error())
		return
	}
	h, err := r.client.cfg.Hosts.Lookup(name)
	if err != nil {
		// The host left the inventory: nothing of ours can be reached there.
		tflog.Warn(ctx, "host no longer in the provider's hosts; forgetting it", map[string]any{"host": name})
		return
	}
	if err := d.DeleteRecord(ctx, h.URI, driver.RecordHost, name); err != nil {
		resp.Diagnostics.AddError("Cannot clear state of host "+name, err.Error())
	}
}

func (r *hostResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID)...)
}
