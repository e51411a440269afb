package fleet

import (
	"context"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
)

// Supervisor owns the driver process of a plugin: it starts it on first
// use and again whenever it has died (killed, crashed), so that the next
// call after a failure goes on with a fresh process.
type Supervisor struct {
	path string
	log  hclog.Logger

	mu     sync.Mutex
	proc   *plugin.Process
	starts int
}

// NewSupervisor returns a supervisor of the driver binary at path.
func NewSupervisor(path string, log hclog.Logger) *Supervisor {
	return &Supervisor{path: path, log: log}
}

// Driver returns the driver, starting its process if needed.
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
	p, err := plugin.Start(s.path, s.log)
	if err != nil {
		return nil, fmt.Errorf("driver: %w", err)
	}
	s.starts++
	s.proc = p
	s.log.Debug("driver process started", "path", s.path, "pid", p.Pid(), "starts", s.starts)
	return p.Driver, nil
}

// Close stops the driver process, if any.
func (s *Supervisor) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.Close()
		s.proc = nil
	}
}
