package agent

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
)

// Migration histograms, observed when a migration is seen to finish.
func newHistograms() (duration, downtime prometheus.Histogram) {
	duration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "virtpool_migration_duration_seconds",
		Help:    "How long finished live migrations took, as their destination measured.",
		Buckets: []float64{0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300},
	})
	downtime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "virtpool_migration_downtime_seconds",
		Help:    "The downtime finished live migrations had, as their destination measured.",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
	})
	return duration, downtime
}

// job reads a domain's job on the host named host of s, bounded like the
// samples.
func (a *Agent) job(ctx context.Context, d driver.Driver, s State, host, guest string) (driver.Job, error) {
	for _, h := range s.Hosts {
		if h.Name == host {
			cctx, cancel := context.WithTimeout(ctx, a.fleet.CallTimeout)
			defer cancel()
			return d.JobStats(cctx, h.URI, guest)
		}
	}
	return driver.Job{}, fmt.Errorf("no host %s", host)
}

// progress fills each migration in flight with its source's job stats.
func (a *Agent) progress(ctx context.Context, d driver.Driver, s *State) {
	for i := range s.Migrations {
		m := &s.Migrations[i]
		j, err := a.job(ctx, d, *s, m.From, m.Guest)
		if err != nil || j.State != driver.JobRunning {
			a.log.Debug("no job stats for a migration in flight", "guest", m.Guest, "from", m.From, "state", j.State, "error", err)
			continue
		}
		m.ElapsedMs, m.ExpectedDowntimeMs = j.Progress.Elapsed.Milliseconds(), j.Downtime.Milliseconds()
		m.DataTotal, m.DataProcessed, m.DataRemaining = j.Progress.DataTotal, j.Progress.DataProcessed, j.Progress.DataRemaining
		m.DirtyRate = j.DirtyRate
	}
}

// finish adds what the destination measured of each migration that
// finished to its event, to the state's list and to the histograms.
func (a *Agent) finish(ctx context.Context, d driver.Driver, s *State, evs []event.Event) {
	for i := range evs {
		e := &evs[i]
		if e.Kind != event.MigrationFinished {
			continue
		}
		f := Finished{Guest: e.Guest, From: e.From, To: e.To, Time: e.Time}
		j, err := a.job(ctx, d, *s, e.To, e.Guest)
		a.mu.Lock()
		if told, ok := a.completed[e.UUID]; ok && (err != nil || j.State != driver.JobCompleted) {
			j, err = told, nil // the source's job-completed event
		}
		delete(a.completed, e.UUID)
		a.mu.Unlock()
		if err == nil && j.State == driver.JobCompleted {
			f.ElapsedMs, f.DowntimeMs, f.Bytes = j.Progress.Elapsed.Milliseconds(), j.Downtime.Milliseconds(), j.Progress.DataProcessed
			e.ElapsedMs, e.DowntimeMs, e.Bytes = f.ElapsedMs, f.DowntimeMs, f.Bytes
			e.Message += fmt.Sprintf(" in %d ms, downtime %d ms", f.ElapsedMs, f.DowntimeMs)
			a.durations.Observe(j.Progress.Elapsed.Seconds())
			a.downtimes.Observe(j.Downtime.Seconds())
		} else {
			a.log.Debug("no completed job on the destination", "guest", e.Guest, "to", e.To, "state", j.State, "error", err)
		}
		s.Finished = append([]Finished{f}, s.Finished...)
	}
	s.Finished = s.Finished[:min(len(s.Finished), keepFinished)]
}
