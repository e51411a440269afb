package agent

import (
	"fmt"
	"sync"
	"time"
)

// Event kinds.
const (
	EventHostUp            = "host_up"
	EventHostDown          = "host_down"
	EventHostState         = "host_state" // active, standby or maintenance changed
	EventGuestStarted      = "guest_started"
	EventGuestStopped      = "guest_stopped"
	EventMigrationStarted  = "migration_started"
	EventMigrationFinished = "migration_finished" // the guest now runs on another host
	EventPoolResized       = "pool_resized"
	// Failover (failover.go).
	EventHostFailed     = "host_failed"     // no answer for the grace period
	EventHostFenced     = "host_fenced"     // its fence action succeeded
	EventFenceFailed    = "fence_failed"    // its fence action failed: nothing restarted
	EventPoolRestored   = "pool_restored"   // a pool of a fenced host is back to size
	EventRestoreFailed  = "restore_failed"  // … or could not be
	EventHostRecovered  = "host_recovered"  // a fenced host answers again: stale copies removed
	EventGuestRestarted = "guest_restarted" // a single domain of a fenced host started on a failover host
)

// Event is one thing that changed between two samples, or that a host's
// libvirt events told (a migration's start). Tools read these records (the
// API, the page's timeline), never the agent's log text.
type Event struct {
	Seq   int64     `json:"seq"`
	Time  time.Time `json:"time"`
	Kind  string    `json:"kind"`
	Host  string    `json:"host,omitempty"`
	From  string    `json:"from,omitempty"`
	To    string    `json:"to,omitempty"`
	Guest string    `json:"guest,omitempty"`
	UUID  string    `json:"uuid,omitempty"` // the guest's
	Pool  string    `json:"pool,omitempty"`
	State string    `json:"state,omitempty"` // a host's new state
	Size  int       `json:"size,omitempty"`  // a pool's new size
	// Direction of a pool's resize: "up" or "down".
	Direction string `json:"direction,omitempty"`
	// A finished migration's measured time, downtime and bytes.
	ElapsedMs  int64  `json:"elapsed_ms,omitempty"`
	DowntimeMs int64  `json:"downtime_ms,omitempty"`
	Bytes      uint64 `json:"bytes,omitempty"`
	Message    string `json:"message"`
}

// diff lists what changed from prev to cur, in a stable order: hosts,
// then guests, then migrations, then pools. The first state (prev.Time
// zero) has no events: nothing changed that the agent saw.
func diff(prev, cur State) []Event {
	if prev.Time.IsZero() {
		return nil
	}
	var out []Event
	add := func(e Event) {
		e.Time = cur.Time
		out = append(out, e)
	}
	before := map[string]Host{}
	for _, h := range prev.Hosts {
		before[h.Name] = h
	}
	for _, h := range cur.Hosts {
		p, ok := before[h.Name]
		switch {
		case !ok || p.State == h.State:
		case h.State == HostDown:
			add(Event{Kind: EventHostDown, Host: h.Name, State: h.State, Message: fmt.Sprintf("host %s down: %s", h.Name, h.Error)})
		case p.State == HostDown:
			add(Event{Kind: EventHostUp, Host: h.Name, State: h.State, Message: fmt.Sprintf("host %s up (%s)", h.Name, h.State)})
		default:
			add(Event{Kind: EventHostState, Host: h.Name, State: h.State, Message: fmt.Sprintf("host %s %s → %s", h.Name, p.State, h.State)})
		}
	}
	was, is := running(prev), running(cur)
	for _, u := range sortedKeys(is) {
		g := is[u]
		p, ok := was[u]
		switch {
		case !ok:
			add(Event{Kind: EventGuestStarted, Host: g.Host, Guest: g.Name, UUID: u, Pool: g.Pool, Message: fmt.Sprintf("%s started on %s", g.Name, g.Host)})
		case p.Host != g.Host:
			add(Event{Kind: EventMigrationFinished, From: p.Host, To: g.Host, Guest: g.Name, UUID: u, Pool: g.Pool,
				Message: fmt.Sprintf("%s moved %s → %s", g.Name, p.Host, g.Host)})
		}
	}
	for _, u := range sortedKeys(was) {
		if g := was[u]; is[u].UUID == "" {
			add(Event{Kind: EventGuestStopped, Host: g.Host, Guest: g.Name, UUID: u, Pool: g.Pool, Message: fmt.Sprintf("%s stopped on %s", g.Name, g.Host)})
		}
	}
	inFlight := map[string]bool{}
	for _, m := range prev.Migrations {
		inFlight[m.UUID] = true
	}
	for _, m := range cur.Migrations {
		if !inFlight[m.UUID] {
			add(Event{Kind: EventMigrationStarted, From: m.From, To: m.To, Guest: m.Guest, UUID: m.UUID,
				Message: fmt.Sprintf("%s migrating %s → %s", m.Guest, m.From, m.To)})
		}
	}
	sizes := map[string]int{}
	for _, p := range prev.Pools {
		sizes[p.Name] = p.Size
	}
	for _, p := range cur.Pools {
		if old, ok := sizes[p.Name]; ok && old != p.Size {
			dir := "up"
			if p.Size < old {
				dir = "down"
			}
			add(Event{Kind: EventPoolResized, Pool: p.Name, Size: p.Size, Direction: dir,
				Message: fmt.Sprintf("pool %s: %d → %d members running", p.Name, old, p.Size)})
		}
	}
	return out
}

// Events is the bounded log of events, with subscribers that get each new
// one (the event streams).
type Events struct {
	mu   sync.Mutex
	max  int
	seq  int64
	log  []Event
	subs map[chan Event]bool
}

// NewEvents keeps at most max events.
func NewEvents(max int) *Events {
	return &Events{max: max, subs: map[chan Event]bool{}}
}

// Add numbers the events, keeps them and sends them to every subscriber.
// A subscriber too slow to take them is dropped (its channel closed): it
// reconnects and asks for what it missed by sequence number.
func (e *Events) Add(evs ...Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range evs {
		e.seq++
		ev.Seq = e.seq
		e.log = append(e.log, ev)
		for ch := range e.subs {
			select {
			case ch <- ev:
			default:
				delete(e.subs, ch)
				close(ch)
			}
		}
	}
	if n := len(e.log) - e.max; n > 0 {
		e.log = append(e.log[:0:0], e.log[n:]...)
	}
}

// Since returns the events kept whose sequence number is above seq.
func (e *Events) Since(seq int64) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.since(seq)
}

func (e *Events) since(seq int64) []Event {
	out := []Event{}
	for _, ev := range e.log {
		if ev.Seq > seq {
			out = append(out, ev)
		}
	}
	return out
}

// Subscribe returns the events after seq and a channel of the ones to
// come, taken together so that none is missed or sent twice; cancel ends
// the subscription.
func (e *Events) Subscribe(seq int64) (past []Event, next <-chan Event, cancel func()) {
	ch := make(chan Event, 256)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subs[ch] = true
	return e.since(seq), ch, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.subs[ch] {
			delete(e.subs, ch)
			close(ch)
		}
	}
}
