package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// Host failures, for testing what virtpool does when a host dies or is cut
// off:
//
//	Crash      the host dies at once: all it runs is killed, nothing shuts down cleanly
//	Fence      the lab's power-off (IPMI "chassis power off"): afterwards nothing of the host runs
//	Partition  the host is cut from everyone, its guests keep running
//	Heal       undoes Partition
//	Start      powers the host on again after Crash or Fence
//
// No state is recorded for them: State reads a host's state from what it
// runs and from its switch port, so it is right whoever changed them.

// libvirtdName is libvirtd's command name, as /proc/PID/comm has it.
const libvirtdName = "libvirtd"

// Crash kills everything host h runs at once (SIGKILL): libvirtd,
// virtlogd, tini and every QEMU. Nothing shuts down cleanly: libvirt's
// state in run/ stays as it was, and the guests die with their memory.
func Crash(ctx context.Context, h Host) error {
	if err := killNamespace(ctx, h.Namespace, syscall.SIGKILL); err != nil {
		return fmt.Errorf("crash host %s: %w", h.Name, err)
	}
	return nil
}

// Fence powers host h off, as IPMI's "chassis power off" does: it returns
// nil only once nothing of the host runs, whatever state the host was in:
// up, partitioned (SIGKILL ends stopped processes too, where a polite
// SIGTERM would wait for a resume that never comes), crashed or off
// already (then it is a no-op). It does to the host what Crash does, since
// a power cut is a crash; Fence is the remedy a failover waits for rather
// than a fault to inject, and fails, naming the host and what survives, if
// anything does.
func Fence(ctx context.Context, h Host) error {
	if err := killNamespace(ctx, h.Namespace, syscall.SIGKILL); err != nil {
		return fmt.Errorf("fence host %s: %w", h.Name, err)
	}
	// A second witness that the host is off: nothing answers on its
	// libvirtd's socket, which a libvirtd outside its namespace (started
	// by hand, say) would still serve.
	if c, err := net.DialTimeout("unix", h.Socket(), time.Second); err == nil {
		c.Close()
		return fmt.Errorf("fence host %s: nothing of it runs in namespace %s, yet its libvirtd socket %s accepts connections", h.Name, h.Namespace, h.Socket())
	}
	return nil
}

// Partition cuts host h off from everyone while its guests keep running,
// as a network failure would:
//
//   - Its port on the lab switch (hN-sw, in the switch namespace) is set
//     down: nothing reaches the host or its guests and nothing leaves them.
//     Packets are lost, not refused, so a client runs into its own timeout.
//     This also cuts the host's libvirtd from the other hosts' (PeerURI),
//     and so migrations to and from it.
//   - Its libvirtd is stopped (SIGSTOP): virtpool reaches it over a unix
//     socket from the root namespace, which no link carries. The kernel
//     still accepts connections on a stopped daemon's socket and queues
//     what callers send, so a call hangs until its caller's deadline or
//     libvirt's keepalive gives up, as on a host unreachable over TCP,
//     instead of failing at once as on a host that is down. Through
//     driver/virt (measured): a call on an open connection fails after
//     about 17 s (keepalive, 5 s × 3), a new connection after 15 s (its
//     dial timeout) or at the caller's deadline, if sooner.
//
// The host's QEMU processes run on, and so do its guests, memory intact;
// so do tini and virtlogd: QEMU writes its log and the guest's console to
// virtlogd through a pipe, which a stopped virtlogd would leave to fill
// until QEMU blocks, and nothing but libvirtd talks to virtlogd anyway.
// Partitioning a partitioned host is a no-op; one that is down stays down,
// with its cable pulled.
func Partition(ctx context.Context, h Host) error {
	if err := run(ctx, "ip", "-n", switchNS, "link", "set", switchPort(h.Name), "down"); err != nil {
		return fmt.Errorf("partition host %s: %w", h.Name, err)
	}
	if err := setStopped(ctx, h, true); err != nil {
		return fmt.Errorf("partition host %s: %w", h.Name, err)
	}
	return nil
}

// Heal undoes Partition: it resumes the host's libvirtd (SIGCONT) and sets
// its switch port up. Calls that hung on the libvirtd get their answers
// then, unless their callers have given up. Healing a host that is not
// partitioned is a no-op.
func Heal(ctx context.Context, h Host) error {
	if err := setStopped(ctx, h, false); err != nil {
		return fmt.Errorf("heal host %s: %w", h.Name, err)
	}
	if err := run(ctx, "ip", "-n", switchNS, "link", "set", switchPort(h.Name), "up"); err != nil {
		return fmt.Errorf("heal host %s: %w", h.Name, err)
	}
	return nil
}

// startTimeout bounds Start's wait for the new libvirtd to answer.
const startTimeout = time.Minute

// Start powers host h on again after Crash or Fence (or after a test
// killed its libvirtd): it starts its daemons and waits until its
// libvirtd answers. A host that was off boots with an empty /run, as a
// real one does (tmpfs): the QEMU driver's state of the guests that died
// with it is gone, so the new libvirtd lists them shut off from its first
// answer. (Kept, libvirtd would list them running until its reconnection
// to their dead monitors failed, a copy that seems to run for a moment.)
// Its guests do not come back, as on a real host after a power cut. After
// a test killed only libvirtd, its QEMUs run on and libvirtd reconnects
// to them from that state. Starting a host whose
// libvirtd runs is a no-op. A partitioned host stays partitioned, its
// cable still pulled: its new libvirtd is stopped again once it answers,
// and Heal connects it.
func Start(ctx context.Context, h Host) error {
	st, err := h.State()
	if err != nil {
		return fmt.Errorf("start host %s: %w", h.Name, err)
	}
	if st.Libvirtd && st.Frozen {
		return nil // it runs; only Heal makes it answer
	}
	if st.Processes == 0 {
		if err := os.RemoveAll(filepath.Join(h.StateDir, "run", "qemu")); err != nil {
			return fmt.Errorf("start host %s: empty its /run: %w", h.Name, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := startDaemons(ctx, h); err != nil {
		return fmt.Errorf("start host %s: %w", h.Name, err)
	}
	if err := waitSocket(ctx, h.Socket()); err != nil {
		return fmt.Errorf("start host %s: libvirtd did not start: %w", h.Name, err)
	}
	// The socket accepts before libvirtd has set up its drivers and
	// looked at its old guests; a call through them shows it is done.
	if err := warm(ctx, []Host{h}); err != nil {
		return fmt.Errorf("start host %s: %w", h.Name, err)
	}
	if err := startShip(ctx, h); err != nil {
		return fmt.Errorf("start host %s: %w", h.Name, err)
	}
	if st.PortDown {
		if err := setStopped(ctx, h, true); err != nil {
			return fmt.Errorf("start host %s: keep it partitioned: %w", h.Name, err)
		}
	}
	return nil
}

// HostState is what a lab host runs and whether it is cut off.
type HostState struct {
	Processes int  // processes in its namespace: none when down
	Libvirtd  bool // its libvirtd exists (stopped or not)
	Frozen    bool // a libvirtd of it is stopped (Partition)
	PortDown  bool // its switch port is down (Partition)
}

// Partitioned reports whether the host is cut off, in whole or in part.
func (s HostState) Partitioned() bool { return s.Frozen || s.PortDown }

// String is the state as 'virtpool lab status' shows it: up, partitioned,
// down (crashed or fenced: nothing runs), "down, partitioned" (fenced while
// partitioned, its cable still pulled), or "no libvirtd" (its libvirtd was
// killed, its guests may still run).
func (s HostState) String() string {
	switch {
	case s.Processes == 0 && s.PortDown:
		return "down, partitioned"
	case s.Processes == 0:
		return "down"
	case s.Partitioned():
		return "partitioned"
	case !s.Libvirtd:
		return "no libvirtd"
	}
	return "up"
}

// State reads the host's state from its processes and its switch port.
func (h Host) State() (HostState, error) {
	ps, err := h.Processes()
	if err != nil {
		return HostState{}, err
	}
	st := HostState{Processes: len(ps)}
	for _, p := range ps {
		if p.Name == libvirtdName {
			st.Libvirtd = true
			st.Frozen = st.Frozen || p.Stopped()
		}
	}
	err = inNamespace(switchNS, func() error {
		port, err := net.InterfaceByName(switchPort(h.Name))
		if err != nil {
			return err
		}
		st.PortDown = port.Flags&net.FlagUp == 0
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("state of host %s: switch port %s: %w", h.Name, switchPort(h.Name), err)
	}
	return st, nil
}

// setStopped stops (SIGSTOP) or resumes (SIGCONT) the host's libvirtd and
// waits until the kernel shows it so: a stop is not done when kill
// returns. It signals on every look, so a libvirtd forked meanwhile (a
// child that has not run QEMU yet) is caught too.
func setStopped(ctx context.Context, h Host, stop bool) error {
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	const patience = 5 * time.Second
	deadline := time.Now().Add(patience)
	for {
		ps, err := h.Processes()
		if err != nil {
			return err
		}
		var pending []int
		for _, p := range ps {
			if p.Name == libvirtdName && p.Stopped() != stop {
				pending = append(pending, p.PID)
				_ = syscall.Kill(p.PID, sig) // one that exited meanwhile is as good
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("libvirtd %v: still not as %s leaves it after %s", pending, sig, patience)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
