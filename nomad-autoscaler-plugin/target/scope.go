package target

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/power"
	"github.com/virtpool/virtpool/scheduler"
)

// errPoolNotFound: the pool record is on none of the hosts that answered.
var errPoolNotFound = errors.New("pool not found")

// scope is what a policy acts on: one pool, or the whole cluster.
type scope struct {
	// cluster: every host the plugin knows, and the members of every pool
	// (each moved among its own pool's hosts, with its pool's options);
	// other guests count for load and stay put.
	cluster bool
	rec     pool.Record    // the pool's record; zero for the cluster
	hosts   pool.Inventory // the hosts acted on
	// policy is the migration policy: the pool's, or the cluster's from
	// the policy's target block; placement the pool's ("spread" for the
	// cluster).
	policy    *pool.Policy
	placement string
	pools     map[string]pool.Record // every pool found, by name
}

// resolve finds what a policy acts on, refreshing the topology if it does
// not know the pool (or any host, for the cluster).
func resolve(ctx context.Context, f *fleet.Fleet, pc policyConfig) (scope, error) {
	if !pc.Cluster {
		rec, t, err := findPool(ctx, f, pc.Pool)
		if err != nil {
			return scope{}, err
		}
		return scope{rec: rec, hosts: rec.Spec.Inventory(), policy: rec.Policy, placement: rec.Spec.Placement,
			pools: t.Pools}, nil
	}
	t := f.Topology()
	if len(t.Hosts) == 0 {
		var err error
		if t, err = f.Refresh(ctx); err != nil {
			return scope{}, err
		}
	}
	return scope{cluster: true, hosts: t.Hosts, policy: pc.ClusterPolicy, placement: pool.PlacementSpread, pools: t.Pools}, nil
}

// unknown returns the hosts of a read's error whose guests are unknown:
// those down and not fenced (virtpool agent fenced a host only once it was
// off, and restores its pools without it). Any other error is returned as
// it is; nil if nothing is unknown.
func (s scope) unknown(err error) error {
	down, err := pool.Partial(err)
	if err != nil {
		return err
	}
	out := pool.HostsDown{}
	for h, e := range down {
		if !s.fenced(h) {
			out[h] = e
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (s scope) fenced(host string) bool {
	if !s.cluster {
		_, ok := s.rec.Fenced(host)
		return ok
	}
	for _, pr := range s.pools {
		if _, ok := pr.Fenced(host); ok {
			return true
		}
	}
	return false
}

// off lists the scope's hosts that virtpool agent powered off on standby
// (a pool record's standby fence).
func (s scope) off() []string {
	recs := []pool.Record{s.rec}
	if s.cluster {
		recs = slices.Collect(maps.Values(s.pools))
	}
	var out []string
	for _, h := range s.hosts.Names() {
		if slices.ContainsFunc(recs, func(pr pool.Record) bool { fc, ok := pr.Fenced(h); return ok && fc.Standby }) {
			out = append(out, h)
		}
	}
	return out
}

// restoring tells whether the pool is short of members since a fence:
// virtpool agent is restoring it.
func (s scope) restoring(members int) bool {
	return !s.cluster && s.rec.Failed() && members < int(s.rec.Spec.Size)
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

// newOps returns operations on the scope's hosts (with their migration
// addresses and the capacity the plugin's hosts setting may override; a
// host down elsewhere does not stop a pool), with guests' demand measured
// over the load window.
func (s scope) newOps(c config, f *fleet.Fleet, log hclog.Logger) *pool.Ops {
	demand := f.History.Demand(c.LoadWindow)
	var powerOn func(ctx context.Context, host string) error
	if c.PowerOn != nil {
		powerOn = func(ctx context.Context, host string) error { return power.Run(ctx, power.Expand(c.PowerOn, host)) }
	}
	return &pool.Ops{
		PowerOn: powerOn,
		Hosts:   f.Topology().WithCapacity(s.hosts), Driver: f.Driver, Log: log, Events: c.EventLog,
		ShutdownTimeout: c.ShutdownTimeout, Migration: c.Migration,
		HostTimeout: f.CallTimeout, // a host down costs what it costs the samples
		Size: func(host string) (int, uint64, bool) {
			r, ok := f.History.Latest()
			if !ok {
				return 0, 0, false
			}
			hs, ok := r.Hosts[host]
			return hs.Stats.CPUs, hs.Stats.MemoryTotalBytes, ok
		},
		Demand: func(uuid string) (float64, int64, bool) {
			d, ok := demand[uuid]
			return d.CPU, d.RSSBytes, ok
		},
	}
}

// allowed is the set of hosts a plan may use: the pool's; nil (every host
// of the scope's Ops) for the cluster.
func (s scope) allowed() map[string]bool {
	if s.cluster {
		return nil
	}
	return s.rec.Spec.HostSet()
}

// members picks the scope's members out of a listing of hosts.
func (s scope) members(all map[string][]driver.Domain) []pool.Member {
	if s.cluster {
		return pool.AllMembers(all)
	}
	return pool.MembersOf(s.rec.Spec.Name, all)
}

// schedulerPolicy is what the planner plans the scope with.
func (s scope) schedulerPolicy() scheduler.Policy { return pool.SchedulerPolicy(s.placement, s.policy) }

// pin tells a view of the scope's hosts what a plan may move: only the
// pool's members (for the cluster, any pool's, each only among its own
// pool's hosts); other guests count for load and stay put.
func (s scope) pin(v *pool.View) {
	if !s.cluster {
		v.PinOthers(s.rec.Spec.Name)
		return
	}
	v.PinOthers("")              // "": members of any pool move
	v.KeepInPools(s.pools, true) // an automatic move goes only where it surely may
}

// migrateOpts are the live-migration options of a guest: those of its
// pool's record, else the scope's (for the cluster: its policy, no disk).
func (s scope) migrateOpts(defaults driver.MigrateOptions) func(pool.Located) driver.MigrateOptions {
	return func(at pool.Located) driver.MigrateOptions {
		if r, ok := s.pools[at.Labels[pool.LabelPool]]; ok {
			return pool.MigrateOptions(defaults, r.Policy, r.Spec.HasDisk())
		}
		return pool.MigrateOptions(defaults, s.policy, s.rec.Spec.HasDisk())
	}
}

// checkDimension says whether the scope's migration policy suits the
// policy's dimension: hosts are freed only in consolidate mode (a cluster
// policy always is).
func (s scope) checkDimension(pc policyConfig) error {
	if pc.Dimension != DimensionHosts || (s.policy != nil && s.policy.Mode == pool.ModeConsolidate) {
		return nil
	}
	mode := "none (the default, balance)"
	if s.policy != nil {
		mode = fmt.Sprintf("%q", s.policy.Mode)
	}
	return fmt.Errorf("%s = %q: pool %s's virtpool_migration_policy mode is %s, and hosts are freed only with mode = %q: "+
		"set that mode, or use %s = %q", policyKeyDimension, DimensionHosts, pc.Pool, mode, pool.ModeConsolidate,
		policyKeyDimension, DimensionHotHosts)
}
