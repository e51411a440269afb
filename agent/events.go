package agent

import (
	"fmt"
	"sync"

	"github.com/virtpool/virtpool/event"
)

// diff lists what changed from prev to cur, in a stable order: hosts,
// then guests, then migrations, then pools. The first state (prev.Time
// zero) has no events: nothing changed that the agent saw.
func diff(prev, cur State) []event.Event {
	if prev.Time.IsZero() {
		return nil
	}
	var out []event.Event
	add := func(e event.Event) {
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
			add(event.Event{Kind: event.HostDown, Host: h.Name, State: h.State, Message: fmt.Sprintf("host %s down: %s", h.Name, h.Error)})
		case p.State == HostDown:
			add(event.Event{Kind: event.HostUp, Host: h.Name, State: h.State, Message: fmt.Sprintf("host %s up (%s)", h.Name, h.State)})
		default:
			add(event.Event{Kind: event.HostState, Host: h.Name, State: h.State, Message: fmt.Sprintf("host %s %s → %s", h.Name, p.State, h.State)})
		}
	}
	was, is := running(prev), running(cur)
	for _, u := range sortedKeys(is) {
		g := is[u]
		p, ok := was[u]
		switch {
		case !ok:
			add(event.Event{Kind: event.GuestStarted, Host: g.Host, Guest: g.Name, UUID: u, Pool: g.Pool, Message: fmt.Sprintf("%s started on %s", g.Name, g.Host)})
		case p.Host != g.Host:
			add(event.Event{Kind: event.MigrationFinished, From: p.Host, To: g.Host, Guest: g.Name, UUID: u, Pool: g.Pool,
				Message: fmt.Sprintf("%s moved %s → %s", g.Name, p.Host, g.Host)})
		}
	}
	for _, u := range sortedKeys(was) {
		if g := was[u]; is[u].UUID == "" {
			add(event.Event{Kind: event.GuestStopped, Host: g.Host, Guest: g.Name, UUID: u, Pool: g.Pool, Message: fmt.Sprintf("%s stopped on %s", g.Name, g.Host)})
		}
	}
	inFlight := map[string]bool{}
	for _, m := range prev.Migrations {
		inFlight[m.UUID] = true
	}
	for _, m := range cur.Migrations {
		if !inFlight[m.UUID] {
			add(event.Event{Kind: event.MigrationStarted, From: m.From, To: m.To, Guest: m.Guest, UUID: m.UUID,
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
			add(event.Event{Kind: event.PoolResized, Pool: p.Name, Size: p.Size, Direction: dir,
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
	log  []event.Event
	subs map[chan event.Event]bool
}

// NewEvents keeps at most max events.
func NewEvents(max int) *Events {
	return &Events{max: max, subs: map[chan event.Event]bool{}}
}

// Add numbers the events, keeps them and sends them to every subscriber.
// A subscriber too slow to take them is dropped (its channel closed): it
// reconnects and asks for what it missed by sequence number.
func (e *Events) Add(evs ...event.Event) {
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
func (e *Events) Since(seq int64) []event.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.since(seq)
}

func (e *Events) since(seq int64) []event.Event {
	out := []event.Event{}
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
func (e *Events) Subscribe(seq int64) (past []event.Event, next <-chan event.Event, cancel func()) {
	ch := make(chan event.Event, 256)
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
