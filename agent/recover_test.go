package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

// logged keeps the warnings and errors of a log (an hclog sink), for a
// test to read while the agent logs.
type logged struct {
	mu    sync.Mutex
	lines []string
}

// Accept keeps "level: message key=value…", without the error.
func (l *logged) Accept(_ string, level hclog.Level, msg string, args ...any) {
	if level < hclog.Warn {
		return
	}
	line := level.String() + ": " + msg
	for i := 0; i+1 < len(args); i += 2 {
		if args[i] != "error" {
			line += fmt.Sprintf(" %v=%v", args[i], args[i+1])
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

// take returns the lines kept since the last take.
func (l *logged) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.lines
	l.lines = nil
	return out
}

// faults fails driver calls (pooltest.Driver.Fail), each call named by
// method, host URI and domain or record ("pool/db") a number of times
// (-1: every time), as a host that misses its deadline does.
type faults struct {
	mu    sync.Mutex
	left  map[string]int
	skip  map[string]int          // calls let through before the failures
	hits  map[string]int          // calls failed
	armed map[string][]armedFault // by the call whose first failure arms them
}

// armedFault is n failures of the call of key, once armed.
type armedFault struct {
	key string
	n   int
}

func faultKey(method, uri, name string) string { return method + " " + uri + " " + name }

func (f *faults) init() {
	if f.left == nil {
		f.left, f.skip, f.hits, f.armed = map[string]int{}, map[string]int{}, map[string]int{}, map[string][]armedFault{}
	}
}

func (f *faults) add(n int, method, uri, name string) { f.after(0, n, method, uri, name) }

// after fails the call n times once skip of its calls went through.
func (f *faults) after(skip, n int, method, uri, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	k := faultKey(method, uri, name)
	f.left[k], f.skip[k] = n, skip
}

// then fails the call (method, uri, name) n times from the moment the
// call of trigger (method, host URI and name, space-separated) first
// fails: the next call after it, whatever its order among others.
func (f *faults) then(trigger string, n int, method, uri, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.init()
	f.armed[trigger] = append(f.armed[trigger], armedFault{faultKey(method, uri, name), n})
}

func (f *faults) fail(method, uri, name string) error {
	k := faultKey(method, uri, name)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.left[k] == 0 {
		return nil
	}
	if f.skip[k] > 0 {
		f.skip[k]--
		return nil
	}
	if f.left[k] > 0 {
		f.left[k]--
	}
	f.hits[k]++
	for _, a := range f.armed[k] {
		f.left[a.key] = a.n
	}
	delete(f.armed, k)
	return fmt.Errorf("%s on %s: no answer in time: %w", method, uri, context.DeadlineExceeded)
}

// unfired lists the faults not used up: those that never failed a call,
// or have failures left, or were never armed.
func (f *faults) unfired() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k, n := range f.left {
		if n > 0 || f.hits[k] == 0 {
			out = append(out, k)
		}
	}
	for k, as := range f.armed {
		for _, a := range as {
			out = append(out, a.key+" (armed by "+k+")")
		}
	}
	sort.Strings(out)
	return out
}

// lastSeq is the sequence number of the agent's last event.
func (l *failLab) lastSeq() int64 {
	evs := l.a.Events().Since(0)
	if len(evs) == 0 {
		return 0
	}
	return evs[len(evs)-1].Seq
}

// readersFence tells whether the record of pool name that readers take
// (the newest generation the hosts that answer hold) has a fence on host.
func (l *failLab) readersFence(t *testing.T, name, host string) bool {
	t.Helper()
	pr, _, found, err := l.a.ops(l.a.fleet.Topology(), "").ReadPool(context.Background(), name, nil)
	if _, err := pool.Partial(err); err != nil || !found {
		t.Fatalf("read pool %s: found %v, %v", name, found, err)
	}
	_, fenced := pr.Fenced(host)
	return fenced
}

// fencedCopies lists, as pool@host, the copies of pool records on every
// host that still have a fence on host.
func (l *failLab) fencedCopies(t *testing.T, host string) []string {
	t.Helper()
	var out []string
	for _, h := range failHosts("h1", "h2", "h3") {
		rs, err := l.d.ListRecords(context.Background(), h.URI)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if r.Kind != driver.RecordPool {
				continue
			}
			pr, err := pool.DecodeRecord(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, fenced := pr.Fenced(host); fenced {
				out = append(out, fmt.Sprintf("%s@%s (generation %d)", r.Name, h.Name, r.Generation))
			}
		}
	}
	return out
}

// twice lists the guests that run (or are paused) on more than one host.
func (l *failLab) twice(t *testing.T) []string {
	t.Helper()
	on := map[string][]string{}
	for _, h := range failHosts("h1", "h2", "h3") {
		doms, err := l.d.ListDomains(context.Background(), h.URI)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range doms {
			if d.State == driver.StateRunning || d.State == driver.StatePaused {
				on[d.Name] = append(on[d.Name], h.Name)
			}
		}
	}
	var out []string
	for name, hosts := range on {
		if len(hosts) > 1 {
			out = append(out, name+" on "+strings.Join(hosts, " and "))
		}
	}
	sort.Strings(out)
	return out
}

// afterRecover checks, after a pass of h3's recovery, that the guests
// that run on two hosts are those of twice (sorted; none once recovered)
// and that h3 keeps only the guests of kept (sorted): its stale copies
// are gone.
func (l *failLab) afterRecover(t *testing.T, pass string, kept, twice []string) {
	t.Helper()
	if got := l.twice(t); !slices.Equal(got, twice) {
		t.Errorf("after %s, guests run twice: %q, want %q", pass, got, twice)
	}
	doms, err := l.d.ListDomains(context.Background(), "test:///h3")
	if err != nil {
		t.Fatal(err)
	}
	var onH3 []string
	for _, d := range doms {
		onH3 = append(onH3, d.Name)
	}
	if !slices.Equal(onH3, kept) {
		t.Errorf("after %s, h3 keeps %q, want %q", pass, onH3, kept)
	}
}

// TestRecover: h3, with pools db (h2, h3) and cache (h1, h3) and the
// single domain solo (failover host h1), is fenced, db and cache are
// restored under new names and solo restarted on h1. Then h3 answers
// again, with the case's faults on the first pass of its recovery (the
// first sample that sees it), and a second pass follows. Whatever the
// faults, once recovered: the stale copies on h3 are gone, no pool record
// keeps h3's fence, each pool said host_recovered once, solo runs once,
// on h1, and no guest runs on two hosts (checked after each pass, where
// only a copy that cannot be told stale yet may run twice).
func TestRecover(t *testing.T) {
	const h1, h2, h3 = "test:///h1", "test:///h2", "test:///h3"
	// The error the agent logs for each of h3's copies the fence did not
	// stop, pool members' then single domains'.
	member := func(name string) string {
		return "error: a stale copy runs on a fenced host that is back: the fence did not power it off host=h3 domain=" + name
	}
	single := func(name string) string {
		return "error: a stale copy of a restarted domain runs on a fenced host that is back: the fence action did not stop it (fix it); destroyed host=h3 domain=" +
			name + " runs_on=h1"
	}
	const retried = "warn: failover action failed; retried later action=recover host=h3"
	tests := []struct {
		name string
		// setup adds guests to h3 and faults for the whole test, before
		// the first sample.
		setup func(t *testing.T, l *failLab, f *faults)
		back  func(f *faults) // faults of the first pass once h3 answers
		// The events (failLab.kinds) of each pass once h3 answers.
		pass1, pass2 string
		// said: words of these events' messages (by failLab.kinds' name).
		said         map[string]string
		fenced1      bool     // db's record readers take keeps h3's fence after the first pass
		warn1, warn2 []string // the warnings and errors of each pass, in order
		kept         []string // guests h3 keeps
		// After the first pass, if not as once recovered: the guests h3
		// keeps, and those that run on two hosts.
		kept1, twice1 []string
		// running: the fence leaves h3's guests running. Members of
		// pools fenced there and single domains restarted elsewhere are
		// stale even running: they are destroyed and removed.
		running bool
	}{
		{
			name:  "answers again: stale copies removed, fences dropped, host_recovered per pool",
			pass1: "host_recovered:h3 host_recovered:h3cache host_recovered:h3db",
			said: map[string]string{"host_recovered:h3": "stale copies of restarted domains removed: solo (shutoff, runs on h1)",
				"host_recovered:h3db": "stale copies removed: db-1 (shutoff)"},
		},
		{
			// ec3d154: the write of db's record on h3 misses its deadline
			// after h2 took it, without the fence: readers take h2's.
			name:  "db's record write on h3 late, the fence gone from the record readers take",
			back:  func(f *faults) { f.add(1, "PutRecord", h3, "pool/db") },
			pass1: "host_recovered:h3 host_recovered:h3cache host_recovered:h3db",
			warn1: []string{"warn: pool recovered on a host that is back, a record write late host=h3 pool=db"},
		},
		{
			// The re-read that would tell the fence is gone from the
			// record readers take misses h2, which holds it: the next pass,
			// which reads every host and finds no fence, says it.
			name: "db's record write on h3 late, then h2 missed by the read that would confirm it",
			back: func(f *faults) {
				f.add(1, "PutRecord", h3, "pool/db")
				f.then(faultKey("PutRecord", h3, "pool/db"), 1, "ListRecords", h2, "")
			},
			pass1: "host_recovered:h3 host_recovered:h3cache", pass2: "host_recovered:h3db",
			said:  map[string]string{"host_recovered:h3db": "pool db's fence dropped, stale copies removed: db-1 (shutoff)"},
			warn1: []string{retried},
		},
		{
			name: "db's record write late on every host, the fence still in the record readers take",
			back: func(f *faults) {
				f.add(1, "PutRecord", h2, "pool/db")
				f.add(1, "PutRecord", h3, "pool/db")
			},
			pass1: "host_recovered:h3 host_recovered:h3cache", pass2: "host_recovered:h3db",
			// db-1 went in the first pass, before the write.
			said:    map[string]string{"host_recovered:h3db": "stale copies removed: db-1 (shutoff)"},
			fenced1: true,
			warn1:   []string{retried},
		},
		{
			// Nothing lost: what runs nowhere else stays, stopped by the
			// fence, for its operator.
			name: "guests that only h3 has are kept",
			setup: func(t *testing.T, l *failLab, f *faults) {
				l.single(t, "stay", map[string]string{}) // no failover hosts
				l.single(t, "pinned", map[string]string{pool.LabelFailoverHosts: "h1"})
				f.add(-1, "CreateDomain", h1, "pinned")                                          // never restarted
				l.d.AddDomain(h3, driver.Domain{Name: "foreign", VCPUs: 1, MemoryMiB: 256}, 0.1) // not virtpool's
			},
			pass1: "host_recovered:h3 host_recovered:h3cache host_recovered:h3db",
			kept:  []string{"foreign", "pinned", "stay"},
		},
		{
			// The same, the fence leaving them running: still kept, a
			// single domain whose restart failed too (it runs nowhere
			// else).
			name:    "the fence left them running, guests that only h3 has are kept",
			running: true,
			setup: func(t *testing.T, l *failLab, f *faults) {
				l.single(t, "stay", map[string]string{})
				l.single(t, "pinned", map[string]string{pool.LabelFailoverHosts: "h1"})
				f.add(-1, "CreateDomain", h1, "pinned")
			},
			pass1: "host_recovered:h3 host_recovered:h3cache host_recovered:h3db",
			warn1: []string{single("solo"), member("cache-1"), member("db-1")},
			kept:  []string{"pinned", "stay"},
		},
		{
			// Members of a pool fenced there and single domains restarted
			// elsewhere are stale even running or paused: the pools have
			// their replacements, the restarted domains have run on h1
			// since the fence.
			name:    "the fence left the guests running",
			running: true,
			setup: func(t *testing.T, l *failLab, f *faults) {
				l.singleIn(t, "nap", driver.StatePaused, map[string]string{pool.LabelFailoverHosts: "h1"})
			},
			pass1: "host_recovered:h3 host_recovered:h3cache host_recovered:h3db",
			said: map[string]string{
				"host_recovered:h3":      "stale copies of restarted domains removed: nap (paused, runs on h1), solo (running, runs on h1)",
				"host_recovered:h3cache": "stale copies removed: cache-1 (running)"},
			warn1: []string{single("nap"), single("solo"), member("cache-1"), member("db-1")},
		},
		{
			// solo runs on h3 and maybe on h1, its failover host, which
			// the pass cannot read: neither copy is touched; the next pass
			// reads both and removes h3's.
			name:    "the fence left the guests running, h1 not read by the first pass",
			running: true,
			back:    func(f *faults) { f.add(1, "ListDomains", h1, "") },
			pass1:   "host_recovered:h3cache host_recovered:h3db", pass2: "host_recovered:h3",
			said: map[string]string{"host_recovered:h3": "stale copies of restarted domains removed: solo (running, runs on h1)"},
			warn1: []string{"warn: a single domain runs on a fenced host that is back and may run on a host that does not answer too: kept, tried again host=h3 domain=solo unread=h1",
				member("cache-1"), member("db-1"), retried},
			warn2: []string{single("solo")},
			kept1: []string{"solo"}, twice1: []string{"solo on h1 and h3"},
		},
		{
			// The first read sees solo on both, the second, which must
			// see both again before h3's copy goes, misses h1.
			name:    "the fence left the guests running, h1 missed by the read before the destroy",
			running: true,
			back:    func(f *faults) { f.after(1, 1, "ListDomains", h1, "") },
			pass1:   "host_recovered:h3cache host_recovered:h3db", pass2: "host_recovered:h3",
			warn1: []string{"warn: a restarted domain runs on a fenced host that is back and on another host, which a second read did not reach: both kept, tried again host=h3 domain=solo runs_on=h1",
				member("cache-1"), member("db-1"), retried},
			warn2: []string{single("solo")},
			kept1: []string{"solo"}, twice1: []string{"solo on h1 and h3"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var l *failLab
			l = newFailLab(t, func([]string) error {
				if !tc.running {
					l.d.PowerOff(h3)
				}
				return nil
			})
			putPool(t, l.d, pool.Spec{Name: "cache", Size: 1, MaxSize: 4, Template: failTemplate, Hosts: failHosts("h1", "h3")}, h3)
			l.single(t, "solo", map[string]string{pool.LabelFailoverHosts: "h1"})
			f := &faults{}
			if tc.setup != nil {
				tc.setup(t, l, f)
			}
			l.d.Fail = f.fail
			l.steps(t, 1)
			l.d.Host(h3).Down = true
			l.steps(t, 4) // fenced at the grace period's end
			for _, want := range []string{"host_fenced:h3", "pool_restored:h3cache", "pool_restored:h3db", "guest_restarted:h1solo"} {
				if !slices.Contains(l.kinds(0), want) {
					t.Fatalf("events %q before h3 answers, want %s", l.kinds(0), want)
				}
			}
			if !l.readersFence(t, "db", "h3") || !l.readersFence(t, "cache", "h3") {
				t.Fatal("h3's fence is not in db's and cache's records")
			}
			if un := f.unfired(); len(un) > 0 {
				t.Fatalf("faults never used while h3 was down: %q", un)
			}
			if tc.back != nil {
				tc.back(f)
			}
			l.log.take()

			back := l.lastSeq() // the events since h3 answers
			seq := back
			l.d.Host(h3).Down = false
			l.steps(t, 1)
			if got := strings.Join(l.kinds(seq), " "); got != tc.pass1 {
				t.Errorf("events of the first pass once h3 answers %q, want %q", got, tc.pass1)
			}
			if un := f.unfired(); len(un) > 0 {
				t.Errorf("faults not used by the first pass: %q", un)
			}
			if got := l.log.take(); !slices.Equal(got, tc.warn1) {
				t.Errorf("the first pass logged %q, want %q", got, tc.warn1)
			}
			if got := l.readersFence(t, "db", "h3"); got != tc.fenced1 {
				t.Errorf("after the first pass, h3's fence in db's record readers take: %v, want %v", got, tc.fenced1)
			}
			kept1 := tc.kept
			if tc.kept1 != nil {
				kept1 = tc.kept1
			}
			l.afterRecover(t, "the first pass", kept1, tc.twice1)

			seq = l.lastSeq()
			l.steps(t, 1)
			if got := strings.Join(l.kinds(seq), " "); got != tc.pass2 {
				t.Errorf("events of the second pass %q, want %q", got, tc.pass2)
			}
			if got := l.log.take(); !slices.Equal(got, tc.warn2) {
				t.Errorf("the second pass logged %q, want %q", got, tc.warn2)
			}
			if got := l.fencedCopies(t, "h3"); len(got) > 0 {
				t.Errorf("pool records that keep h3's fence: %q", got)
			}
			l.afterRecover(t, "the second pass", tc.kept, nil)
			for _, e := range l.a.Events().Since(back) {
				k := e.Kind + ":" + e.Host + e.Pool + e.Guest
				if want, ok := tc.said[k]; ok && !strings.Contains(e.Message, want) {
					t.Errorf("%s says %q, want %q in it", k, e.Message, want)
				}
			}
			if w := l.d.Where("solo"); len(w) != 1 || w[h1] != driver.StateRunning {
				t.Errorf("solo: %v, want running on h1 only", w)
			}
			for name, want := range map[string]string{"db": "db-2@h2 db-3@h2", "cache": "cache-2@h1"} {
				if got := l.members(t, name); got != want {
					t.Errorf("%s's members %q, want %q", name, got, want)
				}
			}
			// A third pass: nothing more to do, nothing said twice.
			seq = l.lastSeq()
			l.steps(t, 1)
			if got := l.kinds(seq); len(got) > 0 {
				t.Errorf("events of a third pass %q, want none", got)
			}
			if got := l.log.take(); len(got) > 0 {
				t.Errorf("a third pass logged %q", got)
			}
		})
	}
}
