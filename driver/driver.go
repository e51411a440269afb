// Package driver is virtpool's contract with hypervisors: the one Go interface
// that the provider, the autoscaler plugins and the tests use. Its
// implementation (package driver/virt, on libvirt) runs in its own process
// behind go-plugin (package driver/plugin), so a libvirt crash or hang never
// takes its caller down.
//
// Hosts are named by their libvirt URI (qemu:///system, qemu+tls://h/system,
// qemu+unix:///system?socket=…, xen:///system, test:///default); one driver
// serves any number of them.
package driver

import (
	"context"
	"fmt"
	"path/filepath"
	"time"
)

// Driver is what virtpool needs from a hypervisor.
type Driver interface {
	// HostInfo describes a host, including which accelerators really work.
	HostInfo(ctx context.Context, uri string) (HostInfo, error)
	// ListDomains lists every domain of a host with virtpool's labels.
	ListDomains(ctx context.Context, uri string) ([]Domain, error)
	// CreateDomain defines a persistent domain from spec and starts it.
	CreateDomain(ctx context.Context, uri string, spec DomainSpec) (Domain, error)
	// ShutdownDomain asks the guest to power off, and destroys it if it is
	// still running after timeout. Shutting down a stopped domain is a no-op.
	ShutdownDomain(ctx context.Context, uri, name string, timeout time.Duration) error
	// UndefineDomain removes a stopped domain's definition and, unless
	// opts.KeepStorage, the overlay disk virtpool created for it.
	// Undefining a missing domain is a no-op.
	UndefineDomain(ctx context.Context, uri, name string, opts UndefineOptions) error
	// Stats samples every domain of a host in one libvirt call, plus the host.
	Stats(ctx context.Context, uri string) (HostStats, error)
	// Migrate live-migrates a running domain and reports progress until it
	// completes. Cancelling ctx aborts the migration; the guest then keeps
	// running on the source.
	Migrate(ctx context.Context, req MigrateRequest, progress func(MigrateProgress)) (MigrateResult, error)
	// AbortMigration aborts the migration job running for a domain on its source.
	AbortMigration(ctx context.Context, uri, name string) error
	// JobStats reports a domain's job on a host: the one running (a
	// migration's progress, on either side), else the last one that
	// completed there (the destination of a migration keeps it, with the
	// downtime measured), else JobNone. It does not wait for the job to end.
	JobStats(ctx context.Context, uri, name string) (Job, error)
	// Watch calls fn with each event libvirt reports of the host's
	// domains (virtpool's records and probes left out) until ctx ends
	// (nil) or the host is lost (an error). fn runs in Watch's goroutine,
	// one event at a time; events a slow fn cannot take are dropped.
	Watch(ctx context.Context, uri string, fn func(DomainEvent)) error

	// CheckpointDomain writes a running domain's memory to a file on its
	// host while the guest runs (a live external snapshot, no snapshot
	// metadata), pausing it only for the last dirty pages and the devices.
	// The file is a save image: RestoreDomain starts it. Each writable
	// qcow2 disk is frozen in the same snapshot, the guest writing on in a
	// new layer above it (<overlay dir>/<domain>.<disk>.ckpt-<ns>.qcow2):
	// the file the image names and those below it hold the disk as the
	// image's memory knew it, so that a restore meets a disk consistent
	// with its memory. Compact merges the older layers.
	CheckpointDomain(ctx context.Context, uri, name string, opts CheckpointOptions) (Checkpoint, error)
	// RestoreDomain starts a domain, running, from a checkpoint file on a
	// host (the file holds its definition), and defines it there.
	RestoreDomain(ctx context.Context, uri, path string) error

	// PutRecord stores r on a host, replacing any record of the same kind
	// and name. Records are how virtpool keeps its own objects (pool specs,
	// host states) in libvirt, so that every tool finds them on the hosts
	// without Terraform's state.
	PutRecord(ctx context.Context, uri string, r Record) error
	// ListRecords returns every record stored on a host.
	ListRecords(ctx context.Context, uri string) ([]Record, error)
	// DeleteRecord removes a record; deleting a missing one is a no-op.
	DeleteRecord(ctx context.Context, uri, kind, name string) error
}

// Record is a small named document virtpool keeps on a host. Kind says what
// it describes ("pool", "host", …) and Name which one; Generation orders
// versions of the same record written to several hosts (readers take the
// highest); Data holds the content.
type Record struct {
	Kind       string
	Name       string
	Generation int64
	Data       map[string]string
}

// Record kinds virtpool uses.
const (
	RecordPool = "pool" // a pool's spec and migration policy
	RecordHost = "host" // a host's state (maintenance, standby)
	// RecordDomain says where a single domain that may be restarted
	// elsewhere runs (pool.Placement), on its failover hosts.
	RecordDomain = "domain"
)

// Accelerators as virtpool names them.
const (
	AccelAuto = "auto" // KVM where it works, TCG otherwise
	AccelKVM  = "kvm"
	AccelTCG  = "tcg"
)

// HostInfo describes a hypervisor host.
type HostInfo struct {
	URI               string
	Hostname          string
	UUID              string // libvirt's host UUID; two hosts must differ to migrate
	CPUs              int
	MemoryBytes       uint64
	FreeMemoryBytes   uint64
	Hypervisor        string // "QEMU", "Xen", "Test", …
	HypervisorVersion string // e.g. "7.2.0"
	LibvirtVersion    string
	// Accelerators that were found to work, best first ("kvm", "tcg").
	Accelerators []string
}

// Domain states, as virtpool reports them.
const (
	StateRunning  = "running"
	StatePaused   = "paused"
	StateShutoff  = "shutoff"
	StateCrashed  = "crashed"
	StateOther    = "other"
	StateShutdown = "shutdown" // shutting down
)

// Active tells whether a domain in state holds a live guest: running, or
// paused (a checkpoint's or a migration's end pauses it briefly; a paused
// copy elsewhere is a copy all the same).
func Active(state string) bool { return state == StateRunning || state == StatePaused }

// Domain is one guest as libvirt sees it.
type Domain struct {
	Name       string
	UUID       string
	State      string
	Persistent bool
	VCPUs      int
	MemoryMiB  uint64
	// Labels are virtpool's key/value pairs (pool, role, template, …) kept in
	// the domain's <metadata> under virtpool's XML namespace.
	Labels map[string]string
}

// DomainSpec is what CreateDomain builds a domain from.
type DomainSpec struct {
	Name      string
	VCPUs     int
	MemoryMiB uint64
	// Accelerator is AccelAuto (default), AccelKVM or AccelTCG.
	Accelerator string

	// Direct kernel boot…
	Kernel, Initrd, Cmdline string
	// …or a disk image: a qcow2 overlay backed by BaseImage is created for
	// the domain in OverlayDir (default: BaseImage's directory). With a
	// Kernel too, the kernel boots and the overlay is a data disk (the
	// lab's test guests with a disk).
	BaseImage  string
	OverlayDir string
	// ReuseOverlay: an overlay that exists already at the domain's path
	// (OverlayPath) is its disk, used as it is: the domain is started
	// again on another host, and its overlay is on storage the hosts share
	// (an HA restart after its host was fenced). It must be a qcow2 backed
	// by BaseImage, which must exist; else CreateDomain fails naming both
	// paths. Without an overlay there, one is created as usual. Without
	// ReuseOverlay an existing overlay is an error: a new guest never takes
	// another's disk. A failed create never deletes an overlay it reused.
	ReuseOverlay bool

	// Bridge is the host bridge the guest's NIC joins ("" for no NIC).
	Bridge string
	// MAC of the NIC; libvirt picks one if empty.
	MAC string

	Labels map[string]string
}

// OverlayPath is where the overlay of a domain with a BaseImage is:
// <OverlayDir>/<Name>.qcow2, OverlayDir defaulting to BaseImage's
// directory. Every copy of a guest (on any host) has the same path, so
// on shared storage its copies share one overlay.
func OverlayPath(s DomainSpec) string {
	dir := s.OverlayDir
	if dir == "" {
		dir = filepath.Dir(s.BaseImage)
	}
	return filepath.Join(dir, s.Name+".qcow2")
}

// CheckReuse tells whether the overlay that exists at overlay, backed by
// backing ("" if by nothing), can be the disk of a domain whose base image
// is base (ReuseOverlay); baseErr is why base cannot be found, nil if it
// exists. Its error names the overlay and both base images.
func CheckReuse(overlay, backing, base string, baseErr error) error {
	switch {
	case backing == "":
		return fmt.Errorf("overlay %s exists but has no base image (the domain's is %s): not reused", overlay, base)
	case filepath.Clean(backing) != filepath.Clean(base):
		return fmt.Errorf("overlay %s exists but is backed by %s, not by the domain's base image %s: not reused", overlay, backing, base)
	case baseErr != nil:
		return fmt.Errorf("overlay %s exists but its base image %s is missing: not reused: %w", overlay, base, baseErr)
	}
	return nil
}

// UndefineOptions say what removing a domain leaves.
type UndefineOptions struct {
	// KeepStorage keeps the overlay virtpool created for the domain. Set
	// it when removing a copy of a guest that another copy, on another
	// host, still uses: overlays are on storage the hosts share, at one
	// path for every copy (OverlayPath), so deleting the stale copy's
	// overlay would delete the live guest's disk. Left unset, removing a
	// guest (scale-in, destroy) deletes its disk too.
	KeepStorage bool
}

// HostStats is one sample of a host and all its domains.
type HostStats struct {
	Time time.Time
	// Host CPU: cumulative nanoseconds in each state, summed over CPUs.
	CPUs                                           int
	CPUUserNs, CPUSystemNs, CPUIdleNs, CPUIowaitNs uint64
	MemoryTotalBytes, MemoryFreeBytes              uint64
	Domains                                        []DomainStats
}

// CPUBusy is the fraction of a host's CPU time spent busy (user+system, of
// user+system+idle+iowait) between samples a and b, the later one. It is
// false when no CPU time passed or a counter went back (the host rebooted):
// there is no rate for that interval.
func CPUBusy(a, b HostStats) (float64, bool) {
	busyA, busyB := a.CPUUserNs+a.CPUSystemNs, b.CPUUserNs+b.CPUSystemNs
	allA, allB := busyA+a.CPUIdleNs+a.CPUIowaitNs, busyB+b.CPUIdleNs+b.CPUIowaitNs
	// Checked apart: iowait may go back a little on Linux while the total
	// goes on, which is no reason to drop the sample.
	if busyB < busyA || allB <= allA {
		return 0, false
	}
	return float64(busyB-busyA) / float64(allB-allA), true
}

// DomainStats are the counters of one domain; counters are cumulative since
// the domain's QEMU process started (they restart at zero after migration).
type DomainStats struct {
	Name         string
	UUID         string
	State        string
	CPUTimeNs    uint64
	VCPUs        int
	BalloonKiB   uint64 // current balloon size
	RSSKiB       uint64
	BlockRdBytes uint64
	BlockWrBytes uint64
	NetRxBytes   uint64
	NetTxBytes   uint64
	Labels       map[string]string
}

// MigrateOptions tune a live migration.
type MigrateOptions struct {
	BandwidthMiBs uint64        // 0: libvirt's default
	MaxDowntime   time.Duration // 0: libvirt's default (300 ms)
	AutoConverge  bool
	PostCopy      bool // allow post-copy
	// PostCopyAfter switches to post-copy if the migration is still running
	// after this long (needs PostCopy). 0: never switch.
	PostCopyAfter  time.Duration
	Persistent     bool // define the domain on the destination
	UndefineSource bool // undefine it on the source once moved
	CopyStorage    bool // copy non-shared disks (target images must exist)
	Tunnelled      bool // send migration data through libvirtd's connection
	Unsafe         bool // allow disks libvirt thinks unsafe (lab shared dirs)
	// TLS encrypts the migration stream (memory and disks) with the hosts'
	// QEMU x509 certificates (VIR_MIGRATE_TLS); the connection between
	// the libvirtds is as their URIs say (qemu+tls, qemu+ssh).
	TLS bool
	// ProgressTimeout ends a migration whose memory left to send has not
	// shrunk for this long (0: DefaultProgressTimeout).
	ProgressTimeout time.Duration
	// CompletionPerGiB bounds a migration to this long per GiB of guest
	// memory, counting at least one GiB (0: DefaultCompletionPerGiB).
	CompletionPerGiB time.Duration
}

// How long a migration may run before the driver ends it (switching to
// post-copy where allowed, else aborting), KubeVirt's defaults.
const (
	DefaultProgressTimeout  = 150 * time.Second
	DefaultCompletionPerGiB = 150 * time.Second
)

// MigrateRequest names a domain, where it is and where it goes.
type MigrateRequest struct {
	Domain    string
	SourceURI string
	DestURI   string
	// DestPeerURI is how the source host's libvirtd reaches the destination's
	// (peer-to-peer migration); default DestURI.
	DestPeerURI string
	// MigrationURI is where QEMU sends the data (e.g. tcp://10.0.0.2);
	// default: libvirt's choice.
	MigrationURI string
	Options      MigrateOptions
}

// MigrateProgress is one progress report of a running migration.
type MigrateProgress struct {
	Elapsed       time.Duration
	DataTotal     uint64
	DataProcessed uint64
	DataRemaining uint64
	PostCopy      bool
	// ThrottlePercent is how much auto-converge slows the guest's vCPUs.
	ThrottlePercent int
}

// Job states.
const (
	JobNone      = "none"      // no job running, none completed kept
	JobRunning   = "running"   // a job runs (Progress so far)
	JobCompleted = "completed" // the last job completed (its totals)
	JobFailed    = "failed"    // the last job failed or was cancelled
)

// Job is a domain's job as JobStats reports it.
type Job struct {
	State string
	// Progress of the job (running) or its totals (completed).
	Progress MigrateProgress
	// Downtime is what QEMU expects while a migration runs, and what it
	// measured once it completed.
	Downtime time.Duration
	// DirtyRate is how fast the guest dirties memory, bytes/s (running).
	DirtyRate uint64
}

// Kinds of DomainEvent.
const (
	EventLifecycle    = "lifecycle"     // Event and Detail say what happened
	EventJobCompleted = "job_completed" // Job holds the job's totals
)

// Lifecycle events and the details virtpool names (libvirt's others are
// reported with an empty Detail).
const (
	LifecycleDefined   = "defined"
	LifecycleUndefined = "undefined"
	LifecycleStarted   = "started"
	LifecycleSuspended = "suspended"
	LifecycleResumed   = "resumed"
	LifecycleStopped   = "stopped"
	LifecycleShutdown  = "shutdown"
	LifecycleCrashed   = "crashed"
	LifecycleOther     = "other"

	DetailBooted    = "booted"
	DetailRestored  = "restored" // started from a checkpoint (RestoreDomain)
	DetailMigrated  = "migrated" // the start, pause, resume or stop of a migration's side
	DetailPostCopy  = "postcopy"
	DetailDestroyed = "destroyed"
	DetailShutdown  = "shutdown"
	DetailCrashed   = "crashed"
	DetailFailed    = "failed"
)

// DomainEvent is one event libvirt reported of a domain.
type DomainEvent struct {
	Time          time.Time
	Domain, UUID  string
	Kind          string
	Event, Detail string // EventLifecycle
	Job           Job    // EventJobCompleted
}

// CheckpointOptions say where and how a checkpoint is taken.
type CheckpointOptions struct {
	// Path is the memory file, absolute, on the domain's host; its
	// directory must exist there. An existing file is replaced.
	Path string
	// MaxDowntime bounds the guest's pause at the end of the capture
	// (DefaultCheckpointDowntime if zero); the domain's own maximum
	// downtime, for migrations, is set back afterwards.
	MaxDowntime time.Duration
	// Compact merges, before the capture, the checkpoint layers of the
	// domain's disks that the last image does not need into the domain's
	// overlay: set it once that image is where it must be (shipped). See
	// CheckpointDomain.
	Compact bool
}

// DefaultCheckpointDowntime is the pause a checkpoint aims at unless told:
// QEMU's own default (300 ms) is meant for migrations.
const DefaultCheckpointDowntime = 20 * time.Millisecond

// Checkpoint is what libvirt reports of a checkpoint taken.
type Checkpoint struct {
	Elapsed  time.Duration // the whole capture, the guest running
	Downtime time.Duration // the guest's pause; -1 when libvirt did not report it
	Bytes    uint64        // memory written
}

// MigrateResult is what libvirt reports of a completed migration.
type MigrateResult struct {
	UUID     string // the domain's UUID on the destination (unchanged)
	Elapsed  time.Duration
	Downtime time.Duration // 0 when libvirt did not report it (post-copy)
	Bytes    uint64        // data transferred
	PostCopy bool          // the migration switched to post-copy
}
