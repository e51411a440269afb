package event

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func kinds(evs []Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.Kind)
	}
	return out
}

func TestReadFile(t *testing.T) {
	const (
		a = `{"time":"2026-01-02T03:04:05Z","kind":"a","message":""}` + "\n"
		b = `{"time":"2026-01-02T03:04:06Z","kind":"b","pool":"p","message":"m"}` + "\n"
	)
	tests := []struct {
		name    string
		data    string // the file; "-" for none
		offset  int64
		want    []string
		wantOff int64
		wantErr string
	}{
		{"no file yet", "-", 0, []string{}, 0, ""},
		{"empty", "", 0, []string{}, 0, ""},
		{"two records", a + b, 0, []string{"a", "b"}, int64(len(a + b)), ""},
		{"from an offset", a + b, int64(len(a)), []string{"b"}, int64(len(a + b)), ""},
		{"at the end", a + b, int64(len(a + b)), []string{}, int64(len(a + b)), ""},
		{"partial last line left", a + b[:20], 0, []string{"a"}, int64(len(a)), ""},
		{"only a partial line", b[:20], 0, []string{}, 0, ""},
		{"empty lines skipped", "\n" + a + "\n\n" + b, 0, []string{"a", "b"}, int64(len(a+b)) + 3, ""},
		{"a bad line reported, the others read", a + "not json\n" + b, 0, []string{"a", "b"}, int64(len(a+b)) + 9,
			fmt.Sprintf("at byte %d", len(a))},
		{"offset past the end (file truncated)", a, 1000, []string{}, 1000, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			if tc.data != "-" {
				if err := os.WriteFile(path, []byte(tc.data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			evs, off, err := ReadFile(path, tc.offset)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatal(err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if got := kinds(evs); !slices.Equal(got, tc.want) || off != tc.wantOff {
				t.Fatalf("got %v up to %d, want %v up to %d", got, off, tc.want, tc.wantOff)
			}
		})
	}
}

// A line completed after a read is read by the next one.
func TestReadFileFollowsPartialLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	line := Event{Kind: MigrationStarted, Guest: "g"}.String() + "\n"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var off int64
	for i, part := range []string{line[:10], line[10:], line} {
		if _, err := f.WriteString(part); err != nil {
			t.Fatal(err)
		}
		evs, next, err := ReadFile(path, off)
		if err != nil {
			t.Fatal(err)
		}
		want := []int{0, 1, 1}[i]
		if len(evs) != want || (want == 1 && evs[0].Guest != "g") {
			t.Fatalf("read %d: %v, want %d records", i, evs, want)
		}
		off = next
	}
	if off != int64(2*len(line)) {
		t.Fatalf("offset %d, want %d", off, 2*len(line))
	}
}

func TestEmit(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		in   Event
		line string // "" : Time is set to now
	}{
		{"time kept", Event{Time: at, Kind: ScaleRequested, Pool: "web", Dimension: "size", Count: 3, Message: "scale requested"},
			`{"time":"2026-01-02T03:04:05Z","kind":"scale_requested","pool":"web","dimension":"size","count":3,"message":"scale requested"}`},
		{"plan", Event{Time: at, Kind: DryRunPlan, Cluster: true, Dimension: "hosts", DryRun: true, Action: ActionConsolidate,
			Moves: []Move{{Guest: "g", From: "h1", To: "h2", Wave: 1}}, PowerOff: []string{"h1"}},
			`{"time":"2026-01-02T03:04:05Z","kind":"dry_run","cluster":true,"dimension":"hosts","dry_run":true,"action":"consolidate",` +
				`"moves":[{"guest":"g","from":"h1","to":"h2","wave":1}],"power_off":["h1"],"message":""}`},
		{"time set", Event{Kind: DriverRestarted, Pid: 7}, ""},
	}
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	for _, tc := range tests {
		l.Emit(tc.in)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != len(tests) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tests), data)
	}
	evs, _, err := ReadFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.line != "" && lines[i] != tc.line {
				t.Fatalf("line\n%s\nwant\n%s", lines[i], tc.line)
			}
			if tc.line == "" && (evs[i].Time.Before(before.Add(-time.Second)) || evs[i].Time.After(time.Now())) {
				t.Fatalf("time %s, want now", evs[i].Time)
			}
		})
	}
	// Closed, and nil: nothing written, no panic.
	l.Emit(Event{Kind: "late"})
	var none *Log
	none.Emit(Event{Kind: "none"})
	if err := none.Close(); err != nil {
		t.Fatal(err)
	}
	if evs, _, _ := ReadFile(path, 0); len(evs) != len(tests) {
		t.Fatalf("%d records after Close, want %d", len(evs), len(tests))
	}
}

// The agent's API and page read these names: they must not change.
func TestAgentFieldNames(t *testing.T) {
	e := Event{Seq: 1, Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Kind: MigrationFinished, Host: "h", From: "a", To: "b",
		Guest: "g", UUID: "u", Pool: "p", State: "active", Size: 2, Direction: "up", ElapsedMs: 3, DowntimeMs: 4, Bytes: 5, Message: "m"}
	want := `{"seq":1,"time":"2026-01-02T03:04:05Z","kind":"migration_finished","host":"h","from":"a","to":"b","guest":"g",` +
		`"uuid":"u","pool":"p","state":"active","size":2,"direction":"up","elapsed_ms":3,"downtime_ms":4,"bytes":5,"message":"m"}`
	if got := e.String(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

// Two processes' logs on one file (two Logs here, each O_APPEND) and
// goroutines in each: every line whole, none lost.
func TestConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	const writers, each = 2, 4
	const per = 200
	long := strings.Repeat("x", 3000) // lines longer than a pipe's atomic write
	var wg sync.WaitGroup
	logs := make([]*Log, writers)
	for w := range writers {
		l, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		logs[w] = l
		for g := range each {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per {
					l.Emit(Event{Kind: "k", Host: fmt.Sprintf("w%d", w), Guest: fmt.Sprintf("g%d", g), Size: i, Message: long})
				}
			}()
		}
	}
	wg.Wait()
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	evs, _, err := ReadFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != writers*each*per {
		t.Fatalf("%d records, want %d", len(evs), writers*each*per)
	}
	next := map[string]int{}
	for _, e := range evs {
		k := e.Host + "/" + e.Guest
		if e.Size != next[k] || e.Message != long {
			t.Fatalf("%s: record %d out of order or torn (want %d)", k, e.Size, next[k])
		}
		next[k]++
	}
}
