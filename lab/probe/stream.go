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
	"sync"
	"time"

	"github.com/virtpool/virtpool/lab"
)

// Stream follows an endless "1\n2\n3\n…" stream from a guest and checks
// that every number arrives once, in order, and the connection stays up.
type Stream struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	lines    int
	bytes    int64
	maxStall time.Duration
	err      error
}

// StreamResult is what a stream saw.
type StreamResult struct {
	Lines    int
	Bytes    int64
	MaxStall time.Duration // longest wait between two lines
	Err      error         // dropped connection, gap or repeat
}

// FollowHTTP follows GET /stream on the guest (two lines every 10 ms).
func (c *Client) FollowHTTP(ip string) (*Stream, error) { return c.FollowHTTPEvery(ip, 0) }

// streamSlice is the guest's pacing slice: /stream?every=N sends its lines
// every N slices.
const streamSlice = 10 * time.Millisecond

// FollowHTTPEvery follows GET /stream with lines every interval (rounded
// to the guest's 10 ms slices; 0: every slice). A slow stream costs the
// guest little CPU: measured under TCG, an idle guest streaming every 10 ms
// uses 0.12 of a core (a quarter of a lab host), every 100 ms 0.02.
func (c *Client) FollowHTTPEvery(ip string, every time.Duration) (*Stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	url := "http://" + ip + "/stream"
	if n := every / streamSlice; n > 1 {
		url += fmt.Sprintf("?every=%d", n)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open HTTP stream from %s: %w", ip, err)
	}
	return follow(ctx, cancel, resp.Body), nil
}

// FollowTCP follows the guest's raw TCP stream (port 9000).
func (c *Client) FollowTCP(ip string) (*Stream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	conn, err := lab.DialFrom(ctx, c.NS, net.JoinHostPort(ip, "9000"))
	if err != nil {
		cancel()
		return nil, err
	}
	return follow(ctx, cancel, conn), nil
}

func follow(ctx context.Context, cancel context.CancelFunc, r io.ReadCloser) *Stream {
	s := &Stream{cancel: cancel, done: make(chan struct{})}
	go func() { <-ctx.Done(); r.Close() }() // unblocks the reader on Stop
	go func() {
		defer close(s.done)
		defer cancel()
		br := bufio.NewReader(r)
		last := time.Now()
		want := 1
		for {
			line, err := br.ReadString('\n')
			now := time.Now()
			s.mu.Lock()
			s.bytes += int64(len(line))
			if err != nil {
				if ctx.Err() == nil {
					s.err = fmt.Errorf("stream dropped after %d lines: %w", s.lines, err)
				}
				s.mu.Unlock()
				return
			}
			if stall := now.Sub(last); stall > s.maxStall {
				s.maxStall = stall
			}
			last = now
			got, perr := strconv.Atoi(strings.TrimSpace(line))
			if perr != nil || got != want {
				s.err = fmt.Errorf("stream line %d: got %q, want %d", s.lines+1, strings.TrimSpace(line), want)
				s.mu.Unlock()
				return
			}
			want++
			s.lines++
			s.mu.Unlock()
		}
	}()
	return s
}

// Lines is how many lines arrived so far.
func (s *Stream) Lines() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lines
}

// Err is the stream's failure so far, if any.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// WaitAdvance waits until n more lines have arrived: proof that the stream
// still flows (after a migration, say).
func (s *Stream) WaitAdvance(n int, timeout time.Duration) error {
	target := s.Lines() + n
	deadline := time.Now().Add(timeout)
	for s.Lines() < target {
		if err := s.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("stream stalled at %d lines for %s", s.Lines(), timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Stop ends the stream and returns what it saw.
func (s *Stream) Stop() StreamResult {
	err := s.Err() // a failure before we close it ourselves
	s.cancel()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		err = s.err
	}
	return StreamResult{Lines: s.lines, Bytes: s.bytes, MaxStall: s.maxStall, Err: err}
}
