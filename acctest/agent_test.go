package acctest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/agent"
	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/agenttest"
)

// agentInterval is the tests' agent sample interval.
const agentInterval = 500 * time.Millisecond

// runningAgent is a `virtpool agent` process and its API.
type runningAgent = agenttest.Agent

// startAgent runs the real `virtpool agent` binary against the lab hosts,
// sampling every interval, and stops it when the test ends.
func startAgent(t testing.TB, interval time.Duration) *runningAgent {
	t.Helper()
	return agenttest.Start(t, theLab, agenttest.Options{Interval: interval})
}

func findGuest(s agent.State, name string) (agent.Guest, bool) {
	for _, g := range s.Guests() {
		if g.Name == name && g.State == driver.StateRunning {
			return g, true
		}
	}
	return agent.Guest{}, false
}

// TestAgentFollowsGuests runs `virtpool agent` against the lab hosts, as an
// operator would, and checks what it serves against the guest itself: the
// CPU a guest's load generator burns (as the guest's own kernel counts it)
// shows in the API and in /metrics, its memory as it fills, and a live
// migration first in flight, then finished with the guest on its new host.
func TestAgentFollowsGuests(t *testing.T) {
	needLab(t)
	src, dst := hostsAB()
	ag := startAgent(t, agentInterval)
	g := startGuest(t, src, 256)

	s := ag.After(t, 1)
	got, ok := findGuest(s, g.Name)
	if !ok || got.Host != src.Name || got.UUID != g.UUID || got.MemoryBytes != 256<<20 {
		t.Fatalf("agent shows %s as %+v (found %v), want running on %s with 256 MiB", g.Name, got, ok, src.Name)
	}

	// CPU: the agent's rate over 6 samples against the CPU its QEMU
	// process used meanwhile (/proc), the same quantity measured apart;
	// the guest's own count says that its load ran. The guest's count is
	// no measure of the host's CPU: when the machine is busy its vCPU
	// waits for a CPU, and the guest counts that wait as busy too.
	qemu, err := src.QEMU(g.Name)
	if err != nil {
		t.Fatal(err)
	}
	g.setLoad(t, 50, 0)
	ag.After(t, 1) // the first interval with the load on its whole length starts now
	before, err := client.CPU(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	const n = 6
	qemuBefore, err := qemu.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range n {
		s = ag.After(t, 1)
		got, _ = findGuest(s, g.Name)
		sum += got.CPUCores
	}
	qemuAfter, err := qemu.CPUTime()
	if err != nil {
		t.Fatal(err)
	}
	qemuCores := (qemuAfter - qemuBefore).Seconds() / time.Since(start).Seconds()
	after, err := client.CPU(requestCtx(), g.IP)
	if err != nil {
		t.Fatal(err)
	}
	agentCores, guestBusy := sum/n, after.BusySince(before)
	// Tolerance 0.1 core: the agent's six samples and this window differ
	// by up to a sample at each end.
	t.Logf("CPU at load 50%%: agent %.3f cores, QEMU's process %.3f, the guest's own count %.3f", agentCores, qemuCores, guestBusy)
	if guestBusy < 0.3 || math.Abs(agentCores-qemuCores) > 0.1 {
		t.Errorf("agent shows %.3f cores for %s, its QEMU used %.3f (the guest counts %.3f busy): want within 0.1", agentCores, g.Name, qemuCores, guestBusy)
	}
	var metrics string
	ag.Get(t, "/metrics", &metrics)
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^virtpool_guest_cpu_cores\{guest="%s",host="%s",pool=""\} (\S+)$`, g.Name, src.Name))
	if m := re.FindStringSubmatch(metrics); m == nil {
		t.Errorf("/metrics has no virtpool_guest_cpu_cores for %s on %s", g.Name, src.Name)
	} else if v := parseFloat(t, m[1]); v < 0.1 {
		// One sample, not the six above: it shows the load, not its figure.
		t.Errorf("/metrics: virtpool_guest_cpu_cores of %s = %v, want the load (about %.2f)", g.Name, v, qemuCores)
	}
	g.setLoad(t, 0, 0)

	// Memory: 64 MiB written shows in the guest's resident memory.
	rssBefore, rssAfter := writeMemory(t, ag, g, 64)
	t.Logf("resident memory: %d MiB before, %d MiB after writing 64 MiB", rssBefore>>20, rssAfter>>20)
	if rssAfter > rssBefore+96<<20 {
		t.Errorf("agent shows %d MiB resident for %s after it wrote 64 MiB, before %d MiB", rssAfter>>20, g.Name, rssBefore>>20)
	}

	// A migration slow enough to be sampled in flight (64 MiB at 8 MiB/s),
	// then a fast one back, shorter than a sample interval: the agent
	// knows of its start from the destination's libvirt events.
	o := labOpts
	o.BandwidthMiBs = 8
	migrateWatched(t, ag, g, dst, o)
	migrateWatched(t, ag, g, src, labOpts)
}

// TestAgentFollowsNetwork (seed 001's validation, network): a download
// from the guest paced at 2 MiB/s shows in the agent as the guest's
// network rate, and as its host's (the sum of its guests'), in the API and
// in /metrics. The rate counts both ways (the data sent and the ACKs
// received) over whole samples; measured: 2.00-2.01 MiB/s.
func TestAgentFollowsNetwork(t *testing.T) {
	needLab(t)
	ag := startAgent(t, agentInterval)
	g := startGuest(t, theLab.Hosts[0], 128)
	// This guest has no disk: its disk load is refused, saying so.
	if err := client.SetDiskLoad(requestCtx(), g.IP, 1, 0); err == nil || !strings.Contains(err.Error(), "no disk") {
		t.Errorf("a disk load on %s, which has no disk: %v, want an error saying so", g.Name, err)
	}
	const rate = 2 << 20
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- client.Download(ctx, g.IP, 30*rate, rate) }()
	ag.After(t, 3) // past the first burst, while TCP's window opens
	var sum, sumHost float64
	const n = 8
	for range n {
		s := ag.After(t, 1)
		got, _ := findGuest(s, g.Name)
		sum += got.NetBps
		sumHost += hostIn(s, g.Host.Name).NetBps
	}
	seen, host := sum/n, sumHost/n
	var metrics string
	ag.Get(t, "/metrics", &metrics)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	t.Logf("network: download paced at %.1f MiB/s, agent shows %.2f MiB/s for %s, %.2f MiB/s for %s",
		float64(rate)/(1<<20), seen/(1<<20), g.Name, host/(1<<20), g.Host.Name)
	// Tolerance 20%: the windows of the samples and of the pacing differ.
	if math.Abs(seen-rate) > 0.2*rate {
		t.Errorf("agent shows %.0f B/s of network for %s, the download runs at %d B/s: want within 20%%", seen, g.Name, rate)
	}
	if math.Abs(host-rate) > 0.2*rate {
		t.Errorf("agent shows %.0f B/s of network for %s, its only busy guest downloads at %d B/s: want within 20%%", host, g.Host.Name, rate)
	}
	re := regexp.MustCompile(fmt.Sprintf(`(?m)^virtpool_guest_network_bytes_per_second\{guest="%s",host="%s",pool=""\} (\S+)$`, g.Name, g.Host.Name))
	if m := re.FindStringSubmatch(metrics); m == nil {
		t.Errorf("/metrics has no virtpool_guest_network_bytes_per_second for %s", g.Name)
	} else if v := parseFloat(t, m[1]); math.Abs(v-rate) > 0.3*rate {
		t.Errorf("/metrics: virtpool_guest_network_bytes_per_second of %s = %v, want about %d", g.Name, v, rate)
	}
	re = regexp.MustCompile(fmt.Sprintf(`(?m)^virtpool_host_network_bytes_per_second\{host="%s"\} (\S+)$`, g.Host.Name))
	if m := re.FindStringSubmatch(metrics); m == nil {
		t.Errorf("/metrics has no virtpool_host_network_bytes_per_second for %s", g.Host.Name)
	} else if v := parseFloat(t, m[1]); math.Abs(v-rate) > 0.3*rate {
		t.Errorf("/metrics: virtpool_host_network_bytes_per_second of %s = %v, want about %d", g.Host.Name, v, rate)
	}
}

// hostIn is the host of that name in a state.
func hostIn(s agent.State, name string) agent.Host {
	for _, h := range s.Hosts {
		if h.Name == name {
			return h
		}
	}
	return agent.Host{}
}

// migrateWatched migrates g to `to` and checks what the agent made of it:
// the guest on its new host, its start and end as events (the end with
// the time and downtime the migration itself reported), and no host
// missed meanwhile.
func migrateWatched(t *testing.T, ag *runningAgent, g *guest, to lab.Host, o driver.MigrateOptions) {
	t.Helper()
	var evs []event.Event
	ag.Get(t, "/api/v1/events", &evs)
	seq := int64(0)
	if len(evs) > 0 {
		seq = evs[len(evs)-1].Seq
	}
	from := g.Host
	m := migrate(t, g, to, o)
	t.Logf("migration %s→%s took %s", from.Name, to.Name, m.Elapsed.Round(time.Millisecond))
	s := ag.After(t, 2)
	if got, ok := findGuest(s, g.Name); !ok || got.Host != to.Name {
		t.Errorf("after the migration the agent shows %s as %+v, want running on %s", g.Name, got, to.Name)
	}
	ag.Get(t, fmt.Sprintf("/api/v1/events?since=%d", seq), &evs)
	var kinds []string
	for _, e := range evs {
		if e.Kind == event.HostDown {
			// A migration's destination holds its domain in a job; a
			// sample that waited for it would miss the host.
			t.Errorf("during the migration: %s", e.Message)
		}
		// This migration's own events: the end of the one before may be
		// seen after its caller's samples (a sample then was slow).
		if e.Guest != g.Name || e.From != from.Name || e.To != to.Name {
			continue
		}
		kinds = append(kinds, fmt.Sprintf("%s %s→%s", e.Kind, e.From, e.To))
		// The destination's completed job: what the driver's Migrate reported.
		if e.Kind == event.MigrationFinished && (e.ElapsedMs != m.Elapsed.Milliseconds() || e.DowntimeMs != m.Downtime.Milliseconds()) {
			t.Errorf("finished migration: the agent shows %d ms, downtime %d ms; the migration reported %d ms, downtime %d ms",
				e.ElapsedMs, e.DowntimeMs, m.Elapsed.Milliseconds(), m.Downtime.Milliseconds())
		}
	}
	want := []string{fmt.Sprintf("%s %s→%s", event.MigrationStarted, from.Name, to.Name),
		fmt.Sprintf("%s %s→%s", event.MigrationFinished, from.Name, to.Name)}
	if strings.Join(kinds, "; ") != strings.Join(want, "; ") {
		t.Errorf("events of %s: %q, want %q", g.Name, kinds, want)
	}
}

// writeMemory has the guest write mib MiB once (then dirty 1 MiB/s, so
// that a migration has that much to copy), and returns its resident memory
// as the agent shows it before and once it has grown by 3/4 of that: some
// pages the guest takes may be resident already (touched at boot).
func writeMemory(t *testing.T, ag *runningAgent, g *guest, mib int) (before, after uint64) {
	t.Helper()
	got, _ := findGuest(ag.After(t, 1), g.Name)
	before = got.RSSBytes
	if _, err := client.Get(requestCtx(), g.IP, fmt.Sprintf("/load?mem=%d&rate=0", mib)); err != nil {
		t.Fatal(err)
	}
	for i := 0; got.RSSBytes < before+uint64(mib)<<20*3/4; i++ {
		if i == 120 {
			t.Fatalf("after 120 samples the agent shows %d MiB resident for %s, %d MiB before it wrote %d MiB",
				got.RSSBytes>>20, g.Name, before>>20, mib)
		}
		got, _ = findGuest(ag.After(t, 1), g.Name)
	}
	if _, err := client.Get(requestCtx(), g.IP, "/load?rate=1"); err != nil {
		t.Fatal(err)
	}
	return before, got.RSSBytes
}

func parseFloat(t *testing.T, s string) float64 {
	t.Helper()
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return v
}

// diskRateMiBs is the rate TestAgentFollowsDisk reads, then writes, at:
// a tenth of a core of TCG, where the guest's disk does 125-135 MiB/s.
const diskRateMiBs = 4

// TestAgentFollowsDisk (seed 001's validation, disk): a guest with a disk
// (a qcow2 overlay on virtio-blk) reads its raw disk, then writes it, at
// diskRateMiBs (O_DIRECT: every byte reaches the device, none stays in the
// guest's page cache), and the agent's disk rate follows each load within
// two sample intervals, for the guest and for its host (the sum of its
// guests', the only one with a disk), in the API and in /metrics; once the
// load stops it is gone within two intervals. Tolerance 20% of what the
// guest itself counts (4.00-4.02 MiB/s): measured, one sample at 4 MiB/s
// reads 3.86-4.25 MiB/s (a sample of 500 ms holds 32 chunks of 64 KiB,
// give or take one) and the mean of 8 samples 3.98-4.02.
func TestAgentFollowsDisk(t *testing.T) {
	needLab(t)
	ag := startAgent(t, agentInterval)
	g := startGuestWithDisk(t, theLab.Hosts[0], 128)
	const rate = diskRateMiBs << 20
	const tol = 0.2
	// rates are the guest's and its host's disk rates in a state.
	rates := func(s agent.State) (guest, host float64) {
		got, ok := findGuest(s, g.Name)
		if !ok {
			t.Fatalf("agent does not show %s running", g.Name)
		}
		return got.DiskBps, hostIn(s, g.Host.Name).DiskBps
	}
	// At most one chunk in flight when the load stops may still land.
	idle := func(when string) {
		t.Helper()
		// The second round begun from now: its interval holds no earlier chunk.
		if gr, hr := rates(ag.After(t, 2)); gr > 0.05*rate || hr > 0.05*rate {
			t.Errorf("%s: 2 samples later the agent shows %.0f B/s of disk for %s, %.0f B/s for %s: want none",
				when, gr, g.Name, hr, g.Host.Name)
		}
	}
	idle("before the load")
	for _, l := range []struct {
		what        string
		read, write int
	}{{"read", diskRateMiBs, 0}, {"write", 0, diskRateMiBs}} {
		g.setDiskLoad(t, l.read, l.write)
		first, firstHost := rates(ag.After(t, 2)) // a whole interval under load
		before, t0 := g.disk(t), time.Now()
		var sumGuest, sumHost float64
		const n = 8
		for range n {
			gr, hr := rates(ag.After(t, 1))
			sumGuest += gr
			sumHost += hr
		}
		after, t1 := g.disk(t), time.Now()
		var metrics string
		ag.Get(t, "/metrics", &metrics)
		own := float64(after.Read-before.Read+after.Written-before.Written) / t1.Sub(t0).Seconds()
		seen, host := sumGuest/n, sumHost/n
		t.Logf("disk %s at %d MiB/s: the guest counts %.2f MiB/s; the agent shows %.2f MiB/s for %s, %.2f MiB/s for %s over %d samples, %.2f and %.2f MiB/s 2 samples after the load began",
			l.what, diskRateMiBs, own/(1<<20), seen/(1<<20), g.Name, host/(1<<20), g.Host.Name, n, first/(1<<20), firstHost/(1<<20))
		if math.Abs(own-rate) > tol*rate {
			t.Errorf("%s: the guest's disk load ran at %.0f B/s, not %d: the load generator, not the agent, is off", l.what, own, rate)
		}
		for _, c := range []struct {
			what string
			got  float64
		}{
			{fmt.Sprintf("%s over %d samples", g.Name, n), seen},
			{fmt.Sprintf("%s over %d samples", g.Host.Name, n), host},
			{fmt.Sprintf("%s at the first whole sample of the load", g.Name), first},
			{fmt.Sprintf("%s at the first whole sample of the load", g.Host.Name), firstHost},
		} {
			if math.Abs(c.got-own) > tol*own {
				t.Errorf("%s: the agent shows %.0f B/s of disk for %s; the guest counts %.0f B/s: want within %.0f%%", l.what, c.got, c.what, own, 100*tol)
			}
		}
		for _, m := range []struct{ name, labels string }{
			{"virtpool_guest_disk_bytes_per_second", fmt.Sprintf(`guest="%s",host="%s",pool=""`, g.Name, g.Host.Name)},
			{"virtpool_host_disk_bytes_per_second", fmt.Sprintf(`host="%s"`, g.Host.Name)},
		} {
			re := regexp.MustCompile(fmt.Sprintf(`(?m)^%s\{%s\} (\S+)$`, m.name, regexp.QuoteMeta(m.labels)))
			if v := re.FindStringSubmatch(metrics); v == nil {
				t.Errorf("/metrics has no %s{%s}", m.name, m.labels)
			} else if f := parseFloat(t, v[1]); math.Abs(f-own) > tol*own {
				t.Errorf("%s: /metrics: %s{%s} = %v; the guest counts %.0f B/s: want within %.0f%%", l.what, m.name, m.labels, f, own, 100*tol)
			}
		}
	}
	g.setDiskLoad(t, 0, 0)
	idle("once the load stopped")
}
