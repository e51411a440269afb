package virt

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pki"
)

// Keepalive: a host that answers no keepalive for interval×count seconds is
// considered gone, so a call on a dead host fails instead of hanging.
const (
	keepaliveInterval = 5
	keepaliveCount    = 3
	dialTimeout       = 15 * time.Second
)

var eventLoopOnce sync.Once

// startEventLoop runs libvirt's default event loop, which keepalive needs.
func startEventLoop(log hclog.Logger) {
	eventLoopOnce.Do(func() {
		if err := lv.EventRegisterDefaultImpl(); err != nil {
			log.Warn("libvirt event loop unavailable; keepalive off", "error", err)
			return
		}
		go func() {
			for {
				if err := lv.EventRunDefaultImpl(); err != nil {
					log.Error("libvirt event loop", "error", err)
					time.Sleep(time.Second)
				}
			}
		}()
	})
}

// connPool keeps one connection per URI and reopens it when it dies.
type connPool struct {
	log     hclog.Logger
	mu      sync.Mutex
	conns   map[string]*lv.Connect
	dialing map[string]*dialCall         // dials under way, by URI
	creds   map[string]driver.Credential // logins by URI (SetCredentials)
	// connected, if set, is called after each new connection, with the
	// pool's lock held: it must not block (start what it does in the
	// background, with a reference of its own on c).
	connected func(uri string, c *lv.Connect)
}

// dialCall is one dial of a URI, shared by every caller that needs it
// meanwhile.
type dialCall struct {
	done chan struct{}
	c    *lv.Connect
	err  error
}

func newConnPool(log hclog.Logger) *connPool {
	return &connPool{log: log, conns: map[string]*lv.Connect{}, dialing: map[string]*dialCall{}}
}

// get returns a live connection to uri, dialling it if needed. A dial
// outlives the caller that started it (up to dialTimeout) and its result
// is kept: opening a connection (an SSH login on a busy host, say) may take
// longer than one short call may wait, and a dial dropped with each call
// would never connect.
func (p *connPool) get(ctx context.Context, uri string) (*lv.Connect, error) {
	if uri == "" {
		return nil, errors.New("empty libvirt URI")
	}
	p.mu.Lock()
	c := p.conns[uri]
	p.mu.Unlock()
	if c != nil {
		if alive, err := c.IsAlive(); err == nil && alive {
			return c, nil
		}
		p.log.Info("connection lost, reconnecting", "uri", uri)
		p.drop(uri, c)
	}
	p.mu.Lock()
	if c := p.conns[uri]; c != nil { // another caller reconnected meanwhile
		p.mu.Unlock()
		return c, nil
	}
	d := p.dialing[uri]
	if d == nil {
		d = &dialCall{done: make(chan struct{})}
		p.dialing[uri] = d
		go p.dial(uri, p.creds[uri], d)
	}
	p.mu.Unlock()
	select {
	case <-d.done:
		return d.c, d.err
	case <-ctx.Done():
		return nil, &driver.Error{Op: "connect", Host: uri, Code: driver.CodeNoConnect,
			Err: fmt.Errorf("host not connected yet (the connection is still being opened): %w", ctx.Err())}
	}
}

// dial runs d and keeps its connection in the pool.
func (p *connPool) dial(uri string, cred driver.Credential, d *dialCall) {
	start := time.Now()
	c, err := dial(uri, cred)
	if err == nil && !strings.HasPrefix(uri, "test:") {
		// Not every driver supports keepalive (local ones don't need it).
		if err := c.SetKeepAlive(keepaliveInterval, keepaliveCount); err != nil {
			p.log.Debug("keepalive not set", "uri", uri, "error", err)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.dialing, uri)
	d.c, d.err = c, err
	if err == nil {
		p.conns[uri] = c
		p.log.Debug("connected", "uri", uri, "took", time.Since(start))
		if p.connected != nil {
			p.connected(uri, c)
		}
	}
	close(d.done)
}

// dial opens a connection without letting an unreachable host block past
// dialTimeout, answering a login prompt with cred.
func dial(uri string, cred driver.Credential) (*lv.Connect, error) {
	type result struct {
		c   *lv.Connect
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := lv.NewConnectWithAuth(uri, authFor(cred), 0)
		ch <- result{c, err}
	}()
	timer := time.NewTimer(dialTimeout)
	defer timer.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("connect to host: %w%s", r.err, connectHint(uri, r.err.Error()))
		}
		return r.c, nil
	case <-timer.C:
	}
	go func() { // close whatever the late dial returns
		if r := <-ch; r.c != nil {
			r.c.Close()
		}
	}()
	return nil, &driver.Error{Op: "connect", Host: uri, Code: driver.CodeNoConnect,
		Err: fmt.Errorf("host unreachable: no answer within %s", dialTimeout)}
}

// check drops the pooled connection when err says it is broken, so the
// next call reconnects.
func (p *connPool) check(uri string, err error) {
	var le lv.Error
	if !errors.As(err, &le) {
		return
	}
	switch le.Code {
	case lv.ERR_RPC, lv.ERR_NO_CONNECT, lv.ERR_SYSTEM_ERROR, lv.ERR_INVALID_CONN:
		p.mu.Lock()
		c := p.conns[uri]
		p.mu.Unlock()
		if c != nil {
			if alive, aerr := c.IsAlive(); aerr != nil || !alive {
				p.drop(uri, c)
			}
		}
	}
}

func (p *connPool) drop(uri string, c *lv.Connect) {
	p.mu.Lock()
	if p.conns[uri] == c {
		delete(p.conns, uri)
	}
	p.mu.Unlock()
	c.Close()
}

func (p *connPool) closeAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for uri, c := range p.conns {
		if _, err := c.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", uri, err))
		}
		delete(p.conns, uri)
	}
	return errors.Join(errs...)
}

// connectHint says what to fix when a secure transport refuses a
// connection (msg is libvirt's error), or is empty: libvirt names the
// failure, not where its credentials come from.
func connectHint(uri, msg string) string {
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	_, transport, _ := strings.Cut(u.Scheme, "+")
	q := u.Query()
	low := strings.ToLower(msg)
	certs := strings.Contains(low, "certificate") || strings.Contains(low, "tls") || strings.Contains(low, "handshake")
	if strings.Contains(low, "sasl") || strings.Contains(low, "auth credentials") ||
		(!certs && strings.Contains(low, "authentication failed") && transport != "ssh" && transport != "libssh" && transport != "libssh2") {
		return fmt.Sprintf(" (%s asks for a login (SASL): give the host's username and password (the provider's "+
			"hosts.NAME.username and password, %s for the plugins and the agent, or libvirt's auth.conf) "+
			"that the host's SASL database holds)", u.Hostname(), driver.CredentialsEnv)
	}
	switch transport {
	case "tls":
		if !certs {
			return ""
		}
		where := pki.CACert + ", " + pki.ClientCert + " and " + pki.ClientKey
		if p := q.Get("pkipath"); p != "" {
			where = "pkipath " + p + " (cacert.pem, clientcert.pem, clientkey.pem)"
		}
		return fmt.Sprintf(" (TLS to %s: the CA and this client's certificate and key are read from %s; the host's "+
			"certificate must be signed by that CA and name %s, and its libvirtd must trust the client's CA)", u.Hostname(), where, u.Hostname())
	case "ssh", "libssh", "libssh2":
		switch {
		case strings.Contains(low, "host key"):
			// libssh reads ?known_hosts=; OpenSSH (qemu+ssh) its own
			// configuration, which a ?command= wrapper may set.
			known, add := q.Get("known_hosts"), ""
			switch {
			case known != "":
				add = fmt.Sprintf("ssh-keyscan %s >> %s", u.Hostname(), known)
			case q.Get("command") != "":
				known, add = "the known_hosts file that "+q.Get("command")+" reads", "ssh-keyscan "+u.Hostname()+" prints it"
			default:
				known = "~/.ssh/known_hosts"
				add = fmt.Sprintf("ssh-keyscan %s >> %s", u.Hostname(), known)
			}
			return fmt.Sprintf(" (SSH to %s: its host key is not the one in %s: if the host is new, check its fingerprint "+
				"and add it, e.g. %s)", u.Hostname(), known, add)
		case strings.Contains(low, "authenticat") || strings.Contains(low, "access denied") || strings.Contains(low, "permission denied"):
			key := q.Get("keyfile")
			if key == "" {
				key = "the ssh agent's or ~/.ssh's keys"
			}
			user := u.User.Username()
			if user == "" {
				user = "the current user"
			}
			return fmt.Sprintf(" (SSH to %s: the login as %s was refused: the public key of %s must be in that user's "+
				"authorized_keys on the host)", u.Hostname(), user, key)
		}
	}
	return ""
}
