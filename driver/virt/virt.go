// Package virt implements driver.Driver on libvirt. It is the only package
// in virtpool that talks to libvirt; it runs inside the virtpool-driver
// plugin process.
package virt

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
)

var _ driver.Driver = (*Driver)(nil)

// Driver is the libvirt implementation of driver.Driver. It is safe for
// concurrent use; it keeps one libvirt connection per host URI.
type Driver struct {
	log   hclog.Logger
	conns *connPool

	accelMu sync.Mutex
	accels  map[string][]string // per host UUID: accelerators found to work

	following following // the migration jobs followed here
	// ctx ends at Close, stopping the followers of migrations found
	// running (adoptAll), which adopters counts once started (closed
	// says no more may start).
	ctx      context.Context
	stop     context.CancelFunc
	mu       sync.Mutex
	closed   bool
	adopters sync.WaitGroup
}

// New returns a driver. Close it to drop its connections.
func New(logger hclog.Logger) *Driver {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	startEventLoop(logger)
	d := &Driver{
		log:    logger,
		conns:  newConnPool(logger.Named("conn")),
		accels: map[string][]string{},
	}
	d.ctx, d.stop = context.WithCancel(context.Background())
	d.conns.connected = d.adoptInBackground
	return d
}

// adoptInBackground runs adoptAll on a new connection in the background,
// holding a reference of its own on it: the pool closes its reference at
// Close or when the connection is lost, possibly while the scan runs
// (which crashed libvirt's client once, in a unit test).
func (d *Driver) adoptInBackground(uri string, c *lv.Connect) {
	if err := c.Ref(); err != nil {
		d.log.Debug("cannot look for running migrations", "uri", uri, "error", err)
		return
	}
	if !d.background(func() { defer c.Close(); d.adoptAll(uri, c) }) {
		c.Close()
	}
}

// Close stops following migrations (they go on, bounded by the next driver
// that connects) and closes every libvirt connection.
func (d *Driver) Close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.stop()
	d.adopters.Wait()
	return d.conns.closeAll()
}

// wrap turns err into a *driver.Error naming the operation, host and domain,
// keeping libvirt's error code and its message.
func wrap(op, uri, dom string, err error) error {
	if err == nil {
		return nil
	}
	var de *driver.Error
	if errors.As(err, &de) {
		return err
	}
	e := &driver.Error{Op: op, Host: uri, Domain: dom, Err: err}
	var le lv.Error
	if errors.As(err, &le) {
		e.Code = int(le.Code)
		e.LibvirtDomain = int(le.Domain)
		// libvirt's message, without its Go formatting, in its context.
		e.Err = errors.New(strings.Replace(err.Error(), le.Error(), le.Message, 1))
	}
	return e
}

// hasCode reports whether err is, or wraps, a libvirt error with this code.
func hasCode(err error, code lv.ErrorNumber) bool {
	var le lv.Error
	return errors.As(err, &le) && le.Code == code
}

// opError is an error of virtpool's own (no libvirt code) with context.
func opError(op, uri, dom string, code int, err error) error {
	return &driver.Error{Op: op, Host: uri, Domain: dom, Code: code, Err: err}
}

// withDomain looks a domain up by name and runs fn with it.
func (d *Driver) withDomain(ctx context.Context, op, uri, name string, fn func(*lv.Connect, *lv.Domain) error) error {
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return wrap(op, uri, name, err)
	}
	dom, err := c.LookupDomainByName(name)
	if err != nil {
		d.conns.check(uri, err)
		return wrap(op, uri, name, err)
	}
	defer dom.Free()
	return wrap(op, uri, name, fn(c, dom))
}
