package target

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// errInFlight: something is moving; the next evaluation will see.
var errInFlight = errors.New("a migration is in flight")

// request is one scale action: what it acts on (the scope, which says
// whether that is the whole cluster), how, and to what count.
type request struct {
	scope
	ops       *pool.Ops
	migration driver.MigrateOptions // defaults where a pool's policy sets none
	want      int64
	dry       bool // plan and log, change nothing
	log       hclog.Logger
	emit      func(event.Event) // records one of the action's events (stamped with its policy)
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

// scale carries out one action (r with its count, dry-run flag and log)
// and reports whether it changed anything.
func (p *Plugin) scale(ctx context.Context, c config, f *fleet.Fleet, pc policyConfig, r request) (bool, error) {
	var err error
	if r.scope, err = resolve(ctx, f, pc); err != nil {
		return false, err
	}
	r.ops, r.migration = r.newOps(c, f, r.log), c.Migration
	if err := r.checkDimension(pc); err != nil {
		return false, err
	}
	// hot_hosts scales to 0 only: a host is never made hot on purpose,
	// and any other count leaves hot hosts hot.
	if pc.Dimension == DimensionHotHosts && r.want > 0 {
		return false, fmt.Errorf("%s = %q: the policy asks for %d hot hosts; the only target is 0: "+
			"use strategy \"fixed-value\" { value = 0 }", policyKeyDimension, DimensionHotHosts, r.want)
	}
	switch pc.Dimension {
	case DimensionSize:
		return p.scaleSize(ctx, r, pc)
	case DimensionHotHosts:
		return scaleHot(ctx, r)
	case DimensionHosts:
		return scaleHosts(ctx, r)
	}
	return false, fmt.Errorf("unknown dimension %q", pc.Dimension)
}

// scaleSize sets the pool's size, draining the Nomad client of each member
// it removes if the policy says so.
func (p *Plugin) scaleSize(ctx context.Context, r request, pc policyConfig) (bool, error) {
	spec := r.rec.Spec
	members, err := r.ops.Members(ctx, spec.Name)
	if err := r.unknown(err); err != nil {
		return false, err
	}
	have := pool.CountMembers(r.rec.Live(members))
	// The policy's min and max must lie within the pool's: a count
	// outside them is the policy's, not the pool's, to fix.
	if r.want >= 0 && (r.want < spec.MinSize || r.want > spec.MaxSize) {
		return false, fmt.Errorf("count %d is outside pool %s's min_size %d … max_size %d: set the scaling policy's "+
			"min and max within them (or change the pool's min_size/max_size)", r.want, spec.Name, spec.MinSize, spec.MaxSize)
	}
	if r.dry {
		capped := min(max(r.want, spec.MinSize), spec.MaxSize)
		r.log.Info("dry run: would scale pool", "members", have, "to", capped, "min_size", spec.MinSize,
			"max_size", spec.MaxSize)
		r.emit(event.Event{Kind: event.DryRunPlan, DryRun: true, Action: event.ActionScale, Count: r.want, Size: int(capped),
			Message: fmt.Sprintf("dry run: would scale pool %s from %d to %d members", spec.Name, have, capped)})
		return false, nil
	}
	if pc.NodeDrain {
		if err := p.nomadRemoval(r.ops, pc, r.log); err != nil {
			return false, err
		}
	}
	got, err := r.ops.ScaleTo(ctx, spec.Name, r.want)
	if err != nil {
		return true, err
	}
	r.log.Info("pool scaled", "from", have, "to", got)
	return int(got) != have, nil
}

// view reads the scope's hosts for planning moves: guests a plan must not
// move count for load but stay put (scope.pin), and nothing is planned
// while a migration runs.
func (r request) view(ctx context.Context) (*pool.View, error) {
	v, err := r.ops.View(ctx, r.allowed())
	if err := r.unknown(err); err != nil {
		return nil, err
	}
	if len(v.InFlight) > 0 {
		return nil, fmt.Errorf("%w: %s", errInFlight, strings.Join(v.InFlight, ", "))
	}
	r.pin(v)
	return v, nil
}

// scaleHot moves members off hot hosts (Balance) until at most r.want
// hosts are hot.
func scaleHot(ctx context.Context, r request) (bool, error) {
	v, err := r.view(ctx)
	if err != nil {
		return false, err
	}
	cnt, err := countOf(DimensionHotHosts, r.scope, v)
	if err != nil {
		return false, err
	}
	log := r.log
	if r.want >= cnt.Count {
		log.Info("nothing to do: hosts are not made hot on purpose", "hot", cnt.Hot, "want", r.want)
		return false, nil
	}
	plan, err := v.Balance(r.schedulerPolicy())
	if err != nil {
		return false, fmt.Errorf("plan balance: %w", err)
	}
	log = log.With("hot", cnt.Hot, "loads", cnt.Loads)
	if r.dry {
		r.dryRun(log, event.ActionBalance, plan)
		return false, nil
	}
	logPlan(log, "balancing", plan)
	if len(plan.Moves) == 0 {
		log.Warn("no move cools the hot hosts", "why", plan.Infeasible)
		return false, nil
	}
	res, err := r.ops.Apply(ctx, v, plan, r.migrateOpts(r.migration))
	logMoves(log, res)
	return true, err
}

// scaleHosts packs the scope onto fewer hosts and marks the freed ones
// standby, or brings standby hosts back (powered on first if virtpool
// agent powered them off) and spreads onto them.
func scaleHosts(ctx context.Context, r request) (bool, error) {
	v, err := r.view(ctx)
	if err != nil {
		return false, err
	}
	asideOperatorStandby(v)
	cnt, err := countOf(DimensionHosts, r.scope, v)
	if err != nil {
		return false, err
	}
	want, have := r.want, cnt.Count
	pol := r.schedulerPolicy()
	log := r.log.With("in_use", cnt.InUse, "loads", cnt.Loads)
	switch {
	case want == have:
		return false, nil
	case want < have:
		plan, err := v.Consolidate(int(max(want, 1)), pol)
		if err != nil {
			return false, fmt.Errorf("plan consolidation: %w", err)
		}
		if r.dry {
			r.dryRun(log, event.ActionConsolidate, plan)
			return false, nil
		}
		logPlan(log, "consolidating", plan)
		res, err := r.ops.Apply(ctx, v, plan, r.migrateOpts(r.migration))
		logMoves(log, res)
		if err != nil {
			return len(res) > 0, err
		}
		changed := len(res) > 0
		for _, h := range plan.PowerOff {
			if err := standbyIfEmpty(ctx, r.ops, h, log); err != nil {
				return true, err
			}
			changed = true
		}
		return changed, nil
	default:
		// Hosts powered off on standby come back first, as many as the
		// count needs beyond the hosts that are on.
		on := len(v.HostsIn(scheduler.Active)) + len(v.HostsIn(scheduler.Standby))
		off := r.off()
		wake := off[:min(max(int(want)-on, 0), len(off))]
		if len(wake) > 0 && !r.dry {
			if err := powerOn(ctx, r.ops, wake); err != nil {
				return true, err
			}
			if v, err = r.view(ctx); err != nil {
				return true, err
			}
			asideOperatorStandby(v)
		}
		plan, err := v.Spread(int(want), pol)
		if err != nil {
			return len(wake) > 0, fmt.Errorf("plan spread: %w", err)
		}
		if r.dry {
			plan.PowerOn = append(plan.PowerOn, wake...)
			r.dryRun(log, event.ActionSpread, plan)
			return false, nil
		}
		logPlan(log, "spreading", plan)
		for _, h := range plan.PowerOn {
			if err := r.ops.SetAutoStandby(ctx, h, false); err != nil {
				return true, err
			}
		}
		res, err := r.ops.Apply(ctx, v, plan, r.migrateOpts(r.migration))
		logMoves(log, res)
		return len(wake) > 0 || len(plan.PowerOn) > 0 || len(res) > 0, err
	}
}

// powerOn powers on hosts that are off on standby, one after the other:
// each rewrites the records of the pools that use it.
func powerOn(ctx context.Context, ops *pool.Ops, hosts []string) error {
	for _, h := range hosts {
		if err := ops.PowerOnStandby(ctx, h); err != nil {
			return err
		}
	}
	return nil
}

// asideOperatorStandby shows the operator's standby hosts in maintenance:
// they are not the autoscaler's to use.
func asideOperatorStandby(v *pool.View) {
	for i, h := range v.Hosts {
		if st := v.States[h.Name]; st.Standby && !st.Maintenance {
			v.Hosts[i].State = scheduler.Maintenance
		}
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

// dryRun logs and records what a dry run would do: action, by plan.
func (r request) dryRun(log hclog.Logger, action string, plan scheduler.Plan) {
	msg := "dry run: would " + action
	logPlan(log, msg, plan)
	e := event.Event{Kind: event.DryRunPlan, DryRun: true, Action: action, Count: r.want, PowerOn: plan.PowerOn,
		PowerOff: plan.PowerOff, Message: msg}
	for _, m := range plan.Moves {
		e.Moves = append(e.Moves, event.Move{Guest: m.Guest, From: m.From, To: m.To, Wave: m.Wave + 1})
	}
	if plan.Infeasible != "" {
		e.Message += " (infeasible: " + plan.Infeasible + ")"
	}
	r.emit(e)
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

// logPlan logs a plan's moves.
func logPlan(log hclog.Logger, msg string, plan scheduler.Plan) {
	var moves []string
	for _, m := range plan.Moves {
		moves = append(moves, fmt.Sprintf("%s:%s>%s(w%d)", m.Guest, m.From, m.To, m.Wave+1))
	}
	log.Info(msg, "moves", strings.Join(moves, " "), "waves", len(plan.Waves), "power_on", plan.PowerOn,
		"power_off", plan.PowerOff, "infeasible", plan.Infeasible)
}
