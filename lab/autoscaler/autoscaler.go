// Package autoscaler runs a nomad-autoscaler agent for those who drive it
// on the lab, virtpool story and the autoscaler acceptance tests: it
// starts the agent in a process group of its own, keeps every line of its
// combined output with the time it was read, finds and waits for lines,
// knows when the agent has exited (and all its output is read), and stops
// it together with its plugins and their driver processes.
package autoscaler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultGrace is how long Stop waits for the agent to end after SIGINT
// when Config.Grace is zero: it stops its plugins, which stop their drivers.
const DefaultGrace = 15 * time.Second

// MaxLine is the longest line kept: the rest of a longer line is dropped,
// and the lines after it are read as usual.
const MaxLine = 1 << 20

// ErrExited is what WaitLine returns (wrapped) when the agent exits first.
var ErrExited = errors.New("agent exited")

// Config says how to run the agent.
type Config struct {
	Bin  string   // the nomad-autoscaler binary
	Args []string // its arguments, e.g. agent -config agent.hcl
	Dir  string   // its working directory; "" is this process's
	Env  []string // its environment; nil is this process's

	// LogFile, when set, is created (or truncated) and gets every line
	// too, as Line.String formats it.
	LogFile string
	// Grace is how long Stop waits after SIGINT before SIGKILL, and how
	// long output is still read once the agent has exited (from whatever
	// of its group inherited it); 0 is DefaultGrace.
	Grace time.Duration
	Log   hclog.Logger // nil: no logging
}

// Line is one line of the agent's output.
type Line struct {
	At   time.Time // when it was read
	Text string    // the line, the agent's quoting of its plugins' messages undone
}

// String is the line as the log file has it: time of day, text.
func (l Line) String() string { return l.At.Format("15:04:05.000") + " " + l.Text }

// Agent is a running (or exited) agent and the lines it wrote.
type Agent struct {
	cmd   *exec.Cmd
	grace time.Duration
	log   hclog.Logger
	done  chan struct{}
	stop  sync.Once

	mu      sync.Mutex
	lines   []Line
	changed chan struct{} // closed (and replaced) whenever a line is added
	err     error         // cmd.Wait's, set before done is closed
}

// Start starts the agent. Stop it with Stop, also when it exits on its
// own: its plugins may outlive it.
func Start(cfg Config) (*Agent, error) {
	a := &Agent{grace: cfg.Grace, log: cfg.Log, done: make(chan struct{}), changed: make(chan struct{})}
	if a.grace <= 0 {
		a.grace = DefaultGrace
	}
	if a.log == nil {
		a.log = hclog.NewNullLogger()
	}
	w := &lineWriter{add: a.add}
	if cfg.LogFile != "" {
		f, err := os.Create(cfg.LogFile)
		if err != nil {
			return nil, fmt.Errorf("agent log: %w", err)
		}
		w.file = f
	}
	a.cmd = exec.Command(cfg.Bin, cfg.Args...)
	a.cmd.Dir, a.cmd.Env = cfg.Dir, cfg.Env
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // Stop signals the group: plugins and drivers too
	// One writer for both: exec then copies both through one pipe, in one
	// goroutine, and Wait returns only once that copy is done, so once
	// Wait returns every line is in (WaitDelay bounds that wait when
	// something of the group still holds the pipe).
	a.cmd.Stdout, a.cmd.Stderr = w, w
	a.cmd.WaitDelay = a.grace
	if err := a.cmd.Start(); err != nil {
		w.close()
		return nil, fmt.Errorf("start %s: %w", cfg.Bin, err)
	}
	a.log.Debug("agent started", "pid", a.cmd.Process.Pid, "args", cfg.Args)
	go func() {
		err := a.cmd.Wait() // after Stop, the exit status says little: callers decide
		w.close()           // the last line, if it had no newline
		a.mu.Lock()
		a.err = err
		a.mu.Unlock()
		a.log.Debug("agent exited", "pid", a.cmd.Process.Pid, "status", a.cmd.ProcessState)
		close(a.done)
	}()
	return a, nil
}

func (a *Agent) add(l Line) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.lines = append(a.lines, l)
	close(a.changed)
	a.changed = make(chan struct{})
}

// Pid is the agent's process id (and its process group's).
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Done is closed once the agent has exited and every line it wrote is kept.
func (a *Agent) Done() <-chan struct{} { return a.done }

// Err is how the agent ended once Done is closed (exec.Cmd.Wait's error:
// an *exec.ExitError for a non-zero status, nil for 0), nil before.
func (a *Agent) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// exitStatus describes how the agent ended.
func (a *Agent) exitStatus() string {
	if err := a.Err(); err != nil {
		return err.Error()
	}
	return "exit status 0"
}

// Lines returns the lines from the from-th on (0: all), for a caller
// that reads them as they come.
func (a *Agent) Lines(from int) []Line {
	a.mu.Lock()
	defer a.mu.Unlock()
	from = min(max(from, 0), len(a.lines))
	return append([]Line(nil), a.lines[from:]...)
}

// Tail is the last n lines of output, as the log file has them.
func (a *Agent) Tail(n int) string {
	lines := a.Lines(0)
	var b strings.Builder
	for _, l := range lines[max(0, len(lines)-n):] {
		b.WriteString(l.String() + "\n")
	}
	return b.String()
}

// Find returns the first line read at or after since that matches re.
func (a *Agent) Find(re *regexp.Regexp, since time.Time) (Line, bool) {
	l, ok, _ := a.find(re, since)
	return l, ok
}

// find is Find and the channel closed when a line is added after it looked.
func (a *Agent) find(re *regexp.Regexp, since time.Time) (Line, bool, <-chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, l := range a.lines {
		if !l.At.Before(since) && re.MatchString(l.Text) {
			return l, true, nil
		}
	}
	return Line{}, false, a.changed
}

// WaitLine waits for a line read at or after since that matches re. It
// fails when ctx is done (wrapping ctx.Err()) or when the agent exits
// without having written one (wrapping ErrExited).
func (a *Agent) WaitLine(ctx context.Context, re *regexp.Regexp, since time.Time) (Line, error) {
	for {
		l, ok, changed := a.find(re, since)
		if ok {
			return l, nil
		}
		select {
		case <-changed:
		case <-a.done:
			if l, ok := a.Find(re, since); ok { // its last lines came with its exit
				return l, nil
			}
			return Line{}, fmt.Errorf("%w (%s) while waiting for %q", ErrExited, a.exitStatus(), re)
		case <-ctx.Done():
			return Line{}, fmt.Errorf("no log line matching %q: %w", re, ctx.Err())
		}
	}
}

// Stop ends the agent: SIGINT to its process group, SIGKILL after the
// grace period, and then SIGKILL to the group in any case, so that no
// plugin or driver process outlives it (they would keep the lab busy).
// It returns once the agent has exited and its output is read; calling it
// again does nothing.
func (a *Agent) Stop() {
	a.stop.Do(func() {
		pgid := a.cmd.Process.Pid
		select {
		case <-a.done:
		default:
			_ = syscall.Kill(-pgid, syscall.SIGINT) // the agent may be gone already: ESRCH
			select {
			case <-a.done:
			case <-time.After(a.grace):
				a.log.Warn("agent did not stop after SIGINT: killing it", "pid", pgid, "grace", a.grace)
				_ = syscall.Kill(-pgid, syscall.SIGKILL)
				<-a.done
			}
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL) // what is left of the group; ESRCH when nothing
	})
}

// FreePort is a TCP port free on 127.0.0.1 now, for the agent's HTTP
// (health) server: the agent has no "any port" setting.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lineWriter cuts what the agent writes into lines, of any length (at
// most MaxLine of each kept), stamps and hands them on, and copies them to
// the log file. exec calls Write from one goroutine at a time.
type lineWriter struct {
	add     func(Line)
	file    *os.File // nil: no log file
	partial []byte   // the line being written, at most MaxLine of it
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			w.keep(p)
			break
		}
		w.keep(p[:i])
		w.flush()
		p = p[i+1:]
	}
	return n, nil // never an error: the agent must not block or fail writing its log
}

func (w *lineWriter) keep(p []byte) {
	w.partial = append(w.partial, p[:min(len(p), MaxLine-len(w.partial))]...)
}

func (w *lineWriter) flush() {
	text := string(bytes.TrimSuffix(w.partial, []byte("\r")))
	// The agent quotes its plugins' messages (\"): undone, lines read as
	// the plugins wrote them.
	l := Line{At: time.Now(), Text: strings.ReplaceAll(text, `\"`, `"`)}
	w.partial = w.partial[:0]
	w.add(l)
	if w.file != nil {
		fmt.Fprintln(w.file, l.String())
	}
}

// close hands on a last line that had no newline and closes the log file.
func (w *lineWriter) close() {
	if len(w.partial) > 0 {
		w.flush()
	}
	if w.file != nil {
		w.file.Close() // best effort, as every write to it: the lines are kept in memory anyway
	}
}
