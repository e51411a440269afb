package provider

import (
	"context"
	"fmt"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/pool"
)

var _ datasource.DataSourceWithConfigure = (*poolDataSource)(nil)

// NewPoolDataSource is the virtpool_pool data source.
func NewPoolDataSource() datasource.DataSource { return &poolDataSource{} }

type poolDataSource struct{ client *Client }

type poolDataModel struct {
	ID           types.String `tfsdk:"id"`
	Name         types.String `tfsdk:"name"`
	Hosts        types.List   `tfsdk:"hosts"`
	Size         types.Int64  `tfsdk:"size"`
	DesiredSize  types.Int64  `tfsdk:"desired_size"`
	MinSize      types.Int64  `tfsdk:"min_size"`
	MaxSize      types.Int64  `tfsdk:"max_size"`
	Placement    types.String `tfsdk:"placement"`
	AntiAffinity types.Bool   `tfsdk:"anti_affinity"`
	PolicyMode   types.String `tfsdk:"policy_mode"`
	Generation   types.Int64  `tfsdk:"generation"`
	Members      types.List   `tfsdk:"members"`
}

func (d *poolDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_pool"
}

func (d *poolDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	c := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{Computed: true, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "A pool as its hosts describe it (its record, highest generation) and its members, wherever they run. " +
			"Works for pools made by another Terraform configuration or by any other tool.",
		Attributes: map[string]schema.Attribute{
			"id":            schema.StringAttribute{Computed: true, Description: "The pool name."},
			"name":          schema.StringAttribute{Required: true, Description: "Pool name."},
			"hosts":         schema.ListAttribute{Computed: true, ElementType: types.StringType, Description: "Hosts the pool may use."},
			"size":          c("Members that exist."),
			"desired_size":  c("Size in the pool's record (set by Terraform or the autoscaler)."),
			"min_size":      c("Smallest size the autoscaler may choose."),
			"max_size":      c("Largest size the autoscaler may choose."),
			"generation":    c("Generation of the pool record."),
			"placement":     schema.StringAttribute{Computed: true, Description: "`spread` or `binpack`."},
			"anti_affinity": schema.BoolAttribute{Computed: true, Description: "Members on distinct hosts."},
			"policy_mode":   schema.StringAttribute{Computed: true, Description: "Mode of its migration policy; null without one."},
			"members": schema.ListNestedAttribute{
				Computed: true, Description: "The members: where each runs and its state.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name":  schema.StringAttribute{Computed: true, Description: "Domain name."},
					"host":  schema.StringAttribute{Computed: true, Description: "Host it runs on."},
					"uuid":  schema.StringAttribute{Computed: true, Description: "Domain UUID."},
					"state": schema.StringAttribute{Computed: true, Description: guestStates},
					"index": schema.Int64Attribute{Computed: true, Description: "Member number."},
				}},
			},
		},
	}
}

func (d *poolDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

func (d *poolDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m poolDataModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Name.ValueString()
	pr, _, found, err := d.client.ops(ctx).ReadPool(ctx, name, nil)
	if found {
		err = pool.Needed(err, nil) // what the hosts that answered hold will do
	}
	if err != nil {
		resp.Diagnostics.AddError("Cannot read pool "+name, err.Error())
		return
	}
	if !found {
		resp.Diagnostics.AddAttributeError(path.Root("name"), "Pool not found",
			fmt.Sprintf("no host of the provider holds a pool named %q.", name))
		return
	}
	members, err := d.client.ops(ctx).Members(ctx, name)
	down, err := pool.Partial(err)
	if err != nil {
		resp.Diagnostics.AddError("Cannot list members of pool "+name, err.Error())
		return
	}
	if len(down) > 0 {
		resp.Diagnostics.AddWarning("Pool "+name+": hosts down", fmt.Sprintf("%v. size and members count only the hosts that answered.", down))
	}
	s := pr.Spec
	m.ID = types.StringValue(name)
	m.Hosts = stringList(s.HostNames())
	m.Size, m.DesiredSize = types.Int64Value(int64(len(members))), types.Int64Value(s.Size)
	m.MinSize, m.MaxSize = types.Int64Value(s.MinSize), types.Int64Value(s.MaxSize)
	m.Placement, m.AntiAffinity = types.StringValue(orDefault(s.Placement, pool.PlacementSpread)), types.BoolValue(s.AntiAffinity)
	m.PolicyMode = types.StringNull()
	if pr.Policy != nil {
		m.PolicyMode = types.StringValue(pr.Policy.Mode)
	}
	m.Generation = types.Int64Value(pr.Generation)
	m.Members = membersList(members)
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}
