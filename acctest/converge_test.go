package acctest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
)

// dirtyOpts migrate at 32 MiB/s, far below the rate the lab guest's
// dirtier rewrites its 64 MiB (hundreds of MiB/s), with libvirt's default
// downtime target (300 ms): such a migration never converges by itself.
var dirtyOpts = driver.MigrateOptions{BandwidthMiBs: 32, Persistent: true, UndefineSource: true}

// Every migration ends (issue 13): a guest dirtying memory faster than the
// bandwidth, once with each policy. Auto-converge converges, post-copy
// completes; neither aborts in bounded time with the guest running on its
// source exactly once and an error that names the cause.
func TestMigrationConverges(t *testing.T) {
	needLab(t)
	a, b := hostsAB()
	// One dirtier computes for each page it writes (cost), as an
	// application does: it dirties as fast as it gets CPU, and
	// auto-converge makes it converge (at a throttle of ~90%). The other
	// only stores one word a page and rewrites its 64 MiB between two
	// syncs however hard the vCPU is throttled on most runs (measured: the
	// dirty rate stays at ~8,150 pages/s from 20% to 99%), yet converges at
	// 99% on some (a CI run). So with post-copy allowed as well, a completion
	// deadline (15 s, reached at a throttle of ~40%) makes the switch
	// certain: the guest is throttled first, then the destination takes
	// over. (Switching after the throttle reached 99% is decided by the
	// same monitor; TestMonitorDecide covers it.)
	cases := []struct {
		name         string
		autoConverge bool
		postCopy     bool
		cpuBound     bool
		deadline     time.Duration // CompletionPerGiB (0: the default)
	}{
		{"neither: aborted", false, false, false, 0},
		{"post-copy: completes", false, true, false, 0},
		{"auto-converge: converges", true, false, true, 0},
		{"auto-converge, then post-copy: completes", true, true, false, 15 * time.Second},
	}
	var rows []string
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := startGuest(t, a, 128)
			s, err := client.FollowTCP(g.IP)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Stop()
			g.setLoad(t, 0, 64)
			if c.cpuBound {
				g.costlyPages(t, 30*time.Microsecond)
			}
			time.Sleep(time.Second) // the dirtier has its 64 MiB
			o := dirtyOpts
			o.AutoConverge, o.PostCopy, o.CompletionPerGiB = c.autoConverge, c.postCopy, c.deadline
			w := watchHosts(g, a, b)
			start := time.Now()
			var last driver.MigrateProgress
			throttled := 0 // the most auto-converge slowed the guest before post-copy
			res, err := drv.Migrate(context.Background(), request(g, b, o), func(p driver.MigrateProgress) {
				last = p
				if !p.PostCopy {
					throttled = max(throttled, p.ThrottlePercent)
				}
			})
			wall := time.Since(start)
			if w.stop() > 1 {
				t.Fatalf("%s was seen running on both hosts", g.Name)
			}
			if c.autoConverge || c.postCopy {
				if err != nil {
					t.Fatalf("migration with %s: %v", c.name, err)
				}
				if res.PostCopy != c.postCopy {
					t.Errorf("post-copy %v, want %v", res.PostCopy, c.postCopy)
				}
				if c.autoConverge && throttled == 0 {
					t.Errorf("auto-converge never throttled the guest")
				}
				g.Host = b
			} else {
				want := []string{"aborted: not converging", "guest dirties ~", "allow auto_converge or post_copy, or raise bandwidth_mib"}
				for _, w := range want {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Fatalf("migration error %v, want one containing %q", err, w)
					}
				}
				if driver.CodeOf(err) != driver.CodeOperationAborted {
					t.Errorf("error code %d, want libvirt's %d (operation aborted)", driver.CodeOf(err), driver.CodeOperationAborted)
				}
			}
			g.assertOnlyOn(t, g.Host.Name)
			g.setLoad(t, 0, 0)
			waitStreamAdvance(t, g, s, 20)
			if r := s.Stop(); r.Err != nil {
				t.Fatalf("stream: %v", r.Err)
			}
			g.seqCheck(t)
			rows = append(rows, fmtRow(c.name, wall, last.DataProcessed, throttled, err))
		})
	}
	t.Logf("a 128 MiB guest dirtying 64 MiB, migrated at 32 MiB/s\n%-42s %8s %10s %10s  %s\n%s",
		"policy", "wall", "sent MiB", "throttled", "result", joinLines(rows))
}

// costlyPages makes the guest's dirtier compute for about d for each page
// it writes (so ~4 KiB/d at most: 130 MiB/s for 30 µs), measured with the
// same computation timed from outside.
func (g *guest) costlyPages(t *testing.T, d time.Duration) {
	t.Helper()
	const n = 20_000_000
	took, err := client.Work(context.Background(), g.IP, n)
	if err != nil {
		t.Fatal(err)
	}
	cost := int64(float64(n) * d.Seconds() / took.Seconds())
	if _, err := client.Get(requestCtx(), g.IP, fmt.Sprintf("/load?cost=%d", cost)); err != nil {
		t.Fatal(err)
	}
	t.Logf("dirtier: %d rounds of computation a page (%.0f million rounds/s)", cost, n/took.Seconds()/1e6)
}

func fmtRow(name string, wall time.Duration, sent uint64, throttled int, err error) string {
	r := "done"
	if err != nil {
		r = err.Error()
		if i := strings.Index(r, "aborted: "); i >= 0 {
			r = r[i:]
		}
	}
	return fmt.Sprintf("%-42s %8s %10d %9d%%  %s", name, wall.Round(100*time.Millisecond), sent>>20, throttled, r)
}

// A migration whose caller died is still bounded, by the policy it started
// with: the driver is killed while a guest that does not converge migrates
// with post-copy allowed; the next driver, as soon as it connects to the
// source, finds the job, reads the limits its starter noted, and switches
// it to post-copy (the defaults would abort it instead).
func TestOrphanMigrationEnds(t *testing.T) {
	needLab(t)
	a, b := hostsAB()
	g := startGuest(t, a, 128)
	g.setLoad(t, 0, 64)
	time.Sleep(time.Second)
	o := dirtyOpts
	o.PostCopy = true
	started := make(chan struct{})
	var once sync.Once
	errc := make(chan error, 1)
	go func() {
		_, err := drv.Migrate(context.Background(), request(g, b, o), func(p driver.MigrateProgress) {
			if p.DataProcessed > 4<<20 {
				once.Do(func() { close(started) })
			}
		})
		errc <- err
	}()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("migration ended before the driver was killed: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("migration did not start transferring")
	}
	if err := syscall.Kill(driverProc.Pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill driver: %v", err)
	}
	killed := time.Now()
	if err := <-errc; err == nil {
		t.Fatal("migration reported done by a killed driver")
	}
	restartDriver(t)
	// Nothing but a connection: the new driver looks for jobs on its own.
	if _, err := drv.ListDomains(context.Background(), a.URI); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		on := g.where(t)
		if len(on) == 1 && on[0] == b.Name {
			break
		}
		if len(on) > 1 {
			t.Fatalf("%s runs on %v", g.Name, on)
		}
		if time.Now().After(deadline) {
			j, _ := drv.JobStats(context.Background(), a.URI, g.Name)
			t.Fatalf("the orphan migration still runs 3 minutes after its driver was killed (job %+v, guest on %v)", j, on)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("orphan migration ended by the next driver %s after the kill, the guest on %s", time.Since(killed).Round(100*time.Millisecond), b.Name)
	g.Host = b
	g.assertOnlyOn(t, b.Name)
	g.setLoad(t, 0, 0)
	g.seqCheck(t)
}
