package provider

import (
	"fmt"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework-validators/int64validator"
	"github.com/hashicorp/terraform-plugin-framework-validators/stringvalidator"
	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/int64planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/planmodifier"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringdefault"
	"github.com/hashicorp/terraform-plugin-framework/resource/schema/stringplanmodifier"
	"github.com/hashicorp/terraform-plugin-framework/schema/validator"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/pool"
)

// templateModel is a guest template in Terraform: a pool's template block,
// or the same attributes at the top of a virtpool_domain.
type templateModel struct {
	VCPUs       types.Int64  `tfsdk:"vcpus"`
	MemoryMiB   types.Int64  `tfsdk:"memory_mib"`
	Kernel      types.String `tfsdk:"kernel"`
	Initrd      types.String `tfsdk:"initrd"`
	Cmdline     types.String `tfsdk:"cmdline"`
	BaseImage   types.String `tfsdk:"base_image"`
	OverlayDir  types.String `tfsdk:"overlay_dir"`
	Bridge      types.String `tfsdk:"bridge"`
	Accelerator types.String `tfsdk:"accelerator"`
}

// poolTemplateModel adds what only pools have.
type poolTemplateModel struct {
	templateModel
	IPBase types.String `tfsdk:"ip_base"`
}

// templateAttributes are a template's attributes. Single domains cannot
// change their hardware in place (replace), pool templates can: the change
// applies to members created afterwards, like an autoscaling group's
// launch template.
func templateAttributes(replace bool) map[string]schema.Attribute {
	var sMods []planmodifier.String
	var iMods []planmodifier.Int64
	if replace {
		sMods = []planmodifier.String{stringplanmodifier.RequiresReplace()}
		iMods = []planmodifier.Int64{int64planmodifier.RequiresReplace()}
	}
	// What a change does, said on each attribute.
	change := " A change applies to members created afterwards."
	if replace {
		change = " " + replacesDomain
	}
	str := func(desc string, v ...validator.String) schema.StringAttribute {
		return schema.StringAttribute{Description: desc + change, Optional: true, PlanModifiers: sMods, Validators: v}
	}
	path := func(desc string) schema.StringAttribute {
		return str(desc, stringvalidator.RegexMatches(absPathRE, "must be an absolute path"))
	}
	return map[string]schema.Attribute{
		"vcpus": schema.Int64Attribute{Description: "Virtual CPUs, 1 to 1024." + change, Required: true, PlanModifiers: iMods,
			Validators: []validator.Int64{int64validator.Between(1, 1024)}},
		"memory_mib": schema.Int64Attribute{Description: "Memory in MiB, 16 to 16777216; at most what a host keeps for " +
			"guests (its `memory_mib` less `reserved_memory_mib`, below its migration policy's `memory_high`)." + change, Required: true, PlanModifiers: iMods,
			Validators: []validator.Int64{int64validator.Between(16, 16<<20)}},
		"kernel": path("Kernel for direct kernel boot (absolute path on the hosts). Set this or `base_image`."),
		"initrd": path("Initial ramdisk for direct kernel boot (absolute path on the hosts)."),
		"cmdline": str("Kernel command line for direct kernel boot. In a pool's template, `{name}`, `{index}` " +
			"and `{ip}` are replaced by each member's domain name, number (from 1) and address (see `ip_base`); " +
			"any other `{placeholder}` is an error."),
		"base_image": path("Base disk image (absolute path on the hosts, in a directory every host of the guest sees). " +
			"Each guest gets its own copy-on-write qcow2 overlay on it. Set this or `kernel`."),
		"overlay_dir": path("Directory of the overlays (`<guest name>.qcow2`). Default: the base image's directory. " +
			"A guest's overlay is deleted with the guest; it is kept when only a stale copy of the guest, on a failed " +
			"host that is back, is removed (it is the disk of the copy that runs)."),
		"bridge": str("Host bridge the guest's network interface joins. Default: no network interface."),
		"accelerator": schema.StringAttribute{
			Description: "`auto` (KVM where a KVM guest really runs, else TCG), `kvm` or `tcg`. Default `auto`." + change,
			Optional:    true, Computed: true, Default: stringdefault.StaticString("auto"), PlanModifiers: sMods,
			Validators: []validator.String{stringvalidator.OneOf("auto", "kvm", "tcg")},
		},
	}
}

// replacesDomain is what a virtpool_domain attribute that forces
// replacement says.
const replacesDomain = "Changing it replaces the domain: the guest is deleted, with its overlay disk (what it wrote " +
	"there is lost), and a new one is created."

func (t templateModel) toSpec() pool.Template {
	return pool.Template{
		VCPUs: t.VCPUs.ValueInt64(), MemoryMiB: t.MemoryMiB.ValueInt64(),
		Kernel: t.Kernel.ValueString(), Initrd: t.Initrd.ValueString(), Cmdline: t.Cmdline.ValueString(),
		BaseImage: t.BaseImage.ValueString(), OverlayDir: t.OverlayDir.ValueString(),
		Bridge: t.Bridge.ValueString(), Accelerator: t.Accelerator.ValueString(),
	}
}

func templateFromSpec(t pool.Template) templateModel {
	acc := t.Accelerator
	if acc == "" {
		acc = "auto"
	}
	return templateModel{
		VCPUs: types.Int64Value(t.VCPUs), MemoryMiB: types.Int64Value(t.MemoryMiB),
		Kernel: optString(t.Kernel), Initrd: optString(t.Initrd), Cmdline: optString(t.Cmdline),
		BaseImage: optString(t.BaseImage), OverlayDir: optString(t.OverlayDir), Bridge: optString(t.Bridge),
		Accelerator: types.StringValue(acc),
	}
}

// optString maps "" to null, as an optional attribute left out reads.
func optString(s string) types.String {
	if s == "" {
		return types.StringNull()
	}
	return types.StringValue(s)
}

// validate checks what no single attribute can: one boot source, an initrd
// only with a kernel. at is where the template's attributes live.
func (t templateModel) validate(at path.Path, diags *diag.Diagnostics) {
	known := func(v types.String) bool { return !v.IsUnknown() }
	set := func(v types.String) bool { return !v.IsNull() && !v.IsUnknown() }
	if known(t.Kernel) && known(t.BaseImage) {
		switch {
		case set(t.Kernel) && set(t.BaseImage):
			diags.AddAttributeError(at.AtName("base_image"), "Two boot sources",
				"Set either kernel (direct kernel boot) or base_image (disk), not both.")
		case !set(t.Kernel) && !set(t.BaseImage) && !t.Kernel.IsUnknown() && !t.BaseImage.IsUnknown():
			diags.AddAttributeError(at.AtName("kernel"), "No boot source",
				"Set kernel (direct kernel boot) or base_image (disk).")
		}
	}
	if set(t.Initrd) && known(t.Kernel) && !set(t.Kernel) {
		diags.AddAttributeError(at.AtName("initrd"), "initrd without kernel", "initrd is only used with kernel.")
	}
	if set(t.OverlayDir) && known(t.BaseImage) && !set(t.BaseImage) {
		diags.AddAttributeError(at.AtName("overlay_dir"), "overlay_dir without base_image", "overlay_dir is only used with base_image.")
	}
}

// checkFiles checks, when the guest's hosts are all on this machine, that
// its image files exist; on remote hosts the driver reports missing files
// when it creates the guest.
func (t templateModel) checkFiles(at path.Path, local bool, diags *diag.Diagnostics) {
	if !local {
		return
	}
	for _, f := range []struct {
		attr string
		v    types.String
	}{{"kernel", t.Kernel}, {"initrd", t.Initrd}, {"base_image", t.BaseImage}} {
		if f.v.IsNull() || f.v.IsUnknown() {
			continue
		}
		if err := checkLocalFile(f.v.ValueString()); err != nil {
			diags.AddAttributeError(at.AtName(f.attr), "Image file not found",
				fmt.Sprintf("%s: %v. The hosts of this guest are on this machine, so the file must exist here.", f.attr, err))
		}
	}
}

// allLocal reports whether every named host's URI is local.
func allLocal(inv pool.Inventory, hosts []string) bool {
	for _, n := range hosts {
		h, ok := inv[n]
		if !ok || !isLocalURI(h.URI) {
			return false
		}
	}
	return len(hosts) > 0
}

func cmdlineUsesIP(s types.String) bool {
	return !s.IsNull() && !s.IsUnknown() && strings.Contains(s.ValueString(), "{ip}")
}
