package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/scheduler"
)

// Moved is the outcome of one move of a plan.
type Moved struct {
	scheduler.Move
	Result driver.MigrateResult
	Err    error
}

// Apply runs a plan's moves, wave by wave: the moves of a wave run in
// parallel (the planner already bounded them by the policy's parallelism),
// and a wave starts when the previous one is over. The view must be the
// one the plan was made from (it says which domain each move is). Options
// come from the policy of each guest's pool via opts.
//
// A failed move stops the plan after its wave: the next run re-plans from
// what the hosts then say. Moves already done stay done, and a guest whose
// migration failed keeps running on its source (or, if the migration
// completed despite the error, on its destination), never on both.
func (o *Ops) Apply(ctx context.Context, v *View, plan scheduler.Plan, opts func(Located) driver.MigrateOptions) ([]Moved, error) {
	var out []Moved
	start := time.Now()
	for w, wave := range plan.Waves {
		res := make([]Moved, len(wave))
		var wg sync.WaitGroup
		for i, mi := range wave {
			mv := plan.Moves[mi]
			res[i].Move = mv
			at, ok := v.Where[mv.Guest]
			if !ok {
				res[i].Err = fmt.Errorf("plan moves %s, which the view does not know", mv.Guest)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				o.log().Info("moving guest", "domain", at.Name, "from", mv.From, "to", mv.To,
					"wave", fmt.Sprintf("%d/%d", w+1, len(plan.Waves)), "reason", mv.Reason)
				res[i].Result, res[i].Err = o.migrate(ctx, at.Labels[LabelPool], at.Name, mv.From, mv.To, opts(at))
			}()
		}
		wg.Wait()
		out = append(out, res...)
		var errs []error
		for _, r := range res {
			if r.Err != nil {
				errs = append(errs, r.Err)
			}
		}
		if err := errors.Join(errs...); err != nil {
			return out, fmt.Errorf("wave %d of %d: %w", w+1, len(plan.Waves), err)
		}
	}
	if len(out) > 0 {
		o.log().Info("plan applied", "moves", len(out), "waves", len(plan.Waves), "took", time.Since(start).String())
	}
	return out, nil
}

// evacuateRounds bounds Evacuate's re-planning, for guests that keep
// arriving on the host.
const evacuateRounds = 3

// Evacuate empties a host by live migration, for maintenance: the host
// should already be in maintenance (PutHostState), so that nothing new is
// placed there. The scheduler plans the moves (scheduler.Cluster.Evacuate),
// one migration per host at a time; a member of a pool whose record is
// found moves only to that pool's hosts, any other guest anywhere, each
// with its pool's migration policy (Ops.Migration without one). It
// re-plans after each round until the host is empty, so guests started
// meanwhile and a run after an interruption are handled the same way.
func (o *Ops) Evacuate(ctx context.Context, host string) error {
	for round := 1; ; round++ {
		view, err := o.View(ctx, nil)
		if err := Needed(err, []string{host}); err != nil {
			return err
		}
		var on []Located
		for _, g := range view.Where {
			if g.Host == host {
				on = append(on, g)
			}
		}
		if len(on) == 0 {
			o.log().Info("host empty", "host", host)
			return nil
		}
		if round > evacuateRounds {
			return fmt.Errorf("host %s still runs %d guests after %d rounds", host, len(on), evacuateRounds)
		}
		pools := map[string]Record{}
		for _, g := range on {
			p := g.Labels[LabelPool]
			if _, seen := pools[p]; p == "" || seen {
				continue
			}
			pr, _, found, err := o.ReadPool(ctx, p, nil)
			if err != nil && !found {
				return err // its hosts, which bound its members' moves, are unknown
			}
			if !found {
				continue // a pool no record describes: no constraint known
			}
			pools[p] = pr
		}
		view.KeepInPools(pools, false) // maintenance moves every guest somewhere
		// One migration at a time, as an operator would.
		pol := scheduler.DefaultPolicy()
		pol.MaxParallelPerHost = 1
		plan, err := view.Evacuate(host, pol)
		if err != nil {
			return fmt.Errorf("plan evacuation of %s: %w", host, err)
		}
		if !plan.Feasible() {
			return fmt.Errorf("cannot empty host %s: %s", host, plan.Infeasible)
		}
		if len(plan.PowerOn) > 0 {
			o.log().Warn("evacuation uses standby hosts", "host", host, "standby_hosts", plan.PowerOn)
		}
		o.log().Info("evacuating host", "host", host, "guests", len(on), "moves", len(plan.Moves), "round", round)
		opts := func(g Located) driver.MigrateOptions {
			if pr, ok := pools[g.Labels[LabelPool]]; ok {
				return MigrateOptions(o.Migration, pr.Policy, pr.Spec.HasDisk())
			}
			return MigrateOptions(o.Migration, nil, false)
		}
		if _, err := o.Apply(ctx, view, plan, opts); err != nil {
			return fmt.Errorf("evacuate %s: %w", host, err)
		}
	}
}
