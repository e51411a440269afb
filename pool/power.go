package pool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
)

// Power actions (DPM). A standby host that runs nothing may be powered
// off, and is powered on again before a pool places anything there. That
// it is off is noted as a standby fence in the record of every pool that
// uses it: the records live on the hosts that answer, so every reader
// (the provider, the autoscaler target, an agent started later) knows the
// host does not answer because it is off, not because it failed.

// DefaultBootTimeout bounds how long PowerOnStandby waits for a host to
// answer once its power-on action succeeded, when Ops.BootTimeout is zero.
const DefaultBootTimeout = 3 * time.Minute

// PowerOffStandby powers off host, on standby and running nothing, with
// off (its power-off action, e.g. the agent's fence command). The standby
// fence is noted first, so that no pool places a guest there while it
// goes off; if the host is not on standby or not empty once it is noted,
// or off fails, the fence is dropped again and the host stays as it was.
func (o *Ops) PowerOffStandby(ctx context.Context, host string, off func(ctx context.Context) error) error {
	pools, err := o.poolsOn(ctx, host)
	if err != nil {
		return fmt.Errorf("power off %s: %w", host, err)
	}
	if len(pools) == 0 {
		// Nothing would say it is off: an agent would take it for failed.
		return fmt.Errorf("power off %s: no pool uses it, so no pool record could note that it is off", host)
	}
	if err := o.noteStandby(ctx, host, pools); err != nil {
		return fmt.Errorf("power off %s: %w", host, err)
	}
	undo := func(err error) error {
		return errors.Join(fmt.Errorf("power off %s: %w", host, err), o.dropStandby(ctx, host, pools))
	}
	if err := o.checkIdle(ctx, host); err != nil {
		return undo(err)
	}
	if err := off(ctx); err != nil {
		return undo(err)
	}
	o.mu.Lock()
	if o.Off == nil {
		o.Off = map[string]bool{}
	}
	o.Off[host] = true
	o.mu.Unlock()
	// A reconcile that ran while the host still answered dropped the
	// fence (dropFences): note it again, now that it is off.
	if err := o.noteStandby(ctx, host, pools); err != nil {
		return fmt.Errorf("host %s is off, but not noted so in every pool record: %w", host, err)
	}
	o.log().Info("standby host powered off", "host", host, "pools", pools)
	return nil
}

// checkIdle fails unless host is on standby and runs no guest.
func (o *Ops) checkIdle(ctx context.Context, host string) error {
	st, err := o.HostState(ctx, host)
	if err != nil {
		return err
	}
	if !st.InStandby() || st.Maintenance {
		return fmt.Errorf("host %s is not on standby", host)
	}
	all, err := o.ListAll(ctx, []string{host})
	if err != nil {
		return err
	}
	for _, d := range all[host] {
		if d.State != driver.StateShutoff && d.State != driver.StateCrashed {
			return fmt.Errorf("%s runs on %s", d.Name, host)
		}
	}
	return nil
}

// PowerOnStandby powers host on with Ops.PowerOn, waits (Ops.BootTimeout)
// until it answers, and drops its standby fences: pools may place there
// again. It stays on standby until the hosts dimension or a pool that
// needs room brings it back (SetAutoStandby).
func (o *Ops) PowerOnStandby(ctx context.Context, host string) error {
	if o.PowerOn == nil {
		return fmt.Errorf("power on %s: no power-on action configured", host)
	}
	h, err := o.Hosts.Lookup(host)
	if err != nil {
		return err
	}
	d, err := o.driver(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	o.log().Info("powering on a standby host", "host", host)
	if err := o.PowerOn(ctx, host); err != nil {
		return fmt.Errorf("power on %s: %w", host, err)
	}
	boot := o.BootTimeout
	if boot <= 0 {
		boot = DefaultBootTimeout
	}
	bctx, cancel := context.WithTimeout(ctx, boot)
	defer cancel()
	for {
		hctx, hcancel := context.WithTimeout(bctx, o.hostTimeout())
		_, err = d.HostInfo(hctx, h.URI)
		hcancel()
		if err == nil {
			break
		}
		select {
		case <-bctx.Done():
			return fmt.Errorf("power on %s: no answer within %s of its power-on: %w", host, boot, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
	o.mu.Lock()
	delete(o.Off, host)
	delete(o.late, host)
	o.mu.Unlock()
	pools, err := o.poolsOn(ctx, host)
	if err != nil {
		return fmt.Errorf("power on %s: %w", host, err)
	}
	if err := o.dropStandby(ctx, host, pools); err != nil {
		return fmt.Errorf("power on %s: %w", host, err)
	}
	took := time.Since(start).Round(time.Millisecond)
	o.log().Info("standby host powered on", "host", host, "took", took.String())
	o.emit(event.Event{Kind: event.HostPoweredOn, Host: host, ElapsedMs: took.Milliseconds(),
		Message: fmt.Sprintf("standby host %s powered on: it answers %s after its power-on action started", host, took)})
	return nil
}

// poolsOn lists the pools whose record host holds: those that use it.
func (o *Ops) poolsOn(ctx context.Context, host string) ([]string, error) {
	h, err := o.Hosts.Lookup(host)
	if err != nil {
		return nil, err
	}
	d, err := o.driver(ctx)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, o.hostTimeout())
	defer cancel()
	rs, err := d.ListRecords(hctx, h.URI)
	if err != nil {
		return nil, fmt.Errorf("read the pool records of %s: %w", host, err)
	}
	var out []string
	for _, r := range rs {
		if r.Kind == driver.RecordPool {
			out = append(out, r.Name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// noteStandby adds host's standby fence to each pool's record that has no
// fence of it.
func (o *Ops) noteStandby(ctx context.Context, host string, pools []string) error {
	return o.eachPool(ctx, pools, func(pr *Record) bool {
		if _, fenced := pr.Fenced(host); fenced {
			return false
		}
		pr.Fences = append(pr.Fences, Fence{Host: host, At: time.Now().UTC(), Standby: true})
		return true
	})
}

// dropStandby removes host's standby fence from each pool's record.
func (o *Ops) dropStandby(ctx context.Context, host string, pools []string) error {
	return o.eachPool(ctx, pools, func(pr *Record) bool {
		var kept []Fence
		for _, f := range pr.Fences {
			if f.Host != host || !f.Standby {
				kept = append(kept, f)
			}
		}
		changed := len(kept) != len(pr.Fences)
		pr.Fences = kept
		return changed
	})
}

// eachPool reads each pool's record, lets change edit it, and writes it
// if it changed. A pool whose record is gone is skipped.
func (o *Ops) eachPool(ctx context.Context, pools []string, change func(*Record) bool) error {
	var errs []error
	for _, name := range pools {
		pr, _, found, err := o.ReadPool(ctx, name, nil)
		if found {
			err = need(pr, err)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || !change(&pr) {
			continue
		}
		if _, err := o.WritePool(ctx, pr, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
