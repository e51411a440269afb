package autoscaler

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The agent stands in as sh scripts: what matters here is its output, its
// exit and its process group, not what it is.

func startSh(t *testing.T, script string, grace time.Duration) *Agent {
	t.Helper()
	a, err := Start(Config{Bin: "sh", Args: []string{"-c", script}, Grace: grace})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Stop)
	return a
}

func waitDone(t *testing.T, a *Agent) {
	t.Helper()
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not exit")
	}
}

func texts(ls []Line) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Text
	}
	return out
}

func TestLinesKept(t *testing.T) {
	long := strings.Repeat("x", 100_000) // longer than bufio.Scanner's 64 KiB
	tests := []struct {
		name   string
		script string
		want   []string
		runs   int // the race of an exit with its last lines wants a few
	}{
		{"stdout and stderr", `echo one; echo two >&2; echo three`, []string{"one", "two", "three"}, 1},
		{"line over 64 KiB", `head -c 100000 /dev/zero | tr '\0' x; echo; echo after`, []string{long, "after"}, 1},
		{"line over MaxLine: cut, the next kept", fmt.Sprintf(`head -c %d /dev/zero | tr '\0' y; echo; echo after`, 2*MaxLine),
			[]string{strings.Repeat("y", MaxLine), "after"}, 1},
		{"last line right before exit", `echo first; echo last; exit 3`, []string{"first", "last"}, 20},
		{"last line without newline", `echo first; printf last`, []string{"first", "last"}, 20},
		{"plugin quoting undone", `echo 'msg="scale requested: pool=\"demo\""'`, []string{`msg="scale requested: pool="demo""`}, 1},
		{"CRLF and empty lines", `printf 'a\r\n\nb\n'`, []string{"a", "", "b"}, 1},
		{"no output", `exit 0`, nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range tc.runs {
				a := startSh(t, tc.script, time.Second)
				waitDone(t, a)
				if got := texts(a.Lines(0)); !slices.Equal(got, tc.want) {
					t.Fatalf("lines: got %d %.80q, want %d %.80q", len(got), got, len(tc.want), tc.want)
				}
			}
		})
	}
}

func TestLinesFromAndTimes(t *testing.T) {
	a := startSh(t, `echo a; sleep 0.1; echo b; echo c`, time.Second)
	waitDone(t, a)
	ls := a.Lines(0)
	if len(ls) != 3 || !ls[1].At.After(ls[0].At) || ls[2].At.Before(ls[1].At) {
		t.Fatalf("lines and times: %v", ls)
	}
	for _, tc := range []struct {
		from int
		want []string
	}{{0, []string{"a", "b", "c"}}, {2, []string{"c"}}, {3, []string{}}, {7, []string{}}, {-1, []string{"a", "b", "c"}}} {
		if got := texts(a.Lines(tc.from)); !slices.Equal(got, tc.want) {
			t.Errorf("Lines(%d) = %q, want %q", tc.from, got, tc.want)
		}
	}
	if _, ok := a.Find(regexp.MustCompile(`^a$`), ls[1].At); ok {
		t.Errorf("Find found a line read before since")
	}
	if l, ok := a.Find(regexp.MustCompile(`^[a-c]$`), ls[1].At); !ok || l.Text != "b" {
		t.Errorf("Find since b: %v %v", l, ok)
	}
}

func TestLogFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.log")
	a, err := Start(Config{Bin: "sh", Args: []string{"-c", `echo one; echo 'q=\"x\"'; printf two`}, LogFile: path})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, a)
	a.Stop()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range a.Lines(0) {
		want = append(want, l.String())
	}
	if got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"); !slices.Equal(got, want) {
		t.Fatalf("log file %q, want %q", got, want)
	}
	if !regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} q="x"$`).MatchString(want[1]) {
		t.Errorf("log line %q: want time of day, text", want[1])
	}
}

func TestWaitLine(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		re      string
		timeout time.Duration
		want    string // the line found, or
		wantErr error  // what the failure wraps
	}{
		{"written later", `echo start; sleep 0.3; echo ready; sleep 30`, `^ready`, 10 * time.Second, "ready", nil},
		{"written with the exit", `sleep 0.2; echo bye; exit 1`, `^bye`, 10 * time.Second, "bye", nil},
		{"never written, the agent runs on", `echo start; sleep 30`, `^ready`, 300 * time.Millisecond, "", context.DeadlineExceeded},
		{"never written, the agent exits", `echo start; exit 1`, `^ready`, 10 * time.Second, "", ErrExited},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := startSh(t, tc.script, time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), tc.timeout)
			defer cancel()
			l, err := a.WaitLine(ctx, regexp.MustCompile(tc.re), time.Time{})
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && (err != nil || l.Text != tc.want):
				t.Fatalf("got %q, %v; want %q", l.Text, err, tc.want)
			}
			if errors.Is(err, ErrExited) && !strings.Contains(err.Error(), "exit status 1") {
				t.Errorf("%v: want the exit status", err)
			}
		})
	}
}

func TestStop(t *testing.T) {
	const grace = 300 * time.Millisecond
	tests := []struct {
		name   string
		script string
		killed bool          // the agent ends by SIGKILL, not by SIGINT
		max    time.Duration // Stop takes no longer
	}{
		{"ends on SIGINT", `trap 'echo interrupted; exit 0' INT; echo ready; while :; do sleep 0.05; done`, false, grace},
		{"ignores SIGINT", `trap '' INT; echo ready; while :; do sleep 0.05; done`, true, 3 * grace},
		// A plugin that outlives the agent (background jobs of sh ignore
		// SIGINT): the group's SIGKILL ends it.
		{"child outlives it", `sleep 1000 >/dev/null 2>&1 & echo child=$!; echo ready; wait`, false, grace},
		// The same holding the agent's output: Done waits at most the
		// grace period for it.
		{"child holds its output", `sleep 1000 & echo child=$!; echo ready; wait`, false, 3 * grace},
		{"exited already", `echo ready; exit 0`, false, grace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := startSh(t, tc.script, grace)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := a.WaitLine(ctx, regexp.MustCompile(`^ready$`), time.Time{}); err != nil {
				t.Fatal(err)
			}
			if tc.name == "exited already" {
				waitDone(t, a)
			}
			start := time.Now()
			a.Stop()
			took := time.Since(start)
			select {
			case <-a.Done():
			default:
				t.Fatal("Stop returned before the agent was done")
			}
			if took > tc.max+200*time.Millisecond {
				t.Errorf("Stop took %s, want at most %s", took, tc.max)
			}
			var ee *exec.ExitError
			killed := errors.As(a.Err(), &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
			if killed != tc.killed {
				t.Errorf("agent ended with %v; killed = %v, want %v", a.Err(), killed, tc.killed)
			}
			if tc.name == "ends on SIGINT" {
				if _, ok := a.Find(regexp.MustCompile(`^interrupted$`), time.Time{}); !ok {
					t.Errorf("the agent's last line (after SIGINT) is missing: %q", texts(a.Lines(0)))
				}
			}
			if l, ok := a.Find(regexp.MustCompile(`^child=`), time.Time{}); ok {
				pid, _ := strconv.Atoi(strings.TrimPrefix(l.Text, "child="))
				waitDead(t, pid)
			}
			a.Stop() // again: nothing
		})
	}
}

// waitDead fails unless pid is gone (or a zombie: its parent died, and
// whoever reaps orphans here may be slow) within a second.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	for range 50 {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		s := string(b)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	t.Errorf("process %d of the agent's group outlived Stop", pid)
}

func TestStartFails(t *testing.T) {
	if _, err := Start(Config{Bin: filepath.Join(t.TempDir(), "no-such-agent")}); err == nil || !strings.Contains(err.Error(), "start ") {
		t.Errorf("err = %v, want start failure", err)
	}
	if _, err := Start(Config{Bin: "sh", LogFile: filepath.Join(t.TempDir(), "no", "such", "dir", "agent.log")}); err == nil {
		t.Errorf("an uncreatable log file: no error")
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort() = %d, %v", p, err)
	}
}
