// Package pooltest provides an in-memory driver.Driver for fast unit tests
// of pool operations and the autoscaler plugins: hosts with domains and
// records, CPU counters that advance with a fake clock, and live migration
// that moves a domain (restarting its counters, as a new QEMU process
// would). Fault hooks make calls fail where a test wants. Overlays are
// files of storage every host shares, by path (as the overlay directories
// of pool members and single domains with a base image are), so a test
// sees which copy of a guest deleted whose disk.
package pooltest

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/virtpool/virtpool/driver"
)

// Domain is a fake guest.
type Domain struct {
	driver.Domain
	// Load is the CPU the guest uses, in cores; its counter advances by
	// Load × elapsed time when the clock advances.
	Load      float64
	CPUTimeNs uint64
	RSSKiB    uint64
	// DiskBps and NetBps are its disk (read) and network (received)
	// rates, bytes/s; its counters advance like the CPU's.
	DiskBps, NetBps     float64
	DiskBytes, NetBytes uint64
	// Job is what JobStats reports: Migrate sets it on both sides.
	Job driver.Job
	// Overlay is the path of its disk on the shared storage ("" for
	// none), as the libvirt driver keeps it in the domain's metadata.
	Overlay string
}

// Disk is an overlay on the shared storage.
type Disk struct {
	Path string
	Base string // the base image it is backed by
	// Data is what guests wrote to it (WriteDisk).
	Data string
}

// Host is a fake hypervisor.
type Host struct {
	URI         string
	CPUs        int
	MemoryBytes uint64
	Domains     map[string]*Domain
	Records     map[string]driver.Record // by kind/name
	// Files are the checkpoints kept on the host, by path.
	Files map[string]*Domain
	// Down makes every call on the host fail as unreachable.
	Down bool
	busy uint64 // host CPU counter (ns), advanced like the guests'
	idle uint64
}

// Driver is the fake driver. Its zero value is not usable: use New.
type Driver struct {
	mu    sync.Mutex
	hosts map[string]*Host
	now   time.Time
	uuid  int
	// watchers get the hosts' events (Watch), by URI.
	watchers map[string][]chan driver.DomainEvent
	// The shared storage: overlays by path, and the base images there.
	disks  map[string]*Disk
	images map[string]bool

	// Migrations records every Migrate request that moved a domain.
	Migrations []driver.MigrateRequest
	// Calls counts calls by method name.
	Calls map[string]int
	// Fail, if set, is asked before each call (method name, host URI,
	// and the domain name, or for PutRecord and DeleteRecord the record's
	// kind/name, as "pool/db"; else "") and fails it with the error it
	// returns. It runs with the driver locked: it must not call it.
	Fail func(method, uri, domain string) error

	// DuringMigrate, if set, runs while a migration is in flight (the
	// domain is on both hosts: running on the source, paused on the
	// destination). Returning an error aborts the migration.
	DuringMigrate func(req driver.MigrateRequest) error
}

// New returns a fake driver with hosts of the given URIs, each with cpus
// CPUs and memGiB GiB of memory.
func New(cpus int, memGiB uint64, uris ...string) *Driver {
	d := &Driver{hosts: map[string]*Host{}, now: time.Unix(1_700_000_000, 0), Calls: map[string]int{},
		disks: map[string]*Disk{}, images: map[string]bool{}}
	for _, u := range uris {
		d.hosts[u] = &Host{URI: u, CPUs: cpus, MemoryBytes: memGiB << 30, Domains: map[string]*Domain{},
			Records: map[string]driver.Record{}}
	}
	return d
}

// Now is the fake clock.
func (d *Driver) Now() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.now
}

// Advance moves the clock on and every running guest's CPU counter with it.
func (d *Driver) Advance(dt time.Duration) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.now = d.now.Add(dt)
	for _, h := range d.hosts {
		var used float64
		for _, dom := range h.Domains {
			if dom.State == driver.StateRunning {
				dom.CPUTimeNs += uint64(dom.Load * float64(dt))
				dom.DiskBytes += uint64(dom.DiskBps * dt.Seconds())
				dom.NetBytes += uint64(dom.NetBps * dt.Seconds())
				used += dom.Load
			}
		}
		h.busy += uint64(used * float64(dt))
		h.idle += uint64(max(0, float64(h.CPUs)-used) * float64(dt))
	}
}

// Host returns a host for inspection and setup; hold no reference across
// calls of the driver from other goroutines.
func (d *Driver) Host(uri string) *Host {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hosts[uri]
}

// SetLoad sets a guest's CPU load (cores) wherever it runs.
func (d *Driver) SetLoad(name string, cores float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range d.hosts {
		if dom, ok := h.Domains[name]; ok {
			dom.Load = cores
		}
	}
}

// SetIO sets a guest's disk and network rates (bytes/s) wherever it runs.
func (d *Driver) SetIO(name string, diskBps, netBps float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, h := range d.hosts {
		if dom, ok := h.Domains[name]; ok {
			dom.DiskBps, dom.NetBps = diskBps, netBps
		}
	}
}

// Where returns the URIs of the hosts a domain is defined on, sorted, with
// its state on each.
func (d *Driver) Where(name string) map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	for u, h := range d.hosts {
		if dom, ok := h.Domains[name]; ok {
			out[u] = dom.State
		}
	}
	return out
}

// AddDomain puts a running domain on a host directly (test setup).
func (d *Driver) AddDomain(uri string, dom driver.Domain, load float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.uuid++
	if dom.UUID == "" {
		dom.UUID = fmt.Sprintf("00000000-0000-0000-0000-%012d", d.uuid)
	}
	if dom.State == "" {
		dom.State = driver.StateRunning
	}
	dom.Persistent = true
	d.hosts[uri].Domains[dom.Name] = &Domain{Domain: dom, Load: load, RSSKiB: dom.MemoryMiB << 10 / 2}
}

// AddImage puts a base image on the shared storage; CreateDomain refuses
// a base image that is not there, as libvirt does.
func (d *Driver) AddImage(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.images[path] = true
}

// RemoveImage takes a base image off the shared storage.
func (d *Driver) RemoveImage(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.images, path)
}

// Disk returns the overlay at path, if it exists.
func (d *Driver) Disk(path string) (Disk, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	dk, ok := d.disks[path]
	if !ok {
		return Disk{}, false
	}
	return *dk, true
}

// Disks lists the paths of the overlays that exist, sorted.
func (d *Driver) Disks() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]string, 0, len(d.disks))
	for p := range d.disks {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// Overlay returns the path of the disk a domain of a host uses ("" if it
// has none or is not there).
func (d *Driver) Overlay(uri, name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if h, ok := d.hosts[uri]; ok {
		if dom, ok := h.Domains[name]; ok {
			return dom.Overlay
		}
	}
	return ""
}

// WriteDisk has a running domain of a host write data to its disk (all
// it holds from then on).
func (d *Driver) WriteDisk(uri, name, data string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var dom *Domain
	if h, ok := d.hosts[uri]; ok {
		dom = h.Domains[name]
	}
	switch {
	case dom == nil || dom.State != driver.StateRunning:
		return fmt.Errorf("write the disk of %s on %s: not running there", name, uri)
	case d.disks[dom.Overlay] == nil:
		return fmt.Errorf("write the disk of %s on %s: its overlay %q does not exist", name, uri, dom.Overlay)
	}
	d.disks[dom.Overlay].Data = data
	return nil
}

// overlay finds or makes the overlay of a domain being created
// (driver.DomainSpec.ReuseOverlay says whether one that exists is
// reused), as the libvirt driver does, with its messages.
func (d *Driver) overlay(spec driver.DomainSpec) (string, error) {
	path := driver.OverlayPath(spec)
	var baseErr error
	if !d.images[spec.BaseImage] {
		baseErr = fmt.Errorf("storage volume not found: no storage vol with matching path '%s'", spec.BaseImage)
	}
	if dk, ok := d.disks[path]; ok {
		if !spec.ReuseOverlay {
			return "", fmt.Errorf("overlay %s exists already (another guest's disk, or one left behind): not overwritten", path)
		}
		return path, driver.CheckReuse(path, dk.Base, spec.BaseImage, baseErr)
	}
	if baseErr != nil {
		return "", fmt.Errorf("base image %s: %w", spec.BaseImage, baseErr)
	}
	d.disks[path] = &Disk{Path: path, Base: spec.BaseImage}
	return path, nil
}

func (d *Driver) enter(method, uri, domain string) (*Host, error) {
	d.Calls[method]++
	if d.Fail != nil {
		if err := d.Fail(method, uri, domain); err != nil {
			return nil, err
		}
	}
	h, ok := d.hosts[uri]
	if !ok || h.Down {
		return nil, &driver.Error{Op: method, Host: uri, Code: driver.CodeNoConnect, Err: fmt.Errorf("host unreachable")}
	}
	return h, nil
}

func copyLabels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}

// HostInfo implements driver.Driver.
func (d *Driver) HostInfo(_ context.Context, uri string) (driver.HostInfo, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("HostInfo", uri, "")
	if err != nil {
		return driver.HostInfo{}, err
	}
	return driver.HostInfo{URI: uri, Hostname: uri, UUID: uri, CPUs: h.CPUs, MemoryBytes: h.MemoryBytes,
		FreeMemoryBytes: h.MemoryBytes, Hypervisor: "Fake", Accelerators: []string{driver.AccelTCG}}, nil
}

// ListDomains implements driver.Driver.
func (d *Driver) ListDomains(_ context.Context, uri string) ([]driver.Domain, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("ListDomains", uri, "")
	if err != nil {
		return nil, err
	}
	out := make([]driver.Domain, 0, len(h.Domains))
	for _, dom := range h.Domains {
		x := dom.Domain
		x.Labels = copyLabels(dom.Labels)
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateDomain implements driver.Driver.
func (d *Driver) CreateDomain(_ context.Context, uri string, spec driver.DomainSpec) (driver.Domain, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("CreateDomain", uri, spec.Name)
	if err != nil {
		return driver.Domain{}, err
	}
	if _, ok := h.Domains[spec.Name]; ok {
		return driver.Domain{}, &driver.Error{Op: "create domain", Host: uri, Domain: spec.Name, Code: driver.CodeOperationInvalid,
			Err: fmt.Errorf("domain exists")}
	}
	var overlay string
	if spec.BaseImage != "" {
		if overlay, err = d.overlay(spec); err != nil {
			return driver.Domain{}, &driver.Error{Op: "create domain", Host: uri, Domain: spec.Name, Err: err}
		}
	}
	d.uuid++
	dom := driver.Domain{Name: spec.Name, UUID: fmt.Sprintf("00000000-0000-0000-0000-%012d", d.uuid), State: driver.StateRunning,
		Persistent: true, VCPUs: spec.VCPUs, MemoryMiB: spec.MemoryMiB, Labels: copyLabels(spec.Labels)}
	h.Domains[spec.Name] = &Domain{Domain: dom, RSSKiB: spec.MemoryMiB << 10 / 2, Overlay: overlay}
	d.emit(uri, dom.Name, dom.UUID, driver.LifecycleStarted, driver.DetailBooted)
	return dom, nil
}

// ShutdownDomain implements driver.Driver.
func (d *Driver) ShutdownDomain(_ context.Context, uri, name string, _ time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("ShutdownDomain", uri, name)
	if err != nil {
		return err
	}
	if dom, ok := h.Domains[name]; ok && dom.State != driver.StateShutoff {
		dom.State = driver.StateShutoff
		d.emit(uri, name, dom.UUID, driver.LifecycleStopped, driver.DetailDestroyed)
	}
	return nil
}

// PowerOff stops every domain of a host, whether it answers or not, as
// a fence action that powers the host off does.
func (d *Driver) PowerOff(uri string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, dom := range d.hosts[uri].Domains {
		if dom.State != driver.StateShutoff {
			dom.State = driver.StateShutoff
			d.emit(uri, name, dom.UUID, driver.LifecycleStopped, driver.DetailDestroyed)
		}
	}
}

// UndefineDomain implements driver.Driver: the domain's overlay goes
// too, from the shared storage, unless opts.KeepStorage.
func (d *Driver) UndefineDomain(_ context.Context, uri, name string, opts driver.UndefineOptions) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("UndefineDomain", uri, name)
	if err != nil {
		return err
	}
	if dom, ok := h.Domains[name]; ok {
		if dom.State == driver.StateRunning {
			return &driver.Error{Op: "undefine", Host: uri, Domain: name, Code: driver.CodeOperationInvalid, Err: fmt.Errorf("domain is running")}
		}
		delete(h.Domains, name)
		if dom.Overlay != "" && !opts.KeepStorage {
			delete(d.disks, dom.Overlay)
		}
	}
	return nil
}

// Stats implements driver.Driver.
func (d *Driver) Stats(_ context.Context, uri string) (driver.HostStats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("Stats", uri, "")
	if err != nil {
		return driver.HostStats{}, err
	}
	st := driver.HostStats{Time: d.now, CPUs: h.CPUs, CPUUserNs: h.busy, CPUIdleNs: h.idle,
		MemoryTotalBytes: h.MemoryBytes, MemoryFreeBytes: h.MemoryBytes / 2}
	for _, dom := range h.Domains {
		if dom.State == driver.StateShutoff {
			continue
		}
		st.Domains = append(st.Domains, driver.DomainStats{Name: dom.Name, UUID: dom.UUID, State: dom.State,
			CPUTimeNs: dom.CPUTimeNs, VCPUs: dom.VCPUs, BalloonKiB: dom.MemoryMiB << 10, RSSKiB: dom.RSSKiB,
			BlockRdBytes: dom.DiskBytes, NetRxBytes: dom.NetBytes, Labels: copyLabels(dom.Labels)})
	}
	sort.Slice(st.Domains, func(i, j int) bool { return st.Domains[i].Name < st.Domains[j].Name })
	return st, nil
}

// Migrate implements driver.Driver: the domain moves to the destination
// with its counters restarted. Migrating a domain already on the
// destination is a no-op.
func (d *Driver) Migrate(ctx context.Context, req driver.MigrateRequest, progress func(driver.MigrateProgress)) (driver.MigrateResult, error) {
	d.mu.Lock()
	src, err := d.enter("Migrate", req.SourceURI, req.Domain)
	if err != nil {
		d.mu.Unlock()
		return driver.MigrateResult{}, err
	}
	dst, ok := d.hosts[req.DestURI]
	if !ok || dst.Down {
		d.mu.Unlock()
		return driver.MigrateResult{}, &driver.Error{Op: "migrate", Host: req.DestURI, Code: driver.CodeNoConnect, Err: fmt.Errorf("host unreachable")}
	}
	dom, ok := src.Domains[req.Domain]
	if !ok || dom.State != driver.StateRunning {
		if there, ok := dst.Domains[req.Domain]; ok && there.State == driver.StateRunning {
			d.mu.Unlock()
			return driver.MigrateResult{UUID: there.UUID}, nil
		}
		d.mu.Unlock()
		return driver.MigrateResult{}, &driver.Error{Op: "migrate", Host: req.SourceURI, Domain: req.Domain, Code: driver.CodeNoDomain,
			Err: fmt.Errorf("domain not found")}
	}
	// In flight: paused copy on the destination, half the memory sent.
	half := driver.MigrateProgress{DataTotal: dom.MemoryMiB << 20, DataProcessed: dom.MemoryMiB << 19, DataRemaining: dom.MemoryMiB << 19}
	dom.Job = driver.Job{State: driver.JobRunning, Progress: half, Downtime: 30 * time.Millisecond}
	incoming := &Domain{Domain: dom.Domain, Load: dom.Load, Job: dom.Job, Overlay: dom.Overlay}
	incoming.State = driver.StatePaused
	incoming.Labels = copyLabels(dom.Labels)
	dst.Domains[req.Domain] = incoming
	d.emit(req.DestURI, req.Domain, dom.UUID, driver.LifecycleStarted, driver.DetailMigrated)
	hook := d.DuringMigrate
	d.mu.Unlock()

	if progress != nil {
		progress(driver.MigrateProgress{DataTotal: dom.MemoryMiB << 20, DataProcessed: dom.MemoryMiB << 19})
	}
	var herr error
	if hook != nil {
		herr = hook(req)
	}
	if herr == nil {
		herr = ctx.Err()
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if herr != nil {
		dom.Job = driver.Job{State: driver.JobFailed, Progress: half}
		delete(dst.Domains, req.Domain) // rolled back: the guest stays on the source
		return driver.MigrateResult{}, &driver.Error{Op: "migrate", Host: req.SourceURI, Domain: req.Domain,
			Code: driver.CodeOperationAborted, Err: herr}
	}
	incoming.State = driver.StateRunning
	incoming.Job = driver.Job{State: driver.JobCompleted, Downtime: 20 * time.Millisecond,
		Progress: driver.MigrateProgress{Elapsed: 500 * time.Millisecond, DataTotal: dom.MemoryMiB << 20, DataProcessed: dom.MemoryMiB << 20}}
	incoming.CPUTimeNs, incoming.DiskBytes, incoming.NetBytes = 0, 0, 0
	incoming.RSSKiB = dom.RSSKiB
	delete(src.Domains, req.Domain)
	d.emit(req.SourceURI, req.Domain, dom.UUID, driver.LifecycleStopped, driver.DetailMigrated)
	d.emit(req.DestURI, req.Domain, dom.UUID, driver.LifecycleResumed, driver.DetailMigrated)
	d.Migrations = append(d.Migrations, req)
	return driver.MigrateResult{UUID: dom.UUID, Elapsed: 500 * time.Millisecond, Downtime: 20 * time.Millisecond,
		Bytes: dom.MemoryMiB << 20}, nil
}

// AbortMigration implements driver.Driver.
func (d *Driver) AbortMigration(_ context.Context, uri, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, err := d.enter("AbortMigration", uri, name)
	return err
}

// CheckpointDomain implements driver.Driver: the file holds a copy of the
// running domain, on its host only.
func (d *Driver) CheckpointDomain(_ context.Context, uri, name string, opts driver.CheckpointOptions) (driver.Checkpoint, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("CheckpointDomain", uri, name)
	if err != nil {
		return driver.Checkpoint{}, err
	}
	dom, ok := h.Domains[name]
	switch {
	case !ok:
		return driver.Checkpoint{}, &driver.Error{Op: "checkpoint domain", Host: uri, Domain: name, Code: driver.CodeNoDomain, Err: fmt.Errorf("no such domain")}
	case dom.State != driver.StateRunning:
		return driver.Checkpoint{}, &driver.Error{Op: "checkpoint domain", Host: uri, Domain: name, Code: driver.CodeOperationInvalid, Err: fmt.Errorf("the domain is not running")}
	}
	c := *dom
	c.Labels = copyLabels(dom.Labels)
	if h.Files == nil {
		h.Files = map[string]*Domain{}
	}
	h.Files[opts.Path] = &c
	return driver.Checkpoint{Elapsed: 150 * time.Millisecond, Downtime: 10 * time.Millisecond, Bytes: dom.MemoryMiB << 20}, nil
}

// RestoreDomain implements driver.Driver: a file of the host (a checkpoint
// taken there, or CopyCheckpoint) starts running.
func (d *Driver) RestoreDomain(_ context.Context, uri, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("RestoreDomain", uri, "")
	if err != nil {
		return err
	}
	f, ok := h.Files[path]
	if !ok {
		return &driver.Error{Op: "restore domain", Host: uri, Code: driver.CodeSystemError, Err: fmt.Errorf("from %s: no such file", path)}
	}
	if _, dup := h.Domains[f.Name]; dup {
		return &driver.Error{Op: "restore domain", Host: uri, Domain: f.Name, Code: driver.CodeOperationInvalid, Err: fmt.Errorf("domain is already active")}
	}
	c := *f
	c.Labels = copyLabels(f.Labels)
	c.State = driver.StateRunning
	c.CPUTimeNs, c.DiskBytes, c.NetBytes = 0, 0, 0
	h.Domains[c.Name] = &c
	d.emit(uri, c.Name, c.UUID, driver.LifecycleStarted, driver.DetailRestored)
	return nil
}

// CopyCheckpoint copies a checkpoint file from one host to another, as
// shipping it would.
func (d *Driver) CopyCheckpoint(fromURI, toURI, path string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	from, to := d.hosts[fromURI], d.hosts[toURI]
	if from == nil || to == nil || from.Files[path] == nil {
		return fmt.Errorf("copy checkpoint %s from %s to %s: no such file or host", path, fromURI, toURI)
	}
	if to.Files == nil {
		to.Files = map[string]*Domain{}
	}
	c := *from.Files[path]
	to.Files[path] = &c
	return nil
}

// emit sends a lifecycle event to the host's watchers (d.mu held); a
// watcher that is behind misses it, as with libvirt.
func (d *Driver) emit(uri, name, uuid, event, detail string) {
	e := driver.DomainEvent{Time: d.now, Domain: name, UUID: uuid, Kind: driver.EventLifecycle, Event: event, Detail: detail}
	for _, ch := range d.watchers[uri] {
		select {
		case ch <- e:
		default:
		}
	}
}

// Watch implements driver.Driver: the events of CreateDomain,
// ShutdownDomain and Migrate, until ctx ends or the host goes down.
func (d *Driver) Watch(ctx context.Context, uri string, fn func(driver.DomainEvent)) error {
	d.mu.Lock()
	if _, err := d.enter("Watch", uri, ""); err != nil {
		d.mu.Unlock()
		return err
	}
	ch := make(chan driver.DomainEvent, 64)
	if d.watchers == nil {
		d.watchers = map[string][]chan driver.DomainEvent{}
	}
	d.watchers[uri] = append(d.watchers[uri], ch)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		ws := d.watchers[uri]
		for i, w := range ws {
			if w == ch {
				d.watchers[uri] = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-ch:
			fn(e)
		}
	}
}

// JobStats implements driver.Driver: the job Migrate left on the domain.
func (d *Driver) JobStats(_ context.Context, uri, name string) (driver.Job, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("JobStats", uri, name)
	if err != nil {
		return driver.Job{}, err
	}
	dom, ok := h.Domains[name]
	if !ok {
		return driver.Job{}, &driver.Error{Op: "job stats", Host: uri, Domain: name, Code: driver.CodeNoDomain, Err: fmt.Errorf("domain not found")}
	}
	if dom.Job.State == "" {
		return driver.Job{State: driver.JobNone}, nil
	}
	return dom.Job, nil
}

func recordKey(kind, name string) string { return kind + "/" + name }

// PutRecord implements driver.Driver.
func (d *Driver) PutRecord(_ context.Context, uri string, r driver.Record) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("PutRecord", uri, recordKey(r.Kind, r.Name))
	if err != nil {
		return err
	}
	r.Data = copyLabels(r.Data)
	h.Records[recordKey(r.Kind, r.Name)] = r
	return nil
}

// ListRecords implements driver.Driver.
func (d *Driver) ListRecords(_ context.Context, uri string) ([]driver.Record, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("ListRecords", uri, "")
	if err != nil {
		return nil, err
	}
	out := make([]driver.Record, 0, len(h.Records))
	for _, r := range h.Records {
		r.Data = copyLabels(r.Data)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return recordKey(out[i].Kind, out[i].Name) < recordKey(out[j].Kind, out[j].Name) })
	return out, nil
}

// DeleteRecord implements driver.Driver.
func (d *Driver) DeleteRecord(_ context.Context, uri, kind, name string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	h, err := d.enter("DeleteRecord", uri, recordKey(kind, name))
	if err != nil {
		return err
	}
	delete(h.Records, recordKey(kind, name))
	return nil
}

var _ driver.Driver = (*Driver)(nil)
