package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Down stops every process in the lab's namespaces, deletes the namespaces
// and the hosts' cgroups, and removes Dir. It needs no state file, so it also cleans up after a
// crash or a killed test, and after any host failure (see fail.go): a
// partitioned host's stopped libvirtd is resumed to take its SIGTERM, and a
// switch port set down goes with the switch's namespace. Running it on a
// machine without a lab is a no-op.
func Down(ctx context.Context, log hclog.Logger) error {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	nss, err := labNamespaces(ctx)
	if err != nil {
		return err
	}
	var cgs []Cgroups
	if l, err := Load(); err == nil {
		for _, h := range l.Hosts {
			cgs = append(cgs, h.Cgroups)
		}
	}
	var errs []error
	if err := stopRelays(); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if err := killNamespace(ctx, ns, syscall.SIGTERM, syscall.SIGKILL); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range nss {
		if err := run(ctx, "ip", "netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeCgroups(cgs); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(Dir); err != nil {
		errs = append(errs, err)
	}
	os.Remove(filepath.Dir(Dir)) // /var/lib/virtpool too, unless something else lives there
	if len(nss) > 0 {
		log.Info("lab down", "namespaces", len(nss))
	}
	return errors.Join(errs...)
}

func labNamespaces(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var nss []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], nsPrefix) {
			nss = append(nss, f[0])
		}
	}
	return nss, nil
}

// killNamespace sends each signal in turn to every process in ns, waiting
// up to 5 s after each for them to be gone, and fails if any outlive the
// last. Gone means done exiting (see Process.exited), not just out of the
// namespace, so that what they held is free when it returns. A catchable
// signal is followed by SIGCONT, as init systems do: a stopped process (a
// partitioned host's libvirtd) then handles it now instead of whenever it
// is resumed. SIGKILL needs no SIGCONT: it ends a stopped process too.
func killNamespace(ctx context.Context, ns string, sigs ...syscall.Signal) error {
	var signalled []Process
	// survivors are the processes in ns and those signalled that have not
	// done exiting.
	survivors := func() ([]int, error) {
		ps, err := nsProcesses(ns)
		if err != nil {
			return nil, err
		}
		var out []int
		in := map[int]bool{}
		for _, p := range ps {
			out, in[p.PID] = append(out, p.PID), true
		}
		for _, p := range signalled {
			if !in[p.PID] && !p.exited() {
				out = append(out, p.PID)
			}
		}
		return out, nil
	}
	for _, sig := range sigs {
		ps, err := nsProcesses(ns)
		if err != nil {
			return err
		}
		for _, p := range ps {
			// It may have exited meanwhile; survivors() tells.
			_ = syscall.Kill(p.PID, sig)
			if sig != syscall.SIGKILL {
				_ = syscall.Kill(p.PID, syscall.SIGCONT)
			}
		}
		signalled = append(signalled, ps...)
		for deadline := time.Now().Add(5 * time.Second); ; {
			left, err := survivors()
			if err != nil {
				return err
			}
			if len(left) == 0 {
				return nil
			}
			if time.Now().After(deadline) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("namespace %s: %w", ns, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	left, err := survivors()
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("namespace %s: processes %v survive %s", ns, left, sigs[len(sigs)-1])
	}
	return nil
}
