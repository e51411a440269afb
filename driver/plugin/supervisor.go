package plugin

import (
	"context"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
)

// Supervisor owns the driver process of one driver binary: it starts it on
// first use and again whenever it has died (killed, crashed), so that the
// next call after a failure goes on with a fresh process. It is safe for
// concurrent use; callers that find no live process wait for one start.
type Supervisor struct {
	path string
	log  hclog.Logger

	mu     sync.Mutex
	proc   *Process
	starts int
}

// NewSupervisor returns a supervisor of the driver binary at path (see
// FindBinary). Its own messages and the process's log lines (see Start) go
// to log; nil discards them. Nothing starts until Driver is called.
func NewSupervisor(path string, log hclog.Logger) *Supervisor {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Supervisor{path: path, log: log}
}

// Driver returns the driver, starting its process if there is none or the
// last one exited. A ctx already done starts nothing.
func (s *Supervisor) Driver(ctx context.Context) (driver.Driver, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.Exited() {
		return s.proc.Driver, nil
	}
	if s.proc != nil {
		s.log.Warn("driver process exited; starting it again", "path", s.path, "pid", s.proc.Pid())
		s.proc.Close()
		s.proc = nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := Start(s.path, s.log)
	if err != nil {
		return nil, err
	}
	s.starts++
	s.proc = p
	s.log.Debug("driver process started", "path", s.path, "pid", p.Pid(), "starts", s.starts)
	return p.Driver, nil
}

// Close stops the driver process, if any, and waits for it to exit. The
// supervisor stays usable: the next Driver call starts a process again.
func (s *Supervisor) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Close()
		s.proc = nil
	}
}
