package virt

import (
	"context"
	"errors"
	"strings"
	"time"

	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
)

// Watch reports the host's domain events (lifecycle, completed jobs) to fn
// until ctx ends or the connection to the host is lost. libvirt runs the
// callbacks on its event loop (see startEventLoop); they only queue the
// event, so a slow fn never holds that loop up.
func (d *Driver) Watch(ctx context.Context, uri string, fn func(driver.DomainEvent)) error {
	const op = "watch"
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return wrap(op, uri, "", err)
	}
	queue := make(chan driver.DomainEvent, 256)
	push := func(dom *lv.Domain, e driver.DomainEvent) {
		e.Time = time.Now()
		e.Domain, _ = dom.GetName()
		e.UUID, _ = dom.GetUUIDString()
		select {
		case queue <- e:
		default: // fn is behind: the caller's samples catch up
		}
	}
	lid, err := c.DomainEventLifecycleRegister(nil, func(_ *lv.Connect, dom *lv.Domain, ev *lv.DomainEventLifecycle) {
		event, detail := lifecycleNames(ev.Event, ev.Detail)
		push(dom, driver.DomainEvent{Kind: driver.EventLifecycle, Event: event, Detail: detail})
	})
	if err != nil {
		d.conns.check(uri, err)
		return wrap(op, uri, "", err)
	}
	defer func() { _ = c.DomainEventDeregister(lid) }() // the connection may be gone already
	jid, err := c.DomainEventJobCompletedRegister(nil, func(_ *lv.Connect, dom *lv.Domain, ev *lv.DomainEventJobCompleted) {
		j := jobOf(&ev.Info)
		j.State = driver.JobCompleted // the event's stats carry no job type
		push(dom, driver.DomainEvent{Kind: driver.EventJobCompleted, Job: j})
	})
	if err != nil {
		d.conns.check(uri, err)
		return wrap(op, uri, "", err)
	}
	defer func() { _ = c.DomainEventDeregister(jid) }()
	alive := time.NewTicker(keepaliveInterval * time.Second)
	defer alive.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-queue:
			if !internalName(e.Domain, e.Event) {
				fn(e)
			}
		case <-alive.C:
			if ok, err := c.IsAlive(); err != nil || !ok {
				return opError(op, uri, "", driver.CodeNoConnect, errors.New("connection to the host lost"))
			}
		}
	}
}

// internalName reports whether an event is of virtpool's own domains: the
// KVM probe's, or a record's definition (records are inactive domains
// named with recordPrefix; guests with that prefix still report starts).
func internalName(name, event string) bool {
	if strings.HasPrefix(name, kvmProbePrefix) {
		return true
	}
	return strings.HasPrefix(name, recordPrefix) && (event == driver.LifecycleDefined || event == driver.LifecycleUndefined)
}

// lifecycleNames names a lifecycle event and its detail.
func lifecycleNames(ev lv.DomainEventType, detail int) (string, string) {
	type key struct {
		ev     lv.DomainEventType
		detail int
	}
	details := map[key]string{
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_BOOTED)}:       driver.DetailBooted,
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_MIGRATED)}:     driver.DetailMigrated,
		{lv.DOMAIN_EVENT_STARTED, int(lv.DOMAIN_EVENT_STARTED_RESTORED)}:     driver.DetailRestored,
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_MIGRATED)}: driver.DetailMigrated,
		{lv.DOMAIN_EVENT_SUSPENDED, int(lv.DOMAIN_EVENT_SUSPENDED_POSTCOPY)}: driver.DetailPostCopy,
		{lv.DOMAIN_EVENT_RESUMED, int(lv.DOMAIN_EVENT_RESUMED_MIGRATED)}:     driver.DetailMigrated,
		{lv.DOMAIN_EVENT_RESUMED, int(lv.DOMAIN_EVENT_RESUMED_POSTCOPY)}:     driver.DetailPostCopy,
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_MIGRATED)}:     driver.DetailMigrated,
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_DESTROYED)}:    driver.DetailDestroyed,
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_SHUTDOWN)}:     driver.DetailShutdown,
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_CRASHED)}:      driver.DetailCrashed,
		{lv.DOMAIN_EVENT_STOPPED, int(lv.DOMAIN_EVENT_STOPPED_FAILED)}:       driver.DetailFailed,
	}
	events := map[lv.DomainEventType]string{
		lv.DOMAIN_EVENT_DEFINED: driver.LifecycleDefined, lv.DOMAIN_EVENT_UNDEFINED: driver.LifecycleUndefined,
		lv.DOMAIN_EVENT_STARTED: driver.LifecycleStarted, lv.DOMAIN_EVENT_SUSPENDED: driver.LifecycleSuspended,
		lv.DOMAIN_EVENT_RESUMED: driver.LifecycleResumed, lv.DOMAIN_EVENT_STOPPED: driver.LifecycleStopped,
		lv.DOMAIN_EVENT_SHUTDOWN: driver.LifecycleShutdown, lv.DOMAIN_EVENT_CRASHED: driver.LifecycleCrashed,
	}
	name, ok := events[ev]
	if !ok {
		name = driver.LifecycleOther
	}
	return name, details[key{ev, detail}]
}
