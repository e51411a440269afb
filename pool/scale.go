package pool

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/scheduler"
)

// Reconcile makes the members match the pool record: a fenced host that
// answers again first loses its stale copies (dropFences), members on
// hosts the pool may no longer use are live-migrated to hosts it may use,
// then members are added (placed by the scheduler) or removed (chosen by
// it) until there are spec.Size. Each step re-reads the hosts, so an
// interrupted run is simply run again.
func (o *Ops) Reconcile(ctx context.Context, pr Record) error {
	spec, pol := pr.Spec, pr.Policy
	sp := SchedulerPolicy(spec.Placement, pol)
	members, err := o.Members(ctx, spec.Name)
	if err := need(pr, err); err != nil {
		return err
	}
	down, _ := Partial(err)
	if pr, members, err = o.dropFences(ctx, pr, members, down); err != nil {
		return err
	}
	allowed := setOf(pr.Placeable())
	for _, mb := range members {
		if allowed[mb.Host] || mb.State != driver.StateRunning {
			continue
		}
		view, err := o.View(ctx, allowed)
		if err := need(pr, err); err != nil {
			return err
		}
		to, err := view.Place(spec.GuestTemplate(), 1, sp)
		if err != nil {
			return fmt.Errorf("pool %s: member %s on %s must move to one of %v: %w", spec.Name, mb.Name, mb.Host, pr.Placeable(), err)
		}
		if _, err := o.migrate(ctx, spec.Name, mb.Name, mb.Host, to[0], MigrateOptions(o.Migration, pol, spec.HasDisk())); err != nil {
			return err
		}
	}
	members, err = o.Members(ctx, spec.Name)
	if err := need(pr, err); err != nil {
		return err
	}
	members = pr.Live(members)
	n, want := CountMembers(members), int(spec.Size)
	switch {
	case n < want:
		return o.ScaleUp(ctx, pr, want-n)
	case n > want:
		return o.ScaleIn(ctx, pr, members, n-want)
	}
	o.log().Debug("pool at size", "pool", spec.Name, "size", n)
	return nil
}

// dropFences ends the fences of hosts that answer again (those not in
// down): every member of the pool found there predates its fence, so it is
// stale and removed, never started; then the record is stored without the
// fence. It returns the record and the members that are left. A stale
// member's overlay goes with it (its replacements have other names, so
// other overlays), unless a copy of the same name is on another host (a
// migration the fence interrupted): that copy's disk is the same file.
func (o *Ops) dropFences(ctx context.Context, pr Record, members []Member, down HostsDown) (Record, []Member, error) {
	var kept []Fence
	left := slices.Clone(members) // the copies not removed yet
	for _, f := range pr.Fences {
		if _, still := down[f.Host]; still {
			kept = append(kept, f)
			continue
		}
		var removed []string
		for _, mb := range members {
			if mb.Host != f.Host {
				continue
			}
			if err := o.removeMember(ctx, &left, mb); err != nil {
				return pr, members, fmt.Errorf("pool %s: remove stale copy %s from fenced host %s: %w", pr.Spec.Name, mb.Name, f.Host, err)
			}
			removed = append(removed, mb.Name)
		}
		o.log().Info("fenced host answers again: stale members removed, fence dropped", "pool", pr.Spec.Name,
			"host", f.Host, "fenced_at", f.At, "removed", removed)
	}
	if len(kept) == len(pr.Fences) {
		return pr, members, nil
	}
	pr.Fences = kept
	pr, err := o.WritePool(ctx, pr, nil)
	if err != nil {
		return pr, members, err
	}
	return pr, pr.Live(members), nil
}

func setOf(names []string) map[string]bool {
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out
}

// ScaleTo sets a pool's size to n (within its min_size and max_size) in
// its record, then reconciles the members with it. It returns the size it
// set.
func (o *Ops) ScaleTo(ctx context.Context, name string, n int64) (int64, error) {
	pr, err := o.readFound(ctx, name)
	if err != nil {
		return 0, err
	}
	want, prev := min(max(n, pr.Spec.MinSize), pr.Spec.MaxSize), pr.Spec.Size
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
	err = o.Reconcile(ctx, pr)
	if errors.Is(err, ErrNotRemoved) && want < prev {
		// No member went: the record keeps saying how many there are, so
		// nothing else (a failover's reconcile) removes them unprepared.
		if rerr := o.restoreSize(ctx, name, prev); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}
	return want, err
}

// restoreSize stores a pool's size back after a scale-in that removed no
// member.
func (o *Ops) restoreSize(ctx context.Context, name string, size int64) error {
	pr, err := o.readFound(ctx, name)
	if err != nil {
		return fmt.Errorf("pool %s: store size %d back: %w", name, size, err)
	}
	pr.Spec.Size = size
	if _, err := o.WritePool(ctx, pr, nil); err != nil {
		return fmt.Errorf("pool %s: store size %d back: %w", name, size, err)
	}
	o.log().Info("no member removed: pool size stored back", "pool", name, "size", size)
	return nil
}

// readFound reads a pool's record, which must exist, from the hosts it
// needs.
func (o *Ops) readFound(ctx context.Context, name string) (Record, error) {
	pr, _, found, err := o.ReadPool(ctx, name, nil)
	if found {
		err = need(pr, err)
	}
	if err != nil {
		return pr, err
	}
	if !found {
		return pr, fmt.Errorf("pool %s: no pool record on any of the hosts %v", name, o.Hosts.Names())
	}
	return pr, nil
}

// ScaleUp creates k members, placed by the scheduler on the pool's hosts
// (not on a fenced one). When they do not fit on the active hosts, hosts
// the autoscaler put on standby are brought back, one at a time, powered
// on first if they are off and Ops.PowerOn is set.
func (o *Ops) ScaleUp(ctx context.Context, pr Record, k int) error {
	spec := pr.Spec
	allowed := setOf(pr.Placeable())
	sp := SchedulerPolicy(spec.Placement, pr.Policy)
	var hosts []string
	for {
		view, err := o.View(ctx, allowed)
		if err := need(pr, err); err != nil {
			return err
		}
		hosts, err = view.Place(spec.GuestTemplate(), k, sp)
		if err == nil {
			break
		}
		wake := ""
		for _, h := range pr.Placeable() {
			if st := view.States[h]; st.AutoStandby && !st.Standby && !st.Maintenance {
				wake = h
				break
			}
		}
		off := pr.offStandby()
		if !errors.Is(err, scheduler.ErrInfeasible) || (wake == "" && (len(off) == 0 || o.PowerOn == nil)) {
			return fmt.Errorf("pool %s: place %d new members on %v: %w", spec.Name, k, spec.HostNames(), err)
		}
		if wake == "" {
			// Powered on, it is still on standby: the next round wakes it.
			o.log().Info("new members need room: powering a standby host on", "pool", spec.Name, "host", off[0])
			if err := o.PowerOnStandby(ctx, off[0]); err != nil {
				return fmt.Errorf("pool %s: %w", spec.Name, err)
			}
			if pr, err = o.readFound(ctx, spec.Name); err != nil {
				return err
			}
			allowed = setOf(pr.Placeable())
			continue
		}
		o.log().Info("new members need room: bringing a standby host back", "pool", spec.Name, "host", wake)
		if err := o.SetAutoStandby(ctx, wake, false); err != nil {
			return err
		}
	}
	// New members take the lowest free numbers; a name used by any domain
	// on any host (or last seen on a fenced one) is never reused, so no
	// guest can be created twice.
	all, err := o.ListAll(ctx, nil)
	if err := need(pr, err); err != nil {
		return err
	}
	used := map[string]bool{}
	for _, f := range pr.Fences {
		for _, n := range f.Members {
			used[n] = true
		}
	}
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
		o.emit(event.Event{Kind: event.MemberCreated, Pool: spec.Name, Guest: name, Host: h, Message: "pool member created"})
		used[name] = true
	}
	o.log().Info("pool scaled up", "pool", spec.Name, "added", k, "took", time.Since(start).String())
	return nil
}

// ErrNotRemoved wraps the errors of a scale-in that removed no member
// because Ops.PrepareRemoval refused (a drain failed, too few members fit).
var ErrNotRemoved = errors.New("no member removed")

// ScaleIn removes k members: stopped ones first (removing them disturbs
// nothing), then running ones chosen by the scheduler (Victims: members
// whose removal empties a host, then the least loaded). With
// Ops.PrepareRemoval set, that chooses among Candidates and readies all
// its victims before any is stopped. A member's overlay goes with it, but
// for a copy of a member that has another copy on another host (a stopped
// one an interrupted migration left): the other copy uses it.
func (o *Ops) ScaleIn(ctx context.Context, pr Record, members []Member, k int) error {
	spec := pr.Spec
	victims, err := o.victims(ctx, pr, members, k)
	if err != nil {
		return err
	}
	left := slices.Clone(members) // the copies not removed yet
	for i, mb := range victims {
		o.log().Info("removing pool member", "pool", spec.Name, "domain", mb.Name, "host", mb.Host,
			"progress", fmt.Sprintf("%d/%d", i+1, k))
		lastCopy := !OtherCopy(left, mb)
		if err := o.removeMember(ctx, &left, mb); err != nil {
			return fmt.Errorf("pool %s: %w", spec.Name, err)
		}
		o.emit(event.Event{Kind: event.MemberRemoved, Pool: spec.Name, Guest: mb.Name, Host: mb.Host, Message: "pool member removed"})
		if spec.Protection != nil && lastCopy {
			// Its standby record goes too: a member made later with its
			// name must not be restored from this one's image.
			if err := o.DropPlacement(ctx, mb.Name, spec.HostNames()); err != nil {
				o.log().Warn("removed member's standby record left", "pool", spec.Name, "domain", mb.Name, "error", err)
			}
		}
		if o.AfterRemove != nil {
			o.AfterRemove(ctx, mb)
		}
	}
	return nil
}

// removeMember removes mb, one of the copies of left, and takes it out of
// left: with its overlay if it was its name's last copy, else without
// (RemoveStaleCopy: another copy, on another host, uses it).
func (o *Ops) removeMember(ctx context.Context, left *[]Member, mb Member) error {
	remove := o.RemoveGuest
	if OtherCopy(*left, mb) {
		remove = o.RemoveStaleCopy
	}
	if err := remove(ctx, mb.Host, mb.Name); err != nil {
		return err
	}
	*left = slices.DeleteFunc(*left, func(m Member) bool { return m.Name == mb.Name && m.Host == mb.Host })
	return nil
}

// victims returns the k members ScaleIn removes, ready to be removed.
func (o *Ops) victims(ctx context.Context, pr Record, members []Member, k int) ([]Member, error) {
	if o.PrepareRemoval == nil {
		return o.Victims(ctx, pr, members, k)
	}
	cands, err := o.Candidates(ctx, pr, members)
	if err != nil {
		return nil, err
	}
	victims, err := o.PrepareRemoval(ctx, pr, cands, k)
	if err == nil && len(victims) != k {
		err = fmt.Errorf("%d members chosen to remove, want %d", len(victims), k)
	}
	if err != nil {
		return nil, fmt.Errorf("pool %s: %w: %w", pr.Spec.Name, ErrNotRemoved, err)
	}
	return victims, nil
}

// Candidates returns every member scale-in may remove, in virtpool's order
// of preference: stopped ones first, then running ones in the scheduler's
// order (Victims of all of them: sets that empty a host, then the least
// loaded).
func (o *Ops) Candidates(ctx context.Context, pr Record, members []Member) ([]Member, error) {
	var out, running []Member
	for _, mb := range members {
		if mb.State == driver.StateShutoff || mb.State == driver.StateCrashed {
			out = append(out, mb)
		} else {
			running = append(running, mb)
		}
	}
	if len(running) == 0 {
		return out, nil
	}
	ordered, err := o.Victims(ctx, pr, running, len(running))
	if err != nil {
		return nil, err
	}
	return append(out, ordered...), nil
}

// Victims chooses the k members ScaleIn removes, in order.
func (o *Ops) Victims(ctx context.Context, pr Record, members []Member, k int) ([]Member, error) {
	spec := pr.Spec
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
	if err := need(pr, err); err != nil {
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
// (or that are fenced) are down. A pool with a host down does not change:
// its members there are unknown, and only the agent restarts them
// elsewhere, once it has fenced the host.
func need(pr Record, err error) error {
	err = Needed(err, pr.Placeable())
	var down HostsDown
	if errors.As(err, &down) {
		return fmt.Errorf("pool %s: its members on %s are unknown: %w", pr.Spec.Name, strings.Join(down.Names(), ", "), err)
	}
	return err
}
