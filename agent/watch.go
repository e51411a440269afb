package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
)

// coalesce is how long a sample asked for by an event waits for the
// events that come with it (a migration's end brings three).
const coalesce = 100 * time.Millisecond

// watchHosts follows the libvirt events of every host of the state that
// is not followed yet. A lifecycle event asks for a sample at once, so the
// state follows within a fraction of a second rather than an interval; the
// start of an incoming migration is announced as it happens, since a
// migration shorter than the interval would otherwise only show finished.
func (a *Agent) watchHosts(ctx context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, h := range a.state.Hosts {
		if a.watching[h.URI] {
			continue
		}
		a.watching[h.URI] = true
		go a.watchHost(ctx, h.Name, h.URI)
	}
}

// watchHost follows one host until ctx ends, again an interval after the
// watch ends (the host was lost, or the driver process restarted).
func (a *Agent) watchHost(ctx context.Context, name, uri string) {
	for ctx.Err() == nil {
		d, err := a.fleet.Driver(ctx)
		if err == nil {
			err = d.Watch(ctx, uri, func(e driver.DomainEvent) { a.onEvent(name, e) })
		}
		if ctx.Err() != nil {
			return
		}
		a.log.Debug("watch ended; again after an interval", "host", name, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(a.cfg.SampleInterval):
		}
	}
}

// onEvent handles one libvirt event of host.
func (a *Agent) onEvent(host string, e driver.DomainEvent) {
	switch {
	case e.Kind == driver.EventJobCompleted:
		a.mu.Lock()
		a.completed[e.UUID] = e.Job // finish's second source
		a.mu.Unlock()
	case e.Event == driver.LifecycleStarted && e.Detail == driver.DetailMigrated:
		a.announce(host, e)
	case e.Event == driver.LifecycleStopped && (e.Detail == driver.DetailFailed || e.Detail == driver.DetailCrashed):
		a.prot.noteCrash(host, e.Domain) // its QEMU is gone: restored from its standby if protected
	}
	select {
	case a.kick <- struct{}{}:
	default: // a sample is asked for already
	}
}

// announce records the start of an incoming migration on host, unless
// the last state shows it in flight already.
func (a *Agent) announce(host string, e driver.DomainEvent) {
	a.mu.Lock()
	for _, m := range a.state.Migrations {
		if m.UUID == e.UUID {
			a.mu.Unlock()
			return
		}
	}
	if _, ok := a.announced[e.UUID]; ok {
		a.mu.Unlock()
		return
	}
	a.announced[e.UUID] = a.steps
	from := running(a.state)[e.UUID].Host
	a.mu.Unlock()
	a.events.Add(event.Event{Time: e.Time, Kind: event.MigrationStarted, From: from, To: host, Guest: e.Domain, UUID: e.UUID,
		Message: fmt.Sprintf("%s migrating %s → %s", e.Domain, from, host)})
}

// unannounced drops from evs the starts announced already, notes the
// others as announced (announce, racing with this sample, then says
// nothing: a.state shows the migration only once the sample is stored),
// and forgets announcements whose migration ended (finished, or not in
// flight for two samples: it failed). a.mu held.
func (a *Agent) unannounced(evs []event.Event, cur State) []event.Event {
	out := evs[:0]
	for _, e := range evs {
		switch _, ok := a.announced[e.UUID]; {
		case ok && e.Kind == event.MigrationStarted:
			continue
		case e.Kind == event.MigrationStarted:
			a.announced[e.UUID] = a.steps
		case e.Kind == event.MigrationFinished:
			delete(a.announced, e.UUID)
		}
		out = append(out, e)
	}
	inFlight := map[string]bool{}
	for _, m := range cur.Migrations {
		inFlight[m.UUID] = true
	}
	for u, step := range a.announced {
		if !inFlight[u] && a.steps > step+2 {
			delete(a.announced, u)
		}
	}
	return out
}
