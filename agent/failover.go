package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// Host failure. A host that has not answered for the grace period is
// failed. With a fence action the agent fences it (powers it off; the
// action must succeed), notes the fence in the record of every pool that
// uses the host (pool.Fence) and restores those pools on the hosts left;
// without one it says so and restarts nothing: a host that does not answer
// may still run its guests. When a fenced host answers again, the stale
// copies of members found there are removed, never started, and the
// fences dropped. The fences live in the pool records, so any tool (and
// an agent started elsewhere) sees them.

// failover decides what to do about hosts that do not answer. Its fields
// belong to the goroutine that samples, but for the outcome of actions
// (mu).
type failover struct {
	grace      time.Duration
	standbyOff time.Duration // how long a standby host stays empty before it is powered off
	// downSince: since when a host that does not answer has not: the
	// last sample it answered (upAt), or the first it missed if it never
	// answered. A hung host stretches the rounds that wait for it (to the
	// call timeout): counting from its first missed round would add a
	// round or two to the grace.
	downSince map[string]time.Time
	upAt      map[string]time.Time // last sample the host answered
	// failAt: when each host that does not answer, and is not failed
	// yet, will have been silent for the grace, by URI (hostTimeout).
	failAt    atomic.Pointer[map[string]time.Time]
	idleSince map[string]time.Time // first sample the host was on standby and empty
	told      map[string]bool      // host_failed said, for a host with no fence action
	placed    map[string]string    // single domain → the host its placement was last noted on (or tried)

	mu      sync.Mutex
	fenced  map[string]bool      // fenced by this agent, not answering since
	retryAt map[string]time.Time // after a failed fence or restore
	// unstarted: whether fenced hosts have single domains not yet
	// restarted elsewhere (a failed try), to try again; a host not in it
	// was not tried yet.
	unstarted map[string]bool
	// recovering: fenced hosts back whose recovery is not done (a failed
	// pass), to recover again at the next pass even once no record has
	// their fence any more.
	recovering map[string]bool
	// unsaid: for each host in recovering, the pools that were fenced
	// there whose host_recovered is not said yet, with what it says.
	unsaid map[string]map[string]recovered
	acting sync.WaitGroup // actions running
	busy   bool
}

// recovered is what a pool's host_recovered says: the stale copies
// removed, and whether the fence was a standby one.
type recovered struct {
	stale   []string
	standby bool
}

func newFailover(grace, standbyOff time.Duration) *failover {
	if grace <= 0 {
		grace = DefaultFailoverGrace
	}
	if standbyOff <= 0 {
		standbyOff = DefaultStandbyOff
	}
	return &failover{grace: grace, standbyOff: standbyOff, downSince: map[string]time.Time{}, upAt: map[string]time.Time{},
		idleSince: map[string]time.Time{}, told: map[string]bool{}, placed: map[string]string{},
		fenced: map[string]bool{}, retryAt: map[string]time.Time{}, unstarted: map[string]bool{},
		recovering: map[string]bool{}, unsaid: map[string]map[string]recovered{}}
}

// Failover actions.
const (
	actFence   = "fence"     // fence the host, then restore its pools
	actNoFence = "no-fence"  // say the host failed and nothing is done
	actRestore = "restore"   // restore the pools and restart the single domains of a fenced host
	actRecover = "recover"   // a fenced host answers again: remove stale copies, drop its fences
	actOff     = "power-off" // a standby host empty for long enough: power it off
)

type action struct {
	kind, host string
	since      time.Time // down since
}

// decide lists what to do about s's hosts at s.Time. fenced tells which
// hosts the pool records say are fenced (failed; a host they say is off on
// standby is HostOff in s); canFence which have a fence action, canPower
// which have both power actions. While actions run (busy) it only keeps
// count of when hosts went down or idle.
func (f *failover) decide(s State, fenced map[string]bool, canFence, canPower func(string) bool) []action {
	f.mu.Lock()
	defer f.mu.Unlock()
	now, busy := s.Time, f.busy
	var out []action
	failAt := map[string]time.Time{}
	defer f.failAt.Store(&failAt)
	for _, h := range s.Hosts {
		if !idle(s, h) || !canPower(h.Name) {
			delete(f.idleSince, h.Name)
		} else if since, ok := f.idleSince[h.Name]; !ok {
			f.idleSince[h.Name] = now
		} else if !busy && now.Sub(since) >= f.standbyOff && !now.Before(f.retryAt[h.Name]) {
			out = append(out, action{kind: actOff, host: h.Name, since: since})
			delete(f.idleSince, h.Name)
		}
		if h.State == HostOff { // not expected to answer: its time counts from when it should again
			delete(f.downSince, h.Name)
			delete(f.upAt, h.Name)
			continue
		}
		if h.State != HostDown {
			if (fenced[h.Name] || f.fenced[h.Name] || f.recovering[h.Name]) && !busy {
				out = append(out, action{kind: actRecover, host: h.Name})
				f.recovering[h.Name] = true
				delete(f.fenced, h.Name)
				delete(f.unstarted, h.Name)
			}
			delete(f.downSince, h.Name)
			delete(f.told, h.Name)
			f.upAt[h.Name] = now
			continue
		}
		since, ok := f.downSince[h.Name]
		if !ok {
			if since, ok = f.upAt[h.Name]; !ok {
				since = now
			}
			f.downSince[h.Name] = since
		}
		if !fenced[h.Name] && !f.fenced[h.Name] {
			failAt[h.URI] = since.Add(f.grace)
		}
		switch {
		case busy, now.Before(f.retryAt[h.Name]):
		case fenced[h.Name] || f.fenced[h.Name]:
			// Restarts are tried once by every agent, even one started
			// after the fence, and again while some are left.
			if unstarted, tried := f.unstarted[h.Name]; short(s, h.Name) || unstarted || !tried {
				out = append(out, action{kind: actRestore, host: h.Name, since: since})
			}
		case now.Sub(since) < f.grace:
		case canFence(h.Name):
			out = append(out, action{kind: actFence, host: h.Name, since: since})
		case !f.told[h.Name]:
			f.told[h.Name] = true
			out = append(out, action{kind: actNoFence, host: h.Name, since: since})
		}
	}
	return out
}

// pastGrace is how far past its grace a call to a host that does not
// answer may go: the round then ends with the grace over, and fails it.
const pastGrace = 100 * time.Millisecond

// hostTimeout bounds the calls to the host at uri in a round
// (fleet.Fleet.HostTimeout): a host that does not answer is waited for
// until its grace is over, not a whole call timeout past it. Without
// that, a hung host's calls time out (2 s) in each round, and the round
// that fails it ends up to that much after the grace. Once the grace is
// over (a host with no fence action stays down), the fleet's own call
// timeout applies again: a host that comes back is not cut short.
func (f *failover) hostTimeout(uri string, now time.Time) time.Duration {
	if m := f.failAt.Load(); m != nil {
		if at, ok := (*m)[uri]; ok && at.After(now) {
			return at.Sub(now) + pastGrace
		}
	}
	return time.Hour // the fleet's own call timeout
}

// idle tells whether h is on standby, runs no guest and is one of a
// pool's hosts (whose record can note that it is off).
func idle(s State, h Host) bool {
	if h.State != HostStandby || slices.ContainsFunc(h.Guests, func(g Guest) bool { return g.rank() > 0 }) {
		return false
	}
	return slices.ContainsFunc(s.Pools, func(p Pool) bool { return slices.Contains(p.Hosts, h.Name) })
}

// short tells whether a pool that uses host has fewer members than it
// should.
func short(s State, host string) bool {
	for _, p := range s.Pools {
		if slices.Contains(p.Hosts, host) && int64(p.Size) < p.Desired {
			return true
		}
	}
	return false
}

// fencedHosts lists the hosts a pool record says are fenced: failed, or
// powered off on standby (off).
func fencedHosts(t fleet.Topology) (failed, off map[string]bool) {
	failed, off = map[string]bool{}, map[string]bool{}
	for _, pr := range t.Pools {
		for _, fc := range pr.Fences {
			if fc.Standby {
				off[fc.Host] = true
			} else {
				failed[fc.Host] = true
			}
		}
	}
	return failed, off
}

// failover runs, in the background, what decide asks for s (one batch at
// a time: a batch still running when the next sample comes is not
// doubled).
func (a *Agent) failover(ctx context.Context, s State, t fleet.Topology) {
	failed, off := fencedHosts(t)
	maps.Copy(failed, off) // an off host that answers again is recovered too: its fences dropped
	acts := a.fo.decide(s, failed, func(h string) bool { return len(a.cfg.Fence[h]) > 0 },
		func(h string) bool { return len(a.cfg.Fence[h]) > 0 && len(a.cfg.PowerOn[h]) > 0 })
	if len(acts) == 0 {
		return
	}
	fo := a.fo
	fo.mu.Lock()
	fo.busy = true // decide gave actions: it was not
	fo.acting.Add(1)
	fo.mu.Unlock()
	go func() {
		defer func() {
			fo.mu.Lock()
			fo.busy = false
			fo.mu.Unlock()
			fo.acting.Done()
		}()
		for _, act := range acts {
			if err := a.act(ctx, act, s, t); err != nil {
				a.log.Warn("failover action failed; retried later", "action", act.kind, "host", act.host, "error", err)
				fo.mu.Lock()
				fo.retryAt[act.host] = a.now().Add(max(fo.grace, time.Second))
				fo.mu.Unlock()
			}
		}
	}()
}

// notePlacements records where the single domains with failover hosts
// run when the placement records say otherwise (a domain made before
// they existed, or moved by hand), so that an agent started after a
// failure can still restart them. Once per domain and host: a write that
// fails is logged, and tried again when the domain moves.
func (a *Agent) notePlacements(ctx context.Context, s State, t fleet.Topology) {
	for _, h := range s.Hosts {
		last, ok := a.fleet.History.LastSeen(h.Name)
		if h.State == HostDown || !ok {
			continue
		}
		for _, d := range last.Stats.Domains {
			if d.State != driver.StateRunning || d.Labels[pool.LabelRole] != pool.RoleDomain || len(pool.FailoverHosts(d.Labels)) == 0 ||
				t.Placements[d.Name].Host == h.Name || a.fo.placed[d.Name] == h.Name {
				continue
			}
			a.fo.placed[d.Name] = h.Name
			if err := a.ops(t, "").NotePlacement(ctx, d.Name, h.Name, d.Labels); err != nil {
				a.log.Warn("placement of a domain not recorded: an agent started after its host fails could not restart it",
					"domain", d.Name, "host", h.Name, "error", err)
				continue
			}
			a.log.Info("placement recorded", "domain", d.Name, "host", h.Name)
		}
	}
}

func (a *Agent) act(ctx context.Context, act action, s State, t fleet.Topology) error {
	h := act.host
	down := a.now().Sub(act.since).Round(time.Millisecond)
	switch act.kind {
	case actNoFence:
		a.event(event.Event{Kind: event.HostFailed, Host: h, Message: fmt.Sprintf("host %s failed (no answer for %s); "+
			"it has no fence action configured, so its guests are not restarted elsewhere", h, down)})
		return nil
	case actFence:
		a.event(event.Event{Kind: event.HostFailed, Host: h, Message: fmt.Sprintf("host %s failed (no answer for %s): fencing it", h, down)})
		if err := a.fence(ctx, h); err != nil {
			return err
		}
		a.fo.mu.Lock()
		a.fo.fenced[h] = true
		a.fo.mu.Unlock()
		return errors.Join(a.restore(ctx, h, s, t), a.restartAll(ctx, h, t))
	case actRestore:
		return errors.Join(a.restore(ctx, h, s, t), a.restartAll(ctx, h, t))
	case actRecover:
		if err := a.recover(ctx, h, t); err != nil {
			return err // recovering: the next pass tries again
		}
		a.fo.mu.Lock()
		delete(a.fo.recovering, h)
		delete(a.fo.unsaid, h)
		a.fo.mu.Unlock()
		return nil
	case actOff:
		return a.powerOff(ctx, h, t, a.now().Sub(act.since))
	}
	return fmt.Errorf("unknown action %q", act.kind)
}

// fence runs the host's fence action.
func (a *Agent) fence(ctx context.Context, host string) error {
	argv := a.cfg.Fence[host]
	took, err := a.run(ctx, argv)
	if err != nil {
		a.event(event.Event{Kind: event.FenceFailed, Host: host, ElapsedMs: took.Milliseconds(),
			Message: fmt.Sprintf("fence of host %s failed after %s (%v): its guests stay where they were", host, took, err)})
		return fmt.Errorf("fence %s: %w", host, err)
	}
	a.event(event.Event{Kind: event.HostFenced, Host: host, ElapsedMs: took.Milliseconds(),
		Message: fmt.Sprintf("host %s fenced in %s (%s)", host, took, argv[0])})
	return nil
}

// run runs a host's power action (fence or power-on) within the fence
// timeout and says how long it took (its error: power.Failure's).
func (a *Agent) run(ctx context.Context, argv []string) (time.Duration, error) {
	timeout := a.cfg.FenceTimeout
	if timeout <= 0 {
		timeout = DefaultFenceTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := a.runFence(ctx, argv)
	return time.Since(start).Round(time.Millisecond), err
}

// powerOff powers off a standby host that has been empty for idle, with
// its fence action (pool.Ops.PowerOffStandby).
func (a *Agent) powerOff(ctx context.Context, host string, t fleet.Topology, idle time.Duration) error {
	var took time.Duration
	err := a.ops(t, "").PowerOffStandby(ctx, host, func(ctx context.Context) (err error) {
		took, err = a.run(ctx, a.cfg.Fence[host])
		return err
	})
	if err != nil {
		a.event(event.Event{Kind: event.PowerOffFailed, Host: host,
			Message: fmt.Sprintf("standby host %s not powered off: %v", host, err)})
		return err
	}
	a.event(event.Event{Kind: event.HostPoweredOff, Host: host, ElapsedMs: took.Milliseconds(),
		Message: fmt.Sprintf("standby host %s powered off after %s empty (%s, %s)", host, idle.Round(time.Second),
			a.cfg.Fence[host][0], took)})
	return nil
}

// powerOn runs a host's power-on action (for pool.Ops.PowerOn).
func (a *Agent) powerOn(ctx context.Context, host string) error {
	argv := a.cfg.PowerOn[host]
	if len(argv) == 0 {
		return fmt.Errorf("host %s has no %s action", host, KeyPowerOn)
	}
	_, err := a.run(ctx, argv)
	return err
}

// powerEvents passes an Ops's power-on records to the agent's events (the
// samples show its migrations and members already).
type powerEvents struct{ a *Agent }

func (p powerEvents) Emit(e event.Event) {
	if e.Kind == event.HostPoweredOn {
		p.a.event(e)
	}
}

// ops are pool operations over the topology's hosts; off is a fenced
// host, which they do not wait for.
func (a *Agent) ops(t fleet.Topology, off string) *pool.Ops {
	ops := &pool.Ops{Hosts: t.WithCapacity(t.Hosts), Driver: a.fleet.Driver, Log: a.log.Named("failover"),
		HostTimeout: a.fleet.CallTimeout, PowerOn: a.powerOn, Events: powerEvents{a}}
	if off != "" {
		ops.Off = map[string]bool{off: true}
	}
	return ops
}

// restore notes the fence of host in the record of every pool that uses
// it, with the members last seen there, and reconciles each pool: its
// missing members are created on the hosts left.
func (a *Agent) restore(ctx context.Context, host string, s State, t fleet.Topology) error {
	ops := a.ops(t, host)
	var errs []error
	for _, name := range t.PoolNames() {
		if !slices.Contains(t.Pools[name].Spec.HostNames(), host) {
			continue
		}
		start := time.Now()
		n, err := a.restorePool(ctx, ops, name, host, s, t)
		if err != nil {
			a.event(event.Event{Kind: event.RestoreFailed, Host: host, Pool: name,
				Message: fmt.Sprintf("pool %s not restored after the fence of %s: %v", name, host, err)})
			errs = append(errs, err)
			continue
		}
		took := time.Since(start).Round(time.Millisecond)
		a.event(event.Event{Kind: event.PoolRestored, Host: host, Pool: name, Size: n, ElapsedMs: took.Milliseconds(),
			Message: fmt.Sprintf("pool %s restored without %s in %s: %d members", name, host, took, n)})
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restore the pools of %s: %w", host, err)
	}
	return nil
}

// restorePool restores one pool and returns how many members it has.
func (a *Agent) restorePool(ctx context.Context, ops *pool.Ops, name, host string, s State, t fleet.Topology) (int, error) {
	pr, _, found, err := ops.ReadPool(ctx, name, nil)
	if !found {
		return 0, notFound(name, err)
	}
	if _, done := pr.Fenced(host); !done {
		var last []string
		for _, h := range s.Hosts {
			for _, g := range h.Guests {
				if h.Name == host && g.Pool == name && g.Role == pool.RoleMember {
					last = append(last, g.Name)
				}
			}
		}
		pr.Fences = append(pr.Fences, pool.Fence{Host: host, At: a.now(), Members: last})
		if pr, err = ops.WritePool(ctx, pr, nil); err != nil {
			return 0, err
		}
	}
	// Its protected members come back first, each on its standby from its
	// last image, under its own name: the pool is then at size and
	// Reconcile makes no replacement for them.
	if err := a.restoreMembers(ctx, ops, pr, host, t); err != nil {
		return 0, err
	}
	if err := ops.Reconcile(ctx, pr); err != nil {
		return 0, err
	}
	members, err := ops.Members(ctx, name)
	return pool.CountMembers(pr.Live(members)), pool.Needed(err, pr.Placeable())
}

// restoreMembers restores, on its standby, each protected member of pool
// pr last seen running on the fenced host that runs nowhere now. One
// that cannot be restored is said, and replaced by Reconcile (a new
// member: its memory is lost, nothing runs twice).
func (a *Agent) restoreMembers(ctx context.Context, ops *pool.Ops, pr pool.Record, host string, t fleet.Topology) error {
	last, ok := a.fleet.History.LastSeen(host)
	if pr.Spec.Protection == nil || !ok {
		return nil
	}
	var lost []orphan
	for _, d := range last.Stats.Domains {
		if d.Labels[pool.LabelPool] == pr.Spec.Name && d.Labels[pool.LabelRole] == pool.RoleMember &&
			driver.Active(d.State) {
			lost = append(lost, orphan{d.Name, d.Labels})
		}
	}
	if len(lost) == 0 {
		return nil
	}
	all, err := ops.ListAll(ctx, nil)
	down, err := pool.Partial(err)
	if err != nil {
		return err
	}
	// A member may run on a host that does not answer (a migration the
	// failure interrupted): none is restored until every other host of
	// the pool answers.
	if others := down.Of(slices.DeleteFunc(pr.Placeable(), func(h string) bool { return h == host })); len(others) > 0 {
		return fmt.Errorf("pool %s: its members of %s not restored: %w", pr.Spec.Name, host, others)
	}
	for _, d := range lost {
		if on := runningOn(all, d.name); on != "" {
			a.log.Info("member of a fenced host runs elsewhere already", "pool", pr.Spec.Name, "domain", d.name, "host", on)
			continue
		}
		start := time.Now()
		on, restored, err := a.restoreFromStandby(ctx, d, host, t)
		took := time.Since(start).Round(time.Millisecond)
		switch {
		case err != nil:
			a.event(event.Event{Kind: event.RestoreFailed, Host: host, Pool: pr.Spec.Name, Guest: d.name,
				Message: fmt.Sprintf("%s not restored after the fence of %s: %v; the pool replaces it", d.name, host, err)})
		case restored:
			a.event(event.Event{Kind: event.GuestRestored, Host: on, From: host, To: on, Pool: pr.Spec.Name, Guest: d.name, ElapsedMs: took.Milliseconds(),
				Message: fmt.Sprintf("%s restored on %s from its last image after the fence of %s (%s)%s", d.name, on, host, took, a.prot.imageAge(d.name))})
		}
	}
	return nil
}

// runningOn is the host of all where name runs, or is paused ("" if
// nowhere).
func runningOn(all map[string][]driver.Domain, name string) string {
	for _, h := range slices.Sorted(maps.Keys(all)) {
		if slices.ContainsFunc(all[h], func(d driver.Domain) bool { return d.Name == name && driver.Active(d.State) }) {
			return h
		}
	}
	return ""
}

// restartAll restarts the single domains of fenced host, and notes
// whether some are left to try again.
func (a *Agent) restartAll(ctx context.Context, host string, t fleet.Topology) error {
	err := a.restart(ctx, host, t)
	a.fo.mu.Lock()
	a.fo.unstarted[host] = err != nil
	a.fo.mu.Unlock()
	return err
}

// orphan is a single domain of a fenced host to restart elsewhere.
type orphan struct {
	name   string
	labels map[string]string // its template, failover hosts, MAC
}

// orphans lists the single domains with failover hosts that ran on host
// when it was last seen: in the agent's own samples, running or paused,
// and as the placement records say, for the domains this agent never
// saw there (it started after the failure). A domain last seen stopped
// there stays stopped.
func (a *Agent) orphans(host string, t fleet.Topology) []orphan {
	var out []orphan
	seen := map[string]bool{}
	if last, ok := a.fleet.History.LastSeen(host); ok {
		for _, d := range last.Stats.Domains {
			seen[d.Name] = true
			if d.Labels[pool.LabelRole] == pool.RoleDomain && d.Labels[pool.LabelFailoverHosts] != "" &&
				driver.Active(d.State) {
				out = append(out, orphan{d.Name, d.Labels})
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.Placements)) {
		if p := t.Placements[name]; p.Host == host && !seen[name] && p.Labels[pool.LabelRole] == pool.RoleDomain {
			out = append(out, orphan{name, p.Labels})
		}
	}
	return out
}

// restart starts, on one of its failover hosts (pool.LabelFailoverHosts),
// every single domain that ran on the fenced host (orphans), from the
// template in its labels (HA restart), and records where it runs now. A
// domain that runs elsewhere already (an earlier try) is left alone, and
// so is one that a failover host that does not answer may be running.
func (a *Agent) restart(ctx context.Context, host string, t fleet.Topology) error {
	orphans := a.orphans(host, t)
	if len(orphans) == 0 {
		return nil
	}
	ops := a.ops(t, host)
	all, err := ops.ListAll(ctx, nil)
	down, err := pool.Partial(err)
	if err != nil {
		return err
	}
	var errs []error
	for _, d := range orphans {
		if h := runningOn(all, d.name); h != "" {
			a.log.Info("domain of a fenced host runs elsewhere already", "domain", d.name, "host", h)
			continue
		}
		hosts := pool.FailoverHosts(d.labels)
		start := time.Now()
		var on string
		restored := false
		if h := slices.IndexFunc(hosts, func(h string) bool { _, ok := down[h]; return ok && h != host }); h >= 0 {
			err = fmt.Errorf("failover host %s does not answer: it may run %s", hosts[h], d.name)
		} else if on, restored, err = a.restoreFromStandby(ctx, d, host, t); err == nil && !restored {
			on, err = a.restartDomain(ctx, ops, d, hosts)
		}
		if err != nil {
			a.event(event.Event{Kind: event.RestoreFailed, Host: host, Guest: d.name,
				Message: fmt.Sprintf("%s not restarted after the fence of %s: %v", d.name, host, err)})
			errs = append(errs, err)
			continue
		}
		took := time.Since(start).Round(time.Millisecond)
		if restored {
			a.event(event.Event{Kind: event.GuestRestored, Host: on, From: host, To: on, Guest: d.name, ElapsedMs: took.Milliseconds(),
				Message: fmt.Sprintf("%s restored on %s from its last image after the fence of %s (%s)%s", d.name, on, host, took, a.prot.imageAge(d.name))})
		} else {
			a.event(event.Event{Kind: event.GuestRestarted, Host: on, From: host, To: on, Guest: d.name, ElapsedMs: took.Milliseconds(),
				Message: fmt.Sprintf("%s restarted on %s after the fence of %s (%s)", d.name, on, host, took)})
		}
		if err := ops.NotePlacement(ctx, d.name, on, d.labels); err != nil {
			a.log.Warn("placement of a restarted domain not recorded", "domain", d.name, "host", on, "error", err)
		}
	}
	return errors.Join(errs...)
}

// restartDomain creates d from its template on the failover host the
// scheduler picks among those that answer, on the overlay it had (if it
// has a disk): what it wrote there is kept.
func (a *Agent) restartDomain(ctx context.Context, ops *pool.Ops, d orphan, hosts []string) (string, error) {
	var tpl pool.Template
	if err := json.Unmarshal([]byte(d.labels[pool.LabelTemplate]), &tpl); err != nil {
		return "", fmt.Errorf("%s: %s: %w", d.name, pool.LabelTemplate, err)
	}
	allowed := map[string]bool{}
	for _, h := range hosts {
		allowed[h] = true
	}
	v, err := ops.View(ctx, allowed)
	if _, err := pool.Partial(err); err != nil {
		return "", err
	}
	g := scheduler.Guest{Name: d.name, VCPUs: int(tpl.VCPUs), MemoryBytes: tpl.MemoryMiB << 20}
	to, err := v.Place(g, 1, pool.SchedulerPolicy(pool.PlacementSpread, nil))
	if err != nil {
		return "", fmt.Errorf("place %s on one of %v: %w", d.name, hosts, err)
	}
	spec, err := tpl.DomainSpec(d.name, 0, d.labels)
	if err != nil {
		return "", err
	}
	spec.MAC = d.labels[pool.LabelMAC]
	// Its overlay, on storage its failover hosts share, is its disk: the
	// fenced host's copy is off, so nothing else writes it.
	spec.ReuseOverlay = true
	drv, err := a.fleet.Driver(ctx)
	if err != nil {
		return "", err
	}
	if _, err := drv.CreateDomain(ctx, ops.Hosts[to[0]].URI, spec); err != nil {
		return "", fmt.Errorf("create %s on %s: %w", d.name, to[0], err)
	}
	return to[0], nil
}

// recover ends the fences of a host that answers again: reconciling each
// pool fenced there removes the stale copies (pool.Ops.Reconcile) and
// drops the fence; single domains restarted elsewhere lose their stale
// copy there (dropRestarted). An error leaves the host recovering: the
// next pass runs recover again, and says the host_recovered of a pool
// fenced there that an earlier pass could not (unsaid) once every host
// answers and its fence is gone.
func (a *Agent) recover(ctx context.Context, host string, t fleet.Topology) error {
	ops := a.ops(t, "")
	all, err := ops.ListAll(ctx, nil)
	down, err := pool.Partial(err)
	if err != nil {
		return err
	}
	if _, ok := all[host]; !ok {
		return fmt.Errorf("recover %s: it does not answer", host)
	}
	dropped, err := a.dropRestarted(ctx, ops, host, all, down, t) // copies of single domains
	errs := []error{err}
	pools := 0 // pools whose fence of host this pass dropped
	for _, name := range t.PoolNames() {
		pr, _, found, err := ops.ReadPool(ctx, name, nil)
		if !found {
			errs = append(errs, notFound(name, err))
			continue
		}
		said, owed := a.fo.owed(host, name)
		fc, fenced := pr.Fenced(host)
		if !fenced {
			if !owed {
				continue
			}
			// An earlier pass saw the fence and could not tell whether it
			// was dropped (a record write late, then a host missed by
			// the read that was to confirm it).
			if err != nil {
				errs = append(errs, fmt.Errorf("pool %s: is its fence of %s gone? %w", name, host, err))
				continue
			}
			a.log.Info("pool recovered on a host that is back: its fence was dropped in an earlier pass", "host", host, "pool", name)
			a.poolRecovered(host, name, said)
			pools++
			continue
		}
		var stale []string
		for _, d := range all[host] {
			if d.Labels[pool.LabelPool] == name && d.Labels[pool.LabelRole] == pool.RoleMember {
				stale = append(stale, fmt.Sprintf("%s (%s)", d.Name, d.State))
				if d.State == driver.StateRunning {
					a.log.Error("a stale copy runs on a fenced host that is back: the fence did not power it off",
						"host", host, "domain", d.Name)
				}
			}
		}
		said = recovered{stale: merge(said.stale, stale), standby: fc.Standby}
		if err := ops.Reconcile(ctx, pr); err != nil {
			// A record write may miss its deadline on a host just back
			// after the fence was dropped in the record readers take: then
			// the host has recovered for this pool, and a retry would see
			// no fence.
			again, _, found, rerr := ops.ReadPool(ctx, name, nil)
			if _, still := again.Fenced(host); rerr != nil || !found || still {
				a.fo.owe(host, name, said)
				errs = append(errs, err)
				continue
			}
			a.log.Warn("pool recovered on a host that is back, a record write late", "host", host, "pool", name, "error", err)
		}
		a.poolRecovered(host, name, said)
		pools++
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("recover %s: %w", host, err)
	}
	if len(dropped) == 0 && pools == 0 { // nothing said of it yet
		a.event(event.Event{Kind: event.HostRecovered, Host: host,
			Message: fmt.Sprintf("host %s answers again: no stale copy there", host)})
	}
	return nil
}

// poolRecovered says a pool's host_recovered for host, once.
func (a *Agent) poolRecovered(host, name string, r recovered) {
	a.fo.mu.Lock()
	delete(a.fo.unsaid[host], name)
	a.fo.mu.Unlock()
	msg := fmt.Sprintf("host %s answers again: pool %s's fence dropped, stale copies removed: %s", host, name, orNone(r.stale))
	if r.standby {
		msg = fmt.Sprintf("host %s, off on standby, answers again: pool %s's standby fence dropped", host, name)
	}
	a.event(event.Event{Kind: event.HostRecovered, Host: host, Pool: name, Message: msg})
}

// owed tells whether pool name's host_recovered for host is unsaid, and
// what it says so far.
func (f *failover) owed(host, name string) (recovered, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.unsaid[host][name]
	return r, ok
}

// owe notes that pool name's host_recovered for host is unsaid.
func (f *failover) owe(host, name string, r recovered) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unsaid[host] == nil {
		f.unsaid[host] = map[string]recovered{}
	}
	f.unsaid[host][name] = r
}

// merge is a, then what b has that a has not.
func merge(a, b []string) []string {
	out := slices.Clone(a)
	for _, s := range b {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// notFound is the error of a pool record not found (err: why, if known).
func notFound(name string, err error) error {
	if err != nil {
		return fmt.Errorf("read pool %s: %w", name, err)
	}
	return fmt.Errorf("read pool %s: not found", name)
}

// dropRestarted removes, and lists, from host (a fenced host just back), the stale
// copies of single domains restarted elsewhere (all: every host's
// domains, but those of down). A copy stopped there, of a domain running
// on another host, is a stale definition. A copy that runs (or is paused)
// there, of a domain running on another host too, is one the fence did
// not stop: the copy elsewhere is what clients use since the restart, so
// the one on host is destroyed, then removed, once a second read of both
// hosts still shows both; an error log names it, for the operator to fix
// the fence action. A copy on host of a domain that runs nowhere else is
// kept (nothing is lost); if a host where it may run (its failover hosts,
// its placement) cannot be read, it is kept too, and tried again. A stale
// copy goes without its overlay: every copy has the same overlay path, on
// storage the hosts share, so it is the disk the other copy runs on.
func (a *Agent) dropRestarted(ctx context.Context, ops *pool.Ops, host string, all map[string][]driver.Domain, down pool.HostsDown, t fleet.Topology) ([]string, error) {
	elsewhere := map[string]string{}
	for _, h := range slices.Sorted(maps.Keys(all)) {
		for _, d := range all[h] {
			if _, seen := elsewhere[d.Name]; h != host && driver.Active(d.State) && !seen {
				elsewhere[d.Name] = h
			}
		}
	}
	var stale []string
	var errs []error
	for _, d := range all[host] {
		if d.Labels[pool.LabelFailoverHosts] == "" {
			continue
		}
		on, moved := elsewhere[d.Name]
		stopped := d.State == driver.StateShutoff || d.State == driver.StateCrashed
		switch {
		case !moved && stopped:
		case !moved:
			var unread []string
			for _, h := range append(pool.FailoverHosts(d.Labels), t.Placements[d.Name].Host) {
				if _, ok := down[h]; ok && h != host && !slices.Contains(unread, h) {
					unread = append(unread, h)
				}
			}
			if len(unread) > 0 {
				a.log.Warn("a single domain runs on a fenced host that is back and may run on a host that does not answer too: kept, tried again",
					"host", host, "domain", d.Name, "unread", strings.Join(unread, ","))
				errs = append(errs, fmt.Errorf("%s runs on %s and may run on %s, which did not answer", d.Name, host, strings.Join(unread, ", ")))
			}
		case stopped:
			// Its disk is the running copy's (one overlay path, on shared
			// storage): kept.
			if err := ops.RemoveStaleCopy(ctx, host, d.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			stale = append(stale, fmt.Sprintf("%s (%s, runs on %s)", d.Name, d.State, on))
		default:
			removed, err := a.dropRunning(ctx, ops, host, on, d.Name)
			if err != nil {
				errs = append(errs, err)
			}
			if removed != "" {
				stale = append(stale, fmt.Sprintf("%s (%s, runs on %s)", d.Name, removed, on))
			}
		}
	}
	if len(stale) > 0 {
		a.event(event.Event{Kind: event.HostRecovered, Host: host,
			Message: fmt.Sprintf("host %s answers again: stale copies of restarted domains removed: %s", host, orNone(stale))})
	}
	return stale, errors.Join(errs...)
}

// dropRunning destroys and removes the copy of a restarted domain that
// still runs on host, the fenced host just back, if a read of both host
// and on, where it was seen running too, shows it still there and still
// running on on. It returns the state the copy had if it removed it.
func (a *Agent) dropRunning(ctx context.Context, ops *pool.Ops, host, on, name string) (string, error) {
	both, err := ops.ListAll(ctx, []string{host, on})
	if _, err := pool.Partial(err); err != nil {
		return "", err
	}
	state := func(h string) (string, bool) {
		doms, ok := both[h]
		if !ok {
			return "", false
		}
		if i := slices.IndexFunc(doms, func(d driver.Domain) bool { return d.Name == name }); i >= 0 {
			return doms[i].State, true
		}
		return "", true
	}
	here, hereOK := state(host)
	there, thereOK := state(on)
	switch {
	case !hereOK || !thereOK:
		a.log.Warn("a restarted domain runs on a fenced host that is back and on another host, which a second read did not reach: both kept, tried again",
			"host", host, "domain", name, "runs_on", on)
		return "", fmt.Errorf("%s runs on %s and %s: a second read of both did not answer", name, host, on)
	case here == "":
		return "", nil // gone meanwhile
	case !driver.Active(there):
		a.log.Warn("a restarted domain runs on a fenced host that is back, and no longer on the host it was restarted on: kept, looked at again",
			"host", host, "domain", name, "was_on", on)
		return "", fmt.Errorf("%s runs on %s, and no longer on %s", name, host, on)
	}
	if here != driver.StateShutoff && here != driver.StateCrashed {
		a.log.Error("a stale copy of a restarted domain runs on a fenced host that is back: the fence action did not stop it (fix it); destroyed",
			"host", host, "domain", name, "runs_on", on)
	}
	drv, err := a.fleet.Driver(ctx)
	if err != nil {
		return "", err
	}
	h, err := ops.Hosts.Lookup(host)
	if err != nil {
		return "", err
	}
	// Timeout 0: destroyed at once, not left to shut down cleanly, all
	// the while writing to the disk the other copy uses.
	if err := drv.ShutdownDomain(ctx, h.URI, name, 0); err != nil {
		return "", fmt.Errorf("destroy stale copy %s on %s: %w", name, host, err)
	}
	// Its overlay is the disk the other copy runs on: kept.
	if err := drv.UndefineDomain(ctx, h.URI, name, driver.UndefineOptions{KeepStorage: true}); err != nil {
		return "", fmt.Errorf("remove stale copy %s from %s: %w", name, host, err)
	}
	return here, nil
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// event records an event the agent's own actions make.
func (a *Agent) event(e event.Event) {
	e.Time = a.now()
	a.log.Info("event", "kind", e.Kind, "message", e.Message)
	a.events.Add(e)
}
