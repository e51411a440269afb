package acctest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtpool/virtpool/event"
)

// Test 5: the driver process of virtpool-target is killed while a scale
// action migrates a guest. Whether libvirt then completes the migration
// (it drives it peer to peer) or it is rolled back (here: aborted on the
// source right after the kill), no guest is lost or runs on two hosts, the
// plugin starts a new driver process, and the next evaluations converge:
// no host hot, one loaded guest per host.
func TestAccDriverKilledMidMigration(t *testing.T) {
	needLab(t)
	cases := []struct {
		name  string
		abort bool // abort the orphaned migration: the next evaluation must redo it
	}{
		{"migration completes", false},
		{"migration rolled back", true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := fmt.Sprintf("t5%c", 'a'+i)
			// A slower migration (the guest's ~25 MiB at 10 MiB/s, a few
			// seconds) leaves time to strike in the middle of it. (Much slower
			// ones do not converge under load before libvirt's keepalive
			// gives up, ~30 s.)
			pol := hotAbove(hotHigh)
			pol.BandwidthMiB = 10
			p := newPool(t, name, []string{"h1", "h2"}, fmt.Sprintf("192.0.2.%d/24", 241+5*i), 2, 1, 2, pol)
			p.createOn("h1", "h1")
			members := []string{pool1(p, 1), pool1(p, 2)}
			w := watchMembers(t, p, func() []string { return members })
			s := followStreams(t, p, 2)
			a := startAgent(t, map[string]string{"hot.hcl": hotPolicy(name+"-hot", name, "")}, targetConfig(), apmConfig())
			a.waitLog(regexpPolicyEval(name), time.Now(), 60*time.Second)

			t0 := time.Now()
			p.setLoad(1, hostPct(loadedPct))
			p.setLoad(2, hostPct(loadedPct))
			// A second progress report: the transfer has run for a second.
			progress := a.waitEvent(wantEvent{"live migration progress after a second", func(e event.Event) bool {
				return e.Kind == event.MigrationProgress && e.ElapsedMs >= 1000
			}}, t0, 90*time.Second)
			victim := progress.Guest
			pid := targetDriverPid(t, a)
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatalf("kill driver %d: %v", pid, err)
			}
			killed := time.Now()
			t.Logf("killed the target's driver process %d while migrating %s: %s", pid, victim, progress)
			if tc.abort {
				h1, _ := theLab.Host("h1")
				if err := drv.AbortMigration(context.Background(), h1.URI, victim); err != nil {
					t.Logf("abort (the migration may have ended already): %v", err)
				}
			}

			restarted := a.waitEvent(eventOf(event.DriverRestarted, ""), killed, 60*time.Second)
			converged := waitFor(t, "one member per host", 120*time.Second, func() bool {
				return len(p.on("h1")) == 1 && len(p.on("h2")) == 1
			}, placementOf(p))
			// And it stays so: nothing else to repair.
			time.Sleep(hold)
			if len(p.on("h1")) != 1 || len(p.on("h2")) != 1 {
				t.Errorf("placement after convergence: %v", p.placement())
			}
			failed, reported := a.findEvent(eventOf(event.ScaleFailed, name), killed.Add(-time.Second))
			again, retried := a.findEvent(migrationStarted, killed)
			tl := newTimeline(t, "driver killed mid-migration, "+tc.name, t0)
			tl.add("first migration started", a.mustFindEvent(migrationStarted, t0).Time)
			tl.add("driver process killed", killed)
			if reported {
				tl.add("scale action failed (reported)", failed.Time)
			}
			tl.add("driver process restarted", restarted.Time)
			if retried {
				tl.add("migration started again", again.Time)
			}
			tl.add("converged (one guest per host)", converged)
			tl.print()
			switch {
			case retried:
				t.Logf("the interrupted migration was rolled back; the next evaluation moved a guest again")
			case tc.abort:
				t.Logf("the migration had completed before the abort; nothing to repair")
			default:
				t.Logf("the interrupted migration completed (libvirt drives it peer to peer); nothing to repair")
			}
			p.setLoad(1, 0)
			p.setLoad(2, 0)
			w.check(t)
			s.check(t)
		})
	}
}

// targetDriverPid finds the driver process virtpool-target started: a
// child of the agent's virtpool-target child.
func targetDriverPid(t *testing.T, a *agent) int {
	t.Helper()
	for _, plug := range children(a.Pid()) {
		if comm(plug) != "virtpool-target" {
			continue
		}
		for _, d := range children(plug) {
			if comm(d) == "virtpool-driver" {
				return d
			}
		}
	}
	t.Fatalf("no virtpool-driver process under the agent's virtpool-target")
	return 0
}

func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces: parse after ")".
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 {
			if pp, _ := strconv.Atoi(f[1]); pp == pid {
				out = append(out, n)
			}
		}
	}
	return out
}
