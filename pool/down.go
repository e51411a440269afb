package pool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// DefaultHostTimeout bounds each host's part of a read (and of a record
// write) when Ops.HostTimeout is zero: long enough for a loaded host, short
// enough that a host that does not answer is soon seen as down.
const DefaultHostTimeout = 15 * time.Second

// HostsDown is the error of a read that some hosts did not answer, with
// each one's error. The result that comes with it holds what the other
// hosts said: a caller that needs none of these hosts (see Needed) goes on
// with it, so that one host down does not stop work elsewhere.
type HostsDown map[string]error

// Names lists the hosts, sorted.
func (e HostsDown) Names() []string {
	out := make([]string, 0, len(e))
	for n := range e {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func (e HostsDown) Error() string {
	var parts []string
	for _, n := range e.Names() {
		parts = append(parts, fmt.Sprintf("host %s did not answer: %v", n, e[n]))
	}
	return strings.Join(parts, "; ")
}

// Unwrap keeps each host's error (and its libvirt code) reachable.
func (e HostsDown) Unwrap() []error {
	out := make([]error, 0, len(e))
	for _, n := range e.Names() {
		out = append(out, e[n])
	}
	return out
}

// Needed returns err unless it is a HostsDown of none of hosts: nil when a
// caller that needs only those hosts may go on without the ones down,
// else the HostsDown of those it needs (or err itself, if not a
// HostsDown).
func Needed(err error, hosts []string) error {
	var down HostsDown
	if !errors.As(err, &down) {
		return err
	}
	if need := down.Of(hosts); len(need) > 0 {
		return need
	}
	return nil
}

// Of returns the hosts of e among hosts.
func (e HostsDown) Of(hosts []string) HostsDown {
	out := HostsDown{}
	for _, h := range hosts {
		if err, ok := e[h]; ok {
			out[h] = err
		}
	}
	return out
}

// Partial splits the error of a read into the hosts that did not answer
// (a HostsDown, whose read came with what the others said) and any other
// error, for callers that go on with a partial answer.
func Partial(err error) (HostsDown, error) {
	var down HostsDown
	if err != nil && !errors.As(err, &down) {
		return nil, err
	}
	return down, nil
}

var errOff = errors.New("powered off (fenced)")

// known is why host is down without asking it: it is off, or it missed its
// deadline in an earlier read of this Ops.
func (o *Ops) known(host string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.Off[host] {
		return errOff
	}
	if err := o.late[host]; err != nil {
		return fmt.Errorf("%w (in an earlier read)", err)
	}
	return nil
}

func (o *Ops) hostTimeout() time.Duration {
	if o.HostTimeout > 0 {
		return o.HostTimeout
	}
	return DefaultHostTimeout
}

// readEach runs read for every named host in parallel, each with its own
// deadline (Ops.HostTimeout), and returns what each answered. One slow or
// dead host costs its deadline once, and what the others said stands: a
// read still running at its deadline is left to finish on its own (a
// libvirt call on a host that does not answer returns only when its
// keepalive gives up). The hosts whose read failed or did not end in time
// are returned as HostsDown; an unknown host name, or the caller's own
// cancellation, as the error it is.
func readEach[T any](ctx context.Context, o *Ops, names []string, read func(ctx context.Context, h HostEntry) (T, error)) (map[string]T, error) {
	type answer struct {
		v   T
		err error
	}
	var mu sync.Mutex
	out := map[string]T{}
	down := HostsDown{}
	timeout := o.hostTimeout()
	err := EachHost(names, func(n string) error {
		h, err := o.Hosts.Lookup(n)
		if err != nil {
			return err
		}
		if err := o.known(n); err != nil {
			mu.Lock()
			down[n] = err
			mu.Unlock()
			return nil
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		ch := make(chan answer, 1) // a late answer must not block its goroutine
		go func() {
			v, err := read(hctx, h)
			ch <- answer{v, err}
		}()
		var a answer
		select {
		case a = <-ch:
		case <-hctx.Done():
			a.err = fmt.Errorf("no answer within %s: %w", timeout, hctx.Err())
			if ctx.Err() == nil { // its own deadline, not the caller's
				o.mu.Lock()
				if o.late == nil {
					o.late = map[string]error{}
				}
				o.late[n] = a.err
				o.mu.Unlock()
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if a.err != nil {
			down[n] = a.err
		} else {
			out[n] = a.v
		}
		return nil
	})
	switch {
	case err != nil:
		return nil, err
	case ctx.Err() != nil:
		return nil, ctx.Err()
	case len(down) > 0:
		return out, down
	}
	return out, nil
}
