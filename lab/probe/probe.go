// Package probe looks at lab guests from outside, as their users would:
// from the lab's client namespace it checks readiness, follows streams,
// reads the guest's sequence file, drives its load generator and pings it.
// The demo, the acceptance tests and the benchmarks share it.
package probe

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/virtpool/virtpool/lab"
)

// Client reaches guests from one network namespace.
type Client struct {
	NS   string
	http *http.Client
}

// New returns a client working from namespace ns.
func New(ns string) *Client {
	return &Client{NS: ns, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return lab.DialFrom(ctx, ns, addr)
		},
		DisableKeepAlives: true,
	}}}
}

// Get fetches http://ip/path from the guest.
func (c *Client) Get(ctx context.Context, ip, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ip+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), err
}

// WaitReady polls GET /health every 20 ms until the guest answers "ok".
func (c *Client) WaitReady(ctx context.Context, ip string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		body, err := c.Get(cctx, ip, "/health")
		cancel()
		if err == nil && strings.TrimSpace(body) == "ok" {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		last = err
		time.Sleep(20 * time.Millisecond)
	}
	if last == nil { // it answered, but not "ok" (or it was never asked)
		return fmt.Errorf("guest %s not ready after %s", ip, timeout)
	}
	return fmt.Errorf("guest %s not ready after %s: %w", ip, timeout, last)
}

// SetLoad drives the guest's load generator: cpu percent of each vCPU and
// MiB of memory kept dirty.
func (c *Client) SetLoad(ctx context.Context, ip string, cpu, memMiB int) error {
	_, err := c.Get(ctx, ip, fmt.Sprintf("/load?cpu=%d&mem=%d", cpu, memMiB))
	if err != nil {
		return fmt.Errorf("set load on %s: %w", ip, err)
	}
	return nil
}

// SetDiskLoad drives the guest's disk load: MiB/s read from and written
// to its disk (O_DIRECT, so all of it reaches the device). A guest without
// a disk refuses a rate above 0.
func (c *Client) SetDiskLoad(ctx context.Context, ip string, readMiBs, writeMiBs int) error {
	_, err := c.Get(ctx, ip, fmt.Sprintf("/load?disk_read=%d&disk_write=%d", readMiBs, writeMiBs))
	if err != nil {
		return fmt.Errorf("set disk load on %s: %w", ip, err)
	}
	return nil
}

// DiskBytes are the bytes a guest's disk load has read and written since
// it booted, as the guest counts them.
type DiskBytes struct{ Read, Written uint64 }

// Disk reads the guest's disk load counters from its /stat.
func (c *Client) Disk(ctx context.Context, ip string) (DiskBytes, error) {
	body, err := c.Get(ctx, ip, "/stat")
	if err != nil {
		return DiskBytes{}, fmt.Errorf("read /stat of %s: %w", ip, err)
	}
	d, err := ParseDiskBytes(body)
	if err != nil {
		return d, fmt.Errorf("/stat of %s: %w", ip, err)
	}
	return d, nil
}

// ParseDiskBytes reads the "disk: PATH bytes=N read=R written=W [E]" line
// of a guest's /stat; a guest without a disk says "disk: none (why)", and
// a read or write that failed adds read_error= or write_error=.
func ParseDiskBytes(stat string) (DiskBytes, error) {
	for _, line := range strings.Split(stat, "\n") {
		rest, ok := strings.CutPrefix(line, "disk: ")
		if !ok {
			continue
		}
		if strings.HasPrefix(rest, "none") {
			return DiskBytes{}, fmt.Errorf("the guest has no disk: %s", rest)
		}
		if strings.Contains(rest, "_error=") {
			return DiskBytes{}, fmt.Errorf("disk load failed: %s", rest)
		}
		var d DiskBytes
		var seen int
		for _, kv := range strings.Fields(rest)[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return DiskBytes{}, fmt.Errorf("disk line %q: %q is not a number", line, kv)
			}
			switch k {
			case "read":
				d.Read, seen = n, seen|1
			case "written":
				d.Written, seen = n, seen|2
			}
		}
		if seen != 3 {
			return DiskBytes{}, fmt.Errorf("disk line %q: want read= and written=", line)
		}
		return d, nil
	}
	return DiskBytes{}, fmt.Errorf("no \"disk:\" line in %q (a guest image from before disks)", stat)
}

// Download reads n bytes from the guest (GET /bytes) at rate bytes/s, so
// that the guest sends at that rate: TCP's flow control holds it back.
func (c *Client) Download(ctx context.Context, ip string, n, rate int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/bytes?n=%d", ip, n), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("download from %s: %w", ip, err)
	}
	defer resp.Body.Close()
	const chunk = 16 << 10
	start, got := time.Now(), int64(0)
	buf := make([]byte, chunk)
	for got < n {
		k, err := io.ReadFull(resp.Body, buf[:min(chunk, n-got)])
		got += int64(k)
		if err != nil {
			return fmt.Errorf("download from %s: %d of %d bytes: %w", ip, got, n, err)
		}
		// Ahead of the rate: wait until the bytes read are due.
		if due := start.Add(time.Duration(float64(got) / float64(rate) * float64(time.Second))); time.Until(due) > 0 {
			time.Sleep(time.Until(due))
		}
	}
	return nil
}

// Work runs n rounds of the guest's fixed computation (GET /work) and
// returns how long it took as seen from the client: the guest's own clock
// need not count a migration's pause.
func (c *Client) Work(ctx context.Context, ip string, n int64) (time.Duration, error) {
	start := time.Now()
	body, err := c.Get(ctx, ip, fmt.Sprintf("/work?n=%d", n))
	if err != nil {
		return 0, fmt.Errorf("work on %s: %w", ip, err)
	}
	if !strings.HasPrefix(body, fmt.Sprintf("n=%d ", n)) {
		return 0, fmt.Errorf("work on %s: unexpected answer %q", ip, body)
	}
	return time.Since(start), nil
}

// Sequence reads the file the guest appends 1,2,3,… to and checks it has
// no gap and no repeat; it returns the last number.
func (c *Client) Sequence(ctx context.Context, ip string) (int, error) {
	body, err := c.Get(ctx, ip, "/seq")
	if err != nil {
		return 0, fmt.Errorf("read sequence file of %s: %w", ip, err)
	}
	n, err := CheckSequence(strings.NewReader(body))
	if err != nil {
		return n, fmt.Errorf("sequence file of %s: %w", ip, err)
	}
	return n, nil
}

// CheckSequence verifies lines 1,2,3,… and returns how many there were.
func CheckSequence(r io.Reader) (int, error) {
	sc := bufio.NewScanner(r)
	want := 1
	for sc.Scan() {
		got, err := strconv.Atoi(strings.TrimSpace(sc.Text()))
		if err != nil {
			return want - 1, fmt.Errorf("line %d: %q is not a number", want, sc.Text())
		}
		switch {
		case got > want:
			return want - 1, fmt.Errorf("gap: %d follows %d", got, want-1)
		case got < want:
			return want - 1, fmt.Errorf("repeat: %d follows %d", got, want-1)
		}
		want++
	}
	if err := sc.Err(); err != nil {
		return want - 1, err
	}
	if want == 1 {
		return 0, fmt.Errorf("empty sequence")
	}
	return want - 1, nil
}

// CPUTicks are a guest's CPU counters, as its own kernel counts them
// (/proc/stat's aggregate line, in clock ticks).
type CPUTicks struct{ Busy, Total uint64 }

// BusySince is the fraction of CPU time the guest spent busy since an
// earlier reading, over all its vCPUs (1 = every vCPU busy).
func (t CPUTicks) BusySince(before CPUTicks) float64 {
	if t.Total <= before.Total {
		return 0
	}
	return float64(t.Busy-before.Busy) / float64(t.Total-before.Total)
}

// CPU reads the guest's CPU counters from its /stat.
func (c *Client) CPU(ctx context.Context, ip string) (CPUTicks, error) {
	body, err := c.Get(ctx, ip, "/stat")
	if err != nil {
		return CPUTicks{}, fmt.Errorf("read /stat of %s: %w", ip, err)
	}
	t, err := ParseCPUTicks(body)
	if err != nil {
		return t, fmt.Errorf("/stat of %s: %w", ip, err)
	}
	return t, nil
}

// ParseCPUTicks reads the "stat: cpu user nice system idle iowait …" line
// of a guest's /stat: busy is everything but idle and iowait.
func ParseCPUTicks(stat string) (CPUTicks, error) {
	for _, line := range strings.Split(stat, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[0] != "stat:" || f[1] != "cpu" {
			continue
		}
		var t CPUTicks
		var idle uint64
		for i, s := range f[2:] {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return CPUTicks{}, fmt.Errorf("cpu line %q: %q is not a counter", line, s)
			}
			t.Total += n
			if i == 3 || i == 4 { // idle, iowait
				idle += n
			}
		}
		t.Busy = t.Total - idle
		return t, nil
	}
	return CPUTicks{}, fmt.Errorf("no \"stat: cpu\" line in %q", stat)
}

// GuestClock is what a guest's GET /clock said, and when the host asked.
type GuestClock struct {
	Mono time.Duration // the guest's CLOCK_MONOTONIC
	// Lag is the longest that the guest's sequence writer woke up later
	// than its 10 ms slice since the previous reading: a stall of its vCPU
	// while its clock ran (-1: the guest keeps no sequence file).
	Lag time.Duration
	At  time.Time // the host's clock half-way through the request
}

// Clock reads the guest's clock (GET /clock), which also starts its next
// lag measurement.
func (c *Client) Clock(ctx context.Context, ip string) (GuestClock, error) {
	start := time.Now()
	body, err := c.Get(ctx, ip, "/clock")
	if err != nil {
		return GuestClock{}, fmt.Errorf("read the clock of %s: %w", ip, err)
	}
	g, err := ParseClock(body)
	if err != nil {
		return g, fmt.Errorf("clock of %s: %w", ip, err)
	}
	g.At = start.Add(time.Since(start) / 2)
	return g, nil
}

// ParseClock reads a guest's "mono_ns=T lag_us=L" answer.
func ParseClock(body string) (GuestClock, error) {
	var mono, lag int64
	if _, err := fmt.Sscanf(strings.TrimSpace(body), "mono_ns=%d lag_us=%d", &mono, &lag); err != nil {
		return GuestClock{}, fmt.Errorf("%q: %w", body, err)
	}
	g := GuestClock{Mono: time.Duration(mono), Lag: -1}
	if lag >= 0 {
		g.Lag = time.Duration(lag) * time.Microsecond
	}
	return g, nil
}

// Stopped is how long the guest's clock stood still between the reading
// before and g: the host's time between them less the guest's. A paused
// guest's clock stops, so this is the pause as the guest lived it (give
// or take the jitter of the two requests).
func (g GuestClock) Stopped(before GuestClock) time.Duration {
	return g.At.Sub(before.At) - (g.Mono - before.Mono)
}

// SeqDisk is a guest's comparison of its disk with its memory (GET
// /seqdisk, with virtpool.seqdisk=1): of the lines it wrote (Checked),
// those the disk holds otherwise (Mismatched: the disk is older than the
// memory), and lines not written yet that the disk holds (Future: the
// disk is newer); the last line written, and the highest of those lines
// ahead of the memory (Last if none).
type SeqDisk struct{ Checked, Mismatched, Future, Last, Highest int }

// Consistent tells whether the disk is the memory's: neither older nor newer.
func (s SeqDisk) Consistent() bool { return s.Checked > 0 && s.Mismatched == 0 && s.Future == 0 }

// SeqDisk compares the guest's disk with its memory.
func (c *Client) SeqDisk(ctx context.Context, ip string) (SeqDisk, error) {
	body, err := c.Get(ctx, ip, "/seqdisk")
	if err != nil {
		return SeqDisk{}, fmt.Errorf("compare the disk of %s with its memory: %w", ip, err)
	}
	var s SeqDisk
	if _, err := fmt.Sscanf(strings.TrimSpace(body), "checked=%d mismatched=%d future=%d last=%d highest=%d", &s.Checked, &s.Mismatched, &s.Future, &s.Last, &s.Highest); err != nil {
		return s, fmt.Errorf("disk sequence of %s: %q: %w", ip, body, err)
	}
	return s, nil
}
