package virt

import (
	"fmt"
	"time"

	"github.com/virtpool/virtpool/driver"
)

const (
	// stallPasses: a migration whose memory left to send has not shrunk in
	// this many passes over the guest's memory does not converge: the
	// guest dirties pages faster than they are sent.
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
type monitor struct {
	limits
	seen     bool
	best     uint64        // least memory left to send so far
	bestAt   time.Duration // when it was reached
	bestPass uint64        // in which pass
	switched bool          // post-copy accepted
}

// decide returns what to do after sample s, and why when it is not
// proceed. After a switch to post-copy it always proceeds: post-copy ends
// by itself, and aborting it would lose the guest.
func (m *monitor) decide(s sample) (verdict, string) {
	if s.PostCopy || m.switched {
		return proceed, ""
	}
	if !m.seen || float64(s.Remaining) < float64(m.best)*(1-progressStep) {
		m.seen, m.best, m.bestAt, m.bestPass = true, s.Remaining, s.Elapsed, s.Pass
	}
	var why string
	switch {
	case s.Elapsed > m.deadline(s.Memory):
		why = fmt.Sprintf("not done after %s, the deadline for %d MiB of guest memory (%s per GiB)",
			m.deadline(s.Memory).Round(time.Second), s.Memory/mib, m.CompletionPerGiB)
	case s.Elapsed-m.bestAt > m.ProgressTimeout:
		why = fmt.Sprintf("no progress for %s: %d MiB still to send", m.ProgressTimeout, s.Remaining/mib)
	case s.Pass >= m.bestPass+stallPasses:
		if m.AutoConverge && s.Throttle < maxThrottle {
			return proceed, "" // auto-converge throttles the guest harder every pass
		}
		why = fmt.Sprintf("not converging: %d MiB still to send after %d passes over memory", s.Remaining/mib, s.Pass)
	default:
		return proceed, ""
	}
	why += "; " + m.rates(s)
	if m.PostCopy {
		return switchPostCopy, why
	}
	return abortJob, why + "; " + m.advice()
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
