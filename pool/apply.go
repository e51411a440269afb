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
				res[i].Result, res[i].Err = o.Migrate(ctx, at.Name, mv.From, mv.To, opts(at))
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
