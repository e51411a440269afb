package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/scheduler"
)

// Reconcile makes the members match the spec: members on hosts the pool may
// no longer use are live-migrated to hosts it may use, then members are
// added (placed by the scheduler) or removed (chosen by it) until there are
// spec.Size. Each step re-reads the hosts, so an interrupted run is simply
// run again.
func (o *Ops) Reconcile(ctx context.Context, spec Spec, pol *Policy) error {
	allowed := spec.HostSet()
	sp := SchedulerPolicy(spec.Placement, pol)
	members, err := o.Members(ctx, spec.Name)
	if err := need(spec, err); err != nil {
		return err
	}
	for _, mb := range members {
		if allowed[mb.Host] || mb.State != driver.StateRunning {
			continue
		}
		view, err := o.View(ctx, allowed)
		if err := need(spec, err); err != nil {
			return err
		}
		to, err := view.Place(spec.GuestTemplate(), 1, sp)
		if err != nil {
			return fmt.Errorf("pool %s: member %s on %s must move to one of %v: %w", spec.Name, mb.Name, mb.Host, spec.HostNames(), err)
		}
		if _, err := o.Migrate(ctx, mb.Name, mb.Host, to[0], MigrateOptions(o.Migration, pol, spec.HasDisk())); err != nil {
			return err
		}
	}
	members, err = o.Members(ctx, spec.Name)
	if err := need(spec, err); err != nil {
		return err
	}
	n, want := CountMembers(members), int(spec.Size)
	switch {
	case n < want:
		return o.ScaleUp(ctx, spec, pol, want-n)
	case n > want:
		return o.ScaleIn(ctx, spec, members, n-want)
	}
	o.log().Debug("pool at size", "pool", spec.Name, "size", n)
	return nil
}

// ScaleTo sets a pool's size to n (within its min_size and max_size) in
// its record, then reconciles the members with it. It returns the size it
// set.
func (o *Ops) ScaleTo(ctx context.Context, name string, n int64) (int64, error) {
	pr, _, found, err := o.ReadPool(ctx, name, nil)
	if found {
		err = need(pr.Spec, err)
	}
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("pool %s: no pool record on any of the hosts %v", name, o.Hosts.Names())
	}
	want := min(max(n, pr.Spec.MinSize), pr.Spec.MaxSize)
	if want != n {
		o.log().Warn("size outside the pool's bounds; capped", "pool", name, "asked", n, "size", want,
			"min_size", pr.Spec.MinSize, "max_size", pr.Spec.MaxSize)
	}
	if pr.Spec.Size != want {
		pr.Spec.Size = want
		if pr, err = o.WritePool(ctx, pr, nil); err != nil {
			return 0, err
		}
		o.log().Info("pool size stored", "pool", name, "size", want, "generation", pr.Generation)
	}
	return want, o.Reconcile(ctx, pr.Spec, pr.Policy)
}

// ScaleUp creates k members, placed by the scheduler on the pool's hosts.
// When they do not fit on the active hosts, hosts the autoscaler put on
// standby are brought back, one at a time.
func (o *Ops) ScaleUp(ctx context.Context, spec Spec, pol *Policy, k int) error {
	allowed := spec.HostSet()
	sp := SchedulerPolicy(spec.Placement, pol)
	var hosts []string
	for {
		view, err := o.View(ctx, allowed)
		if err := need(spec, err); err != nil {
			return err
		}
		hosts, err = view.Place(spec.GuestTemplate(), k, sp)
		if err == nil {
			break
		}
		wake := ""
		for _, h := range spec.HostNames() {
			if st := view.States[h]; st.AutoStandby && !st.Standby && !st.Maintenance {
				wake = h
				break
			}
		}
		if !errors.Is(err, scheduler.ErrInfeasible) || wake == "" {
			return fmt.Errorf("pool %s: place %d new members on %v: %w", spec.Name, k, spec.HostNames(), err)
		}
		o.log().Info("new members need room: bringing a standby host back", "pool", spec.Name, "host", wake)
		if err := o.SetAutoStandby(ctx, wake, false); err != nil {
			return err
		}
	}
	// New members take the lowest free numbers; a name used by any domain
	// on any host is never reused, so no guest can be created twice.
	all, err := o.ListAll(ctx, nil)
	if err := need(spec, err); err != nil {
		return err
	}
	used := map[string]bool{}
	for _, doms := range all {
		for _, d := range doms {
			used[d.Name] = true
		}
	}
	d, err := o.driver(ctx)
	if err != nil {
		return err
	}
	n := 0
	start := time.Now()
	for i, h := range hosts {
		for n++; used[MemberName(spec.Name, n)]; n++ {
		}
		name := MemberName(spec.Name, n)
		ds, err := spec.Template.DomainSpec(name, n, MemberLabels(spec, n))
		if err != nil {
			return fmt.Errorf("pool %s: template: %w", spec.Name, err)
		}
		if ds.Bridge != "" {
			ds.MAC = MemberMAC(spec.Name, n)
		}
		o.log().Info("creating pool member", "pool", spec.Name, "domain", name, "host", h,
			"progress", fmt.Sprintf("%d/%d", i+1, k))
		if _, err := d.CreateDomain(ctx, o.Hosts[h].URI, ds); err != nil {
			return fmt.Errorf("pool %s: create member %s on host %s: %w", spec.Name, name, h, err)
		}
		used[name] = true
	}
	o.log().Info("pool scaled up", "pool", spec.Name, "added", k, "took", time.Since(start).String())
	return nil
}

// ScaleIn removes k members: stopped ones first (removing them disturbs
// nothing), then running ones chosen by the scheduler (Victims: members
// whose removal empties a host, then the least loaded). Ops.BeforeRemove
// runs before each running member is stopped.
func (o *Ops) ScaleIn(ctx context.Context, spec Spec, members []Member, k int) error {
	victims, err := o.Victims(ctx, spec, members, k)
	if err != nil {
		return err
	}
	for i, mb := range victims {
		if o.BeforeRemove != nil && mb.State == driver.StateRunning {
			if err := o.BeforeRemove(ctx, mb); err != nil {
				return fmt.Errorf("pool %s: before removing %s: %w", spec.Name, mb.Name, err)
			}
		}
		o.log().Info("removing pool member", "pool", spec.Name, "domain", mb.Name, "host", mb.Host,
			"progress", fmt.Sprintf("%d/%d", i+1, k))
		if err := o.RemoveGuest(ctx, mb.Host, mb.Name); err != nil {
			return fmt.Errorf("pool %s: %w", spec.Name, err)
		}
	}
	return nil
}

// Victims chooses the k members ScaleIn removes, in order.
func (o *Ops) Victims(ctx context.Context, spec Spec, members []Member, k int) ([]Member, error) {
	var victims []Member
	byName := map[string]Member{}
	for _, mb := range members {
		if mb.State == driver.StateShutoff || mb.State == driver.StateCrashed {
			if len(victims) < k {
				victims = append(victims, mb)
			}
			continue
		}
		if _, dup := byName[mb.Name]; dup {
			return nil, fmt.Errorf("pool %s: member %s is on two hosts (a migration is running); try again when it is over", spec.Name, mb.Name)
		}
		byName[mb.Name] = mb
	}
	rest := k - len(victims)
	if rest <= 0 {
		return victims, nil
	}
	view, err := o.View(ctx, nil)
	if err := need(spec, err); err != nil {
		return nil, err
	}
	names, err := view.Victims(spec.Name, rest)
	if err != nil {
		return nil, fmt.Errorf("pool %s: choose %d members to remove: %w", spec.Name, rest, err)
	}
	for _, n := range names {
		mb, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("pool %s: the scheduler chose %s, which is not a running member", spec.Name, n)
		}
		victims = append(victims, mb)
	}
	return victims, nil
}

// need returns the error of a read unless only hosts the pool does not use
// are down. A pool with a host down does not change: its members there
// are unknown, and only the agent restarts them elsewhere, once the host
// is fenced.
func need(spec Spec, err error) error {
	err = Needed(err, spec.HostNames())
	var down HostsDown
	if errors.As(err, &down) {
		return fmt.Errorf("pool %s: its members on %s are unknown: %w", spec.Name, strings.Join(down.Names(), ", "), err)
	}
	return err
}
