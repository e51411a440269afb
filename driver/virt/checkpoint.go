package virt

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	lv "libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/virtpool/virtpool/driver"
)

// CheckpointDomain implements driver.Driver: libvirt 9.0 migrates the
// memory into the file while the guest runs and pauses it only at the end,
// for at most about the maximum downtime (see the continuity guide for the
// figures of this and the other ways, make bench-checkpoint).
func (d *Driver) CheckpointDomain(ctx context.Context, uri, name string, opts driver.CheckpointOptions) (driver.Checkpoint, error) {
	const op = "checkpoint domain"
	var cp driver.Checkpoint
	// The path is on the host, not here: only its form can be checked.
	if !path.IsAbs(opts.Path) {
		return cp, opError(op, uri, name, driver.CodeInvalidArg,
			fmt.Errorf("checkpoint file %q: give an absolute path on the host", opts.Path))
	}
	if opts.MaxDowntime < 0 {
		return cp, opError(op, uri, name, driver.CodeInvalidArg, fmt.Errorf("max downtime %s is negative", opts.MaxDowntime))
	}
	if opts.MaxDowntime == 0 {
		opts.MaxDowntime = driver.DefaultCheckpointDowntime
	}
	err := d.withDomain(ctx, op, uri, name, func(c *lv.Connect, dom *lv.Domain) error {
		if why, err := notCheckpointable(dom); err != nil || why != "" {
			if err != nil {
				return err
			}
			return opError(op, uri, name, driver.CodeOperationInvalid, errors.New(why))
		}
		def, err := domainDef(dom, 0)
		if err != nil {
			return err
		}
		disks, err := layeredDisks(def)
		if err != nil {
			return opError(op, uri, name, driver.CodeOperationInvalid, err)
		}
		if opts.Compact && len(disks) > 0 {
			if err := d.compact(ctx, c, dom, disks); err != nil {
				return err
			}
			if def, err = domainDef(dom, 0); err != nil {
				return err
			}
		}
		x, err := snapshotXML(def, name, opts.Path, time.Now())
		if err != nil {
			return err
		}
		// The maximum downtime is the domain's, for migrations too: set
		// it back whatever happens.
		if old, err := dom.MigrateGetMaxDowntime(0); err == nil {
			defer func() {
				if err := dom.MigrateSetMaxDowntime(old, 0); err != nil {
					d.log.Warn("max downtime not set back", "domain", name, "ms", old, "error", err)
				}
			}()
		}
		if err := dom.MigrateSetMaxDowntime(uint64(max(opts.MaxDowntime.Milliseconds(), 1)), 0); err != nil {
			return fmt.Errorf("set max downtime %s: %w", opts.MaxDowntime, err)
		}
		stop := context.AfterFunc(ctx, func() { _ = dom.AbortJob() }) // cancelling ctx aborts the capture
		defer stop()
		start := time.Now()
		snap, err := dom.CreateSnapshotXML(x, lv.DOMAIN_SNAPSHOT_CREATE_LIVE|lv.DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("capture into %s aborted: %w", opts.Path, ctx.Err())
			}
			return fmt.Errorf("capture into %s (its directory must exist on the host, writable by libvirt): %w", opts.Path, err)
		}
		_ = snap.Free()
		cp.Elapsed, cp.Downtime = time.Since(start), -1
		if js, err := dom.GetJobStats(lv.DOMAIN_JOB_STATS_COMPLETED); err == nil {
			if js.DowntimeSet {
				cp.Downtime = time.Duration(js.Downtime) * time.Millisecond
			}
			if js.MemProcessedSet {
				cp.Bytes = js.MemProcessed
			}
		}
		d.log.Debug("checkpoint taken", "domain", name, "path", opts.Path, "took", cp.Elapsed, "downtime", cp.Downtime)
		return nil
	})
	return cp, err
}

// notCheckpointable says why a domain cannot be checkpointed ("": it
// can): not running, or running a job (a migration), which libvirt would
// refuse less clearly.
func notCheckpointable(dom *lv.Domain) (string, error) {
	state, _, err := dom.GetState()
	if err != nil {
		return "", err
	}
	if state != lv.DOMAIN_RUNNING && state != lv.DOMAIN_PAUSED {
		return "the domain is not running: only a running guest is checkpointed", nil
	}
	if ji, err := dom.GetJobInfo(); err == nil && ji.Type != lv.DOMAIN_JOB_NONE {
		return "a job (a migration?) runs on the domain: try again when it is over", nil
	}
	return "", nil
}

// snapshotXML is the snapshot of a checkpoint of domain name: its memory
// into file, each disk a checkpoint layers into a new layer above the
// file it writes (layeredDisks), every other disk left out
// (snapshot="no": with none listed, libvirt would snapshot each).
func snapshotXML(def *libvirtxml.Domain, name, file string, now time.Time) (string, error) {
	layered, err := layeredDisks(def)
	if err != nil {
		return "", err
	}
	snap := libvirtxml.DomainSnapshot{
		Name:   strings.TrimSuffix(path.Base(file), path.Ext(file)),
		Memory: &libvirtxml.DomainSnapshotMemory{Snapshot: "external", File: file},
		Disks:  &libvirtxml.DomainSnapshotDisks{},
	}
	if def.Devices != nil {
		for _, disk := range def.Devices.Disks {
			if disk.Target == nil {
				continue
			}
			sd := libvirtxml.DomainSnapshotDisk{Name: disk.Target.Dev, Snapshot: "no"}
			if i := slices.IndexFunc(layered, func(l layeredDisk) bool { return l.target == disk.Target.Dev }); i >= 0 {
				sd.Snapshot, sd.Driver = "external", &libvirtxml.DomainDiskDriver{Type: "qcow2"}
				sd.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{
					File: layerPath(layered[i].chain[0], name, disk.Target.Dev, now)}}
			}
			snap.Disks.Disks = append(snap.Disks.Disks, sd)
		}
	}
	return snap.Marshal()
}

// RestoreDomain implements driver.Driver.
func (d *Driver) RestoreDomain(ctx context.Context, uri, file string) error {
	const op = "restore domain"
	if !path.IsAbs(file) {
		return opError(op, uri, "", driver.CodeInvalidArg, fmt.Errorf("checkpoint file %q: give an absolute path on the host", file))
	}
	c, err := d.conns.get(ctx, uri)
	if err != nil {
		return wrap(op, uri, "", err)
	}
	// The image holds the definition, read before the restore: restored,
	// the domain is transient, and is defined with it so that it stays
	// on its new host as a created or migrated one does.
	def, err := c.DomainSaveImageGetXMLDesc(file, lv.DOMAIN_SAVE_IMAGE_XML_SECURE)
	if err != nil {
		d.conns.check(uri, err)
		return wrap(op, uri, "", fmt.Errorf("from %s: read its definition: %w", file, err))
	}
	// The disks' chains as the files have them now: a merge of checkpoint
	// layers since the capture changed them.
	if def, err = withoutBackingStores(def); err != nil {
		return wrap(op, uri, "", fmt.Errorf("from %s: %w", file, err))
	}
	if err := c.DomainRestoreFlags(file, def, lv.DOMAIN_SAVE_RUNNING); err != nil {
		d.conns.check(uri, err)
		return wrap(op, uri, "", fmt.Errorf("from %s: %w", file, err))
	}
	dom, err := c.DomainDefineXML(def)
	if err != nil {
		// It runs: a transient domain is kept rather than stopped.
		d.log.Warn("restored domain left transient: its definition was refused", "host", uri, "file", file, "error", err)
		return nil
	}
	_ = dom.Free()
	return nil
}
