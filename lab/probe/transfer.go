package probe

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/virtpool/virtpool/lab"
)

// RawTransfer sends n bytes over TCP from namespace fromNS to a listener on
// toIP in namespace toNS (the link a migration between those hosts uses)
// and returns how long it took until the receiver had them all.
func RawTransfer(ctx context.Context, fromNS, toNS, toIP string, n int64) (time.Duration, error) {
	l, err := lab.ListenIn(toNS, net.JoinHostPort(toIP, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		k, _ := io.Copy(io.Discard, c)
		got <- k
	}()
	c, err := lab.DialFrom(ctx, fromNS, l.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for left := n; left > 0; {
		k := int64(len(buf))
		if left < k {
			k = left
		}
		w, err := c.Write(buf[:k])
		if err != nil {
			c.Close()
			return 0, fmt.Errorf("raw transfer: %w", err)
		}
		left -= int64(w)
	}
	c.Close()
	if k := <-got; k != n {
		return 0, fmt.Errorf("raw transfer: received %d of %d bytes", k, n)
	}
	return time.Since(start), nil
}
