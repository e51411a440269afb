package lab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"

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
