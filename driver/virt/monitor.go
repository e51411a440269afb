package virt

import (
	"fmt"
	"time"

	"github.com/virtpool/virtpool/driver"
)

const (
	// stallPasses: a migration whose passes over the guest's memory have
	// not started with less to send in this many passes, while the guest
	// dirties memory at least half as fast as it is sent, does not converge.
	stallPasses = 5
	// progressStep is how much the memory left to send must shrink (a
	// fraction of its lowest so far) to count as progress: between passes
	// it only wobbles around the guest's working set.
	progressStep = 0.1
	// maxThrottle is QEMU's highest auto-converge throttle (max-cpu-throttle).
	maxThrottle = 99
	mib         = 1 << 20
	gib         = 1 << 30
)

// limits bound one migration: what its starter allowed and how long it may
// take. They come from driver.MigrateOptions, or for a migration found
// running, from the note its starter left in the domain's metadata.
type limits struct {
	ProgressTimeout  time.Duration
	CompletionPerGiB time.Duration
	AutoConverge     bool
	PostCopy         bool
	BandwidthMiBs    uint64 // the cap asked for, for the advice only (0: libvirt's)
}

func limitsOf(o driver.MigrateOptions) limits {
	l := limits{ProgressTimeout: o.ProgressTimeout, CompletionPerGiB: o.CompletionPerGiB,
		AutoConverge: o.AutoConverge, PostCopy: o.PostCopy, BandwidthMiBs: o.BandwidthMiBs}
	if l.ProgressTimeout <= 0 {
		l.ProgressTimeout = driver.DefaultProgressTimeout
	}
	if l.CompletionPerGiB <= 0 {
		l.CompletionPerGiB = driver.DefaultCompletionPerGiB
	}
	return l
}

// deadline is how long a migration of memory bytes may run.
func (l limits) deadline(memory uint64) time.Duration {
	gibs := max(float64(memory)/gib, 1)
	return time.Duration(gibs * float64(l.CompletionPerGiB))
}

// sample is what the monitor reads of a running migration job.
type sample struct {
	Progress  driver.MigrateProgress // what callers are told
	Elapsed   time.Duration
	Memory    uint64 // guest memory, bytes
	Remaining uint64 // memory left to send, bytes
	Pass      uint64 // passes over the guest's memory so far (1: the first)
	DirtyRate uint64 // bytes/s the guest dirties
	Speed     uint64 // bytes/s sent
	Throttle  int    // auto-converge's vCPU throttle, percent
	PostCopy  bool   // the migration runs in post-copy
}

type verdict int

const (
	proceed        verdict = iota
	switchPostCopy         // pre-copy cannot finish: let the destination run and pull pages
	abortJob               // nothing left to try: the guest stays on the source
)

// monitor decides, sample by sample, whether a migration goes on, switches
// to post-copy or is aborted: the steps of the starter's policy in order
// (auto-converge, then post-copy, then abort), when the migration does not
// converge, makes no progress for ProgressTimeout, or outlives its
// completion deadline. It keeps no clock of its own (libvirt's elapsed
// time is the clock), so tests drive it with scripted samples.
//
// Within a pass over memory what is left to send falls, down to where
// QEMU syncs the dirty bitmap and the next pass starts with what the guest
// wrote meanwhile. So convergence is judged pass by pass, on what each
// pass started with (its peak): a guest writing faster than the link
// sends starts every pass with about as much.
type monitor struct {
	limits
	seen       bool
	pass       uint64        // the pass being sampled
	peak, low  uint64        // most and least memory left to send seen in it
	best       uint64        // least peak of a finished pass…
	bestPass   uint64        // …and that pass (0: none finished yet)
	progressAt time.Duration // when the memory left last shrank (progressStep)
	switched   bool          // post-copy accepted
}

// decide returns what to do after sample s, and why when it is not
// proceed. After a switch to post-copy it always proceeds: post-copy ends
// by itself, and aborting it would lose the guest.
func (m *monitor) decide(s sample) (verdict, string) {
	if s.PostCopy || m.switched {
		return proceed, ""
	}
	m.track(s)
	var why string
	switch {
	case s.Elapsed > m.deadline(s.Memory):
		why = fmt.Sprintf("not done after %s, the deadline for %d MiB of guest memory (%s per GiB)",
			m.deadline(s.Memory).Round(time.Second), s.Memory/mib, m.CompletionPerGiB)
	case s.Elapsed-m.progressAt > m.ProgressTimeout:
		why = fmt.Sprintf("no progress for %s: %d MiB still to send", m.ProgressTimeout, s.Remaining/mib)
	case m.bestPass > 0 && s.Pass >= m.bestPass+stallPasses && s.DirtyRate*2 >= s.Speed:
		// (A guest writing far slower than the link does not hold a
		// migration back: QEMU is near its downtime target and ends soon.)
		if m.AutoConverge && s.Throttle < maxThrottle {
			return proceed, "" // auto-converge throttles the guest harder every pass
		}
		why = fmt.Sprintf("not converging: each of the last %d passes over memory had ~%d MiB or more to send",
			s.Pass-m.bestPass, m.best/mib)
	default:
		return proceed, ""
	}
	why += "; " + m.rates(s)
	if m.PostCopy {
		return switchPostCopy, why
	}
	return abortJob, why + "; " + m.advice()
}

// track keeps the peak of each pass, the least peak of the finished ones,
// and when the memory left to send last shrank.
func (m *monitor) track(s sample) {
	shrunk := func(v, from uint64) bool { return float64(v) < float64(from)*(1-progressStep) }
	switch {
	case !m.seen:
		m.seen, m.pass, m.peak, m.low, m.progressAt = true, s.Pass, s.Remaining, s.Remaining, s.Elapsed
	case s.Pass != m.pass: // the pass that ended started with peak
		if m.bestPass == 0 || shrunk(m.peak, m.best) {
			m.best, m.bestPass, m.progressAt = m.peak, m.pass, s.Elapsed
		}
		m.pass, m.peak, m.low = s.Pass, s.Remaining, s.Remaining
	default:
		m.peak = max(m.peak, s.Remaining)
		if shrunk(s.Remaining, m.low) {
			m.low, m.progressAt = s.Remaining, s.Elapsed
		}
	}
}

// rates says how fast the guest dirties memory against how fast it is sent.
func (m *monitor) rates(s sample) string {
	r := fmt.Sprintf("guest dirties ~%d MiB/s, sent at ~%d MiB/s", s.DirtyRate/mib, s.Speed/mib)
	if m.BandwidthMiBs > 0 {
		r += fmt.Sprintf(" (bandwidth %d MiB/s)", m.BandwidthMiBs)
	}
	if m.AutoConverge {
		r += fmt.Sprintf(", vCPUs throttled %d%%", s.Throttle)
	}
	return r
}

// advice names the settings that would let such a migration finish.
func (m *monitor) advice() string {
	if m.AutoConverge {
		return "allow post_copy, or raise bandwidth_mib"
	}
	return "allow auto_converge or post_copy, or raise bandwidth_mib"
}
