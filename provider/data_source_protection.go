package provider

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/pool"
)

// NewProtectionDataSource is the virtpool_protection data source.
func NewProtectionDataSource() datasource.DataSource { return &protectionDataSource{} }

// protectionDataSource reads a protected domain's state from the agent
// that protects it: the checkpoints are the agent's, not libvirt's.
type protectionDataSource struct{}

type protectionStateModel struct {
	AgentURL     types.String `tfsdk:"agent_url"`
	Domain       types.String `tfsdk:"domain"`
	ID           types.String `tfsdk:"id"`
	Primary      types.String `tfsdk:"primary"`
	Standby      types.String `tfsdk:"standby"`
	IntervalMs   types.Int64  `tfsdk:"interval_ms"`
	Checkpoints  types.Int64  `tfsdk:"checkpoints"`
	CheckpointAt types.String `tfsdk:"checkpoint_at"`
	AgeMs        types.Int64  `tfsdk:"age_ms"`
	ImageBytes   types.Int64  `tfsdk:"image_bytes"`
	ShippedBytes types.Int64  `tfsdk:"shipped_bytes"`
	PauseMs      types.Int64  `tfsdk:"pause_ms"`
	Error        types.String `tfsdk:"error"`
}

func (d *protectionDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_protection"
}

func (d *protectionDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	computed := func(desc string) schema.Int64Attribute {
		return schema.Int64Attribute{Computed: true, Description: desc}
	}
	resp.Schema = schema.Schema{
		Description: "The hot standby of a protected `virtpool_domain`, as the `virtpool agent` that protects it reports it " +
			"(its API, `/api/v1/state`): where it runs, which host holds its standby image, and the last checkpoint.",
		Attributes: map[string]schema.Attribute{
			"agent_url": schema.StringAttribute{Required: true,
				Description: "The agent's address, as its `listen` setting serves it, e.g. `http://127.0.0.1:8480/`."},
			"domain":        schema.StringAttribute{Required: true, Description: "The protected domain's name."},
			"id":            schema.StringAttribute{Computed: true, Description: "The domain's name."},
			"primary":       schema.StringAttribute{Computed: true, Description: "The host the guest runs on."},
			"standby":       schema.StringAttribute{Computed: true, Description: "The host its images are shipped to (empty: none can take them now)."},
			"interval_ms":   computed("The checkpoint interval."),
			"checkpoints":   computed("Images shipped to this standby since the agent started protecting it there."),
			"checkpoint_at": schema.StringAttribute{Computed: true, Description: "The moment the standby's last image holds (RFC 3339; empty before the first)."},
			"age_ms":        computed("How old that image was at the agent's last sample: at most what a failover then would lose."),
			"image_bytes":   computed("The size of the last image."),
			"shipped_bytes": computed("What shipping it sent from the primary host to the standby (new chunks and the manifest)."),
			"pause_ms":      computed("The guest's pause in the last checkpoint."),
			"error":         schema.StringAttribute{Computed: true, Description: "Why the last checkpoint failed, until one succeeds."},
		},
	}
}

func (d *protectionDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	var m protectionStateModel
	resp.Diagnostics.Append(req.Config.Get(ctx, &m)...)
	if resp.Diagnostics.HasError() {
		return
	}
	name := m.Domain.ValueString()
	all, err := agentProtections(ctx, m.AgentURL.ValueString())
	if err != nil {
		resp.Diagnostics.AddAttributeError(path.Root("agent_url"), "Cannot read the agent", err.Error())
		return
	}
	i := slices.IndexFunc(all, func(p pool.ProtectionState) bool { return p.Domain == name })
	if i < 0 {
		names := "none"
		if len(all) > 0 {
			var l []string
			for _, p := range all {
				l = append(l, p.Domain)
			}
			names = strings.Join(l, ", ")
		}
		resp.Diagnostics.AddAttributeError(path.Root("domain"), "Domain not protected",
			fmt.Sprintf("the agent at %s protects no domain %s (it protects: %s); is it running, with a protection block and its hosts' checkpoint helpers?",
				m.AgentURL.ValueString(), name, names))
		return
	}
	p := all[i]
	m.ID, m.Primary, m.Standby = types.StringValue(name), types.StringValue(p.Primary), types.StringValue(p.Standby)
	m.IntervalMs, m.Checkpoints, m.AgeMs = types.Int64Value(p.IntervalMs), types.Int64Value(p.Checkpoints), types.Int64Value(p.AgeMs)
	m.ImageBytes, m.ShippedBytes, m.PauseMs = types.Int64Value(p.ImageBytes), types.Int64Value(p.WireBytes), types.Int64Value(p.PauseMs)
	m.CheckpointAt, m.Error = types.StringValue(""), types.StringValue(p.Error)
	if !p.CheckpointAt.IsZero() {
		m.CheckpointAt = types.StringValue(p.CheckpointAt.Format(time.RFC3339Nano))
	}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}

// agentProtections reads the protections of the agent at base.
func agentProtections(ctx context.Context, base string) ([]pool.ProtectionState, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http(s) URL of virtpool agent", base)
	}
	u = u.JoinPath("api", "v1", "state")
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	var s struct {
		Protections []pool.ProtectionState `json:"protections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	return s.Protections, nil
}
