package target

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"
	"github.com/hashicorp/nomad-autoscaler/sdk/helper/scaleutils/nodepool"
	"github.com/hashicorp/nomad-autoscaler/sdk/helper/scaleutils/nodeselector"
	"github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
)

// selectors are the values of node_selector_strategy (scaleutils' own).
var selectors = []string{sdk.TargetNodeSelectorStrategyLeastBusy, sdk.TargetNodeSelectorStrategyEmpty,
	sdk.TargetNodeSelectorStrategyEmptyIgnoreSystemJobs, sdk.TargetNodeSelectorStrategyNewestCreateIndex,
	sdk.TargetNodeSelectorStrategyOldestCreateIndex}

// nodeChoice says which members' Nomad nodes a scale-in may take, and how
// Nomad picks among them.
type nodeChoice struct {
	// Filter: nodes of the policy's node_class/datacenter/node_pool (nil:
	// any node).
	Filter nodepool.ClusterNodePoolIdentifier
	// Selector is the node_selector_strategy.
	Selector string
	// Purge: purge removed members' nodes.
	Purge bool
}

// parseNodeChoice reads a policy's Nomad node keys; they need node_drain,
// which is what gives the policy a Nomad cluster.
func parseNodeChoice(raw map[string]string, drain bool) (nodeChoice, error) {
	nc := nodeChoice{Selector: sdk.TargetNodeSelectorStrategyLeastBusy}
	for _, k := range nomadKeys {
		if _, ok := raw[k]; ok && !drain {
			return nc, fmt.Errorf("%s: only with %s = true (it chooses among the members' Nomad nodes)", k, policyKeyNodeDrain)
		}
	}
	filter := map[string]string{}
	for _, k := range []string{policyKeyNodeClass, policyKeyDatacenter, policyKeyNodePool} {
		if v, ok := raw[k]; ok {
			if v == "" {
				return nc, fmt.Errorf("%s: empty; name the Nomad %s whose nodes may be removed, or leave the key out", k, k)
			}
			filter[k] = v
		}
	}
	if len(filter) > 0 {
		var err error
		if nc.Filter, err = nodepool.NewClusterNodePoolIdentifier(filter); err != nil {
			return nc, fmt.Errorf("%s/%s/%s: %w", policyKeyNodeClass, policyKeyDatacenter, policyKeyNodePool, err)
		}
	}
	if s, ok := raw[policyKeyNodeSelector]; ok {
		if !slices.Contains(selectors, s) {
			return nc, fmt.Errorf("%s: %q is not one of %s", policyKeyNodeSelector, s, strings.Join(selectors, ", "))
		}
		nc.Selector = s
	}
	var err error
	nc.Purge, err = fleet.Bool(raw, policyKeyNodePurge, false)
	return nc, err
}

// memberNodes finds the Nomad node of each member named in members: the
// node whose meta pool.NomadMetaDomain is the member's name (and whose
// pool.NomadMetaPool, if set, is poolName), else the node of that name. Down
// nodes are left out: a rebooted member registers a new node, and the old
// one stays down until Nomad collects it. Two live nodes for one member are
// an error (the one matched by meta wins over one matched by name).
func memberNodes(ctx context.Context, c *api.Client, poolName string, members []string) (map[string]*api.NodeListStub, error) {
	want := map[string]bool{}
	for _, m := range members {
		want[m] = true
	}
	q := (&api.QueryOptions{Params: map[string]string{"resources": "true"}}).WithContext(ctx)
	nodes, _, err := c.Nodes().List(q)
	if err != nil {
		return nil, fmt.Errorf("list Nomad nodes: %w", err)
	}
	type match struct {
		n      *api.NodeListStub
		byMeta bool
	}
	found := map[string]match{}
	for _, n := range nodes {
		if n.Status == api.NodeStatusDown {
			continue
		}
		// The list has no meta: read the node.
		info, _, err := c.Nodes().Info(n.ID, (&api.QueryOptions{}).WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("read Nomad node %s (%s): %w", n.Name, n.ID, err)
		}
		name, byMeta := info.Meta[pool.NomadMetaDomain], true
		switch p := info.Meta[pool.NomadMetaPool]; {
		case name == "":
			name, byMeta = n.Name, false
		case p != "" && p != poolName:
			continue // another pool's member
		}
		if !want[name] {
			continue
		}
		prev, dup := found[name]
		switch {
		case !dup || (byMeta && !prev.byMeta):
			found[name] = match{n, byMeta}
		case byMeta == prev.byMeta:
			return nil, fmt.Errorf("member %s has two Nomad nodes that are not down (%s, %s): not guessing which "+
				"one runs in it; wait until the old one is down, or set node meta %s in the guest image",
				name, prev.n.ID, n.ID, pool.NomadMetaDomain)
		}
	}
	out := make(map[string]*api.NodeListStub, len(found))
	for name, m := range found {
		out[name] = m.n
	}
	return out, nil
}

// selfNode returns the ID of the Nomad node the autoscaler runs on ("" if
// it runs outside Nomad: no NOMAD_ALLOC_ID), which is never removed.
func (p *Plugin) selfNode(ctx context.Context, c *api.Client) (string, error) {
	alloc := os.Getenv("NOMAD_ALLOC_ID")
	if alloc == "" {
		return "", nil
	}
	a, _, err := c.Allocations().Info(alloc, (&api.QueryOptions{}).WithContext(ctx))
	if err != nil {
		return "", fmt.Errorf("read the autoscaler's own allocation %s (NOMAD_ALLOC_ID) to spare its node: %w", alloc, err)
	}
	return a.NodeID, nil
}

// chooseVictims picks k members out of cands (virtpool's order): first
// those with nothing to drain (stopped, or with no Nomad node), in that
// order; then the node_selector_strategy picks among the members whose
// node passes the node filter, and those go in virtpool's order. Members
// on the autoscaler's own node, or whose node fails the filter, are never
// chosen. It returns the victims and the nodes to drain, by member.
func chooseVictims(cands []pool.Member, nodes map[string]*api.NodeListStub, self string, nc nodeChoice, k int,
	sel nodeselector.ClusterScaleInNodeSelector, log hclog.Logger) ([]pool.Member, map[string]*api.NodeListStub, error) {
	var victims, rest []pool.Member
	var stubs []*api.NodeListStub
	for _, m := range cands {
		n := nodes[m.Name]
		switch {
		case m.State == driver.StateShutoff || m.State == driver.StateCrashed || n == nil:
			if len(victims) < k {
				victims = append(victims, m)
			}
		case self != "" && n.ID == self:
			log.Debug("spared: the autoscaler runs on its Nomad node", "domain", m.Name, "node_id", n.ID)
		case nc.Filter != nil && !nc.Filter.IsPoolMember(n):
			log.Debug("spared: its Nomad node is not of the policy's "+nc.Filter.Key(), "domain", m.Name, "node_id", n.ID,
				nc.Filter.Key(), nc.Filter.Value())
		default:
			rest, stubs = append(rest, m), append(stubs, n)
		}
	}
	drain := map[string]*api.NodeListStub{}
	need := k - len(victims)
	if need <= 0 {
		return victims, drain, nil
	}
	var picked []*api.NodeListStub
	if need <= len(stubs) {
		picked = sel.Select(selectorOrder(sel.Name(), stubs), need)
	}
	if len(picked) < need {
		return nil, nil, fmt.Errorf("%d member(s) to remove, %d without a Nomad node to drain; of the %d whose node may "+
			"go (%s, not the autoscaler's own), %s %q picks %d: remove fewer (the policy's strategy), or change %s",
			k, len(victims), len(stubs), filterText(nc), policyKeyNodeSelector, sel.Name(), len(picked), policyKeyNodeSelector)
	}
	for _, n := range picked {
		for i, m := range rest {
			if stubs[i].ID == n.ID {
				drain[m.Name] = n
			}
		}
	}
	for _, m := range rest {
		if drain[m.Name] != nil {
			victims = append(victims, m)
		}
	}
	return victims, drain, nil
}

// selectorOrder orders nodes for a selector: the create-index ones take
// them as Nomad lists them (newest first); the others get virtpool's order,
// which then breaks their ties.
func selectorOrder(selector string, nodes []*api.NodeListStub) []*api.NodeListStub {
	if selector != sdk.TargetNodeSelectorStrategyNewestCreateIndex && selector != sdk.TargetNodeSelectorStrategyOldestCreateIndex {
		return nodes
	}
	out := slices.Clone(nodes)
	slices.SortStableFunc(out, func(a, b *api.NodeListStub) int { return cmp.Compare(b.CreateIndex, a.CreateIndex) })
	return out
}

// filterText says which nodes the policy's filter keeps, for messages.
func filterText(nc nodeChoice) string {
	if nc.Filter == nil {
		return "any node"
	}
	return nc.Filter.Key() + " " + nc.Filter.Value()
}

// nomadNotReady returns why running members' Nomad nodes cannot take work
// yet, by member: not registered, initializing, draining or ineligible
// (what scaleutils' IsPoolReady waits for). Nodes outside the policy's
// node filter are not its to wait for.
func nomadNotReady(ctx context.Context, c *api.Client, poolName string, members []pool.Member, nc nodeChoice) (map[string]string, error) {
	var names []string
	for _, m := range members {
		if m.State == driver.StateRunning && !slices.Contains(names, m.Name) {
			names = append(names, m.Name)
		}
	}
	nodes, err := memberNodes(ctx, c, poolName, names)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, m := range names {
		n := nodes[m]
		switch {
		case n == nil:
			out[m] = "not registered"
		case nc.Filter != nil && !nc.Filter.IsPoolMember(n):
		case n.Status == api.NodeStatusInit:
			out[m] = "initializing"
		case n.Drain:
			out[m] = "draining"
		case n.SchedulingEligibility != api.NodeSchedulingEligible:
			out[m] = "ineligible"
		}
	}
	return out, nil
}
