package acctest

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/probe"
)

// R-T5: migration time against a plain transfer of the same bytes over the
// same link, measured in the same run, for a small idle guest (mostly zero
// pages: a fixed cost dominates) and a larger one with 384 MiB of data to
// copy. Reported, not asserted: it is a measurement (see make
// bench-migration for the full table).
func TestRT5MigrationVersusRawTransfer(t *testing.T) {
	needLab(t)
	a, b := hostsAB()
	var rows string
	for _, c := range []struct{ memMiB, fillMiB int }{{128, 0}, {512, 384}} {
		g := startGuest(t, a, uint64(c.memMiB))
		if c.fillMiB > 0 {
			g.fill(t, c.fillMiB)
		}
		for i, to := range []lab.Host{b, a, b} {
			from := g.Host
			m := migrate(t, g, to, labOpts)
			raw, err := probe.RawTransfer(context.Background(), from.Namespace, to.Namespace, to.IP, int64(m.Bytes))
			if err != nil {
				t.Fatal(err)
			}
			if m.Bytes == 0 || raw <= 0 {
				t.Fatalf("nothing measured: %d bytes in %s", m.Bytes, raw)
			}
			rows += fmt.Sprintf("%4d MiB (%3d MiB data) %d  %s→%s  %10d bytes  migration %8s (call %8s)  raw %8s  ratio %6.2f (call %6.2f)\n",
				c.memMiB, c.fillMiB, i+1, from.Name, to.Name, m.Bytes, m.Elapsed, m.Wall.Round(time.Millisecond),
				raw.Round(time.Microsecond), float64(m.Elapsed)/float64(raw), float64(m.Wall)/float64(raw))
		}
	}
	t.Logf("R-T5 migration time (libvirt's job; the whole driver call) / raw transfer time of the same bytes:\n%s", rows)
}

// R-T7: ping the guest every 10 ms from the client namespace during
// migrations; report median and max downtime, from the pings and from
// libvirt's job info.
func TestRT7Downtime(t *testing.T) {
	needLab(t)
	const runs = 10
	a, b := hostsAB()
	g := startGuest(t, a, 128)
	var fromPing, fromJob []time.Duration
	lost := 0
	for i := 0; i < runs; i++ {
		to := b
		if g.Host.Name == b.Name {
			to = a
		}
		p, err := client.StartPing(g.IP)
		if err != nil {
			t.Fatalf("run %d: %v; the guest: %s", i+1, err, g.describe(t))
		}
		m := migrate(t, g, to, labOpts)
		pr, err := p.Stop()
		if err != nil {
			t.Fatalf("run %d: %v; the guest: %s", i+1, err, g.describe(t))
		}
		if pr.Received < pr.Sent-200 || pr.Received < 20 {
			t.Fatalf("run %d: guest stopped answering pings: %d of %d", i+1, pr.Received, pr.Sent)
		}
		fromPing = append(fromPing, pr.Downtime)
		fromJob = append(fromJob, m.Downtime)
		lost += pr.Sent - pr.Received
	}
	mp, xp := medianMax(fromPing)
	mj, xj := medianMax(fromJob)
	t.Logf("R-T7 downtime over %d migrations (seed: 1 s): pings every 10 ms: median %s max %s (%d pings lost); libvirt job: median %s max %s",
		runs, mp, xp, lost, mj, xj)
}

func medianMax(ds []time.Duration) (time.Duration, time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0, 0
	}
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med.Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond)
}
