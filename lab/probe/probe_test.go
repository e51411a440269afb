package probe

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCheckSequence(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr string
	}{
		{"1\n2\n3\n", 3, ""},
		{"1\n2\n3", 3, ""},
		{"1\n3\n", 1, "gap: 3 follows 1"},
		{"1\n2\n2\n3\n", 2, "repeat: 2 follows 2"},
		{"2\n", 0, "gap: 2 follows 0"},
		{"1\nx\n", 1, `"x" is not a number`},
		{"", 0, "empty sequence"},
	}
	for _, tt := range tests {
		got, err := CheckSequence(strings.NewReader(tt.in))
		if got != tt.want || (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckSequence(%q) = %d, %v; want %d, %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParsePing(t *testing.T) {
	out := `PING 192.0.2.101 (192.0.2.101) 56(84) bytes of data.
[1000.000000] 64 bytes from 192.0.2.101: icmp_seq=1 ttl=64 time=0.5 ms
[1000.010000] 64 bytes from 192.0.2.101: icmp_seq=2 ttl=64 time=0.5 ms
[1000.080000] 64 bytes from 192.0.2.101: icmp_seq=9 ttl=64 time=0.5 ms
[1000.090000] 64 bytes from 192.0.2.101: icmp_seq=10 ttl=64 time=0.5 ms
`
	r, err := parsePing([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 10 || r.Received != 4 {
		t.Errorf("sent/received = %d/%d, want 10/4", r.Sent, r.Received)
	}
	if r.Downtime < 59*time.Millisecond || r.Downtime > 61*time.Millisecond {
		t.Errorf("downtime = %s, want 60ms (70ms gap less the interval)", r.Downtime)
	}
	if _, err := parsePing([]byte("PING x\n")); err == nil {
		t.Error("no replies must be an error")
	}
}

// pipeStream serves lines to follow() through a real connection.
func pipeStream(t *testing.T, body string, hold bool) *Stream {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		_, _ = io.WriteString(a, body) // fails only once the reader is closed
		if !hold {
			a.Close()
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { a.Close() })
	return follow(ctx, cancel, b)
}

func TestFollow(t *testing.T) {
	s := pipeStream(t, "1\n2\n3\n", true)
	if err := s.WaitAdvance(3, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if r := s.Stop(); r.Err != nil || r.Lines != 3 || r.Bytes != 6 {
		t.Fatalf("healthy stream: %+v", r)
	}
	// A broken stream ends by itself, having seen the fault: wait for that,
	// then Stop must report it (and not a stop of ours).
	s = pipeStream(t, "1\n2\n4\n", true)
	ended(t, s)
	if r := s.Stop(); r.Err == nil || !strings.Contains(r.Err.Error(), `got "4", want 3`) {
		t.Fatalf("gap not reported: %+v", r)
	}
	s = pipeStream(t, "1\n2\n", false) // the server hangs up: a dropped stream
	ended(t, s)
	if r := s.Stop(); r.Err == nil || !strings.Contains(r.Err.Error(), "dropped after 2 lines") {
		t.Fatalf("drop not reported: %+v", r)
	}
}

// ended waits until the stream's reader has given up by itself.
func ended(t *testing.T, s *Stream) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("stream still followed after its fault (%d lines)", s.Lines())
	}
}

func TestParseCPUTicks(t *testing.T) {
	tests := []struct {
		in      string
		want    CPUTicks
		wantErr string
	}{
		{in: "load: cpu=50 mem=0 rate=0 workers=1\nstat: cpu  10 0 5 80 5 0 0 0 0 0\nstat_cpu0: cpu0 10 0 5 80 5 0 0 0 0 0\n",
			want: CPUTicks{Busy: 15, Total: 100}},
		{in: "stat: cpu 1 2 3 4 5", want: CPUTicks{Busy: 6, Total: 15}},
		{in: "stat: cpu 1 x 3 4 5", wantErr: `"x" is not a counter`},
		{in: "load: cpu=0\n", wantErr: `no "stat: cpu" line`},
	}
	for _, tc := range tests {
		got, err := ParseCPUTicks(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	if f := (CPUTicks{Busy: 65, Total: 200}).BusySince(CPUTicks{Busy: 15, Total: 100}); f != 0.5 {
		t.Errorf("BusySince = %v, want 0.5", f)
	}
}

func TestParseClock(t *testing.T) {
	g, err := ParseClock("mono_ns=5000000000 lag_us=1500\n")
	if err != nil || g.Mono != 5*time.Second || g.Lag != 1500*time.Microsecond {
		t.Errorf("ParseClock: %+v, %v", g, err)
	}
	if g, err := ParseClock("mono_ns=1 lag_us=-1"); err != nil || g.Lag != -1 {
		t.Errorf("no writer: %+v, %v", g, err)
	}
	if _, err := ParseClock("not found\n"); err == nil {
		t.Error("a 404 body was read as a clock")
	}
	at := time.Now()
	before := GuestClock{Mono: time.Second, At: at}
	after := GuestClock{Mono: 2 * time.Second, At: at.Add(1300 * time.Millisecond)}
	if d := after.Stopped(before); d != 300*time.Millisecond {
		t.Errorf("Stopped: %s, want 300ms", d)
	}
}

func TestParseDiskBytes(t *testing.T) {
	tests := []struct {
		in      string
		want    DiskBytes
		wantErr string
	}{
		{in: "seq: 0\ndisk: /dev/vda bytes=67108864 read=4194304 written=65536\n", want: DiskBytes{Read: 4 << 20, Written: 64 << 10}},
		{in: "disk: none (no disk: /dev/vda: No such file or directory)\n", wantErr: "has no disk: none (no disk: /dev/vda"},
		{in: "disk: /dev/vda bytes=1 read=1 written=2 write_error=No space left on device\n", wantErr: "disk load failed"},
		{in: "disk: /dev/vda bytes=1 read=x written=2\n", wantErr: `"read=x" is not a number`},
		{in: "disk: /dev/vda bytes=1 read=1\n", wantErr: "want read= and written="},
		{in: "seq: 0\n", wantErr: `no "disk:" line`},
	}
	for _, tc := range tests {
		got, err := ParseDiskBytes(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}
