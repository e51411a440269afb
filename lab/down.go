package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Down stops every process in the lab's namespaces, deletes the namespaces
// and the hosts' cgroups, and removes Dir. It needs no state file, so it also cleans up after a
// crash or a killed test. Running it on a machine without a lab is a no-op.
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
	for _, ns := range nss {
		if err := killNamespace(ctx, ns); err != nil {
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

// killNamespace terminates every process in ns (libvirtd, virtlogd, QEMU),
// politely first, then with SIGKILL.
func killNamespace(ctx context.Context, ns string) error {
	pids := func() []int {
		out, _ := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		var ps []int
		for _, f := range strings.Fields(string(out)) {
			if p, err := strconv.Atoi(f); err == nil {
				ps = append(ps, p)
			}
		}
		return ps
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		ps := pids()
		if len(ps) == 0 {
			return nil
		}
		for _, p := range ps {
			_ = syscall.Kill(p, sig) // it may have exited meanwhile; pids() tells
		}
		for i := 0; i < 50 && len(pids()) > 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if ps := pids(); len(ps) > 0 {
		return fmt.Errorf("namespace %s: processes %v survive SIGKILL", ns, ps)
	}
	return nil
}
