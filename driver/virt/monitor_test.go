package virt

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
)

// pass returns a sample at pass n, t seconds in, with left MiB to send, of
// a 128 MiB guest dirtying 200 MiB/s sent at 32 MiB/s.
func pass(n uint64, t float64, left uint64) sample {
	return sample{Elapsed: time.Duration(t * float64(time.Second)), Memory: 128 * mib, Remaining: left * mib, Pass: n,
		DirtyRate: 200 * mib, Speed: 32 * mib}
}

// passes returns samples of a migration through the given passes, each
// pass starting with peaks[i] MiB left to send and ending with a tenth of
// it (where QEMU syncs and the next pass starts), two samples a pass, a
// second apart; then the first sample of the next pass if next > 0.
func passes(next uint64, peaks ...uint64) []sample {
	var out []sample
	t := 1.0
	for i, p := range peaks {
		out = append(out, pass(uint64(i+1), t, p), pass(uint64(i+1), t+1, p/10))
		t += 2
	}
	if next > 0 {
		out = append(out, pass(uint64(len(peaks)+1), t, next))
	}
	return out
}

// slowWriter makes s the samples of a guest dirtying 1 MiB/s sent at 12.
func slowWriter(s []sample) []sample {
	for i := range s {
		s[i].DirtyRate, s[i].Speed = 1*mib, 12*mib
	}
	return s
}

func TestMonitorDecide(t *testing.T) {
	throttled := func(s []sample, pct int) []sample { s[len(s)-1].Throttle = pct; return s }
	postcopy := func(s sample) sample { s.PostCopy = true; return s }
	// A guest rewriting ~62 MiB faster than it is sent: every pass starts
	// with as much; pass 7 starts five passes after the last that had less.
	stalled := func(next uint64) []sample { return passes(next, 100, 62, 63, 61, 62, 61) }
	lim := limitsOf(driver.MigrateOptions{BandwidthMiBs: 32})
	loose := limits{ProgressTimeout: time.Minute, CompletionPerGiB: time.Minute}
	with := func(l limits, f func(*limits)) limits { f(&l); return l }
	cases := []struct {
		name    string
		limits  limits
		samples []sample
		want    verdict
		why     string // in the reason
	}{
		{"first pass goes on", lim, []sample{pass(1, 1, 120), pass(1, 2, 100), pass(1, 3, 80)}, proceed, ""},
		{"converging: every pass starts with less", lim, passes(1, 100, 50, 30, 20, 10, 5, 2), proceed, ""},
		{"converging slowly on a slow link, each pass ending near nothing", lim, passes(1, 384, 32, 3, 2), proceed, ""},
		{"stalled four passes after the last shrink goes on", lim, stalled(0), proceed, ""},
		{"stalled five passes: abort, naming rates and settings", lim, stalled(62), abortJob,
			"not converging: each of the last 5 passes over memory had ~62 MiB or more to send; guest dirties ~200 MiB/s, " +
				"sent at ~32 MiB/s (bandwidth 32 MiB/s); allow auto_converge or post_copy, or raise bandwidth_mib"},
		{"small shrinks are no progress", lim, passes(55, 60, 58, 57, 56, 56), abortJob, "not converging"},
		{"near the downtime target, the guest writing far slower than the link: go on", lim,
			slowWriter(passes(1, 384, 32, 3, 1, 1, 1, 1, 1)), proceed, ""},
		{"stalled with post-copy allowed: switch", with(loose, func(l *limits) { l.PostCopy = true }), stalled(62), switchPostCopy, "not converging"},
		{"stalled with auto-converge still throttling: go on", with(loose, func(l *limits) { l.AutoConverge = true }),
			throttled(stalled(62), 70), proceed, ""},
		{"stalled with auto-converge at its maximum: abort", with(loose, func(l *limits) { l.AutoConverge = true }),
			throttled(stalled(62), 99), abortJob, "vCPUs throttled 99%; allow post_copy, or raise bandwidth_mib"},
		{"auto-converge then post-copy", with(loose, func(l *limits) { l.AutoConverge, l.PostCopy = true, true }),
			throttled(stalled(62), 99), switchPostCopy, "not converging"},
		{"nothing sent for the progress timeout", limits{ProgressTimeout: 5 * time.Second, CompletionPerGiB: time.Hour, AutoConverge: true},
			[]sample{pass(1, 1, 100), pass(1, 2, 95), pass(1, 7.5, 95)}, abortJob, "no progress for 5s: 95 MiB still to send"},
		{"past the completion deadline, one GiB counted for a small guest", limits{ProgressTimeout: time.Hour, CompletionPerGiB: 10 * time.Second},
			[]sample{pass(1, 1, 100), pass(2, 5, 50), pass(3, 10.5, 20)}, abortJob, "not done after 10s, the deadline for 128 MiB of guest memory (10s per GiB)"},
		{"past the deadline with post-copy: switch", limits{ProgressTimeout: time.Hour, CompletionPerGiB: 10 * time.Second, PostCopy: true},
			[]sample{pass(1, 1, 100), pass(3, 10.5, 20)}, switchPostCopy, "not done after 10s"},
		{"in post-copy: never abort", limits{ProgressTimeout: time.Second, CompletionPerGiB: time.Second},
			[]sample{pass(1, 1, 100), postcopy(pass(2, 30, 100))}, proceed, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &monitor{limits: c.limits}
			var v verdict
			var why string
			for i, s := range c.samples {
				v, why = m.decide(s)
				if i < len(c.samples)-1 && v != proceed {
					t.Fatalf("sample %d: verdict %d (%s) before the last sample", i, v, why)
				}
			}
			if v != c.want || !strings.Contains(why, c.why) {
				t.Errorf("verdict %d, %q; want %d, containing %q", v, why, c.want, c.why)
			}
		})
	}
}

func TestLimitsDeadline(t *testing.T) {
	l := limitsOf(driver.MigrateOptions{})
	if l.ProgressTimeout != driver.DefaultProgressTimeout || l.CompletionPerGiB != driver.DefaultCompletionPerGiB {
		t.Errorf("defaults %+v", l)
	}
	for _, c := range []struct {
		mem  uint64
		want time.Duration
	}{{128 * mib, 150 * time.Second}, {gib, 150 * time.Second}, {4 * gib, 600 * time.Second}, {gib + gib/2, 225 * time.Second}} {
		if got := l.deadline(c.mem); got != c.want {
			t.Errorf("deadline(%d MiB) = %s, want %s", c.mem/mib, got, c.want)
		}
	}
}

func TestLimitsFor(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	n := noteOf(limits{ProgressTimeout: 7 * time.Second, CompletionPerGiB: 9 * time.Second, PostCopy: true, BandwidthMiBs: 8},
		"qemu:///h2", now.Add(-time.Minute))
	cases := []struct {
		name    string
		note    *migrationNote
		elapsed time.Duration
		want    limits
	}{
		{"the job's own note", n, time.Minute, limits{ProgressTimeout: 7 * time.Second, CompletionPerGiB: 9 * time.Second, PostCopy: true, BandwidthMiBs: 8}},
		{"within the clocks' slack", n, time.Minute + 8*time.Second, limits{ProgressTimeout: 7 * time.Second, CompletionPerGiB: 9 * time.Second, PostCopy: true, BandwidthMiBs: 8}},
		{"an earlier migration's note: defaults", n, 10 * time.Second, limitsOf(driver.MigrateOptions{})},
		{"no note: defaults", nil, time.Minute, limitsOf(driver.MigrateOptions{})},
	}
	for _, c := range cases {
		if got := limitsFor(c.note, c.elapsed, now); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// scripted is a migrating domain whose job reports the samples given, one
// per call, then none (the job ended).
type scripted struct {
	samples            []sample
	aborts, switches   atomic.Int32
	refuseSwitch       int // switches refused before one is accepted
	endOnAbort, endJob chan error
}

func (s *scripted) job() (sample, bool, error) {
	if len(s.samples) == 0 {
		return sample{}, false, nil
	}
	x := s.samples[0]
	s.samples = s.samples[1:]
	if len(s.samples) == 0 && s.endJob != nil {
		s.endJob <- nil
	}
	return x, true, nil
}

func (s *scripted) abort() error {
	s.aborts.Add(1)
	s.samples = nil
	if s.endOnAbort != nil {
		s.endOnAbort <- errors.New("operation aborted: migration out job: canceled by client")
	}
	return nil
}

func (s *scripted) startPostCopy() error {
	if s.refuseSwitch > 0 {
		s.refuseSwitch--
		return errors.New("post-copy not yet possible")
	}
	s.switches.Add(1)
	for i := range s.samples {
		s.samples[i].PostCopy = true
	}
	return nil
}

func TestFollow(t *testing.T) {
	more := func(n int) []sample { // a stall, then n more samples
		s := passes(62, 100, 62, 63, 61, 62, 61)
		for i := 0; i < n; i++ {
			s = append(s, pass(7, float64(14+i), 60))
		}
		return s
	}
	log := hclog.NewNullLogger()
	t.Run("abort names the cause", func(t *testing.T) {
		done := make(chan error, 1)
		d := &scripted{samples: more(3), endOnAbort: done}
		err := follow(context.Background(), d, &monitor{limits: limitsOf(driver.MigrateOptions{})}, done, nil, log)
		if d.aborts.Load() != 1 || err == nil || !strings.Contains(err.Error(), "aborted: not converging") ||
			!strings.Contains(err.Error(), "canceled by client") {
			t.Fatalf("aborts %d, err %v", d.aborts.Load(), err)
		}
	})
	t.Run("post-copy retried until accepted, then never aborted", func(t *testing.T) {
		done := make(chan error, 1)
		d := &scripted{samples: more(5), refuseSwitch: 2, endJob: done}
		lim := limits{ProgressTimeout: time.Second, CompletionPerGiB: time.Second, PostCopy: true}
		if err := follow(context.Background(), d, &monitor{limits: lim}, done, nil, log); err != nil {
			t.Fatal(err)
		}
		if d.switches.Load() != 1 || d.aborts.Load() != 0 {
			t.Fatalf("switches %d aborts %d, want 1 and 0", d.switches.Load(), d.aborts.Load())
		}
	})
	t.Run("caller gone: abort, wait for the job", func(t *testing.T) {
		done := make(chan error, 1)
		d := &scripted{samples: more(1000), endOnAbort: done}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := follow(ctx, d, &monitor{limits: limitsOf(driver.MigrateOptions{})}, done, nil, log)
		if d.aborts.Load() != 1 || !errors.Is(err, context.Canceled) {
			t.Fatalf("aborts %d, err %v", d.aborts.Load(), err)
		}
	})
	t.Run("found running: followed until it ends, ended by the same rules", func(t *testing.T) {
		d := &scripted{samples: more(3)}
		if err := follow(context.Background(), d, &monitor{limits: limitsOf(driver.MigrateOptions{})}, nil, nil, log); err != nil {
			t.Fatal(err)
		}
		if d.aborts.Load() != 1 {
			t.Fatalf("aborts %d, want 1", d.aborts.Load())
		}
	})
	t.Run("found running, follower stopped: the job is left alone", func(t *testing.T) {
		d := &scripted{samples: more(1000)}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := follow(ctx, d, &monitor{limits: limitsOf(driver.MigrateOptions{})}, nil, nil, log)
		if d.aborts.Load() != 0 || !errors.Is(err, context.Canceled) {
			t.Fatalf("aborts %d, err %v", d.aborts.Load(), err)
		}
	})
}

func TestClaim(t *testing.T) {
	var f following
	release, busy := f.claim("qemu:///h1", "web-1")
	if release == nil || busy != nil {
		t.Fatal("first claim refused")
	}
	if r, b := f.claim("qemu:///h2", "web-1"); r == nil || b != nil {
		t.Fatal("the same name on another host is another job")
	}
	_, busy = f.claim("qemu:///h1", "web-1")
	if busy == nil {
		t.Fatal("second claim granted")
	}
	release()
	select {
	case <-busy:
	default:
		t.Fatal("release did not wake the waiter")
	}
	if r, _ := f.claim("qemu:///h1", "web-1"); r == nil {
		t.Fatal("claim after release refused")
	}
}
