package acctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/labtest"
)

// slowOpts make a migration last seconds (the guest's ~25 MiB of non-zero
// memory at 2 MiB/s), so a fault lands in the middle.
var slowOpts = driver.MigrateOptions{BandwidthMiBs: 2, Persistent: true, UndefineSource: true}

// Fault injection: whatever breaks mid-migration, the guest keeps running
// on exactly one host, its stream unbroken, and the migration can be
// retried.
func TestFaultsDuringMigration(t *testing.T) {
	needLab(t)
	cases := []struct {
		name string
		// inject breaks the migration of g from src to dst, in flight.
		inject func(t *testing.T, g *guest, src, dst lab.Host, cancel context.CancelFunc)
		// mayComplete: the fault does not stop the migration (the source
		// libvirtd drives it), so the guest may end on either host.
		mayComplete bool
		// breaksDest: the destination's daemons need a restart afterwards.
		breaksDest bool
	}{
		{"kill destination libvirtd", func(t *testing.T, g *guest, _, dst lab.Host, _ context.CancelFunc) {
			killPidfile(t, filepath.Join(dst.StateDir, "run", "libvirtd.pid"))
		}, false, true},
		{"kill destination QEMU", func(t *testing.T, g *guest, _, dst lab.Host, _ context.CancelFunc) {
			killQEMU(t, dst, g.Name)
		}, false, true},
		{"cancel the caller's context", func(t *testing.T, _ *guest, _, _ lab.Host, cancel context.CancelFunc) {
			cancel()
		}, false, false},
		{"AbortMigration", func(t *testing.T, g *guest, src, _ lab.Host, _ context.CancelFunc) {
			if err := drv.AbortMigration(context.Background(), src.URI, g.Name); err != nil {
				t.Errorf("AbortMigration: %v", err)
			}
		}, false, false},
		{"kill the driver process", func(t *testing.T, _ *guest, _, _ lab.Host, _ context.CancelFunc) {
			if err := syscall.Kill(driverProc.Pid(), syscall.SIGKILL); err != nil {
				t.Fatalf("kill driver: %v", err)
			}
			for i := 0; i < 100 && !driverProc.Exited(); i++ {
				time.Sleep(50 * time.Millisecond)
			}
		}, true, false},
	}
	a, b := hostsAB()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGuest(t, a, 128)
			s, err := client.FollowTCP(g.IP)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			started := make(chan struct{})
			var once sync.Once
			errc := make(chan error, 1)
			go func() {
				_, err := drv.Migrate(ctx, request(g, b, slowOpts), func(p driver.MigrateProgress) {
					if p.DataProcessed > 2<<20 {
						once.Do(func() { close(started) })
					}
				})
				errc <- err
			}()
			select {
			case <-started:
			case err := <-errc:
				t.Fatalf("migration ended before the fault: %v", err)
			case <-time.After(60 * time.Second):
				t.Fatal("migration did not start transferring")
			}
			c.inject(t, g, a, b, cancel)
			err = <-errc
			t.Logf("migration after %q: %v", c.name, err)
			if err == nil && !c.mayComplete {
				t.Fatal("migration succeeded despite the fault")
			}

			// Repair what the fault broke, as an operator (or the next
			// evaluation) would.
			if c.breaksDest {
				if err := lab.Start(context.Background(), b); err != nil {
					t.Fatalf("restart %s: %v", b.Name, err)
				}
			}
			if driverProc.Exited() {
				restartDriver(t)
			}
			on := waitSettled(t, g)
			if len(on) != 1 {
				t.Fatalf("guest runs on %v after %q, want exactly one host", on, c.name)
			}
			if !c.mayComplete && on[0] != a.Name {
				t.Fatalf("guest runs on %v after a failed migration, want the source %s", on, a.Name)
			}
			g.Host, _ = theLab.Host(on[0])
			waitStreamAdvance(t, g, s, 20)
			if r := s.Stop(); r.Err != nil {
				t.Fatalf("stream broken by %q: %v", c.name, r.Err)
			}
			// Safe to retry: the same request now succeeds (or is a no-op
			// if the guest already moved).
			res, err := drv.Migrate(context.Background(), lab.MigrateRequest(g.Name, a, b, labOpts), nil)
			if err != nil {
				t.Fatalf("retry after %q: %v (guest states: %v)", c.name, err, g.states(t))
			}
			if res.UUID != g.UUID {
				t.Fatalf("retry: UUID %s, want %s", res.UUID, g.UUID)
			}
			g.Host = b
			g.assertOnlyOn(t, b.Name)
			g.seqCheck(t)
		})
	}
}

// waitSettled waits until the guest is active (running, or paused as a
// migration's destination is) on one host only, and returns where it runs.
func waitSettled(t *testing.T, g *guest) []string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := g.states(t)
		active := 0
		for _, s := range st {
			if s != driver.StateShutoff {
				active++
			}
		}
		if active == 1 || time.Now().After(deadline) {
			t.Logf("settled: %v", st)
			return g.where(t)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func restartDriver(t *testing.T) {
	t.Helper()
	driverProc.Close()
	bin, err := labtest.DriverBinary()
	if err != nil {
		t.Fatal(err)
	}
	if err := startDriver(bin); err != nil {
		t.Fatal(err)
	}
}

func killPidfile(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile %s: %v", path, err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill %d: %v", pid, err)
	}
}

// killQEMU kills the QEMU process of a guest on a host.
func killQEMU(t *testing.T, h lab.Host, name string) {
	t.Helper()
	out, err := lab.CommandIn(context.Background(), h.Namespace, "pgrep", "-f", fmt.Sprintf("guest=%s,", name)).Output()
	if err != nil {
		t.Fatalf("no QEMU for %s on %s: %v", name, h.Name, err)
	}
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		if pid > 0 && inNamespace(pid, h.Namespace) {
			_ = syscall.Kill(pid, syscall.SIGKILL) // gone already is as good
			return
		}
	}
	t.Fatalf("no QEMU for %s in namespace %s", name, h.Namespace)
}

// inNamespace reports whether pid lives in the named network namespace
// (pgrep sees every namespace's processes).
func inNamespace(pid int, ns string) bool {
	self, err1 := os.Stat(filepath.Join("/run/netns", ns))
	proc, err2 := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err1 != nil || err2 != nil {
		return false
	}
	s1, ok1 := self.Sys().(*syscall.Stat_t)
	s2, ok2 := proc.Sys().(*syscall.Stat_t)
	return ok1 && ok2 && s1.Ino == s2.Ino && s1.Dev == s2.Dev
}
