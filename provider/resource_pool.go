package provider

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-timeouts/resource/timeouts"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

var (
	_ resource.ResourceWithConfigure      = (*poolResource)(nil)
	_ resource.ResourceWithValidateConfig = (*poolResource)(nil)
	_ resource.ResourceWithModifyPlan     = (*poolResource)(nil)
	_ resource.ResourceWithImportState    = (*poolResource)(nil)
)

// NewPoolResource is the virtpool_pool resource.
func NewPoolResource() resource.Resource { return &poolResource{} }

type poolResource struct{ client *Client }

type poolModel struct {
	ID           types.String         `tfsdk:"id"`
	Name         types.String         `tfsdk:"name"`
	Hosts        types.List           `tfsdk:"hosts"`
	Size         types.Int64          `tfsdk:"size"`
	MinSize      types.Int64          `tfsdk:"min_size"`
	MaxSize      types.Int64          `tfsdk:"max_size"`
	Placement    types.String         `tfsdk:"placement"`
	AntiAffinity types.Bool           `tfsdk:"anti_affinity"`
	Template     *poolTemplateModel   `tfsdk:"template"` // nil while importing
	Protection   *poolProtectionModel `tfsdk:"protection"`
	Members      types.List           `tfsdk:"members"`
	Generation   types.Int64          `tfsdk:"generation"`
	Timeouts     timeouts.Value       `tfsdk:"timeouts"`
}

var memberAttrTypes = map[string]attr.Type{
	"name": types.StringType, "host": types.StringType, "uuid": types.StringType,
	"state": types.StringType, "index": types.Int64Type,
}

func (r *poolResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_pool"
}

// poolNameRE: a pool name is part of its members' domain names and of its
// record's name.
const poolNamePattern = `^[A-Za-z0-9][A-Za-z0-9_.-]{0,49}$`

func (r *poolResource) Schema(ctx context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	tmpl := templateAttributes(false)
	tmpl["ip_base"] = schema.StringAttribute{
		Description: "Address of member 1 with prefix length, e.g. `192.0.2.121/24`; member n gets the n-th address. " +
			"Used for `{ip}` in `cmdline`. The prefix must hold `max_size` members from there, none of them an IPv4 " +
			"network's own or broadcast address. A change applies to members created afterwards.",
		Optional: true,
	}
	tmpl["bridge"] = schema.StringAttribute{
		Description: "Host bridge the members' network interface joins. Each member gets a stable MAC derived from " +
			"the pool name and its number. Default: no network interface.",
		Optional: true,
	}
	resp.Schema = schema.Schema{
		Description: "A pool of identical guests spread over some hosts. Creating it starts `size` members placed by " +
			"virtpool's scheduler; changing `size` scales in place. The pool's specification is stored on its hosts, in " +
			"libvirt, so the autoscaler plugins find it without Terraform's state: when the autoscaler manages the size, " +
			"use `lifecycle { ignore_changes = [size] }`.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Description: "The pool name.", Computed: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"name": schema.StringAttribute{
				Description: "Pool name; members are named `<name>-<n>`. Letters, digits, '_', '.', '-', at most 50. " +
					"Changing it replaces the pool: every member is deleted, with its overlay disk, and a new pool created.",
				Required: true, PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators: []validator.String{stringvalidator.RegexMatches(regexpMust(poolNamePattern),
					"letters, digits, '_', '.', '-', at most 50, starting with a letter or digit")},
			},
			"hosts": schema.ListAttribute{
				Description: "Names of the hosts (keys of the provider's `hosts`) the pool may use. Members on a host " +
					"removed from this list are live-migrated to the others.",
				Required: true, ElementType: types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1), listvalidator.UniqueValues(),
					listvalidator.ValueStringsAre(hostNameValidator{})},
			},
			"size": schema.Int64Attribute{Description: "Number of members, from `min_size` to `max_size`; changing it scales in place " +
				"(a member removed is deleted with its overlay disk). Read reports the members that exist, so a " +
				"member removed outside Terraform shows as a change.", Required: true,
				Validators: []validator.Int64{int64validator.AtLeast(0)}},
			"min_size": schema.Int64Attribute{Description: "Smallest size the autoscaler may choose, 0 or more, at most `max_size`. " +
				"A scaling policy's `min` must not be below it.", Required: true,
				Validators: []validator.Int64{int64validator.AtLeast(0)}},
			"max_size": schema.Int64Attribute{Description: "Largest size the autoscaler may choose, 1 or more; with `anti_affinity`, " +
				"at most the number of `hosts`. A scaling policy's `max` must not be above it.", Required: true,
				Validators: []validator.Int64{int64validator.AtLeast(1)}},
			"placement": schema.StringAttribute{
				Description: "`spread` (least loaded host first) or `binpack` (fullest host that fits first). Default `spread`.",
				Optional:    true, Computed: true, Default: stringdefault.StaticString(pool.PlacementSpread),
				Validators: []validator.String{stringvalidator.OneOf(pool.PlacementSpread, pool.PlacementBinpack)},
			},
			"anti_affinity": schema.BoolAttribute{
				Description: "Never put two members on the same host; `max_size` must then be at most the number of `hosts`. Default false.",
				Optional:    true, Computed: true, Default: booldefault.StaticBool(false),
			},
			"template": schema.SingleNestedAttribute{
				Description: "How members are built. A change applies to members created afterwards: members that exist keep " +
					"theirs (no replacement).",
				Required: true, Attributes: tmpl,
			},
			"protection": poolProtectionSchema(),
			"members": schema.ListNestedAttribute{
				Description: "The members, wherever they run now.",
				Computed:    true,
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name":  schema.StringAttribute{Computed: true, Description: "Domain name."},
					"host":  schema.StringAttribute{Computed: true, Description: "Host it is on."},
					"uuid":  schema.StringAttribute{Computed: true, Description: "Domain UUID."},
					"state": schema.StringAttribute{Computed: true, Description: guestStates},
					"index": schema.Int64Attribute{Computed: true, Description: "Member number."},
				}},
			},
			"generation": schema.Int64Attribute{Computed: true,
				Description: "Generation of the pool record on the hosts; every write adds one."},
			"timeouts": timeouts.Attributes(ctx, timeouts.Opts{Create: true, Update: true, Delete: true}),
		},
	}
}

func (r *poolResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig checks what spans attributes; it needs no provider.
func (r *poolResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m poolModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	m.validate(&resp.Diagnostics)
}

// validate checks a pool's configuration across attributes.
func (m poolModel) validate(diags *diag.Diagnostics) {
	validateSizes(m.Size, m.MinSize, m.MaxSize, diags)
	if m.Template == nil {
		return // unknown as a whole
	}
	m.Template.validate(path.Root("template"), diags)
	if cmdlineUsesIP(m.Template.Cmdline) && m.Template.IPBase.IsNull() {
		diags.AddAttributeError(path.Root("template").AtName("ip_base"), "ip_base needed",
			"template.cmdline uses {ip}: set template.ip_base to member 1's address, e.g. 192.0.2.121/24.")
	}
	if c := m.Template.Cmdline; !c.IsNull() && !c.IsUnknown() {
		if err := pool.CheckCmdline(c.ValueString()); err != nil {
			diags.AddAttributeError(path.Root("template").AtName("cmdline"), "Unknown placeholder",
				fmt.Sprintf("template.%v. Write a literal brace some other way, or use one of the known placeholders.", err))
		}
	}
	if b := m.Template.IPBase; !b.IsNull() && !b.IsUnknown() && !m.MaxSize.IsUnknown() {
		if err := pool.ValidIPBase(b.ValueString(), m.MaxSize.ValueInt64()); err != nil {
			diags.AddAttributeError(path.Root("template").AtName("ip_base"), "Invalid ip_base", "template."+err.Error())
		}
	}
	// The autoscaler may grow the pool to max_size: every member then
	// needs a host of its own.
	if !m.AntiAffinity.ValueBool() || m.MaxSize.IsUnknown() || m.Hosts.IsUnknown() {
		return
	}
	if n, mx := len(m.Hosts.Elements()), m.MaxSize.ValueInt64(); mx > int64(n) {
		diags.AddAttributeError(path.Root("max_size"), "Not enough hosts for anti-affinity",
			fmt.Sprintf("max_size %d with anti_affinity needs %d hosts (one per member); hosts lists %d: "+
				"lower max_size to %d or add hosts.", mx, mx, n, n))
	}
}

// validateSizes checks min_size ≤ size ≤ max_size.
func validateSizes(size, lo, hi types.Int64, diags *diag.Diagnostics) {
	if size.IsUnknown() || lo.IsUnknown() || hi.IsUnknown() {
		return
	}
	if lo.ValueInt64() > hi.ValueInt64() {
		diags.AddAttributeError(path.Root("min_size"), "min_size above max_size",
			fmt.Sprintf("min_size %d must not exceed max_size %d.", lo.ValueInt64(), hi.ValueInt64()))
		return
	}
	if s := size.ValueInt64(); s < lo.ValueInt64() || s > hi.ValueInt64() {
		diags.AddAttributeError(path.Root("size"), "size out of bounds",
			fmt.Sprintf("size %d must be between min_size %d and max_size %d.", s, lo.ValueInt64(), hi.ValueInt64()))
	}
}

// ModifyPlan checks, at plan time, what needs the provider's inventory:
// host names, and image files on local hosts.
func (r *poolResource) ModifyPlan(ctx context.Context, req resource.ModifyPlanRequest, resp *resource.ModifyPlanResponse) {
	if req.Plan.Raw.IsNull() || r.client == nil {
		return
	}
	var m poolModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() || m.Hosts.IsUnknown() || m.Template == nil {
		return
	}
	hosts := listStrings(m.Hosts)
	checkHostNames(r.client.cfg.Hosts, hosts, path.Root("hosts"), &resp.Diagnostics)
	if !m.Template.MemoryMiB.IsUnknown() {
		if err := fitsSomeHost(r.client.cfg.Hosts, hosts, m.Template.MemoryMiB.ValueInt64()); err != nil {
			resp.Diagnostics.AddAttributeError(path.Root("template").AtName("memory_mib"), "Guest larger than any host", err.Error())
		}
	}
	m.Template.checkFiles(path.Root("template"), allLocal(r.client.cfg.Hosts, hosts), &resp.Diagnostics)
	if m.Protection != nil && !m.Template.MemoryMiB.IsUnknown() {
		m.Protection.check(hosts, uint64(m.Template.MemoryMiB.ValueInt64()), &resp.Diagnostics)
	}
}

// fitsSomeHost says, when every named host has a configured memory_mib
// (else what a host has is known only at apply), whether a guest of
// memMiB fits in the memory one of them keeps for guests; placement keeps
// hosts below the policy's memory_high besides, which the scheduler names
// at apply.
func fitsSomeHost(inv pool.Inventory, hosts []string, memMiB int64) error {
	best, bestName := int64(-1), ""
	for _, n := range hosts {
		h, ok := inv[n]
		if !ok || h.Capacity.MemoryMiB == 0 {
			return nil
		}
		if free := h.Capacity.MemoryMiB - h.Capacity.ReservedMemoryMiB; free > best {
			best, bestName = free, n
		}
	}
	if best < 0 || memMiB <= best {
		return nil
	}
	h := inv[bestName].Capacity
	return fmt.Errorf("template.memory_mib %d is larger than any of the pool's hosts: the largest, %s, has memory_mib %d less "+
		"reserved_memory_mib %d = %d MiB for guests (and placement keeps a host below its migration policy's memory_high): "+
		"lower template.memory_mib or add a larger host", memMiB, bestName, h.MemoryMiB, h.ReservedMemoryMiB, best)
}

// checkHostNames reports every name of a host list that is not in the inventory.
func checkHostNames(inv pool.Inventory, hosts []string, at path.Path, diags *diag.Diagnostics) {
	for i, h := range hosts {
		if _, err := inv.Lookup(h); err != nil {
			diags.AddAttributeError(at.AtListIndex(i), "Unknown host", err.Error())
		}
	}
}

func listStrings(l types.List) []string {
	out := make([]string, 0, len(l.Elements()))
	for _, e := range l.Elements() {
		if s, ok := e.(types.String); ok {
			out = append(out, s.ValueString())
		}
	}
	return out
}

// specFromModel builds the pool spec from the plan.
func (r *poolResource) specFromModel(m poolModel) (pool.Spec, error) {
	s := pool.Spec{
		Name: m.Name.ValueString(), Size: m.Size.ValueInt64(), MinSize: m.MinSize.ValueInt64(), MaxSize: m.MaxSize.ValueInt64(),
		Placement: m.Placement.ValueString(), AntiAffinity: m.AntiAffinity.ValueBool(),
		Template: m.Template.toSpec(),
	}
	s.Template.IPBase = m.Template.IPBase.ValueString()
	if m.Protection != nil {
		p, err := m.Protection.protection()
		if err != nil {
			return s, fmt.Errorf("protection: %w", err)
		}
		s.Protection = &p
	}
	for _, n := range listStrings(m.Hosts) {
		h, err := r.client.cfg.Hosts.Lookup(n)
		if err != nil {
			return s, err
		}
		s.Hosts = append(s.Hosts, h)
	}
	return s, nil
}

func (r *poolResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	var m poolModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Create(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	spec, err := r.specFromModel(m)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("hosts"), "Unknown host", err.Error())
		return
	}
	defer lockPool(spec.Name)()
	// The record first: an interrupted create leaves a pool every tool can
	// see, and the next apply adopts its members (found by their labels).
	// Hosts the pool does not use may be down (a record there would be of
	// an older pool that was moved off them), and those it fenced.
	old, _, found, err := r.client.ops(ctx).ReadPool(ctx, spec.Name, nil)
	pr := pool.Record{Spec: spec}
	if found {
		tflog.Info(ctx, "adopting existing pool record", map[string]any{"pool": spec.Name, "generation": old.Generation})
		pr.Policy, pr.Fences = old.Policy, old.Fences
	}
	if err := pool.Needed(err, pr.Placeable()); err != nil {
		resp.Diagnostics.AddError("Cannot read pool records", err.Error())
		return
	}
	if _, err := r.client.ops(ctx).WritePool(ctx, pr, nil); err != nil {
		resp.Diagnostics.AddError("Cannot store pool "+spec.Name, err.Error())
		return
	}
	if err := r.client.ops(ctx).Reconcile(ctx, pr); err != nil {
		// No state: the next apply creates again, adopting what exists.
		resp.Diagnostics.AddError("Cannot start pool "+spec.Name, err.Error())
		return
	}
	resp.Diagnostics.Append(r.read(ctx, &m)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

func (r *poolResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m poolModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	found, diags := r.readFound(ctx, &m)
	resp.Diagnostics.Append(diags...)
	if resp.Diagnostics.HasError() {
		return
	}
	if !found {
		tflog.Warn(ctx, "pool record not found on any host; removing from state", map[string]any{"pool": m.Name.ValueString()})
		resp.State.RemoveResource(ctx)
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

func (r *poolResource) read(ctx context.Context, m *poolModel) diag.Diagnostics {
	found, diags := r.readFound(ctx, m)
	if !found && !diags.HasError() {
		diags.AddError("Pool vanished", fmt.Sprintf("pool %s was stored but is no longer found on any host", m.Name.ValueString()))
	}
	return diags
}

// readFound fills m from the hosts: the spec from the pool record (highest
// generation on any host), size and members from the members that exist.
// A host that does not answer changes nothing it could have told: the
// members last seen there stay in state (and count for size), with a
// warning naming the host, so that a plan does not replace them.
func (r *poolResource) readFound(ctx context.Context, m *poolModel) (bool, diag.Diagnostics) {
	var diags diag.Diagnostics
	name := m.Name.ValueString()
	if name == "" {
		name = m.ID.ValueString()
	}
	ops := r.client.ops(ctx)
	pr, _, found, err := ops.ReadPool(ctx, name, nil)
	down, err := pool.Partial(err)
	if err != nil {
		diags.AddError("Cannot read pool "+name, err.Error())
		return false, diags
	}
	if !found {
		if len(down) > 0 && !m.ID.IsNull() {
			diags.AddWarning("Pool "+name+" not checked", fmt.Sprintf("its record was not found on the hosts that answered, "+
				"and %v; its state is kept as last read", down))
			return true, diags
		}
		return false, diags
	}
	members, err := ops.Members(ctx, name)
	if down, err = pool.Partial(err); err != nil {
		diags.AddError("Cannot list members of pool "+name, err.Error())
		return false, diags
	}
	members = pr.Live(members) // on a fenced host, stale
	if down = down.Of(pr.Placeable()); len(down) > 0 {
		var kept []string
		for _, mb := range priorMembers(ctx, m.Members) {
			if _, ok := down[mb.Host]; ok {
				members = append(members, mb)
				kept = append(kept, mb.Name+"@"+mb.Host)
			}
		}
		sort.Slice(members, func(i, j int) bool { return members[i].Index < members[j].Index })
		diags.AddWarning("Pool "+name+": hosts down", fmt.Sprintf("%v. Members last seen there are kept as they were (%s): "+
			"a change of this pool waits until the host answers, or is fenced and the pool restored by virtpool agent.",
			down, strings.Join(kept, ", ")))
	}
	s := pr.Spec
	m.ID, m.Name = types.StringValue(name), types.StringValue(name)
	m.Hosts = stringList(s.HostNames())
	m.Size = types.Int64Value(int64(len(members)))
	m.MinSize, m.MaxSize = types.Int64Value(s.MinSize), types.Int64Value(s.MaxSize)
	m.Placement = types.StringValue(orDefault(s.Placement, pool.PlacementSpread))
	m.AntiAffinity = types.BoolValue(s.AntiAffinity)
	m.Template = &poolTemplateModel{templateModel: templateFromSpec(s.Template), IPBase: optString(s.Template.IPBase)}
	m.Protection = poolProtectionFrom(s.Protection)
	m.Members = membersList(members)
	m.Generation = types.Int64Value(pr.Generation)
	return true, diags
}

// priorMembers reads the members a state holds.
func priorMembers(ctx context.Context, l types.List) []pool.Member {
	var vals []struct {
		Name  string `tfsdk:"name"`
		Host  string `tfsdk:"host"`
		UUID  string `tfsdk:"uuid"`
		State string `tfsdk:"state"`
		Index int64  `tfsdk:"index"`
	}
	if l.IsNull() || l.IsUnknown() || l.ElementsAs(ctx, &vals, false).HasError() {
		return nil
	}
	out := make([]pool.Member, len(vals))
	for i, v := range vals {
		out[i] = pool.Member{Located: pool.Located{Host: v.Host, Domain: driver.Domain{Name: v.Name, UUID: v.UUID, State: v.State}},
			Index: int(v.Index)}
	}
	return out
}

func membersList(ms []pool.Member) types.List {
	vals := make([]attr.Value, len(ms))
	for i, mb := range ms {
		vals[i] = types.ObjectValueMust(memberAttrTypes, map[string]attr.Value{
			"name": types.StringValue(mb.Name), "host": types.StringValue(mb.Host), "uuid": types.StringValue(mb.UUID),
			"state": types.StringValue(mb.State), "index": types.Int64Value(int64(mb.Index)),
		})
	}
	return types.ListValueMust(types.ObjectType{AttrTypes: memberAttrTypes}, vals)
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (r *poolResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	var m, prior poolModel
	resp.Diagnostics.Append(req.Plan.Get(ctx, &m)...)
	resp.Diagnostics.Append(req.State.Get(ctx, &prior)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Update(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	spec, err := r.specFromModel(m)
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("hosts"), "Unknown host", err.Error())
		return
	}
	defer lockPool(spec.Name)()
	// The hosts it leaves count too (its members there must move), but
	// for those it fenced.
	old, _, _, err := r.client.ops(ctx).ReadPool(ctx, spec.Name, nil)
	if err := pool.Needed(err, old.Unfenced(append(spec.HostNames(), listStrings(prior.Hosts)...))); err != nil {
		resp.Diagnostics.AddError("Cannot read pool "+spec.Name, err.Error())
		return
	}
	// Keep the policy (it belongs to virtpool_migration_policy) and the
	// fences (virtpool agent's).
	pr := pool.Record{Spec: spec, Policy: old.Policy, Fences: old.Fences}
	if _, err := r.client.ops(ctx).WritePool(ctx, pr, listStrings(prior.Hosts)); err != nil {
		resp.Diagnostics.AddError("Cannot store pool "+spec.Name, err.Error())
		return
	}
	if err := r.client.ops(ctx).Reconcile(ctx, pr); err != nil {
		resp.Diagnostics.AddError("Cannot update pool "+spec.Name, err.Error())
		// Report what is there now, so the next plan starts from reality
		// (with a fresh deadline: the timeout may be what ended it).
		fresh, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if found, d := r.readFound(fresh, &m); found && !d.HasError() {
			resp.Diagnostics.Append(resp.State.Set(fresh, m)...)
		} else {
			resp.Diagnostics.Append(resp.State.Set(fresh, prior)...)
		}
		return
	}
	resp.Diagnostics.Append(r.read(ctx, &m)...)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

func (r *poolResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m poolModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	timeout, diags := m.Timeouts.Delete(ctx, r.client.cfg.DefaultTimeout)
	resp.Diagnostics.Append(diags...)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := m.Name.ValueString()
	defer lockPool(name)()
	if err := r.client.deletePool(ctx, name); err != nil {
		resp.Diagnostics.AddError("Cannot delete pool "+name, err.Error())
	}
}

func (r *poolResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("name"), req.ID)...)
}

// deletePool removes every member (wherever it runs), then the pool's
// record from every host. Members go first: if interrupted, the record is
// still there and a retry finds what is left. A member on two hosts (what
// an interrupted migration left) keeps its disk, which both copies share,
// until its last copy goes.
func (c *Client) deletePool(ctx context.Context, name string) error {
	ops := c.ops(ctx)
	pr, where, _, err := ops.ReadPool(ctx, name, nil)
	need := pr.Unfenced(append(pr.Spec.HostNames(), where...)) // where its members and records may be
	if err := pool.Needed(err, need); err != nil {
		return err
	}
	members, err := ops.Members(ctx, name)
	if err := pool.Needed(err, need); err != nil {
		return err
	}
	for i, mb := range members {
		tflog.Info(ctx, "removing pool member", map[string]any{"pool": name, "domain": mb.Name, "host": mb.Host,
			"progress": fmt.Sprintf("%d/%d", i+1, len(members))})
		remove := ops.RemoveGuest
		if pool.OtherCopy(members[i+1:], mb) {
			remove = ops.RemoveStaleCopy
		}
		if err := remove(ctx, mb.Host, mb.Name); err != nil {
			return err
		}
	}
	return ops.DeletePoolRecord(ctx, name, where)
}
