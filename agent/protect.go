package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/virtpool/virtpool/checkpoint/ship"
	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/scheduler"
)

// Protection (hot standby, pool.Protection). For each protected domain
// running on a host that answers, one loop checkpoints it every interval
// into its host's helper directory (ship.OutImage) and has that helper
// send the image to the standby's helper, which keeps the last complete
// one (ship.StandbyImage): the images go host to host, the agent sends a
// request of a few hundred bytes. Once an image is on a new standby, the
// domain's placement record names it (pool.LabelStandby): a failover, by
// this agent or one started later, restores from there and nowhere else.

// Protection is a protected domain's state, as the API, the page and the
// metrics show it (and the provider's virtpool_protection data source
// reads it).
type Protection = pool.ProtectionState

// target is where a protected domain runs and ships to.
type target struct {
	primary, standby string
	interval         time.Duration
	labels           map[string]string
	// unplaced says why a pool member has no standby (the scheduler
	// found no room for it on the pool's other hosts).
	unplaced string
}

// protectTargets lists the protected guests running (or paused) on the
// hosts that answer in s and have a helper, with their standby: the one
// current says it ships to while that one still can be (usable, not the
// primary, and for a pool member one of its pool's unfenced hosts). Else
// a single domain takes the first of its standby hosts that can, and a
// pool member (protected by its pool in pools) the host the scheduler
// places its standby on (pool.StandbyFor), counting the guests the other
// standbys would restore. A host that comes back does not take the
// standby over again: each change of standby costs a whole image.
// domains gives a host's last sampled domains.
func protectTargets(s State, pools map[string]pool.Record, domains func(host string) []driver.DomainStats,
	usable func(host string) bool, current func(name string) string) map[string]target {
	out := map[string]target{}
	var members []string // those to place a standby for
	for _, h := range s.Hosts {
		if h.State == HostDown || h.State == HostOff || !usable(h.Name) {
			continue
		}
		for _, d := range domains(h.Name) {
			p, ok := protectionOf(d.Labels, pools)
			if !ok || !driver.Active(d.State) { // paused: a sample may see a checkpoint's end
				continue
			}
			tg := target{primary: h.Name, interval: p.Interval, labels: d.Labels}
			cur := current(d.Name)
			switch {
			case d.Labels[pool.LabelRole] == pool.RoleDomain:
				hosts := pool.FailoverHosts(d.Labels)
				if slices.Contains(hosts, cur) {
					hosts = append([]string{cur}, hosts...)
				}
				tg.standby = pool.Standby(hosts, h.Name, usable)
			case cur != h.Name && usable(cur) && slices.Contains(pools[d.Labels[pool.LabelPool]].Placeable(), cur):
				tg.standby = cur // a member's, kept
			default:
				members = append(members, d.Name)
			}
			out[d.Name] = tg
		}
	}
	if len(members) == 0 {
		return out
	}
	c, guests := clusterOf(s, pools)
	var reserved []scheduler.Guest
	for name, tg := range out {
		if g, ok := guests[name]; ok && tg.standby != "" {
			g.Host = tg.standby
			reserved = append(reserved, g)
		}
	}
	slices.Sort(members)
	for _, name := range members {
		tg, g := out[name], guests[name]
		pr := pools[tg.labels[pool.LabelPool]]
		hosts := slices.DeleteFunc(pr.Placeable(), func(h string) bool { return !usable(h) })
		var err error
		if tg.standby, err = pool.StandbyFor(c, g, tg.primary, hosts, reserved, pool.SchedulerPolicy(pr.Spec.Placement, pr.Policy)); err != nil {
			tg.unplaced = err.Error()
		} else {
			g.Host = tg.standby
			reserved = append(reserved, g)
		}
		out[name] = tg
	}
	return out
}

// protectionOf is the protection of a guest with these labels: a single
// domain's own, a pool member's pool's (in pools).
func protectionOf(labels map[string]string, pools map[string]pool.Record) (pool.Protection, bool) {
	switch labels[pool.LabelRole] {
	case pool.RoleDomain:
		p, ok, err := pool.ProtectionOf(labels)
		return p, ok && err == nil
	case pool.RoleMember:
		if pr, ok := pools[labels[pool.LabelPool]]; ok && pr.Spec.Protection != nil {
			return *pr.Spec.Protection, true
		}
	}
	return pool.Protection{}, false
}

// clusterOf is the scheduler's view of s: the hosts that answer, with
// their capacity, and the guests running there with their demand (and
// their pool's anti-affinity group), also by name.
func clusterOf(s State, pools map[string]pool.Record) (scheduler.Cluster, map[string]scheduler.Guest) {
	var c scheduler.Cluster
	guests := map[string]scheduler.Guest{}
	for _, h := range s.Hosts {
		if h.State == HostDown || h.State == HostOff || h.CapacityCPUs <= 0 || h.CapacityMemoryBytes <= 0 {
			continue
		}
		st := scheduler.Active
		if h.State != HostActive {
			st = scheduler.Maintenance
		}
		c.Hosts = append(c.Hosts, scheduler.Host{Name: h.Name, Cores: h.CapacityCPUs, MemoryBytes: h.CapacityMemoryBytes, State: st})
		for _, g := range h.Guests {
			if !driver.Active(g.State) || g.VCPUs <= 0 || g.MemoryBytes == 0 {
				continue
			}
			sg := scheduler.Guest{Name: g.Name, VCPUs: g.VCPUs, MemoryBytes: int64(g.MemoryBytes), CPUDemand: g.CPUCores, Pool: g.Pool, Host: h.Name}
			if pr, ok := pools[g.Pool]; ok && g.Role == pool.RoleMember {
				sg.AntiAffinity = pr.Spec.GuestTemplate().AntiAffinity
			}
			if _, twice := guests[g.Name]; !twice { // a migration: counted on one host
				c.Guests = append(c.Guests, sg)
				guests[g.Name] = sg
			}
		}
	}
	return c, guests
}

// protector runs the loops, one per protected domain.
type protector struct {
	mu    sync.Mutex
	loops map[string]*protectLoop
	tls   *tls.Config
	// recorded: the standby each domain's placement record names, as
	// this agent last wrote or found it (its own lock: loops write it).
	recMu    sync.Mutex
	recorded map[string]string
	// last: the state of the loops stopped (the domain's host failed),
	// for what a restore says of its image.
	last map[string]Protection
	// crashed: protected domains whose QEMU failed on a host that
	// answers (libvirt said so), by name, to restore on their standby;
	// restoring: those being restored; retryAt: not before then again.
	crashed   map[string]crash
	restoring map[string]bool
	retryAt   map[string]time.Time
	// unplaced: why a pool member has no standby, as last said.
	unplaced map[string]string
	// swept: the helpers' images were compared with the guests once
	// (sweep), for the guests removed while no agent ran.
	swept bool
}

// crash is a protected domain's QEMU failed on host, as libvirt told.
type crash struct {
	host   string
	labels map[string]string
}

// noteCrash records that name stopped on host because its QEMU failed,
// if it is protected there.
func (p *protector) noteCrash(host, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.loops[name]; l != nil && l.primary == host {
		p.crashed[name] = crash{host: host, labels: l.labels}
	}
}

type protectLoop struct {
	target
	stop func()
	done chan struct{}
	// shipped: the last round's image reached the standby, so the disk
	// layers below the one it names may be merged (the loop's own).
	shipped bool

	mu    sync.Mutex
	state Protection
}

// protect starts, stops and retargets the loops for s.
func (a *Agent) protect(ctx context.Context, s State, t fleet.Topology) {
	if len(a.cfg.Helpers) == 0 {
		return
	}
	// A host that missed a sample or two is not failed yet (the grace
	// period): it keeps its role, as primary or as standby.
	state := map[string]string{}
	for _, h := range s.Hosts {
		state[h.Name] = h.State
	}
	failed := func(h string) bool { // downSince is the sampling goroutine's, as is this
		since, down := a.fo.downSince[h]
		return state[h] == HostOff || down && s.Time.Sub(since) >= a.fo.grace
	}
	p := &a.prot
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(p.crashed)) {
		if p.restoring[name] || s.Time.Before(p.retryAt[name]) {
			continue
		}
		p.drop(name)
		p.restoring[name] = true
		go a.restoreCrashed(ctx, name, p.crashed[name], t)
	}
	want := protectTargets(s, t.Pools, func(host string) []driver.DomainStats {
		if last, ok := a.fleet.History.LastSeen(host); ok {
			return last.Stats.Domains
		}
		return nil
	}, func(host string) bool { _, ok := a.cfg.Helpers[host]; return ok && !failed(host) },
		func(name string) string {
			if l := p.loops[name]; l != nil {
				return l.standby
			}
			return t.Placements[name].Labels[pool.LabelStandby] // an agent started again resumes there
		})
	for name, l := range p.loops {
		w, ok := want[name]
		if !ok && state[l.primary] == HostDown {
			continue // until it runs elsewhere (a failover) or its host, back, shows it stopped
		}
		if !ok || w.primary != l.primary || w.standby != l.standby || w.interval != l.interval {
			p.drop(name)
		}
	}
	// A guest whose loop ended because it is gone (deleted, a member
	// removed) leaves images nothing will restore.
	for name, st := range p.last {
		if _, protected := want[name]; !protected && p.loops[name] == nil && removed(s, t, name) {
			delete(p.last, name)
			go a.forget(ctx, name, st.Primary, st.Standby)
		}
	}
	if !p.swept && len(t.Errors) == 0 && !slices.ContainsFunc(s.Hosts, func(h Host) bool { return h.State == HostDown }) {
		p.swept = true
		go a.sweep(ctx, s, t)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		w := want[name]
		if w.unplaced != "" && p.unplaced[name] != w.unplaced {
			a.log.Warn("pool member not protected: no room for its standby", "domain", name, "primary", w.primary, "error", w.unplaced)
		}
		p.unplaced[name] = w.unplaced
		if p.loops[name] == nil && w.standby != "" {
			a.startProtect(ctx, name, w, t)
		}
	}
	maps.DeleteFunc(p.unplaced, func(name, _ string) bool { _, ok := want[name]; return !ok })
}

// removed tells whether guest name is gone: no host, all of them
// answering, has it, and it has no placement record (a deleted domain's
// and a removed member's are dropped).
func removed(s State, t fleet.Topology, name string) bool {
	if _, placed := t.Placements[name]; placed {
		return false
	}
	for _, h := range s.Hosts {
		if h.State == HostDown || slices.ContainsFunc(h.Guests, func(g Guest) bool { return g.Name == name }) {
			return false
		}
	}
	return true
}

// sweep has each helper remove the images it holds of guests that are
// removed (removed: run by no host, all answering, and placed nowhere in
// t's records, all read): what a guest removed while no agent ran left.
func (a *Agent) sweep(ctx context.Context, s State, t fleet.Topology) {
	for _, h := range slices.Sorted(maps.Keys(a.cfg.Helpers)) {
		names, err := (&ship.Client{Base: a.cfg.Helpers[h].URL, TLS: a.prot.tls}).List(ctx)
		if err != nil {
			a.log.Warn("images on a host not compared with its guests", "host", h, "error", err)
			continue
		}
		for _, name := range names {
			a.prot.mu.Lock()
			gone := a.prot.loops[name] == nil && removed(s, t, name)
			a.prot.mu.Unlock()
			if gone {
				a.forget(ctx, name, h)
			}
		}
	}
}

// forget has the helpers of a removed guest's last primary and standby
// remove its images: nothing will restore it.
func (a *Agent) forget(ctx context.Context, name string, hosts ...string) {
	for _, h := range hosts {
		hc, ok := a.cfg.Helpers[h]
		if !ok {
			continue
		}
		r, err := (&ship.Client{Base: hc.URL, TLS: a.prot.tls}).Remove(ctx, name)
		if err != nil {
			a.log.Warn("images of a removed guest left on its host", "domain", name, "host", h, "error", err)
			continue
		}
		a.log.Info("images of a removed guest removed", "domain", name, "host", h, "held", r.Held)
	}
}

// startProtect starts name's loop (p.mu held).
func (a *Agent) startProtect(ctx context.Context, name string, w target, t fleet.Topology) {
	p := &a.prot
	p.recMu.Lock()
	p.recorded[name] = t.Placements[name].Labels[pool.LabelStandby]
	p.recMu.Unlock()
	lctx, cancel := context.WithCancel(ctx)
	l := &protectLoop{target: w, stop: cancel, done: make(chan struct{}),
		state: Protection{Domain: name, Primary: w.primary, Standby: w.standby, IntervalMs: w.interval.Milliseconds()}}
	p.loops[name] = l
	a.log.Info("protecting", "domain", name, "primary", w.primary, "standby", w.standby, "interval", w.interval.String())
	go a.runProtect(lctx, name, l, t)
}

// drop ends name's loop, if it has one, keeping its last state (p.mu
// held). The loop's calls end with its context.
func (p *protector) drop(name string) {
	l := p.loops[name]
	if l == nil {
		return
	}
	l.stop()
	<-l.done
	p.last[name] = l.state
	delete(p.loops, name)
}

// protections is the state of every loop at now.
func (a *Agent) protections(now time.Time) []Protection {
	p := &a.prot
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Protection, 0, len(p.loops))
	for _, name := range slices.Sorted(maps.Keys(p.loops)) {
		l := p.loops[name]
		l.mu.Lock()
		st := l.state
		l.mu.Unlock()
		if !st.CheckpointAt.IsZero() {
			st.AgeMs = now.Sub(st.CheckpointAt).Milliseconds()
		}
		out = append(out, st)
	}
	return out
}

// stopProtecting ends every loop (the agent stops).
func (a *Agent) stopProtecting() {
	p := &a.prot
	p.mu.Lock()
	defer p.mu.Unlock()
	for name := range p.loops {
		p.drop(name)
	}
}

// runProtect checkpoints and ships name every interval until ctx ends. A
// round that takes longer than the interval is followed by the next at
// once.
func (a *Agent) runProtect(ctx context.Context, name string, l *protectLoop, t fleet.Topology) {
	defer close(l.done)
	log := a.log.Named("protect").With("domain", name, "primary", l.primary, "standby", l.standby)
	from, to := a.cfg.Helpers[l.primary], a.cfg.Helpers[l.standby]
	helper := &ship.Client{Base: from.URL, TLS: a.prot.tls}
	image := ship.OutImage(from.Dir, name)
	uri := t.Hosts[l.primary].URI
	timer := time.NewTimer(0)
	defer timer.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		err := a.checkpointOnce(ctx, name, l, uri, image, helper, to.PeerURL, t)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.mu.Lock()
			l.state.Error = err.Error()
			l.mu.Unlock()
			if !failing {
				log.Warn("checkpoint failed; tried again each interval", "error", err)
				a.event(event.Event{Kind: event.ProtectionFailed, Host: l.primary, Guest: name, To: l.standby,
					Message: fmt.Sprintf("%s: checkpoint to %s failed: %v", name, l.standby, err)})
			}
			failing = true
		} else if failing {
			failing = false
			log.Info("checkpoints shipped again")
		}
		timer.Reset(max(0, l.interval-time.Since(start)))
	}
}

// checkpointOnce captures name into image on its primary, has the
// primary's helper ship it to the standby's (peer), and records it.
func (a *Agent) checkpointOnce(ctx context.Context, name string, l *protectLoop, uri, image string, helper *ship.Client, peer string, t fleet.Topology) error {
	drv, err := a.fleet.Driver(ctx)
	if err != nil {
		return err
	}
	compact := l.shipped
	l.shipped = false
	cp, err := drv.CheckpointDomain(ctx, uri, name, driver.CheckpointOptions{Path: image, Compact: compact})
	if err != nil {
		return err
	}
	captured := time.Now()
	sent, err := helper.Send(ctx, name, image, peer)
	if err != nil {
		return err
	}
	shipped := time.Since(captured)
	if err := a.recordStandby(ctx, name, l, t); err != nil {
		return err
	}
	l.shipped = true // where a restore looks, and whole
	l.mu.Lock()
	first := l.state.Checkpoints == 0
	l.state.Checkpoints++
	l.state.CheckpointAt, l.state.ImageBytes, l.state.WireBytes = captured, sent.ImageBytes, sent.WireBytes
	l.state.PauseMs, l.state.CaptureMs, l.state.ShipMs = cp.Downtime.Milliseconds(), cp.Elapsed.Milliseconds(), shipped.Milliseconds()
	l.state.Error = ""
	l.mu.Unlock()
	if first {
		a.event(event.Event{Kind: event.GuestProtected, Host: l.primary, Guest: name, To: l.standby, ElapsedMs: shipped.Milliseconds(),
			Message: fmt.Sprintf("%s on %s protected onto %s: first image %d MiB shipped in %s", name, l.primary, l.standby,
				sent.WireBytes>>20, shipped.Round(time.Millisecond))})
	}
	return nil
}

// recordStandby has the domain's placement record name the standby its
// images now go to, once the first is there.
func (a *Agent) recordStandby(ctx context.Context, name string, l *protectLoop, t fleet.Topology) error {
	p := &a.prot
	p.recMu.Lock()
	done := p.recorded[name] == l.standby
	p.recMu.Unlock()
	if done {
		return nil
	}
	labels := maps.Clone(l.labels)
	labels[pool.LabelStandby] = l.standby
	if err := a.ops(t, "").NotePlacement(ctx, name, l.primary, labels); err != nil {
		return fmt.Errorf("record %s as the standby of %s: %w", l.standby, name, err)
	}
	p.recMu.Lock()
	p.recorded[name] = l.standby
	p.recMu.Unlock()
	return nil
}

// imageAge says, for a restore's event, which checkpoint the last image
// shipped by this agent holds ("" if it shipped none).
func (p *protector) imageAge(name string) string {
	p.mu.Lock()
	st, ok := p.last[name]
	if l := p.loops[name]; l != nil {
		l.mu.Lock()
		st, ok = l.state, true
		l.mu.Unlock()
	}
	p.mu.Unlock()
	if !ok || st.CheckpointAt.IsZero() {
		return ""
	}
	return fmt.Sprintf("; the last image shipped holds its memory of %s", st.CheckpointAt.Format("15:04:05.000"))
}

// restoreFromStandby restores d on the standby its placement record
// names, from the last image there. restored is false (and no error) when
// there is nothing to come back from: d is not protected with on_failure
// restore, no standby is recorded (no image reached one yet), it is the
// failed host, or it holds no image; d is then started from its template.
// A standby that cannot say whether it holds an image is an error: the
// restore is tried again rather than the memory given up.
func (a *Agent) restoreFromStandby(ctx context.Context, d orphan, failed string, t fleet.Topology) (on string, restored bool, err error) {
	if p, ok := protectionOf(d.labels, t.Pools); !ok || p.OnFailure != pool.OnFailureRestore {
		return "", false, nil
	}
	standby := t.Placements[d.name].Labels[pool.LabelStandby]
	h, ok := a.cfg.Helpers[standby]
	if standby == "" || standby == failed || !ok {
		a.log.Warn("no standby image to restore from: starting from the template", "domain", d.name, "standby", standby, "failed", failed)
		return "", false, nil
	}
	m, err := (&ship.Client{Base: h.URL, TLS: a.prot.tls}).Manifest(ctx, d.name)
	if err != nil {
		return "", false, fmt.Errorf("ask standby %s for the last image of %s: %w", standby, d.name, err)
	}
	if m == nil {
		a.log.Warn("standby holds no image: starting from the template", "domain", d.name, "standby", standby)
		return "", false, nil
	}
	drv, err := a.fleet.Driver(ctx)
	if err != nil {
		return "", false, err
	}
	if err := drv.RestoreDomain(ctx, t.Hosts[standby].URI, ship.StandbyImage(h.Dir, d.name)); err != nil {
		return "", false, fmt.Errorf("restore %s on standby %s from its last image: %w", d.name, standby, err)
	}
	return standby, true, nil
}

// restoreCrashed restores a domain whose QEMU failed on a host that
// answers on its standby, from its last image, and removes the stopped
// copy left on that host (its disk kept: the restored copy's). No fence
// is needed: that host's libvirt says the QEMU is gone. A failure is said
// and tried again a grace period later.
func (a *Agent) restoreCrashed(ctx context.Context, name string, c crash, t fleet.Topology) {
	p := &a.prot
	start := time.Now()
	on, restored, err := a.restoreFromStandby(ctx, orphan{name: name, labels: c.labels}, c.host, t)
	if err == nil && !restored {
		err = fmt.Errorf("no image of %s on a standby host to restore from", name)
	}
	ops := a.ops(t, "")
	if err == nil {
		took := time.Since(start).Round(time.Millisecond)
		a.event(event.Event{Kind: event.GuestRestored, Host: on, From: c.host, To: on, Guest: name, ElapsedMs: took.Milliseconds(),
			Message: fmt.Sprintf("%s restored on %s from its last image after its QEMU on %s failed (%s)%s", name, on, c.host, took, p.imageAge(name))})
		if err := ops.NotePlacement(ctx, name, on, c.labels); err != nil {
			a.log.Warn("placement of a restored domain not recorded", "domain", name, "host", on, "error", err)
		}
		// Removed only now: until the restore worked, it was what was left.
		if err := ops.RemoveStaleCopy(ctx, c.host, name); err != nil {
			a.log.Warn("the stopped copy of a restored domain not removed", "domain", name, "host", c.host, "error", err)
		}
	} else {
		a.event(event.Event{Kind: event.RestoreFailed, Host: c.host, Guest: name,
			Message: fmt.Sprintf("%s not restored after its QEMU on %s failed: %v", name, c.host, err)})
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.restoring, name)
	if err == nil {
		delete(p.crashed, name)
	} else {
		p.retryAt[name] = a.now().Add(a.fo.grace)
	}
}
