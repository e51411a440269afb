package acctest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
)

// labOpts are the migration options the lab tests use unless they say
// otherwise: a bandwidth cap well above the link (libvirt's default is low)
// and a definition that follows the guest.
var labOpts = driver.MigrateOptions{
	BandwidthMiBs:  2000,
	MaxDowntime:    50 * time.Millisecond,
	Persistent:     true,
	UndefineSource: true,
}

func request(g *guest, to lab.Host, o driver.MigrateOptions) driver.MigrateRequest {
	return lab.MigrateRequest(g.Name, g.Host, to, o)
}

type migration struct {
	driver.MigrateResult
	From, To      string
	Wall          time.Duration // as the caller saw it
	ProgressCalls int
	MaxRunning    int // most hosts seen running the guest at once (must be 1)
}

// migrate moves g to host `to` through the driver, watching meanwhile that
// the guest never runs on both hosts, and checks it ends up only on `to`.
func migrate(t testing.TB, g *guest, to lab.Host, o driver.MigrateOptions) migration {
	t.Helper()
	m := migration{From: g.Host.Name, To: to.Name}
	w := watchHosts(g, g.Host, to)
	start := time.Now()
	res, err := drv.Migrate(context.Background(), request(g, to, o), func(driver.MigrateProgress) { m.ProgressCalls++ })
	m.Wall = time.Since(start)
	m.MaxRunning = w.stop()
	if err != nil {
		t.Fatalf("migrate %s %s→%s: %v", g.Name, m.From, m.To, err)
	}
	m.MigrateResult = res
	if res.UUID != g.UUID {
		t.Fatalf("UUID changed: %s → %s", g.UUID, res.UUID)
	}
	if m.MaxRunning > 1 {
		t.Fatalf("%s was seen running on both %s and %s", g.Name, m.From, m.To)
	}
	g.Host = to
	g.assertOnlyOn(t, to.Name)
	return m
}

// watcher polls two hosts and records the most on which the guest ran at
// once. It reads the destination first: once the guest runs there, the
// source must never run it again, so a later "running" on the source is a
// real overlap, not a race of the two reads.
type watcher struct {
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	max   int
}

func watchHosts(g *guest, src, dst lab.Host) *watcher {
	w := &watcher{stopc: make(chan struct{}), done: make(chan struct{})}
	running := func(h lab.Host) bool {
		doms, err := drv.ListDomains(context.Background(), h.URI)
		if err != nil {
			return false
		}
		for _, d := range doms {
			if d.Name == g.Name && d.State == driver.StateRunning {
				return true
			}
		}
		return false
	}
	go func() {
		defer close(w.done)
		for {
			n := 0
			if running(dst) {
				n++
			}
			if running(src) {
				n++
			}
			w.mu.Lock()
			if n > w.max {
				w.max = n
			}
			w.mu.Unlock()
			select {
			case <-w.stopc:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}

func (w *watcher) stop() int {
	close(w.stopc)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.max
}

// waitStreamAdvance fails the test unless the stream still flows.
func waitStreamAdvance(t testing.TB, g *guest, s *probe.Stream, n int) {
	t.Helper()
	if err := s.WaitAdvance(n, 20*time.Second); err != nil {
		t.Fatalf("%v; the guest then: %s", err, g.describe(t))
	}
}

// describe says where the guest runs and whether it answers a new request
// (its /stat: load settings, loadavg, CPU counters), for failure messages:
// a stalled stream from a guest that answers is a stuck connection, from
// one that does not, a stuck guest or network.
func (g *guest) describe(t testing.TB) string {
	t.Helper()
	stat, err := client.Get(requestCtx(), g.IP, "/stat")
	if err != nil {
		stat = "no answer: " + err.Error()
	}
	return fmt.Sprintf("running on %v; GET /stat: %s%s", g.where(t), strings.ReplaceAll(strings.TrimSpace(stat), "\n", "; "),
		g.console())
}

// console is the end of the guest's serial console on each lab host that
// has one (the guest kernel says "quiet" there until it oopses or panics).
func (g *guest) console() string {
	var b strings.Builder
	for _, h := range theLab.Hosts {
		data, err := os.ReadFile(filepath.Join(h.StateDir, "log", "qemu", g.Name+"-console.log"))
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		fmt.Fprintf(&b, "\nconsole of %s on %s (last lines):\n%s", g.Name, h.Name, strings.Join(lines[max(0, len(lines)-12):], "\n"))
	}
	return b.String()
}

func hostsAB() (lab.Host, lab.Host) {
	return theLab.Hosts[0], theLab.Hosts[1]
}
