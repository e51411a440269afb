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
// A lab of another shape (host count, budgets), such as one a killed run
// of another suite left, is taken down and replaced: with the lock held
// nothing else uses it, and refusing would leave every later run red.
func Up(ctx context.Context, suite string, budgets bool, log hclog.Logger) (*lab.Lab, func(), error) {
	return UpN(ctx, suite, 3, budgets, log)
}

// TransportEnv names the lab transport test suites run over (unix, tls,
// ssh; default unix): 'make testacc-transports' runs the provider's and
// the autoscaler's main paths over each.
const TransportEnv = "VIRTPOOL_LAB_TRANSPORT"

// UpN is Up with another number of hosts.
func UpN(ctx context.Context, suite string, hosts int, budgets bool, log hclog.Logger) (*lab.Lab, func(), error) {
	transport, err := lab.ParseTransport(os.Getenv(TransportEnv))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %s: %w", suite, TransportEnv, err)
	}
	unlock := func() {}
	if os.Getenv("VIRTPOOL_LAB_LOCK_HELD") != "1" {
		if unlock, err = lock(suite); err != nil {
			return nil, nil, err
		}
	}
	old, loadErr := lab.Load()
	if loadErr == nil && (old.Budgets != budgets || len(old.Hosts) != hosts || old.Transport() != transport) {
		fmt.Fprintf(os.Stderr, "%s: replacing the lab that is up (%d hosts, budgets %t, over %s) with one of %d hosts, budgets %t, over %s\n",
			suite, len(old.Hosts), old.Budgets, old.Transport(), hosts, budgets, transport)
		if err := lab.Down(ctx, log); err != nil {
			unlock()
			return nil, nil, fmt.Errorf("%s: lab down: %w", suite, err)
		}
		loadErr = os.ErrNotExist
	}
	keep := loadErr == nil || os.Getenv("VIRTPOOL_LAB_KEEP") == "1"
	down := func() {
		if !keep {
			if err := lab.Down(ctx, log); err != nil {
				fmt.Fprintf(os.Stderr, "%s: lab down: %v\n", suite, err)
			}
		}
		unlock()
	}
	// The suites that name virtpool's binary get the hosts' checkpoint
	// helpers (lab.ShipPort).
	l, err := lab.Up(ctx, lab.Config{Hosts: hosts, NoBudgets: !budgets, Transport: transport,
		ShipBin: os.Getenv("VIRTPOOL_BIN"), Log: log.Named("lab")})
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
