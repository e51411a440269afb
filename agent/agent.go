// Package agent is virtpool's long-running process: it samples every host
// through the driver process (package fleet), keeps a bounded history, turns
// what changed between samples into events, and serves the live view of
// the cluster: a web page, a JSON API with an event stream, and Prometheus
// metrics.
package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/power"
)

// resize counts a pool's size changes one way (up, down).
type resize struct{ pool, direction string }

// Agent samples the fleet and keeps the state and events it serves.
type Agent struct {
	cfg    Config
	fleet  *fleet.Fleet
	log    hclog.Logger
	events *Events
	// now is the clock (the fleet's).
	now func() time.Time

	mu       sync.RWMutex
	state    State
	lastOK   time.Time // last sample that reached a host
	lastErr  error
	samples  int64 // by outcome, for the metrics
	failures int64
	moves    int64 // migrations seen to finish
	resizes  map[resize]int64
	took     time.Duration
	watchers map[chan State]bool

	durations, downtimes prometheus.Histogram

	// Events (watch.go).
	kick      chan struct{}         // a sample is asked for
	watching  map[string]bool       // host URIs followed
	announced map[string]int        // guest UUID → step when its migration's start was announced
	completed map[string]driver.Job // guest UUID → its last completed job, as an event told
	steps     int

	// Failover (failover.go).
	fo       *failover
	runFence func(ctx context.Context, argv []string) error

	// Protection (protect.go).
	prot protector
}

// New returns an agent over f, configured by cfg.
func New(cfg Config, f *fleet.Fleet, log hclog.Logger) *Agent {
	a := &Agent{cfg: cfg, fleet: f, log: log, events: NewEvents(cfg.MaxEvents), now: f.Time,
		watchers: map[chan State]bool{}, kick: make(chan struct{}, 1), watching: map[string]bool{},
		announced: map[string]int{}, completed: map[string]driver.Job{},
		fo: newFailover(cfg.FailoverGrace, cfg.StandbyOff), runFence: power.Run}
	a.durations, a.downtimes = newHistograms()
	f.HostTimeout = func(uri string) time.Duration { return a.fo.hostTimeout(uri, a.now()) }
	a.prot = protector{loops: map[string]*protectLoop{}, recorded: map[string]string{}, last: map[string]Protection{},
		crashed: map[string]crash{}, restoring: map[string]bool{}, retryAt: map[string]time.Time{}, unplaced: map[string]string{}}
	if len(cfg.Helpers) > 0 {
		var err error
		if a.prot.tls, err = cfg.HelperTLS.ClientConfig(); err != nil {
			// Each round then fails saying so, in the state and the log.
			log.Error("no certificate for the checkpoint helpers: nothing is protected", "error", err)
		}
	}
	return a
}

// Step takes one sample of every host and updates the state and events.
// It fails only when no host could be sampled; the state then shows every
// host down.
func (a *Agent) Step(ctx context.Context) error {
	start := time.Now()
	err := a.fleet.Sample(ctx)
	t := a.fleet.Topology()
	var cur State
	a.mu.RLock()
	prev := a.state
	a.mu.RUnlock()
	if err != nil {
		cur = allDown(prev, a.now(), err)
	} else {
		r, _ := a.fleet.History.Latest()
		var f *fleet.Frame
		if fs := a.fleet.History.Frames(r.Time, r.Time); len(fs) == 1 {
			f = &fs[0]
		}
		cur = buildState(t, r, f, prev)
	}
	cur.Finished = prev.Finished
	cur.Protections = a.protections(cur.Time)
	a.mu.Lock()
	a.steps++
	evs := a.unannounced(diff(prev, cur), cur)
	a.mu.Unlock()
	if d, derr := a.fleet.Driver(ctx); derr == nil && err == nil {
		a.progress(ctx, d, &cur)
		a.finish(ctx, d, &cur, evs)
	}
	for _, e := range evs {
		a.log.Info("event", "kind", e.Kind, "message", e.Message)
	}
	a.events.Add(evs...)
	a.mu.Lock()
	a.state = cur
	a.took = time.Since(start)
	if err != nil {
		a.failures++
		a.lastErr = err
	} else {
		a.samples++
		a.lastOK = cur.Time
		a.lastErr = nil
	}
	for _, e := range evs {
		switch e.Kind {
		case event.MigrationFinished:
			a.moves++
		case event.PoolResized:
			if a.resizes == nil {
				a.resizes = map[resize]int64{}
			}
			a.resizes[resize{e.Pool, e.Direction}]++
		}
	}
	for ch := range a.watchers {
		select {
		case ch <- cur:
		default: // a slow watcher skips a state: the next one replaces it anyway
		}
	}
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sample: %w", err)
	}
	a.notePlacements(ctx, cur, t)
	a.failover(ctx, cur, t)
	a.protect(ctx, cur, t)
	return nil
}

// allDown is prev with every host down, when no host answered.
func allDown(prev State, now time.Time, err error) State {
	s := State{Time: now, Pools: prev.Pools}
	for _, h := range prev.Hosts {
		s.Hosts = append(s.Hosts, downHost(Host{Name: h.Name, URI: h.URI}, prev, err.Error()))
	}
	return s
}

// Run samples every SampleInterval, and when a host's events say
// something changed, until ctx ends.
func (a *Agent) Run(ctx context.Context) {
	t := time.NewTicker(a.cfg.SampleInterval)
	defer t.Stop()
	defer a.stopProtecting()
	for {
		if err := a.Step(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("sampling failed", "error", err)
		}
		a.watchHosts(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-a.kick:
			select { // the events that come with it
			case <-ctx.Done():
				return
			case <-time.After(coalesce):
			}
		}
	}
}

// State is the last state sampled.
func (a *Agent) State() State {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.state
}

// Events is the agent's event log.
func (a *Agent) Events() *Events { return a.events }

// Watch returns a channel of every new state (a slow reader skips some)
// and the function that ends it.
func (a *Agent) Watch() (<-chan State, func()) {
	ch := make(chan State, 1)
	a.mu.Lock()
	a.watchers[ch] = true
	a.mu.Unlock()
	return ch, func() {
		a.mu.Lock()
		delete(a.watchers, ch)
		a.mu.Unlock()
	}
}

// Health says whether the agent is doing its job: a sample reached a host
// within the last three intervals.
func (a *Agent) Health() error {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.lastOK.IsZero() {
		if a.lastErr != nil {
			return fmt.Errorf("no sample yet: %w", a.lastErr)
		}
		return errors.New("no sample yet")
	}
	if age := a.now().Sub(a.lastOK); age > 3*a.cfg.SampleInterval {
		if a.lastErr == nil { // no sample since: the sampling itself is stuck
			return fmt.Errorf("last sample %s ago", age.Round(time.Second))
		}
		return fmt.Errorf("last good sample %s ago: %w", age.Round(time.Second), a.lastErr)
	}
	return nil
}

// Load is one host's load over the history the agent keeps.
type Load struct {
	Time        time.Time `json:"time"`
	CPURatio    float64   `json:"cpu_ratio"`
	MemoryRatio float64   `json:"memory_ratio"`
}

// History returns every host's load over the retained samples, oldest
// first: the page's charts.
func (a *Agent) History() map[string][]Load {
	out := map[string][]Load{}
	for _, f := range a.fleet.History.Frames(time.Time{}, a.now()) {
		for name, hf := range f.Hosts {
			l := Load{Time: f.Time}
			l.CPURatio, l.MemoryRatio = hf.Load()
			out[name] = append(out[name], l)
		}
	}
	return out
}
