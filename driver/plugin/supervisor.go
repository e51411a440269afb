package plugin

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
)

// EventSink receives the supervisor's records (its restarts of the
// process), for tools that follow it; *event.Log is one.
type EventSink interface{ Emit(event.Event) }

// Supervisor owns the driver process of one driver binary: it starts it on
// first use and again whenever it has died (killed, crashed), so that the
// next call after a failure goes on with a fresh process. It is safe for
// concurrent use; callers that find no live process wait for one start,
// each no longer than its own context allows (the start goes on).
type Supervisor struct {
	path string
	env  []string
	log  hclog.Logger

	mu       sync.Mutex
	events   EventSink // nil: none
	proc     *Process
	starting *start // the start in progress, if any
	starts   int
}

// start is one start of the driver process; done is closed when it ends.
type start struct {
	done chan struct{}
	err  error
}

// NewSupervisor returns a supervisor of the driver binary at path (see
// FindBinary). Its own messages and the process's log lines (see Start) go
// to log; nil discards them. Each process gets env (KEY=value) added to
// its environment. Nothing starts until Driver is called.
func NewSupervisor(path string, log hclog.Logger, env ...string) *Supervisor {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Supervisor{path: path, env: env, log: log}
}

// SetEvents makes the supervisor record each restart of its process in
// sink (nil: none), beside its log line.
func (s *Supervisor) SetEvents(sink EventSink) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = sink
}

// Driver returns the driver, starting its process if there is none or the
// last one exited. A ctx already done starts nothing; one that ends while
// the process starts returns then, with its error (a plugin's Status must
// answer within its deadline even when a loaded machine starts the
// process slowly).
func (s *Supervisor) Driver(ctx context.Context) (driver.Driver, error) {
	s.mu.Lock()
	if s.proc != nil && !s.proc.Exited() {
		defer s.mu.Unlock()
		return s.proc.Driver, nil
	}
	if s.proc != nil {
		s.log.Warn("driver process exited; starting it again", "path", s.path, "pid", s.proc.Pid())
		if s.events != nil {
			s.events.Emit(event.Event{Kind: event.DriverRestarted, Pid: s.proc.Pid(), Message: "driver process exited; starting it again"})
		}
		s.proc.Close()
		s.proc = nil
	}
	if err := ctx.Err(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	st := s.starting
	if st == nil {
		st = &start{done: make(chan struct{})}
		s.starting = st
		go s.start(st)
	}
	s.mu.Unlock()
	select {
	case <-st.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("driver process %s still starting: %w", s.path, ctx.Err())
	}
	if st.err != nil {
		return nil, st.err
	}
	return s.Driver(ctx)
}

func (s *Supervisor) start(st *start) {
	p, err := Start(s.path, s.log, s.env...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.starting = nil
	if err == nil {
		s.starts++
		s.proc = p
		s.log.Debug("driver process started", "path", s.path, "pid", p.Pid(), "starts", s.starts)
	}
	st.err = err
	close(st.done)
}

// Close stops the driver process, if any (once a start in progress is
// over), and waits for it to exit. The supervisor stays usable: the next
// Driver call starts a process again.
func (s *Supervisor) Close() {
	s.mu.Lock()
	if st := s.starting; st != nil {
		s.mu.Unlock()
		<-st.done
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Close()
		s.proc = nil
	}
}
