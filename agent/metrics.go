package agent

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are documented in docs/agent.md. They are read from the last
// state at scrape time, so they never drift from what the API shows.
var hostStates = []string{HostActive, HostStandby, HostMaintenance, HostDown, HostOff}

// collector exposes the agent's state as Prometheus metrics.
type collector struct{ a *Agent }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	descHostUp       = desc("virtpool_host_up", "1 if the host answered the last sample.", "host")
	descHostState    = desc("virtpool_host_state", "1 for the host's state (active, standby, maintenance, down, off: powered off on standby).", "host", "state")
	descHostCapCPUs  = desc("virtpool_host_capacity_cpus", "CPU capacity virtpool plans with, in cores.", "host")
	descHostCapMem   = desc("virtpool_host_capacity_memory_bytes", "Memory capacity virtpool plans with.", "host")
	descHostCPU      = desc("virtpool_host_cpu_utilisation_ratio", "Guests' CPU over the host's capacity.", "host")
	descHostMemory   = desc("virtpool_host_memory_utilisation_ratio", "Guests' configured memory over the host's capacity.", "host")
	descHostBusy     = desc("virtpool_host_busy_ratio", "The host's own CPU use (everything on it) over all its CPUs.", "host")
	descHostDisk     = desc("virtpool_host_disk_bytes_per_second", "Bytes read and written by the disks of the host's guests per second.", "host")
	descHostNet      = desc("virtpool_host_network_bytes_per_second", "Bytes received and sent by the NICs of the host's guests per second.", "host")
	descGuestCPU     = desc("virtpool_guest_cpu_cores", "CPU the guest used over the last interval, in cores.", "host", "guest", "pool")
	descGuestMemory  = desc("virtpool_guest_memory_bytes", "The guest's configured (balloon) memory.", "host", "guest", "pool")
	descGuestRSS     = desc("virtpool_guest_rss_bytes", "Resident memory of the guest's QEMU process.", "host", "guest", "pool")
	descGuestDisk    = desc("virtpool_guest_disk_bytes_per_second", "Bytes read and written by the guest's disks per second.", "host", "guest", "pool")
	descGuestNet     = desc("virtpool_guest_network_bytes_per_second", "Bytes received and sent by the guest's NICs per second.", "host", "guest", "pool")
	descPoolSize     = desc("virtpool_pool_size", "Members of the pool running.", "pool")
	descPoolDesired  = desc("virtpool_pool_desired_size", "The size the pool's record asks for.", "pool")
	descPoolMin      = desc("virtpool_pool_min_size", "The pool's minimum size.", "pool")
	descPoolMax      = desc("virtpool_pool_max_size", "The pool's maximum size.", "pool")
	descMigrating    = desc("virtpool_migrations_in_flight", "Guests seen on two hosts at once (live migrations in flight).")
	descMigrations   = desc("virtpool_migrations_total", "Guests seen to move to another host since the agent started.")
	descResizes      = desc("virtpool_pool_resizes_total", "Changes of a pool's running members (scale actions, failures, restores), up or down, since the agent started.", "pool", "direction")
	descSamples      = desc("virtpool_agent_samples_total", "Samples taken, by result (ok: some host answered; failed: none).", "result")
	descSampleSecond = desc("virtpool_agent_sample_duration_seconds", "How long the last sample of every host took.")
	descProtAge      = desc("virtpool_protection_checkpoint_age_seconds", "Age of the protected guest's last image on its standby (what a failover now would lose, at most).", "guest", "primary", "standby")
	descProtImage    = desc("virtpool_protection_image_bytes", "Size of the protected guest's last image.", "guest", "primary", "standby")
	descProtWire     = desc("virtpool_protection_shipped_bytes", "Bytes the last checkpoint sent from the primary host to the standby (new chunks and manifest).", "guest", "primary", "standby")
	descProtPause    = desc("virtpool_protection_pause_seconds", "The guest's pause in its last checkpoint.", "guest", "primary", "standby")
	descProtTotal    = desc("virtpool_protection_checkpoints_total", "Images shipped to the current standby.", "guest", "primary", "standby")
)

func (c collector) Describe(ch chan<- *prometheus.Desc) { prometheus.DescribeByCollect(c, ch) }

func (c collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	s := a.State()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, h := range s.Hosts {
		up := h.State != HostDown && h.State != HostOff
		gauge(descHostUp, b2f(up), h.Name)
		for _, st := range hostStates {
			gauge(descHostState, b2f(h.State == st), h.Name, st)
		}
		if !up {
			continue // its numbers are unknown, not zero
		}
		gauge(descHostCapCPUs, h.CapacityCPUs, h.Name)
		gauge(descHostCapMem, float64(h.CapacityMemoryBytes), h.Name)
		gauge(descHostCPU, h.CPURatio, h.Name)
		gauge(descHostMemory, h.MemoryRatio, h.Name)
		gauge(descHostBusy, h.BusyRatio, h.Name)
		gauge(descHostDisk, h.DiskBps, h.Name)
		gauge(descHostNet, h.NetBps, h.Name)
		for _, g := range h.Guests {
			gauge(descGuestCPU, g.CPUCores, h.Name, g.Name, g.Pool)
			gauge(descGuestMemory, float64(g.MemoryBytes), h.Name, g.Name, g.Pool)
			gauge(descGuestRSS, float64(g.RSSBytes), h.Name, g.Name, g.Pool)
			gauge(descGuestDisk, g.DiskBps, h.Name, g.Name, g.Pool)
			gauge(descGuestNet, g.NetBps, h.Name, g.Name, g.Pool)
		}
	}
	for _, p := range s.Pools {
		gauge(descPoolSize, float64(p.Size), p.Name)
		gauge(descPoolDesired, float64(p.Desired), p.Name)
		gauge(descPoolMin, float64(p.Min), p.Name)
		gauge(descPoolMax, float64(p.Max), p.Name)
	}
	for _, p := range s.Protections {
		if p.CheckpointAt.IsZero() {
			continue // no image on the standby yet: nothing to report but its absence
		}
		l := []string{p.Domain, p.Primary, p.Standby}
		gauge(descProtAge, float64(p.AgeMs)/1000, l...)
		gauge(descProtImage, float64(p.ImageBytes), l...)
		gauge(descProtWire, float64(p.WireBytes), l...)
		gauge(descProtPause, float64(p.PauseMs)/1000, l...)
		ch <- prometheus.MustNewConstMetric(descProtTotal, prometheus.CounterValue, float64(p.Checkpoints), l...)
	}
	gauge(descMigrating, float64(len(s.Migrations)))
	a.mu.RLock()
	ok, failed, moves, took := a.samples, a.failures, a.moves, a.took
	for r, n := range a.resizes {
		ch <- prometheus.MustNewConstMetric(descResizes, prometheus.CounterValue, float64(n), r.pool, r.direction)
	}
	a.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(descMigrations, prometheus.CounterValue, float64(moves))
	ch <- prometheus.MustNewConstMetric(descSamples, prometheus.CounterValue, float64(ok), "ok")
	ch <- prometheus.MustNewConstMetric(descSamples, prometheus.CounterValue, float64(failed), "failed")
	gauge(descSampleSecond, took.Seconds())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
