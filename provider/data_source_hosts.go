package provider

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/datasource"
	"github.com/hashicorp/terraform-plugin-framework/datasource/schema"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

var _ datasource.DataSourceWithConfigure = (*hostsDataSource)(nil)

// NewHostsDataSource is the virtpool_hosts data source.
func NewHostsDataSource() datasource.DataSource { return &hostsDataSource{} }

type hostsDataSource struct{ client *Client }

type hostsModel struct {
	ID    types.String `tfsdk:"id"`
	Hosts types.List   `tfsdk:"hosts"`
}

// cpuSampleGap separates the two samples host CPU load is computed from.
const cpuSampleGap = 500 * time.Millisecond

var hostInfoAttrTypes = map[string]attr.Type{
	"name": types.StringType, "uri": types.StringType, "state": types.StringType,
	"hostname": types.StringType, "hypervisor": types.StringType, "accelerators": types.ListType{ElemType: types.StringType},
	"cpus": types.Int64Type, "memory_bytes": types.Int64Type, "free_memory_bytes": types.Int64Type,
	"capacity_cpus": types.Float64Type, "capacity_memory_bytes": types.Int64Type,
	"cpu_utilisation": types.Float64Type, "memory_utilisation": types.Float64Type,
	"vcpus_allocated": types.Int64Type, "memory_allocated_bytes": types.Int64Type,
	"guests": types.ListType{ElemType: types.StringType},
	"error":  types.StringType,
}

func (d *hostsDataSource) Metadata(_ context.Context, req datasource.MetadataRequest, resp *datasource.MetadataResponse) {
	resp.TypeName = req.ProviderTypeName + "_hosts"
}

func (d *hostsDataSource) Schema(_ context.Context, _ datasource.SchemaRequest, resp *datasource.SchemaResponse) {
	resp.Schema = schema.Schema{
		Description: "Every host of the provider: capacity, current load, state and running guests.",
		Attributes: map[string]schema.Attribute{
			"id": schema.StringAttribute{Computed: true, Description: "Always `hosts`."},
			"hosts": schema.ListNestedAttribute{
				Computed: true, Description: "The hosts, by name.",
				NestedObject: schema.NestedAttributeObject{Attributes: map[string]schema.Attribute{
					"name": schema.StringAttribute{Computed: true, Description: "Name in the provider's hosts."},
					"uri":  schema.StringAttribute{Computed: true, Description: "libvirt URI."},
					"state": schema.StringAttribute{Computed: true,
						Description: "`active`, `standby`, `maintenance`, or `down` when it did not answer (see `error`; its other attributes are then zero)."},
					"error":             schema.StringAttribute{Computed: true, Description: "Why the host is `down`; empty otherwise."},
					"hostname":          schema.StringAttribute{Computed: true, Description: "Host name as the host reports it."},
					"hypervisor":        schema.StringAttribute{Computed: true, Description: "QEMU, Xen, …"},
					"accelerators":      schema.ListAttribute{Computed: true, ElementType: types.StringType, Description: "Accelerators that really work there, best first."},
					"cpus":              schema.Int64Attribute{Computed: true, Description: "Logical CPUs."},
					"memory_bytes":      schema.Int64Attribute{Computed: true, Description: "Physical memory."},
					"free_memory_bytes": schema.Int64Attribute{Computed: true, Description: "Free memory (with buffers and cache)."},
					"capacity_cpus": schema.Float64Attribute{Computed: true,
						Description: "Cores virtpool plans with: `cpus` less `reserved_cpus` of the provider's hosts entry (default: all CPUs)."},
					"capacity_memory_bytes": schema.Int64Attribute{Computed: true,
						Description: "Memory virtpool plans with: `memory_mib` less `reserved_memory_mib` (default: all memory)."},
					"cpu_utilisation":        schema.Float64Attribute{Computed: true, Description: "Host CPU busy fraction over half a second."},
					"memory_utilisation":     schema.Float64Attribute{Computed: true, Description: "Used memory fraction."},
					"vcpus_allocated":        schema.Int64Attribute{Computed: true, Description: "vCPUs of running guests."},
					"memory_allocated_bytes": schema.Int64Attribute{Computed: true, Description: "Memory of running guests."},
					"guests":                 schema.ListAttribute{Computed: true, ElementType: types.StringType, Description: "Running guests."},
				}},
			},
		},
	}
}

func (d *hostsDataSource) Configure(_ context.Context, req datasource.ConfigureRequest, resp *datasource.ConfigureResponse) {
	d.client = clientFrom(req.ProviderData, &resp.Diagnostics)
}

// hostLoad is one host's description and load, measured.
type hostLoad struct {
	info        driver.HostInfo
	state       string
	cpuBusy     float64
	memUsed     float64
	vcpus       int64
	memAlloc    int64
	guests      []string
	memoryTotal uint64
	memoryFree  uint64
	capCores    float64
	capMemory   int64
	err         string // why the host is down
}

func (c *Client) measureHost(ctx context.Context, name string) (hostLoad, error) {
	var hl hostLoad
	d, err := c.Driver(ctx)
	if err != nil {
		return hl, err
	}
	uri := c.cfg.Hosts[name].URI
	if hl.info, err = d.HostInfo(ctx, uri); err != nil {
		return hl, fmt.Errorf("host %s: %w", name, err)
	}
	st, err := c.ops(ctx).HostState(ctx, name)
	if err != nil {
		return hl, err
	}
	hl.state = "active"
	switch {
	case st.Maintenance:
		hl.state = "maintenance"
	case st.Standby:
		hl.state = "standby"
	}
	a, err := d.Stats(ctx, uri)
	if err != nil {
		return hl, fmt.Errorf("host %s: %w", name, err)
	}
	select {
	case <-ctx.Done():
		return hl, ctx.Err()
	case <-time.After(cpuSampleGap):
	}
	b, err := d.Stats(ctx, uri)
	if err != nil {
		return hl, fmt.Errorf("host %s: %w", name, err)
	}
	// 0 when the host rebooted in between: no rate for the interval.
	hl.cpuBusy, _ = driver.CPUBusy(a, b)
	if hl.capCores, hl.capMemory, err = c.cfg.Hosts[name].Capacity.Of(hl.info.CPUs, hl.info.MemoryBytes); err != nil {
		return hl, fmt.Errorf("host %s: capacity: %w", name, err)
	}
	hl.memoryTotal, hl.memoryFree = b.MemoryTotalBytes, b.MemoryFreeBytes
	if b.MemoryTotalBytes > 0 {
		hl.memUsed = 1 - float64(b.MemoryFreeBytes)/float64(b.MemoryTotalBytes)
	}
	doms, err := d.ListDomains(ctx, uri)
	if err != nil {
		return hl, fmt.Errorf("host %s: %w", name, err)
	}
	for _, dd := range doms {
		if driver.Active(dd.State) {
			hl.guests = append(hl.guests, dd.Name)
			hl.vcpus += int64(dd.VCPUs)
			hl.memAlloc += int64(dd.MemoryMiB) << 20
		}
	}
	return hl, nil
}

func (d *hostsDataSource) Read(ctx context.Context, req datasource.ReadRequest, resp *datasource.ReadResponse) {
	names := d.client.cfg.Hosts.Names()
	loads := make([]hostLoad, len(names))
	var mu sync.Mutex
	idx := map[string]int{}
	for i, n := range names {
		idx[n] = i
	}
	// A host that does not answer is shown down, with a warning: the
	// others are read all the same, each within its own deadline.
	_ = pool.EachHost(names, func(n string) error {
		hctx, cancel := context.WithTimeout(ctx, pool.DefaultHostTimeout)
		defer cancel()
		hl, err := d.client.measureHost(hctx, n)
		if err != nil {
			hl = hostLoad{state: "down", err: err.Error()}
		}
		mu.Lock()
		defer mu.Unlock()
		loads[idx[n]] = hl
		if err != nil {
			resp.Diagnostics.AddWarning("Host "+n+" down", err.Error())
		}
		return nil
	})
	vals := make([]attr.Value, len(names))
	for i, n := range names {
		hl := loads[i]
		vals[i] = types.ObjectValueMust(hostInfoAttrTypes, map[string]attr.Value{
			"name": types.StringValue(n), "uri": types.StringValue(d.client.cfg.Hosts[n].URI), "state": types.StringValue(hl.state),
			"hostname": types.StringValue(hl.info.Hostname), "hypervisor": types.StringValue(hl.info.Hypervisor),
			"accelerators": stringList(hl.info.Accelerators),
			"cpus":         types.Int64Value(int64(hl.info.CPUs)), "memory_bytes": types.Int64Value(int64(hl.memoryTotal)),
			"free_memory_bytes": types.Int64Value(int64(hl.memoryFree)),
			"capacity_cpus":     types.Float64Value(hl.capCores), "capacity_memory_bytes": types.Int64Value(hl.capMemory),
			"cpu_utilisation": types.Float64Value(hl.cpuBusy), "memory_utilisation": types.Float64Value(hl.memUsed),
			"vcpus_allocated": types.Int64Value(hl.vcpus), "memory_allocated_bytes": types.Int64Value(hl.memAlloc),
			"guests": stringList(hl.guests), "error": types.StringValue(hl.err),
		})
	}
	m := hostsModel{ID: types.StringValue("hosts"),
		Hosts: types.ListValueMust(types.ObjectType{AttrTypes: hostInfoAttrTypes}, vals)}
	resp.Diagnostics.Append(resp.State.Set(ctx, m)...)
}
