package plugin

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
)

// sink keeps the records it gets.
type sink struct {
	mu  sync.Mutex
	got []event.Event
}

func (k *sink) Emit(e event.Event) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.got = append(k.got, e)
}

func (k *sink) records() []event.Event {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]event.Event(nil), k.got...)
}

// state returns the supervisor's process id (0 for none) and start count.
func (s *Supervisor) state() (pid, starts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		pid = s.proc.Pid()
	}
	return pid, s.starts
}

// TestSupervisor runs the test binary as the driver (see TestMain): one
// start for concurrent first calls, the same process while it lives, a
// fresh one after it was killed, and again after Close.
func TestSupervisor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	t.Setenv(serveEnv, "1")
	s := NewSupervisor(os.Args[0], hclog.New(&hclog.LoggerOptions{Output: hclog.DefaultOutput, Level: hclog.Warn}))
	defer s.Close()
	events := &sink{}
	s.SetEvents(events)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	works := func(d driver.Driver) {
		t.Helper()
		if got, err := d.HostInfo(ctx, "test:///default"); err != nil || got.Hostname != childHost.Hostname {
			t.Fatalf("HostInfo = %+v, %v", got, err)
		}
	}

	// A caller that has given up starts nothing.
	done, stop := context.WithCancel(ctx)
	stop()
	if _, err := s.Driver(done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Driver with a cancelled context: %v, want context.Canceled", err)
	}
	if pid, starts := s.state(); pid != 0 || starts != 0 {
		t.Fatalf("after a cancelled call: pid %d, %d starts; want none", pid, starts)
	}

	// A caller whose deadline ends while the process starts returns then;
	// the start goes on, and the callers after it share it.
	short, cancelShort := context.WithTimeout(ctx, time.Millisecond)
	defer cancelShort()
	if _, err := s.Driver(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Driver past its deadline: %v, want context.DeadlineExceeded", err)
	}

	// Concurrent first calls share one start.
	const callers = 8
	got := make([]driver.Driver, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = s.Driver(ctx)
		}()
	}
	wg.Wait()
	for i := range callers {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("callers got different drivers")
		}
	}
	pid1, starts := s.state()
	if starts != 1 || pid1 <= 0 || pid1 == os.Getpid() {
		t.Fatalf("after concurrent first calls: pid %d (ours %d), %d starts; want one child", pid1, os.Getpid(), starts)
	}
	works(got[0])

	// While the process lives, it is the one returned.
	d, err := s.Driver(ctx)
	if err != nil || d != got[0] {
		t.Fatalf("second call: %v, %v; want the same driver", d, err)
	}

	// A killed process is replaced on the next call.
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, s)
	d, err = s.Driver(ctx)
	if err != nil {
		t.Fatalf("after the process died: %v", err)
	}
	pid2, starts := s.state()
	if starts != 2 || pid2 <= 0 || pid2 == pid1 {
		t.Fatalf("after the process died: pid %d (was %d), %d starts; want a new process", pid2, pid1, starts)
	}
	works(d)
	if evs := events.records(); len(evs) != 1 || evs[0].Kind != event.DriverRestarted || evs[0].Pid != pid1 {
		t.Fatalf("records after the restart: %v, want one %s of pid %d", evs, event.DriverRestarted, pid1)
	}

	// Close stops it; the supervisor starts one again when asked.
	s.Close()
	if pid, _ := s.state(); pid != 0 {
		t.Fatalf("after Close: pid %d", pid)
	}
	if err := syscall.Kill(pid2, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d still there after Close: %v", pid2, err)
	}
	s.Close() // twice is fine
	d, err = s.Driver(ctx)
	if err != nil {
		t.Fatalf("after Close: %v", err)
	}
	if _, starts := s.state(); starts != 3 {
		t.Fatalf("after Close and Driver: %d starts, want 3", starts)
	}
	works(d)
	if evs := events.records(); len(evs) != 1 {
		t.Errorf("records after Close and Driver: %v, want only the restart (a start after Close is none)", evs)
	}
}

// waitExited waits until the supervisor's process has exited.
func waitExited(t *testing.T, s *Supervisor) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		exited := s.proc == nil || s.proc.Exited()
		s.mu.Unlock()
		if exited {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("process still running 10s after SIGKILL")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSupervisorStartFails(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	// /bin/true exits without the handshake: every call says so, and no
	// broken process is kept.
	s := NewSupervisor("/bin/true", nil)
	defer s.Close()
	for i := range 2 {
		if _, err := s.Driver(context.Background()); err == nil {
			t.Fatalf("call %d: Driver of a non-plugin succeeded", i+1)
		}
		if pid, starts := s.state(); pid != 0 || starts != 0 {
			t.Fatalf("call %d: pid %d, %d starts; want none", i+1, pid, starts)
		}
	}
}
