package provider

import (
	"context"
	"time"

	"github.com/hashicorp/terraform-plugin-framework-validators/listvalidator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/objectplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/pool"
)

// protectionModel is a virtpool_domain's protection block (pool.Protection).
type protectionModel struct {
	StandbyHosts types.List   `tfsdk:"standby_hosts"`
	Interval     types.String `tfsdk:"interval"`
	OnFailure    types.String `tfsdk:"on_failure"`
}

func protectionSchema() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		Description: "Hot standby of the running guest (needs `virtpool agent` with each host's checkpoint helper, " +
			"`virtpool ship serve`): every `interval` the agent checkpoints the guest's memory on its host while it runs " +
			"(a pause of tens of milliseconds), and that host's helper sends what changed since the last image to the " +
			"standby host's helper. When the guest's host fails (and is fenced) or its QEMU dies, the agent restores it " +
			"on the standby from its last image: it goes on with its memory as of that checkpoint, at most one interval " +
			"(plus the capture) old. Then it is protected again onto the next standby host. " + diskProtection + " " + replacesDomain,
		Optional:      true,
		PlanModifiers: []planmodifier.Object{objectplanmodifier.RequiresReplace()},
		Attributes: map[string]schema.Attribute{
			"standby_hosts": schema.ListAttribute{Description: "Hosts (keys of the provider's `hosts`) that hold the " +
				"guest's standby image, in order: the standby is the first that is not the guest's host and answers. " +
				"They are also its failover hosts (leave `failover_hosts` out).",
				Required: true, ElementType: types.StringType,
				Validators: []validator.List{listvalidator.SizeAtLeast(1), listvalidator.UniqueValues(),
					listvalidator.ValueStringsAre(hostNameValidator{})}},
			"interval":   intervalAttribute(),
			"on_failure": onFailureAttribute(),
		},
	}
}

// poolProtectionModel is a virtpool_pool's protection block: each
// member's standby is placed by the scheduler among the pool's hosts.
type poolProtectionModel struct {
	Interval  types.String `tfsdk:"interval"`
	OnFailure types.String `tfsdk:"on_failure"`
}

func poolProtectionSchema() schema.SingleNestedAttribute {
	return schema.SingleNestedAttribute{
		Description: "Hot standby of every member (needs `virtpool agent` with each host's checkpoint helper, " +
			"`virtpool ship serve`), as a `virtpool_domain`'s `protection`: every `interval` the agent checkpoints each " +
			"member's memory and ships what changed to its standby. A member's standby is placed by virtpool's scheduler " +
			"on another of the pool's hosts with room to restore it (counting the members the host already stands by " +
			"for), never on the member's own host. When a member's host fails (and is fenced) or its QEMU dies, the " +
			"member is restored on its standby, under its name and with its memory, instead of being replaced by a new " +
			"member. " + diskProtection + " A change applies to every member at once, without replacing any.",
		Optional: true,
		Attributes: map[string]schema.Attribute{
			"interval":   intervalAttribute(),
			"on_failure": onFailureAttribute(),
		},
	}
}

// guestStates describes a guest's state attribute.
const guestStates = "running, paused, shutoff, crashed, … A protected guest reads paused for tens of milliseconds " +
	"while a checkpoint ends (libvirt's state)."

// diskProtection says what protecting a guest with a disk takes.
const diskProtection = "A disk (`base_image`) is checkpointed with the memory: each checkpoint freezes the disk's file " +
	"and the guest writes on in a new layer above it (`<overlay_dir>/<name>.<disk>.ckpt-<n>.qcow2`, merged down once the " +
	"next image is on the standby), so that a restored guest meets its disk as its memory knew it. The overlay " +
	"directory must be storage the standby hosts share, at the same path."

func intervalAttribute() schema.StringAttribute {
	return schema.StringAttribute{Description: "Time between two checkpoints (a Go duration), at least " +
		"1s and twice what a capture of the guest's memory may take (up to 0.5 s per 128 MiB, as measured on the lab under load).",
		Optional: true, Computed: true, Default: stringdefault.StaticString(pool.DefaultCheckpointInterval.String()),
		Validators: []validator.String{durationValidator{}}} // its least: pool.Protection.Check, at plan
}

func onFailureAttribute() schema.StringAttribute {
	return schema.StringAttribute{Description: "`restore` (the default): restore the guest on its standby " +
		"from its last image (with no image there yet, start it from its template); `restart`: start it there " +
		"from its template, its memory lost, as `failover_hosts` does (a pool member: replaced by a new member).",
		Optional: true, Computed: true, Default: stringdefault.StaticString(pool.OnFailureRestore),
		Validators: []validator.String{stringvalidator.OneOf(pool.OnFailureRestore, pool.OnFailureRestart)}}
}

// protection is the block as the agent reads it from the labels.
func (p *protectionModel) protection() (pool.Protection, error) {
	return parseProtection(p.Interval, p.OnFailure)
}

// protection is the block as the pool's record holds it.
func (p *poolProtectionModel) protection() (pool.Protection, error) {
	return parseProtection(p.Interval, p.OnFailure)
}

func parseProtection(interval, onFailure types.String) (pool.Protection, error) {
	d, err := time.ParseDuration(interval.ValueString())
	return pool.Protection{Interval: d, OnFailure: onFailure.ValueString()}, err
}

func poolProtectionFrom(p *pool.Protection) *poolProtectionModel {
	if p == nil {
		return nil
	}
	return &poolProtectionModel{Interval: types.StringValue(p.Interval.String()), OnFailure: types.StringValue(p.OnFailure)}
}

// check reports, at plan time, standby hosts the provider does not know
// and a protection the guest cannot have (pool.Protection.Check).
func (p *protectionModel) check(ctx context.Context, hosts pool.Inventory, primary string, memoryMiB uint64, diags *diag.Diagnostics) {
	at := path.Root("protection")
	if p.StandbyHosts.IsUnknown() || p.Interval.IsUnknown() || p.OnFailure.IsUnknown() {
		return
	}
	var standby []string
	diags.Append(p.StandbyHosts.ElementsAs(ctx, &standby, false)...)
	for i, h := range standby {
		if _, err := hosts.Lookup(h); err != nil {
			diags.AddAttributeError(at.AtName("standby_hosts").AtListIndex(i), "Unknown host", err.Error())
		}
	}
	prot, err := p.protection()
	if err != nil {
		return // the interval's validator said so
	}
	if err := prot.Check(memoryMiB, primary, standby); err != nil {
		diags.AddAttributeError(at, "Invalid protection", err.Error())
	}
}

// check reports, at plan time, a protection the pool's members cannot
// have (pool.Protection.CheckPool).
func (p *poolProtectionModel) check(hosts []string, memoryMiB uint64, diags *diag.Diagnostics) {
	at := path.Root("protection")
	if p.Interval.IsUnknown() || p.OnFailure.IsUnknown() {
		return
	}
	prot, err := p.protection()
	if err != nil {
		return // the interval's validator said so
	}
	if err := prot.CheckPool(memoryMiB, hosts); err != nil {
		diags.AddAttributeError(at, "Invalid protection", err.Error())
	}
}
