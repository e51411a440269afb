package target

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// Status meta keys (besides the agent's own).
const (
	metaPool      = "virtpool.pool"
	metaBusy      = "virtpool.busy"
	metaInFlight  = "virtpool.in_flight"
	metaHot       = "virtpool.hot_hosts"
	metaHosts     = "virtpool.hosts_in_use"
	metaMembers   = "virtpool.members"
	metaDown      = "virtpool.hosts_down" // hosts of the scope that did not answer, not fenced
	metaRestoring = "virtpool.restoring"  // short of members since a fence: virtpool agent restores it
	// metaNomadNotReady: members whose Nomad node cannot take work yet
	// (node_drain policies).
	metaNomadNotReady = "virtpool.nomad_not_ready"
)

// nomadReady says whether the Nomad nodes of a node_drain policy's members
// can all take work: until then a new member's work has not arrived, or a
// drain is running, and a measure of the pool would mislead the agent.
func (p *Plugin) nomadReady(ctx context.Context, pc policyConfig, s scope, v *pool.View, st *sdk.TargetStatus, log hclog.Logger) bool {
	if !pc.NodeDrain {
		return true
	}
	c, err := p.nomadClient()
	if err == nil {
		var nr map[string]string
		if nr, err = nomadNotReady(ctx, c, pc.Pool, s.rec.Live(s.members(v.Domains)), pc.Nodes); err == nil && len(nr) > 0 {
			names := slices.Sorted(maps.Keys(nr))
			st.Meta[metaNomadNotReady] = strings.Join(names, ",")
			log.Info("members' Nomad nodes not ready; not ready", "members", names, "why", nr)
			return false
		}
	}
	if err != nil {
		log.Warn("Nomad nodes unreadable; not ready", "error", err)
		return false
	}
	return true
}

// report puts a measurement, and what keeps the target busy, in a status.
func report(st *sdk.TargetStatus, cnt counted, busy string, inFlight []string) {
	st.Count = cnt.Count
	st.Meta[metaMembers] = strconv.Itoa(cnt.Members)
	st.Meta[metaHosts] = strings.Join(cnt.InUse, ",")
	st.Meta[metaHot] = strings.Join(cnt.Hot, ",")
	if busy != "" {
		st.Meta[metaBusy] = busy
	}
	if len(inFlight) > 0 {
		st.Meta[metaInFlight] = strings.Join(inFlight, ",")
	}
}

// counted is a target's current value with what it was computed from.
type counted struct {
	Count   int64
	Members int
	InUse   []string // hosts in use (not standby or maintenance)
	Hot     []string // hosts above a high watermark
	Loads   []string // host:cpu%/mem%
}

// countOf measures a scope's dimension in a view of its hosts.
func countOf(dim string, s scope, v *pool.View) (counted, error) {
	var c counted
	c.Members = pool.CountMembers(s.rec.Live(s.members(v.Domains)))
	allowed := s.allowed()
	mine := func(host string) bool { return allowed == nil || allowed[host] }
	for _, h := range v.Hosts {
		if mine(h.Name) && h.State == scheduler.Active {
			c.InUse = append(c.InUse, h.Name)
		}
	}
	sort.Strings(c.InUse)
	loads, err := v.Loads(s.schedulerPolicy())
	if err != nil {
		return c, err
	}
	for _, l := range loads {
		if !mine(l.Name) {
			continue
		}
		c.Loads = append(c.Loads, fmt.Sprintf("%s:%.0f%%/%.0f%%", l.Name, 100*l.CPU, 100*l.Memory))
		if l.Hot {
			c.Hot = append(c.Hot, l.Name)
		}
	}
	switch dim {
	case DimensionSize:
		c.Count = int64(c.Members)
	case DimensionHosts:
		c.Count = int64(len(c.InUse))
	case DimensionHotHosts:
		c.Count = int64(len(c.Hot))
	}
	return c, nil
}
