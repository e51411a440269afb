package probe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"syscall"
	"time"

	"github.com/virtpool/virtpool/lab"
)

const pingInterval = 10 * time.Millisecond

// Pinger pings a guest every 10 ms (seed R-T7).
type Pinger struct {
	cmd *exec.Cmd
	out bytes.Buffer
}

// StartPing starts pinging ip from the client's namespace.
func (c *Client) StartPing(ip string) (*Pinger, error) {
	p := &Pinger{}
	// -D timestamps each reply; -W 2 is the seed's 2 s timeout.
	p.cmd = lab.CommandIn(context.Background(), c.NS, "ping", "-D", "-n", "-i", "0.01", "-W", "2", ip)
	p.cmd.Stdout = &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ping: %w", err)
	}
	return p, nil
}

// PingResult is what the pings saw.
type PingResult struct {
	Sent, Received int
	// Downtime is the longest silence between two replies, less the
	// interval: how long the guest did not answer.
	Downtime time.Duration
}

var replyRE = regexp.MustCompile(`^\[(\d+\.\d+)\] .* icmp_seq=(\d+) `)

// Stop stops pinging and reports.
func (p *Pinger) Stop() (PingResult, error) {
	time.Sleep(3 * pingInterval)
	// ping exits non-zero when replies were lost: its output says how many.
	_ = p.cmd.Process.Signal(syscall.SIGINT)
	_ = p.cmd.Wait()
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
