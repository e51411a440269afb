package provider

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/float64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/booldefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/float64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64default"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/pool"
)

var (
	_ resource.ResourceWithConfigure      = (*policyResource)(nil)
	_ resource.ResourceWithValidateConfig = (*policyResource)(nil)
	_ resource.ResourceWithImportState    = (*policyResource)(nil)
)

// NewMigrationPolicyResource is the virtpool_migration_policy resource.
func NewMigrationPolicyResource() resource.Resource { return &policyResource{} }

type policyResource struct{ client *Client }

type policyModel struct {
	ID                    types.String  `tfsdk:"id"`
	Pool                  types.String  `tfsdk:"pool"`
	Mode                  types.String  `tfsdk:"mode"`
	CPULow                types.Float64 `tfsdk:"cpu_low"`
	CPUHigh               types.Float64 `tfsdk:"cpu_high"`
	MemoryLow             types.Float64 `tfsdk:"memory_low"`
	MemoryHigh            types.Float64 `tfsdk:"memory_high"`
	TargetUtilisation     types.Float64 `tfsdk:"target_utilisation"`
	MaxMigrationsPerRound types.Int64   `tfsdk:"max_migrations_per_round"`
	MaxParallel           types.Int64   `tfsdk:"max_parallel_migrations"`
	BandwidthMiB          types.Int64   `tfsdk:"bandwidth_mib"`
	MaxDowntimeMs         types.Int64   `tfsdk:"max_downtime_ms"`
	AutoConverge          types.Bool    `tfsdk:"auto_converge"`
	TLS                   types.Bool    `tfsdk:"tls"`
	PostCopy              types.Bool    `tfsdk:"post_copy"`
	ProgressTimeoutS      types.Int64   `tfsdk:"progress_timeout_s"`
	CompletionPerGiBS     types.Int64   `tfsdk:"completion_timeout_per_gib_s"`
}

func (r *policyResource) Metadata(_ context.Context, req resource.MetadataRequest, resp *resource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_migration_policy"
}

func (r *policyResource) Schema(_ context.Context, _ resource.SchemaRequest, resp *resource.SchemaResponse) {
	def := pool.DefaultPolicy()
	frac := func(desc string, d float64) schema.Float64Attribute {
		return schema.Float64Attribute{Description: fmt.Sprintf("%s A fraction, above 0 and at most 1. Default %v.", desc, d),
			Optional: true, Computed: true, Default: float64default.StaticFloat64(d),
			Validators: []validator.Float64{float64validator.Between(0, 1)}}
	}
	count := func(desc string, d, lo int64) schema.Int64Attribute {
		return schema.Int64Attribute{Description: fmt.Sprintf("%s At least %d. Default %d.", desc, lo, d),
			Optional: true, Computed: true, Default: int64default.StaticInt64(d),
			Validators: []validator.Int64{int64validator.AtLeast(lo)}}
	}
	resp.Schema = schema.Schema{
		Description: "How the autoscaler moves a pool's members: stored with the pool on its hosts (in the pool record), " +
			"where the autoscaler plugins read it. The provider itself uses its migration settings (bandwidth, downtime, " +
			"auto-converge, post-copy) when it moves the pool's members, and its watermarks when it places them.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Description: "The pool name.", Computed: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.UseStateForUnknown()}},
			"pool": schema.StringAttribute{Description: "Name of the virtpool_pool it governs (one policy per pool). " +
				"Changing it replaces the policy (the pools' guests are not touched).", Required: true,
				PlanModifiers: []planmodifier.String{stringplanmodifier.RequiresReplace()},
				Validators:    []validator.String{stringvalidator.RegexMatches(regexpMust(poolNamePattern), "a pool name")}},
			"mode": schema.StringAttribute{Description: "`balance` (relieve hot hosts) or `consolidate` (pack guests onto fewer hosts).",
				Required: true, Validators: []validator.String{stringvalidator.OneOf(pool.ModeBalance, pool.ModeConsolidate)}},
			"cpu_low":            frac("Low CPU watermark (fraction of a host's cores): below it a host is under-used; below `cpu_high`.", def.CPULow),
			"cpu_high":           frac("High CPU watermark: above it a host is hot, and no move makes a host exceed it.", def.CPUHigh),
			"memory_low":         frac("Low memory watermark (fraction of a host's memory); below `memory_high`.", def.MemoryLow),
			"memory_high":        frac("High memory watermark.", def.MemoryHigh),
			"target_utilisation": frac("Utilisation consolidation packs hosts to; between the low and high watermarks (both pairs).", def.TargetUtilisation),
			"max_migrations_per_round": count("Most live migrations in one autoscaler round (0: no cap).",
				def.MaxMigrationsPerRound, 0),
			"max_parallel_migrations": count("Most migrations a host takes part in at once.", def.MaxParallel, 1),
			"bandwidth_mib":           count("Migration bandwidth cap in MiB/s (0: the provider's migration_bandwidth_mib).", 0, 0),
			"max_downtime_ms":         count("Longest pause of a guest at the end of a migration, in milliseconds.", def.MaxDowntimeMs, 1),
			"auto_converge": schema.BoolAttribute{Description: "Throttle a guest's vCPUs when its migration does not converge " +
				"(QEMU's auto-converge, harder every pass over memory). A migration still not converging at the highest throttle " +
				"switches to post-copy if `post_copy` allows it, else it is aborted. Default false.",
				Optional: true, Computed: true, Default: booldefault.StaticBool(false)},
			"tls": schema.BoolAttribute{Description: "Encrypt the migration streams of the pool's members with TLS " +
				"(VIR_MIGRATE_TLS; the hosts' QEMU need x509 certificates). The provider's and the target's `migration_tls` " +
				"turn it on too: false here does not turn it off.",
				Optional: true, Computed: true, Default: booldefault.StaticBool(false)},
			"post_copy": schema.BoolAttribute{Description: "Switch a migration to post-copy (the guest runs on the destination, " +
				"which pulls the pages still on the source) when it does not converge (after auto-converge, if allowed), makes no " +
				"progress for `progress_timeout_s` or reaches its completion deadline. Without it such a migration is aborted " +
				"and the guest stays on its source. Default false.",
				Optional: true, Computed: true, Default: booldefault.StaticBool(false)},
			"progress_timeout_s": count("A migration whose memory left to send has not shrunk for this many seconds is ended "+
				"(post-copy if allowed, else aborted). 0: the provider's `migration_progress_timeout` (default 150).", 0, 0),
			"completion_timeout_per_gib_s": count("A migration still running after this many seconds per GiB of guest memory "+
				"(counting at least one GiB) is ended (post-copy if allowed, else aborted). 0: the provider's "+
				"`migration_completion_timeout_per_gib` (default 150).", 0, 0),
		},
	}
}

func (r *policyResource) Configure(_ context.Context, req resource.ConfigureRequest, resp *resource.ConfigureResponse) {
	r.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

// ValidateConfig checks 0 < low < high ≤ 1 and low ≤ target ≤ high
// (pool.Policy.Check, the rule the autoscaler plugins apply too).
func (r *policyResource) ValidateConfig(ctx context.Context, req resource.ValidateConfigRequest, resp *resource.ValidateConfigResponse) {
	var m policyModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	checkPolicy(m, &resp.Diagnostics)
}

// checkPolicy reports the policy's bad watermarks and target, each at its
// attribute; left-out ones are their defaults, and nothing is checked
// while one is unknown.
func checkPolicy(m policyModel, diags *diag.Diagnostics) {
	def := pool.DefaultPolicy()
	p := def
	for _, f := range []struct {
		v   types.Float64
		dst *float64
	}{{m.CPULow, &p.CPULow}, {m.CPUHigh, &p.CPUHigh}, {m.MemoryLow, &p.MemoryLow}, {m.MemoryHigh, &p.MemoryHigh},
		{m.TargetUtilisation, &p.TargetUtilisation}} {
		if f.v.IsUnknown() {
			return
		}
		if !f.v.IsNull() {
			*f.dst = f.v.ValueFloat64()
		}
	}
	for _, e := range p.Check() {
		summary := "Invalid watermark"
		switch {
		case e.Field == pool.PolicyKeyTarget:
			summary = "Target outside the watermarks"
		case strings.Contains(e.Msg, "must be below"):
			summary = "Watermarks out of order"
		}
		diags.AddAttributeError(path.Root(e.Field), summary, e.Msg)
	}
}

func (m policyModel) spec() pool.Policy {
	return pool.Policy{
		Mode: m.Mode.ValueString(), CPULow: m.CPULow.ValueFloat64(), CPUHigh: m.CPUHigh.ValueFloat64(),
		MemoryLow: m.MemoryLow.ValueFloat64(), MemoryHigh: m.MemoryHigh.ValueFloat64(),
		TargetUtilisation:     m.TargetUtilisation.ValueFloat64(),
		MaxMigrationsPerRound: m.MaxMigrationsPerRound.ValueInt64(), MaxParallel: m.MaxParallel.ValueInt64(),
		BandwidthMiB: m.BandwidthMiB.ValueInt64(), MaxDowntimeMs: m.MaxDowntimeMs.ValueInt64(),
		AutoConverge: m.AutoConverge.ValueBool(), PostCopy: m.PostCopy.ValueBool(), TLS: m.TLS.ValueBool(),
		ProgressTimeoutS: m.ProgressTimeoutS.ValueInt64(), CompletionPerGiBS: m.CompletionPerGiBS.ValueInt64(),
	}
}

func policyFromSpec(poolName string, p pool.Policy) policyModel {
	return policyModel{
		ID: types.StringValue(poolName), Pool: types.StringValue(poolName), Mode: types.StringValue(p.Mode),
		CPULow: types.Float64Value(p.CPULow), CPUHigh: types.Float64Value(p.CPUHigh),
		MemoryLow: types.Float64Value(p.MemoryLow), MemoryHigh: types.Float64Value(p.MemoryHigh),
		TargetUtilisation:     types.Float64Value(p.TargetUtilisation),
		MaxMigrationsPerRound: types.Int64Value(p.MaxMigrationsPerRound), MaxParallel: types.Int64Value(p.MaxParallel),
		BandwidthMiB: types.Int64Value(p.BandwidthMiB), MaxDowntimeMs: types.Int64Value(p.MaxDowntimeMs),
		AutoConverge: types.BoolValue(p.AutoConverge), PostCopy: types.BoolValue(p.PostCopy), TLS: types.BoolValue(p.TLS),
		ProgressTimeoutS: types.Int64Value(p.ProgressTimeoutS), CompletionPerGiBS: types.Int64Value(p.CompletionPerGiBS),
	}
}

// setPolicy writes (or with nil, removes) a pool's policy into its record,
// keeping the spec as it is on the hosts.
func (c *Client) setPolicy(ctx context.Context, poolName string, p *pool.Policy) (found bool, err error) {
	defer lockPool(poolName)()
	ops := c.ops(ctx)
	pr, _, found, err := ops.ReadPool(ctx, poolName, nil)
	if found {
		err = pool.Needed(err, pr.Placeable()) // the hosts WritePool writes to
	}
	if err != nil || !found {
		return found, err
	}
	pr.Policy = p
	_, err = ops.WritePool(ctx, pr, nil)
	return true, err
}

func (r *policyResource) Create(ctx context.Context, req resource.CreateRequest, resp *resource.CreateResponse) {
	r.put(ctx, req.Plan.Get, resp.State.Set, &resp.Diagnostics)
}

func (r *policyResource) Update(ctx context.Context, req resource.UpdateRequest, resp *resource.UpdateResponse) {
	r.put(ctx, req.Plan.Get, resp.State.Set, &resp.Diagnostics)
}

func (r *policyResource) put(ctx context.Context, get func(context.Context, any) diag.Diagnostics,
	set func(context.Context, any) diag.Diagnostics, diags *diag.Diagnostics) {
	var m policyModel
	diags.Append(get(ctx, &m)...)
	if diags.HasError() {
		return
	}
	p := m.spec()
	found, err := r.client.setPolicy(ctx, m.Pool.ValueString(), &p)
	if err != nil {
		diags.AddError("Cannot store migration policy", err.Error())
		return
	}
	if !found {
		diags.AddAttributeError(path.Root("pool"), "Pool not found",
			fmt.Sprintf("no host holds pool %q: create the virtpool_pool first (refer to virtpool_pool.<name>.name so Terraform orders them).",
				m.Pool.ValueString()))
		return
	}
	m.ID = m.Pool
	diags.Append(set(ctx, m)...)
}

func (r *policyResource) Read(ctx context.Context, req resource.ReadRequest, resp *resource.ReadResponse) {
	var m policyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Pool.ValueString()
	if name == "" {
		name = m.ID.ValueString()
	}
	pr, _, found, err := r.client.ops(ctx).ReadPool(ctx, name, nil)
	down, err := pool.Partial(err)
	if err != nil {
		resp.Diagnostics.AddError("Cannot read pool "+name, err.Error())
		return
	}
	if !found && len(down) > 0 {
		resp.Diagnostics.AddWarning("Migration policy of pool "+name+" not checked",
			fmt.Sprintf("its pool record is not on the hosts that answered, and %v; its state is kept as last read", down))
		return
	}
	if !found || pr.Policy == nil {
		resp.State.RemoveResource(ctx)
		return
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, policyFromSpec(name, *pr.Policy))...)
}

func (r *policyResource) Delete(ctx context.Context, req resource.DeleteRequest, resp *resource.DeleteResponse) {
	var m policyModel
	resp.Diagnostics.Append(req.State.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	if _, err := r.client.setPolicy(ctx, m.Pool.ValueString(), nil); err != nil {
		resp.Diagnostics.AddError("Cannot remove migration policy", err.Error())
	}
}

func (r *policyResource) ImportState(ctx context.Context, req resource.ImportStateRequest, resp *resource.ImportStateResponse) {
	resource.ImportStatePassthroughID(ctx, path.Root("id"), req, resp)
	resp.Diagnostics.Append(resp.State.SetAttribute(ctx, path.Root("pool"), req.ID)...)
}
