package virt

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
)

// migratingDomain is what following a migration job needs of its domain:
// jobDomain on libvirt, scripted ones in tests.
type migratingDomain interface {
	// job samples the running job; ok is false once no job runs.
	job() (s sample, ok bool, err error)
	abort() error
	startPostCopy() error
}

// follow watches a migration job until it ends and applies m's verdicts.
// With done (the result of the MigrateToURI3 this call made), it returns
// that result, naming why when it aborted the job, and aborts the job when
// ctx ends (still waiting for it to end). With a nil done (a job found
// running, whose starter is gone), it returns once no job runs, or when
// ctx ends, leaving the job to the monitor of whoever follows it next.
func follow(ctx context.Context, dom migratingDomain, m *monitor, done <-chan error, progress func(sample), log hclog.Logger) error {
	tick := time.NewTicker(progressInterval)
	defer tick.Stop()
	var why string  // why this call aborted the job
	var cause error // the context's error, if that was why
	for {
		select {
		case err := <-done:
			if err != nil && cause != nil {
				return fmt.Errorf("aborted (%w): %w", cause, err)
			}
			if err != nil && why != "" {
				return fmt.Errorf("aborted: %s: %w", why, err)
			}
			return err
		case <-ctx.Done():
			if done == nil {
				return fmt.Errorf("following the migration job: %w", ctx.Err())
			}
			if why == "" {
				why, cause = "caller gone", ctx.Err()
				log.Warn("aborting migration", "reason", cause)
				if err := dom.abort(); err != nil {
					log.Warn("abort refused; waiting for the migration to end", "error", err)
				}
			}
			ctx = context.Background() // wait for the job to end
		case <-tick.C:
			s, ok, err := dom.job()
			if err != nil {
				continue // a busy QEMU monitor; the next tick asks again
			}
			if !ok {
				if done == nil {
					return nil
				}
				continue
			}
			if progress != nil {
				progress(s)
			}
			if why != "" {
				continue
			}
			switch v, reason := m.decide(s); v {
			case switchPostCopy:
				if err := dom.startPostCopy(); err != nil {
					log.Debug("switch to post-copy refused; will retry", "reason", reason, "error", err)
					continue
				}
				m.switched = true
				log.Info("switched to post-copy", "reason", reason)
			case abortJob:
				why = reason
				log.Warn("aborting migration", "reason", reason)
				if err := dom.abort(); err != nil {
					log.Warn("abort refused; waiting for the migration to end", "error", err)
				}
			}
		}
	}
}

// jobDomain is a libvirt domain whose migration job is followed.
type jobDomain struct {
	dom      *lv.Domain
	switched *atomic.Bool // set once post-copy was accepted
	// others: someone else may have switched the job to post-copy (it was
	// started elsewhere with post-copy possible, or by another caller), so
	// each sample also asks the domain's state.
	others bool
}

func (j jobDomain) job() (sample, bool, error) {
	js, err := j.dom.GetJobStats(0)
	if err != nil || js.Type == lv.DOMAIN_JOB_NONE {
		return sample{}, false, err
	}
	s := sampleOf(js)
	s.PostCopy = j.switched.Load()
	if !s.PostCopy && j.others {
		// Switched by someone else (an earlier caller, virsh): the source
		// is paused for post-copy.
		st, reason, err := j.dom.GetState()
		s.PostCopy = err == nil && st == lv.DOMAIN_PAUSED && lv.DomainPausedReason(reason) == lv.DOMAIN_PAUSED_POSTCOPY
	}
	return s, true, nil
}

func (j jobDomain) abort() error { return j.dom.AbortJob() }

func (j jobDomain) startPostCopy() error {
	if err := j.dom.MigrateStartPostCopy(0); err != nil {
		return err
	}
	j.switched.Store(true)
	return nil
}

func sampleOf(js *lv.DomainJobInfo) sample {
	return sample{
		Progress:  progressOf(js),
		Elapsed:   time.Duration(js.TimeElapsed) * time.Millisecond,
		Memory:    js.MemTotal,
		Remaining: js.MemRemaining,
		Pass:      js.MemIteration,
		DirtyRate: js.MemDirtyRate * pageSize(js),
		Speed:     js.MemBps,
		Throttle:  int(js.AutoConvergeThrottle),
	}
}

// pageSize is the guest page size libvirt counts dirty pages in.
func pageSize(js *lv.DomainJobInfo) uint64 {
	if js.MemPageSizeSet && js.MemPageSize > 0 {
		return js.MemPageSize
	}
	return 4096
}

// following is the migration jobs this driver process follows, one
// follower each, by host and domain.
type following struct {
	mu   sync.Mutex
	jobs map[string]chan struct{} // closed when its follower lets go
}

// claim makes the caller the follower of name's jobs on uri, or returns a
// channel closed when the current follower lets go.
func (f *following) claim(uri, name string) (release func(), busy <-chan struct{}) {
	key := uri + "\x00" + name
	f.mu.Lock()
	defer f.mu.Unlock()
	if c, ok := f.jobs[key]; ok {
		return nil, c
	}
	if f.jobs == nil {
		f.jobs = map[string]chan struct{}{}
	}
	c := make(chan struct{})
	f.jobs[key] = c
	return func() {
		f.mu.Lock()
		delete(f.jobs, key)
		f.mu.Unlock()
		close(c)
	}, nil
}

// migrationNote is what the driver that starts a migration leaves in the
// domain's metadata: its limits, so that another driver finding the job
// running after its caller died ends it the same way.
type migrationNote struct {
	Started            int64  `xml:"started,attr"` // unix ms
	Dest               string `xml:"dest,attr"`
	ProgressTimeoutMs  int64  `xml:"progress_timeout_ms,attr"`
	CompletionPerGiBMs int64  `xml:"completion_per_gib_ms,attr"`
	BandwidthMiBs      uint64 `xml:"bandwidth_mibs,attr,omitempty"`
	AutoConverge       bool   `xml:"auto_converge,attr,omitempty"`
	PostCopy           bool   `xml:"post_copy,attr,omitempty"`
}

// noteSlack is how far a note's start may lie from the job's own start
// (clocks of the driver's machine and the host) and still be its note: a
// migration carries its note to the destination, where it is stale.
const noteSlack = 10 * time.Second

func noteOf(l limits, dest string, at time.Time) *migrationNote {
	return &migrationNote{Started: at.UnixMilli(), Dest: dest,
		ProgressTimeoutMs: l.ProgressTimeout.Milliseconds(), CompletionPerGiBMs: l.CompletionPerGiB.Milliseconds(),
		BandwidthMiBs: l.BandwidthMiBs, AutoConverge: l.AutoConverge, PostCopy: l.PostCopy}
}

// limitsFor returns the limits of a job running for elapsed at now: its
// note's if the note is the job's, else the defaults (no auto-converge, no
// post-copy: nothing says they were allowed).
func limitsFor(n *migrationNote, elapsed time.Duration, now time.Time) limits {
	if n == nil {
		return limitsOf(driver.MigrateOptions{})
	}
	if d := time.UnixMilli(n.Started).Sub(now.Add(-elapsed)); d > noteSlack || d < -noteSlack {
		return limitsOf(driver.MigrateOptions{})
	}
	return limitsOf(driver.MigrateOptions{
		ProgressTimeout: time.Duration(n.ProgressTimeoutMs) * time.Millisecond, CompletionPerGiB: time.Duration(n.CompletionPerGiBMs) * time.Millisecond,
		BandwidthMiBs: n.BandwidthMiBs, AutoConverge: n.AutoConverge, PostCopy: n.PostCopy})
}
