package target

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/nomad-autoscaler-plugin/internal/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// errInFlight: something is moving; the next evaluation will see.
var errInFlight = errors.New("a migration is in flight")

// Scale implements target.Controller. It runs the action to the end (the
// agent waits, and Status says not ready meanwhile). With dry-run it plans
// and logs what it would do, and changes nothing.
func (p *Plugin) Scale(action sdk.ScalingAction, raw map[string]string) error {
	pc, err := p.policy(raw)
	if err != nil {
		return err
	}
	c, f, err := p.state()
	if err != nil {
		return err
	}
	dry := action.Count == sdk.StrategyActionMetaValueDryRunCount
	want := action.Count
	if dry {
		want = dryRunCount(action.Meta)
	}
	log := p.logger.Named("scale").With(pc.logArgs()...)
	log.Info("scale requested", "count", want, "direction", action.Direction.String(), "reason", action.Reason, "dry_run", dry)
	what := fmt.Sprintf("%s to %d", pc.Dimension, want)
	if b, ok := p.tryBusy(pc.Pool, what); !ok {
		return sdk.NewTargetScalingNoOpError("%s is busy (%s)", pc.subject(), b)
	}
	defer p.done(pc.Pool)
	ctx, cancel := context.WithTimeout(context.Background(), c.ScaleTimeout)
	defer cancel()
	start := time.Now()
	changed, err := p.scale(ctx, c, f, pc, want, dry, log)
	switch {
	case errors.Is(err, errInFlight):
		log.Info("not scaling now", "why", err)
		return sdk.NewTargetScalingNoOpError("%s: %v", pc.subject(), err)
	case err != nil:
		log.Error("scale failed", "count", want, "took", time.Since(start).String(), "error", err)
		return fmt.Errorf("%s: %s: %s: %w", PluginName, pc.subject(), what, err)
	}
	if changed {
		p.event(pc, f.Time())
	}
	log.Info("scale done", "count", want, "changed", changed, "dry_run", dry, "took", time.Since(start).String())
	return nil
}

// dryRunCount is the count the strategy wanted, which the agent keeps in
// the action's meta in dry-run mode (-1 if absent).
func dryRunCount(meta map[string]any) int64 {
	switch v := meta["nomad_autoscaler.dry_run.count"].(type) {
	case int64:
		return v
	case int:
		return int64(v)
	case float64:
		return int64(v)
	}
	return -1
}

// scale carries out one action and reports whether it changed anything.
func (p *Plugin) scale(ctx context.Context, c config, f *fleet.Fleet, pc policyConfig, want int64, dry bool, log hclog.Logger) (bool, error) {
	rec, t, err := subject(ctx, f, pc)
	if err != nil {
		return false, err
	}
	ops := p.ops(c, f, rec, log)
	switch pc.Dimension {
	case DimensionSize:
		return p.scaleSize(ctx, ops, pc, rec, want, dry, log)
	case DimensionHotHosts:
		return scaleHot(ctx, c, ops, rec, t.Pools, want, dry, log)
	case DimensionHosts:
		return scaleHosts(ctx, c, ops, rec, t.Pools, want, dry, log)
	}
	return false, fmt.Errorf("unknown dimension %q", pc.Dimension)
}

func (p *Plugin) scaleSize(ctx context.Context, ops *pool.Ops, pc policyConfig, rec pool.Record, want int64, dry bool, log hclog.Logger) (bool, error) {
	members, err := ops.Members(ctx, rec.Spec.Name)
	if err != nil {
		return false, err
	}
	have := pool.CountMembers(members)
	if dry {
		capped := min(max(want, rec.Spec.MinSize), rec.Spec.MaxSize)
		log.Info("dry run: would scale pool", "members", have, "to", capped, "min_size", rec.Spec.MinSize,
			"max_size", rec.Spec.MaxSize)
		return false, nil
	}
	if pc.NodeDrain {
		ops.BeforeRemove = p.drainer(pc, log)
	}
	got, err := ops.ScaleTo(ctx, rec.Spec.Name, want)
	if err != nil {
		return true, err
	}
	log.Info("pool scaled", "from", have, "to", got)
	return int(got) != have, nil
}

// migrateOpts are the live-migration options of a guest: those of its
// pool's record in pools (rec's, for a pool policy), else rec's.
func migrateOpts(c config, rec pool.Record, pools map[string]pool.Record) func(pool.Located) driver.MigrateOptions {
	return func(at pool.Located) driver.MigrateOptions {
		r, ok := pools[at.Labels[pool.LabelPool]]
		if !ok {
			r = rec
		}
		return pool.MigrateOptions(c.Migration, r.Policy, r.Spec.HasDisk())
	}
}

// view reads the pool's hosts for planning moves: other guests (for the
// cluster, guests that are no pool's member) count for load but stay put,
// and nothing is planned while a migration runs.
func view(ctx context.Context, ops *pool.Ops, rec pool.Record, pools map[string]pool.Record) (*pool.View, error) {
	v, err := ops.View(ctx, rec.Spec.HostSet())
	if err != nil {
		return nil, err
	}
	if len(v.InFlight) > 0 {
		return nil, fmt.Errorf("%w: %s", errInFlight, strings.Join(v.InFlight, ", "))
	}
	v.PinOthers(rec.Spec.Name)
	if rec.Spec.Name == "" {
		v.KeepInPools(pools, true) // an automatic move goes only where it surely may
	}
	return v, nil
}

// scaleHot moves members off hot hosts (Balance) until at most want hosts
// are hot.
func scaleHot(ctx context.Context, c config, ops *pool.Ops, rec pool.Record, pools map[string]pool.Record, want int64, dry bool, log hclog.Logger) (bool, error) {
	v, err := view(ctx, ops, rec, pools)
	if err != nil {
		return false, err
	}
	cnt, err := countOf(DimensionHotHosts, rec, v)
	if err != nil {
		return false, err
	}
	if want >= cnt.Count {
		log.Info("nothing to do: hosts are not made hot on purpose", "hot", cnt.Hot, "want", want)
		return false, nil
	}
	pol := pool.SchedulerPolicy(rec.Spec.Placement, rec.Policy)
	plan, err := v.Balance(pol)
	if err != nil {
		return false, fmt.Errorf("plan balance: %w", err)
	}
	log = log.With("hot", cnt.Hot, "loads", cnt.Loads)
	if dry {
		logPlan(log, "dry run: would balance", plan)
		return false, nil
	}
	logPlan(log, "balancing", plan)
	if len(plan.Moves) == 0 {
		log.Warn("no move cools the hot hosts", "why", plan.Infeasible)
		return false, nil
	}
	res, err := ops.Apply(ctx, v, plan, migrateOpts(c, rec, pools))
	logMoves(log, res)
	return true, err
}

// scaleHosts packs the pool onto fewer hosts and marks the freed ones
// standby, or brings standby hosts back and spreads onto them.
func scaleHosts(ctx context.Context, c config, ops *pool.Ops, rec pool.Record, pools map[string]pool.Record, want int64, dry bool, log hclog.Logger) (bool, error) {
	v, err := view(ctx, ops, rec, pools)
	if err != nil {
		return false, err
	}
	// The operator's standby hosts are not the autoscaler's to use.
	for i, h := range v.Hosts {
		if st := v.States[h.Name]; st.Standby && !st.Maintenance {
			v.Hosts[i].State = scheduler.Maintenance
		}
	}
	cnt, err := countOf(DimensionHosts, rec, v)
	if err != nil {
		return false, err
	}
	have := cnt.Count
	pol := pool.SchedulerPolicy(rec.Spec.Placement, rec.Policy)
	log = log.With("in_use", cnt.InUse, "loads", cnt.Loads)
	switch {
	case want == have:
		return false, nil
	case want < have:
		if rec.Policy == nil || rec.Policy.Mode != "consolidate" {
			mode := "none (balance)"
			if rec.Policy != nil {
				mode = rec.Policy.Mode
			}
			return false, fmt.Errorf("the pool's migration policy mode is %s: hosts are freed only with mode = \"consolidate\"", mode)
		}
		plan, err := v.Consolidate(int(max(want, 1)), pol)
		if err != nil {
			return false, fmt.Errorf("plan consolidation: %w", err)
		}
		if dry {
			logPlan(log, "dry run: would consolidate", plan)
			return false, nil
		}
		logPlan(log, "consolidating", plan)
		res, err := ops.Apply(ctx, v, plan, migrateOpts(c, rec, pools))
		logMoves(log, res)
		if err != nil {
			return len(res) > 0, err
		}
		changed := len(res) > 0
		for _, h := range plan.PowerOff {
			if err := standbyIfEmpty(ctx, ops, h, log); err != nil {
				return true, err
			}
			changed = true
		}
		return changed, nil
	default:
		plan, err := v.Spread(int(want), pol)
		if err != nil {
			return false, fmt.Errorf("plan spread: %w", err)
		}
		if dry {
			logPlan(log, "dry run: would spread", plan)
			return false, nil
		}
		logPlan(log, "spreading", plan)
		for _, h := range plan.PowerOn {
			if err := ops.SetAutoStandby(ctx, h, false); err != nil {
				return true, err
			}
		}
		res, err := ops.Apply(ctx, v, plan, migrateOpts(c, rec, pools))
		logMoves(log, res)
		return len(plan.PowerOn) > 0 || len(res) > 0, err
	}
}

// standbyIfEmpty marks a host standby if no guest runs on it any more.
func standbyIfEmpty(ctx context.Context, ops *pool.Ops, host string, log hclog.Logger) error {
	all, err := ops.ListAll(ctx, []string{host})
	if err != nil {
		return err
	}
	for _, d := range all[host] {
		if d.State != driver.StateShutoff && d.State != driver.StateCrashed {
			log.Warn("host not empty after consolidation; kept in use", "host", host, "guest", d.Name)
			return nil
		}
	}
	return ops.SetAutoStandby(ctx, host, true)
}

func logMoves(log hclog.Logger, res []pool.Moved) {
	for _, r := range res {
		if r.Err != nil {
			log.Warn("move failed", "domain", r.Guest, "from", r.From, "to", r.To, "error", r.Err)
			continue
		}
		log.Info("moved", "domain", r.Guest, "from", r.From, "to", r.To, "elapsed", r.Result.Elapsed.String(),
			"downtime", r.Result.Downtime.String())
	}
}
