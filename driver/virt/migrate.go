package virt

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
)

const (
	progressInterval = 100 * time.Millisecond
	// settleTimeout bounds the wait for a finished migration's destination
	// to resume the guest.
	settleTimeout = 10 * time.Second
)

// Migrate live-migrates req.Domain peer-to-peer: the source libvirtd drives
// the migration, so it completes or rolls back even if this process dies.
// libvirt keeps the guest paused on the source until the destination runs
// it, so it never runs on both hosts. Every migration ends: follow applies
// the options' limits (switching to post-copy, else aborting, one that does
// not converge or outlives its deadline), and the limits are noted in the
// domain's metadata for any driver that finds the job after this caller
// died. Retrying a migration that already completed is a no-op that reports
// the guest where it is.
func (d *Driver) Migrate(ctx context.Context, req driver.MigrateRequest, progress func(driver.MigrateProgress)) (driver.MigrateResult, error) {
	op := "migrate to " + req.DestURI
	name := req.Domain
	fail := func(uri string, err error) (driver.MigrateResult, error) {
		return driver.MigrateResult{}, wrap(op, uri, name, err)
	}
	if req.SourceURI == req.DestURI {
		return fail(req.SourceURI, opError(op, req.SourceURI, name, driver.CodeInvalidArg, errors.New("source and destination are the same host")))
	}
	called := time.Now()
	log := d.log.With("domain", name, "source", req.SourceURI, "dest", req.DestURI)
	dst, err := d.conns.get(ctx, req.DestURI)
	if err != nil {
		return fail(req.DestURI, err)
	}
	src, err := d.conns.get(ctx, req.SourceURI)
	if err != nil {
		return fail(req.SourceURI, err)
	}
	dom, err := src.LookupDomainByName(name)
	if err == nil {
		defer dom.Free()
		// A migration started by an earlier call (cancelled, or from a
		// driver process that died) may still be running or rolling back:
		// see it end before looking at where the guest is.
		var release func()
		if release, err = d.settle(ctx, req.SourceURI, name, dom, log); err == nil {
			defer release()
		}
	}
	active := false
	if err == nil {
		active, err = dom.IsActive()
	}
	if noDomain(err) || (err == nil && !active) {
		if res, ok := alreadyThere(ctx, dst, name); ok {
			log.Info("domain already on destination; nothing to do")
			return res, nil
		}
		if err == nil {
			err = opError(op, req.SourceURI, name, driver.CodeOperationInvalid, errors.New("domain is not running"))
		}
	}
	if err != nil {
		d.conns.check(req.SourceURI, err)
		return fail(req.SourceURI, err)
	}

	o := req.Options
	if o.MaxDowntime > 0 {
		if err := dom.MigrateSetMaxDowntime(uint64(o.MaxDowntime/time.Millisecond), 0); err != nil {
			return fail(req.SourceURI, fmt.Errorf("set max downtime: %w", err))
		}
	}
	params, peer := migrateParams(req)
	lim := limitsOf(o)
	start := time.Now()
	if err := noteMigration(dom, noteOf(lim, req.DestURI, start)); err != nil {
		log.Warn("cannot note the migration's limits in the domain; a driver finding it later uses the defaults", "error", err)
	}
	log.Info("migration starting", "flags", fmt.Sprintf("%#x", uint(migrateFlags(o))), "bandwidth_mibs", o.BandwidthMiBs,
		"progress_timeout", lim.ProgressTimeout.String(), "completion_per_gib", lim.CompletionPerGiB.String())

	done := make(chan error, 1)
	go func() { done <- dom.MigrateToURI3(peer, params, migrateFlags(o)) }()

	var switched atomic.Bool
	if o.PostCopy && o.PostCopyAfter > 0 {
		stop, exited := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(exited)
			switchToPostCopy(dom, o.PostCopyAfter, stop, &switched, log)
		}()
		defer func() { close(stop); <-exited }() // before dom is freed
	}
	var lastProcessed uint64
	err = follow(ctx, jobDomain{dom: dom, switched: &switched}, &monitor{limits: lim}, done, func(s sample) {
		lastProcessed = s.Progress.DataProcessed
		if progress != nil {
			p := s.Progress
			p.PostCopy = s.PostCopy
			progress(p)
		}
	}, log)
	returned := time.Now()
	if err != nil {
		d.conns.check(req.SourceURI, err)
		return fail(req.SourceURI, err)
	}
	res, err := completed(src, dst, name)
	if err != nil {
		return fail(req.DestURI, err)
	}
	res.PostCopy = res.PostCopy || switched.Load()
	// libvirt keeps no completed-job statistics for some migrations
	// (post-copy among them): fall back to what this call saw, leaving the
	// downtime unknown (0).
	if res.Elapsed == 0 {
		res.Elapsed = time.Since(start)
	}
	if res.Bytes == 0 {
		res.Bytes = lastProcessed
	}
	// What the call costs beyond libvirt's job: before it starts, libvirt's
	// own phases around it (in migrate_call), reading the result.
	log.Info("migration done", "elapsed", res.Elapsed.String(), "downtime", res.Downtime.String(), "bytes", res.Bytes, "postcopy", res.PostCopy,
		"setup", start.Sub(called).String(), "migrate_call", returned.Sub(start).String(), "finish", time.Since(returned).String())
	return res, nil
}

// settle sees any job of dom on uri end: a migration this process follows
// already, or else one found running, which it follows with the limits its
// starter noted (so that it ends even if that caller died). It returns with
// the domain's migrations claimed for the caller.
func (d *Driver) settle(ctx context.Context, uri, name string, dom *lv.Domain, log hclog.Logger) (release func(), err error) {
	for {
		release, busy := d.following.claim(uri, name)
		if busy == nil {
			if err := adopt(ctx, dom, log); err != nil {
				release()
				return nil, err
			}
			return release, nil
		}
		select {
		case <-busy:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the running migration job to end: %w", ctx.Err())
		}
	}
}

// adopt follows dom's migration out, if one runs, until it ends; any other
// job (a migration in, a save) it waits for.
func adopt(ctx context.Context, dom *lv.Domain, log hclog.Logger) error {
	for {
		js, err := dom.GetJobStats(0)
		if err != nil {
			return err
		}
		if js.Type == lv.DOMAIN_JOB_NONE {
			return nil
		}
		if js.OperationSet && js.Operation == lv.DOMAIN_JOB_OPERATION_MIGRATION_OUT {
			var note *migrationNote
			if m, err := readMetadata(dom); err == nil {
				note = m.Migration
			}
			lim := limitsFor(note, time.Duration(js.TimeElapsed)*time.Millisecond, time.Now())
			log.Info("following a migration found running", "elapsed_ms", js.TimeElapsed, "progress_timeout", lim.ProgressTimeout.String(),
				"auto_converge", lim.AutoConverge, "post_copy", lim.PostCopy)
			return follow(ctx, jobDomain{dom: dom, switched: &atomic.Bool{}, others: true}, &monitor{limits: lim}, nil, nil, log)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the running job to end: %w", ctx.Err())
		case <-time.After(progressInterval):
		}
	}
}

// adoptAll follows, in the background, every migration out found running
// on a host this driver just connected to: their callers may be gone.
func (d *Driver) adoptAll(uri string, c *lv.Connect) {
	doms, err := c.ListAllDomains(lv.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		d.log.Debug("cannot look for running migrations", "uri", uri, "error", err)
		return
	}
	for i := range doms {
		dom := &doms[i]
		js, err := dom.GetJobStats(0)
		name, nerr := dom.GetName()
		if err != nil || nerr != nil || js.Type == lv.DOMAIN_JOB_NONE ||
			!js.OperationSet || js.Operation != lv.DOMAIN_JOB_OPERATION_MIGRATION_OUT {
			dom.Free()
			continue
		}
		release, busy := d.following.claim(uri, name)
		if busy != nil {
			dom.Free()
			continue
		}
		log := d.log.With("domain", name, "source", uri)
		if !d.background(func() {
			defer dom.Free()
			defer release()
			if err := adopt(d.ctx, dom, log); err != nil {
				log.Debug("stopped following the migration", "error", err)
			}
		}) {
			release()
			dom.Free()
		}
	}
}

// background runs fn in a goroutine Close waits for, unless the driver is
// closed already.
func (d *Driver) background(fn func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.adopters.Add(1)
	go func() {
		defer d.adopters.Done()
		fn()
	}()
	return true
}

// noteMigration records a migration's limits in the domain's metadata.
func noteMigration(dom *lv.Domain, n *migrationNote) error {
	m, err := readMetadata(dom)
	if err != nil {
		return err
	}
	m.Migration = n
	return writeMetadata(dom, m)
}

// migrateParams are libvirt's parameters for req, and the URI the source
// libvirtd reaches the destination's at.
func migrateParams(req driver.MigrateRequest) (*lv.DomainMigrateParameters, string) {
	params := &lv.DomainMigrateParameters{}
	if req.Options.BandwidthMiBs > 0 {
		params.BandwidthSet, params.Bandwidth = true, req.Options.BandwidthMiBs
	}
	if req.MigrationURI != "" {
		params.URISet, params.URI = true, req.MigrationURI
	}
	peer := req.DestPeerURI
	if peer == "" {
		peer = req.DestURI
	}
	return params, peer
}

func migrateFlags(o driver.MigrateOptions) lv.DomainMigrateFlags {
	f := lv.MIGRATE_LIVE | lv.MIGRATE_PEER2PEER
	set := func(on bool, flag lv.DomainMigrateFlags) {
		if on {
			f |= flag
		}
	}
	set(o.AutoConverge, lv.MIGRATE_AUTO_CONVERGE)
	set(o.PostCopy, lv.MIGRATE_POSTCOPY)
	set(o.Persistent, lv.MIGRATE_PERSIST_DEST)
	set(o.UndefineSource, lv.MIGRATE_UNDEFINE_SOURCE)
	set(o.CopyStorage, lv.MIGRATE_NON_SHARED_DISK)
	set(o.Tunnelled, lv.MIGRATE_TUNNELLED)
	set(o.Unsafe, lv.MIGRATE_UNSAFE)
	set(o.TLS, lv.MIGRATE_TLS)
	return f
}

// alreadyThere reports a domain running on the destination, for retries of
// a migration that completed. The destination resumes the guest a moment
// after the source's job ends, so a paused or missing domain is polled for
// a few seconds before the answer is no.
func alreadyThere(ctx context.Context, dst *lv.Connect, name string) (driver.MigrateResult, bool) {
	deadline := time.Now().Add(settleTimeout)
	for {
		if dd, err := dst.LookupDomainByName(name); err == nil {
			state, _, serr := dd.GetState()
			uuid, _ := dd.GetUUIDString()
			dd.Free()
			if serr == nil && state == lv.DOMAIN_RUNNING {
				return driver.MigrateResult{UUID: uuid}, true
			}
		}
		if time.Now().After(deadline) {
			return driver.MigrateResult{}, false
		}
		select {
		case <-ctx.Done():
			return driver.MigrateResult{}, false
		case <-time.After(progressInterval):
		}
	}
}

// completed reads what libvirt recorded of the finished migration, from the
// destination (a transient domain is gone from the source), and checks that
// the guest runs there and no longer on the source.
func completed(src, dst *lv.Connect, name string) (driver.MigrateResult, error) {
	var res driver.MigrateResult
	dd, err := dst.LookupDomainByName(name)
	if err != nil {
		return res, fmt.Errorf("after migration: %w", err)
	}
	defer dd.Free()
	if active, err := dd.IsActive(); err != nil {
		return res, fmt.Errorf("after migration the domain is not running on the destination (%w)", err)
	} else if !active {
		return res, errors.New("after migration the domain is not running on the destination")
	}
	if res.UUID, err = dd.GetUUIDString(); err != nil {
		return res, err
	}
	if sd, err := src.LookupDomainByName(name); err == nil {
		active, _ := sd.IsActive()
		sd.Free()
		if active {
			return res, errors.New("after migration the domain still runs on the source")
		}
	}
	// Kept: the agent reads them too, to show what the migration measured.
	js, err := dd.GetJobStats(lv.DOMAIN_JOB_STATS_COMPLETED | lv.DOMAIN_JOB_STATS_KEEP_COMPLETED)
	if err != nil {
		return res, nil // stats are best effort; the move itself succeeded
	}
	res.Elapsed = time.Duration(js.TimeElapsed) * time.Millisecond
	res.Downtime = time.Duration(js.Downtime) * time.Millisecond
	res.Bytes = js.DataProcessed
	return res, nil
}

// progressOf is the progress libvirt's job stats report.
func progressOf(js *lv.DomainJobInfo) driver.MigrateProgress {
	return driver.MigrateProgress{
		Elapsed:         time.Duration(js.TimeElapsed) * time.Millisecond,
		DataTotal:       js.DataTotal,
		DataProcessed:   js.DataProcessed,
		DataRemaining:   js.DataRemaining,
		ThrottlePercent: int(js.AutoConvergeThrottle),
	}
}

// jobOf turns libvirt's job stats into a driver.Job.
func jobOf(js *lv.DomainJobInfo) driver.Job {
	j := driver.Job{State: driver.JobNone, Progress: progressOf(js), Downtime: time.Duration(js.Downtime) * time.Millisecond}
	switch js.Type {
	case lv.DOMAIN_JOB_BOUNDED, lv.DOMAIN_JOB_UNBOUNDED:
		j.State = driver.JobRunning
	case lv.DOMAIN_JOB_COMPLETED:
		j.State = driver.JobCompleted
	case lv.DOMAIN_JOB_FAILED, lv.DOMAIN_JOB_CANCELLED:
		j.State = driver.JobFailed
	}
	j.DirtyRate = js.MemDirtyRate * pageSize(js) // libvirt counts pages per second
	return j
}

// JobStats reports a domain's running job, else the last completed one
// (kept: reading it does not take it from the driver's own Migrate, which
// reads it on the destination for its result).
func (d *Driver) JobStats(ctx context.Context, uri, name string) (driver.Job, error) {
	var j driver.Job
	err := d.withDomain(ctx, "job stats", uri, name, func(_ *lv.Connect, dom *lv.Domain) error {
		js, err := dom.GetJobStats(0)
		if err != nil {
			return err
		}
		if js.Type == lv.DOMAIN_JOB_NONE {
			if js, err = dom.GetJobStats(lv.DOMAIN_JOB_STATS_COMPLETED | lv.DOMAIN_JOB_STATS_KEEP_COMPLETED); err != nil {
				return err
			}
		}
		j = jobOf(js)
		return nil
	})
	return j, err
}

// AbortMigration aborts the migration job of a domain on its source host.
func (d *Driver) AbortMigration(ctx context.Context, uri, name string) error {
	return d.withDomain(ctx, "abort migration", uri, name, func(_ *lv.Connect, dom *lv.Domain) error {
		return dom.AbortJob()
	})
}

// switchToPostCopy asks for the switch to post-copy after `after`, and
// again every progress interval while QEMU refuses it (it does until the
// migration has really started), until it is accepted or stop closes. It
// runs apart from the progress loop: a statistics query can wait seconds
// for a QEMU monitor busy with a guest that dirties memory, long enough for
// pre-copy to end without the switch the caller asked for.
func switchToPostCopy(dom *lv.Domain, after time.Duration, stop <-chan struct{}, switched *atomic.Bool, log hclog.Logger) {
	start := time.Now()
	t := time.NewTimer(after)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if err := dom.MigrateStartPostCopy(0); err != nil {
			log.Debug("switch to post-copy refused; will retry", "error", err)
			t.Reset(progressInterval)
			continue
		}
		log.Info("switched to post-copy", "after", time.Since(start).String())
		switched.Store(true)
		return
	}
}
