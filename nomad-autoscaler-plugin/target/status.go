package target

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/nomad-autoscaler-plugin/internal/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// Status meta keys (besides the agent's own).
const (
	metaPool     = "virtpool.pool"
	metaBusy     = "virtpool.busy"
	metaInFlight = "virtpool.in_flight"
	metaHot      = "virtpool.hot_hosts"
	metaHosts    = "virtpool.hosts_in_use"
	metaMembers  = "virtpool.members"
)

// errPoolNotFound: the pool record is on none of the hosts that answered.
var errPoolNotFound = errors.New("pool not found")

// Status implements target.Controller. Only a bad policy (a bad key, a
// pool no host knows) is an error; while hosts cannot be read, or an
// action or a migration is in flight, the target is not ready.
func (p *Plugin) Status(raw map[string]string) (*sdk.TargetStatus, error) {
	pc, err := p.policy(raw)
	if err != nil {
		return nil, err
	}
	c, f, err := p.state()
	if err != nil {
		return nil, err
	}
	log := p.logger.Named("status").With(pc.logArgs()...)
	ctx, cancel := context.WithTimeout(context.Background(), pc.StatusTimeout)
	defer cancel()
	st := &sdk.TargetStatus{Meta: map[string]string{metaPool: pc.Pool}}
	p.lastEventMeta(pc, st.Meta)

	rec, _, err := subject(ctx, f, pc)
	if errors.Is(err, errPoolNotFound) {
		return nil, fmt.Errorf("%s: %s %q: %w", PluginName, policyKeyPool, pc.Pool, err)
	}
	if err != nil {
		log.Warn("hosts unreadable; not ready", "error", err)
		return st, nil
	}
	v, err := p.ops(c, f, rec, log).View(ctx, rec.Spec.HostSet())
	if err != nil {
		log.Warn("hosts unreadable; not ready", "error", err)
		return st, nil
	}
	cnt, err := countOf(pc.Dimension, rec, v)
	if err != nil {
		log.Warn("cannot measure; not ready", "error", err)
		return st, nil
	}
	st.Count = cnt.Count
	st.Meta[metaMembers] = strconv.Itoa(cnt.Members)
	st.Meta[metaHosts] = strings.Join(cnt.InUse, ",")
	st.Meta[metaHot] = strings.Join(cnt.Hot, ",")
	busy := p.busyWith(pc.Pool)
	inFlight := v.InFlight
	measured := f.History.Len() >= 2
	st.Ready = busy == "" && len(inFlight) == 0 && (measured || pc.Dimension == DimensionSize)
	if busy != "" {
		st.Meta[metaBusy] = busy
	}
	if len(inFlight) > 0 {
		st.Meta[metaInFlight] = strings.Join(inFlight, ",")
	}
	log.Debug("status", "count", st.Count, "ready", st.Ready, "busy", busy, "in_flight", inFlight,
		"hot", cnt.Hot, "loads", cnt.Loads)
	return st, nil
}

// findPool returns a pool's record and the topology it was found in,
// refreshing the topology if the pool is not in the last one.
func findPool(ctx context.Context, f *fleet.Fleet, name string) (pool.Record, fleet.Topology, error) {
	t := f.Topology()
	if rec, ok := t.Pools[name]; ok {
		return rec, t, nil
	}
	t, err := f.Refresh(ctx)
	if err != nil {
		return pool.Record{}, t, err
	}
	if rec, ok := t.Pools[name]; ok {
		return rec, t, nil
	}
	if len(t.Errors) > 0 {
		var down []string
		for u := range t.Errors {
			down = append(down, u)
		}
		sort.Strings(down)
		return pool.Record{}, t, fmt.Errorf("pool %s not found; unreachable hosts: %s", name, strings.Join(down, ", "))
	}
	pools := t.PoolNames()
	if len(pools) == 0 {
		pools = []string{"none"}
	}
	return pool.Record{}, t, fmt.Errorf("%w on hosts %s (pools there: %s)", errPoolNotFound,
		strings.Join(t.Hosts.Names(), ", "), strings.Join(pools, ", "))
}

// subject returns the record a policy acts on: its pool's, or, without a
// pool, one that stands for the whole cluster (every host the plugin
// knows, the policy's cluster migration policy, no name), with the
// topology it comes from.
func subject(ctx context.Context, f *fleet.Fleet, pc policyConfig) (pool.Record, fleet.Topology, error) {
	if pc.Pool != "" {
		return findPool(ctx, f, pc.Pool)
	}
	t := f.Topology()
	if len(t.Hosts) == 0 {
		var err error
		if t, err = f.Refresh(ctx); err != nil {
			return pool.Record{}, t, err
		}
	}
	rec := pool.Record{Spec: pool.Spec{Placement: "spread"}, Policy: pc.Cluster}
	for _, n := range t.Hosts.Names() {
		rec.Spec.Hosts = append(rec.Spec.Hosts, t.Hosts[n])
	}
	return rec, t, nil
}

// counted is a target's current value with what it was computed from.
type counted struct {
	Count   int64
	Members int
	InUse   []string // pool hosts in use (not standby or maintenance)
	Hot     []string // pool hosts above a high watermark
	Loads   []string // host:cpu%/mem%
}

// countOf measures a pool's dimension in a view.
func countOf(dim string, rec pool.Record, v *pool.View) (counted, error) {
	var c counted
	members := pool.MembersOf(rec.Spec.Name, v.Domains)
	if rec.Spec.Name == "" {
		members = pool.AllMembers(v.Domains) // a cluster's members are those of every pool
	}
	c.Members = pool.CountMembers(members)
	mine := rec.Spec.HostSet()
	for _, h := range v.Hosts {
		if mine[h.Name] && h.State == scheduler.Active {
			c.InUse = append(c.InUse, h.Name)
		}
	}
	sort.Strings(c.InUse)
	loads, err := v.Loads(pool.SchedulerPolicy(rec.Spec.Placement, rec.Policy))
	if err != nil {
		return c, err
	}
	for _, l := range loads {
		if !mine[l.Name] {
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

// logPlan logs a plan's moves.
func logPlan(log hclog.Logger, msg string, plan scheduler.Plan) {
	var moves []string
	for _, m := range plan.Moves {
		moves = append(moves, fmt.Sprintf("%s:%s>%s(w%d)", m.Guest, m.From, m.To, m.Wave+1))
	}
	log.Info(msg, "moves", strings.Join(moves, " "), "waves", len(plan.Waves), "power_on", plan.PowerOn,
		"power_off", plan.PowerOff, "infeasible", plan.Infeasible)
}
