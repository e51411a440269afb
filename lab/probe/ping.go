package probe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/virtpool/virtpool/lab"
)

const pingInterval = 10 * time.Millisecond

// replyTimeout is how long a reply may take (-W, the seed's 2 s).
const replyTimeout = 2 * time.Second

// Pinger pings a guest every 10 ms (seed R-T7).
type Pinger struct {
	cmd *exec.Cmd

	mu      sync.Mutex
	out     bytes.Buffer
	replies int
}

// Write collects ping's output, counting replies as they come.
func (p *Pinger) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.replies += bytes.Count(b, []byte(" bytes from "))
	return p.out.Write(b)
}

func (p *Pinger) replyCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.replies
}

// StartPing starts pinging ip from the client's namespace and returns
// once the guest has answered, so that what follows is measured from a
// guest known to answer.
func (c *Client) StartPing(ip string) (*Pinger, error) {
	p := &Pinger{}
	// -D timestamps each reply.
	p.cmd = lab.CommandIn(context.Background(), c.NS, "ping", "-D", "-n", "-i", "0.01", "-W",
		strconv.Itoa(int(replyTimeout.Seconds())), ip)
	p.cmd.Stdout = p
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ping: %w", err)
	}
	if err := p.waitReplies(1); err != nil {
		p.stop()
		return nil, fmt.Errorf("ping %s: %w", ip, err)
	}
	return p, nil
}

// waitReplies waits until n more replies have arrived, for at most the
// reply timeout.
func (p *Pinger) waitReplies(n int) error {
	from := p.replyCount()
	deadline := time.Now().Add(replyTimeout)
	for p.replyCount() < from+n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d replies in %s, want %d", p.replyCount()-from, replyTimeout, n)
		}
		time.Sleep(pingInterval)
	}
	return nil
}

func (p *Pinger) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	// ping exits non-zero when replies were lost: its output says how many.
	_ = p.cmd.Wait()
}

// PingResult is what the pings saw.
type PingResult struct {
	Sent, Received int
	// Downtime is the longest silence between two replies, less the
	// interval: how long the guest did not answer.
	Downtime time.Duration
}

var replyRE = regexp.MustCompile(`^\[(\d+\.\d+)\] .* icmp_seq=(\d+) `)

// Stop stops pinging, once a few more replies have shown the guest
// answers again (or the reply timeout has passed), and reports.
func (p *Pinger) Stop() (PingResult, error) {
	_ = p.waitReplies(3) // none is what the result then says
	p.stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	return parsePing(p.out.Bytes())
}

func parsePing(out []byte) (PingResult, error) {
	var r PingResult
	var last float64
	maxSeq := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := replyRE.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		ts, _ := strconv.ParseFloat(m[1], 64)
		seq, _ := strconv.Atoi(m[2])
		if seq > maxSeq {
			maxSeq = seq
		}
		if r.Received > 0 {
			if gap := time.Duration((ts - last) * float64(time.Second)); gap-pingInterval > r.Downtime {
				r.Downtime = gap - pingInterval
			}
		}
		last = ts
		r.Received++
	}
	r.Sent = maxSeq
	if r.Received == 0 {
		return r, fmt.Errorf("no ping reply at all:\n%s", out)
	}
	return r, nil
}
