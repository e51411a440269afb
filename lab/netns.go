package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DialFrom opens a TCP connection from inside network namespace ns, as a
// program running there would. The socket stays in ns after the calling
// thread switches back, so the connection can be used from anywhere.
func DialFrom(ctx context.Context, ns, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNamespace(ns, func() error {
		// Create the socket on this (locked) thread; connect may finish on
		// another one, the socket's namespace is fixed at creation.
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s from namespace %s: %w", addr, ns, err)
	}
	return conn, nil
}

func inNamespace(ns string, fn func() error) error {
	runtime.LockOSThread()
	// The thread is left locked (and so discarded by the runtime) if
	// switching back fails, so no goroutine runs in the wrong namespace.
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter namespace %s: %w", ns, err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("leave namespace %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// CommandIn returns a command that runs inside network namespace ns.
func CommandIn(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// ListenIn opens a TCP listener inside network namespace ns.
func ListenIn(ns, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNamespace(ns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen on %s in namespace %s: %w", addr, ns, err)
	}
	return l, nil
}

// Process is one process of a lab namespace.
type Process struct {
	PID   int
	Name  string // its command name (/proc/PID/comm): libvirtd, virtlogd, tini, qemu-system-x86
	State string // /proc/PID/stat's state: R, S, D, T (stopped), …
	start string // its start time (/proc/PID/stat), which tells a reused PID
}

// Stopped reports whether the process is stopped by a signal (SIGSTOP).
func (p Process) Stopped() bool { return p.State == "T" }

// Processes lists what the host runs: every process in its network
// namespace (its daemons and QEMU processes, and whatever they started).
func (h Host) Processes() ([]Process, error) {
	ps, err := nsProcesses(h.Namespace)
	if err != nil {
		return nil, fmt.Errorf("processes of host %s: %w", h.Name, err)
	}
	return ps, nil
}

// nsProcesses lists the processes in network namespace ns, as 'ip netns
// pids' does (the same namespace inode), without a process of its own and
// with an error when /proc cannot be read: a fence must not take "cannot
// tell" for "nothing runs". A namespace that does not exist runs nothing.
// A process leaves the list early in its exit, when it drops its
// namespaces (zombies are not listed): see exited for when it is done.
// This process is left out: inNamespace visits ns on one of its threads,
// and when that is the main thread /proc shows the whole process there
// meanwhile (and for as long as a dial from ns lingers), and Down would
// kill its caller.
func nsProcesses(ns string) ([]Process, error) {
	var want unix.Stat_t
	if err := unix.Stat(filepath.Join("/run/netns", ns), &want); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, nil
		}
		return nil, fmt.Errorf("namespace %s: %w", ns, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var ps []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue // not a process, or this one
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) != nil || st.Dev != want.Dev || st.Ino != want.Ino {
			continue // another namespace's, or it exited meanwhile
		}
		p, err := readProcess(pid)
		if err != nil {
			continue // it exited meanwhile
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// readProcess reads process pid's name, state and start time from
// /proc/PID/stat.
func readProcess(pid int) (Process, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Process{}, err
	}
	p := Process{PID: pid}
	if f := ProcStatFields(string(stat)); len(f) > 19 {
		p.State, p.start = f[0], f[19]
	}
	if i, j := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')'); i >= 0 && j > i {
		p.Name = string(stat[i+1 : j])
	}
	return p, nil
}

// exited reports whether the process has done exiting: reaped (or its PID
// reused), or a zombie with no thread left. Only then has it let go of
// all it held: a process killed drops its namespaces first and closes
// its files last (libvirtd's socket accepts connections until then), and
// a multithreaded one ends with its last thread, not its main one.
func (p Process) exited() bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return true
	}
	f := ProcStatFields(string(stat))
	if len(f) <= 19 || f[19] != p.start {
		return true // another process now
	}
	if f[0] != "Z" {
		return false
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.PID))
	return err != nil || len(tasks) <= 1
}

// QEMU returns the QEMU process of a guest on h.
func (h Host) QEMU(name string) (Process, error) {
	ps, err := h.Processes()
	if err != nil {
		return Process{}, err
	}
	for _, p := range ps {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
		if err == nil && strings.HasPrefix(p.Name, "qemu-system") && strings.Contains(string(cmd), "guest="+name+",") {
			return p, nil
		}
	}
	return Process{}, fmt.Errorf("no QEMU of %s on host %s", name, h.Name)
}

// CPUTime is the CPU the process has used so far, user and system, in
// all its threads (/proc/PID/stat, in clock ticks of 1/100 s, Linux's
// USER_HZ).
func (p Process) CPUTime() (time.Duration, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return 0, err
	}
	f := ProcStatFields(string(stat))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", p.PID, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", p.PID, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// Forward carries TCP connections made to a loopback address of this
// namespace to an address inside network namespace ns, as the relays do
// for the hosts, but in this process: a client that cannot enter the
// namespace (the autoscaler agent, reaching the lab's Nomad server) gets
// Addr. Close stops it and every connection it carries.
type Forward struct {
	Addr string // 127.0.0.1:PORT

	l     net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
	done  sync.WaitGroup
}

// NewForward listens on a free loopback port for connections to target
// in ns.
func NewForward(ns, target string) (*Forward, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("forward to %s in namespace %s: %w", target, ns, err)
	}
	f := &Forward{Addr: l.Addr().String(), l: l, conns: map[net.Conn]bool{}}
	f.done.Add(1)
	go func() {
		defer f.done.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return // closed
			}
			f.done.Add(1)
			go func() {
				defer f.done.Done()
				f.carry(c, ns, target)
			}()
		}
	}()
	return f, nil
}

// carry copies c to and from a new connection to target in ns until
// either side ends.
func (f *Forward) carry(c net.Conn, ns, target string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	up, err := DialFrom(ctx, ns, target)
	cancel()
	if err != nil || !f.track(c, up) {
		c.Close()
		if up != nil {
			up.Close()
		}
		return
	}
	defer f.untrack(c, up)
	copied := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		// Half-close: an HTTP client may wait for the answer after its
		// request is all sent.
		if tc, ok := dst.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		copied <- struct{}{}
	}
	go cp(up, c)
	go cp(c, up)
	<-copied
	<-copied
}

// track records an open pair, or says no once Close has begun.
func (f *Forward) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	for _, c := range cs {
		f.conns[c] = true
	}
	return true
}

func (f *Forward) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(f.conns, c)
	}
}

// Close stops listening, ends every connection and waits for its
// goroutines.
func (f *Forward) Close() error {
	err := f.l.Close()
	f.mu.Lock()
	for c := range f.conns {
		c.Close()
	}
	f.conns = nil
	f.mu.Unlock()
	f.done.Wait()
	return err
}
