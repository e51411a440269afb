package labtest

import (
	"context"
	"fmt"
	"os"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/lab"
)

// Lock is the lab's lock file: whatever uses the lab (a test suite, make
// demo, make bench-migration) holds it, so that two never share the lab.
const Lock = "/tmp/virtpool-lab.lock"

// Up brings a three-host lab up for a test suite (with host budgets or
// without, see lab.Config.NoBudgets) and returns it with the
// function that undoes what Up did. It holds the lab lock until then,
// unless VIRTPOOL_LAB_LOCK_HELD=1 says the caller (make, through flock -o)
// already holds it. A lab that was already up, or VIRTPOOL_LAB_KEEP=1,
// stays up afterwards: Up does not tear down what it did not start.
func Up(ctx context.Context, suite string, budgets bool, log hclog.Logger) (*lab.Lab, func(), error) {
	unlock := func() {}
	if os.Getenv("VIRTPOOL_LAB_LOCK_HELD") != "1" {
		var err error
		if unlock, err = lock(suite); err != nil {
			return nil, nil, err
		}
	}
	_, loadErr := lab.Load()
	keep := loadErr == nil || os.Getenv("VIRTPOOL_LAB_KEEP") == "1"
	down := func() {
		if !keep {
			if err := lab.Down(ctx, log); err != nil {
				fmt.Fprintf(os.Stderr, "%s: lab down: %v\n", suite, err)
			}
		}
		unlock()
	}
	l, err := lab.Up(ctx, lab.Config{Hosts: 3, NoBudgets: !budgets, Log: log.Named("lab")})
	if err != nil {
		down()
		return nil, nil, fmt.Errorf("%s: lab up: %w", suite, err)
	}
	return l, down, nil
}

// lock takes the lab lock, waiting (and saying so) while another holds it.
// The descriptor is close-on-exec (os.OpenFile's default), so the libvirt
// daemons the lab starts, which outlive the tests, never inherit it.
func lock(suite string) (func(), error) {
	f, err := os.OpenFile(Lock, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("%s: lab lock: %w", suite, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(os.Stderr, "%s: waiting for the lab lock %s\n", suite, Lock)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: lab lock: %w", suite, err)
		}
	}
	return func() { f.Close() }, nil
}
