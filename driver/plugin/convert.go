package plugin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/virtpool/virtpool/driver"
	pb "github.com/virtpool/virtpool/driver/proto"
)

// Errors.
//
// The server sends every error as a gRPC status whose message is err.Error();
// a *driver.Error in err's chain also rides along as an ErrorDetail so that
// the client can rebuild it with libvirt's code.

// toStatus turns a driver error into the gRPC status error the server returns.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	var de *driver.Error
	if !errors.As(err, &de) {
		c := codes.Unknown
		switch {
		case errors.Is(err, context.Canceled):
			c = codes.Canceled
		case errors.Is(err, context.DeadlineExceeded):
			c = codes.DeadlineExceeded
		}
		return status.Error(c, err.Error())
	}
	d := &pb.ErrorDetail{
		Op:            de.Op,
		Host:          de.Host,
		Domain:        de.Domain,
		Code:          int32(de.Code),
		LibvirtDomain: int32(de.LibvirtDomain),
	}
	if de.Err != nil {
		d.Message = de.Err.Error()
	}
	st, derr := status.New(grpcCode(de.Code), err.Error()).WithDetails(d)
	if derr != nil {
		// Only fails if d cannot be marshalled; the message still helps.
		return status.Error(grpcCode(de.Code), err.Error())
	}
	return st.Err()
}

// grpcCode picks the gRPC code for a libvirt error code, so that generic
// gRPC tooling (logs, interceptors) sees a sensible class of failure.
func grpcCode(libvirtCode int) codes.Code {
	switch libvirtCode {
	case driver.CodeNoDomain:
		return codes.NotFound
	case driver.CodeNoConnect, driver.CodeSystemError, driver.CodeRPC:
		return codes.Unavailable
	case driver.CodeOperationAborted:
		return codes.Aborted
	}
	return codes.Unknown
}

// remoteError is an error rebuilt on the client whose text (the server's
// err.Error()) says more than the error it wraps.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// fromStatus turns the error of a gRPC call made with ctx back into what the
// driver returned: a *driver.Error if it sent one, else an error with the same
// text. Failures of the call itself (plugin process gone…) are wrapped so
// that status.FromError still sees them.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, d := range st.Details() {
		ed, ok := d.(*pb.ErrorDetail)
		if !ok {
			continue
		}
		de := &driver.Error{
			Op:            ed.GetOp(),
			Host:          ed.GetHost(),
			Domain:        ed.GetDomain(),
			Code:          int(ed.GetCode()),
			LibvirtDomain: int(ed.GetLibvirtDomain()),
		}
		if ed.GetMessage() != "" {
			de.Err = errors.New(ed.GetMessage())
		}
		if de.Error() == st.Message() {
			return de
		}
		// The driver wrapped its *driver.Error in more context.
		return &remoteError{msg: st.Message(), err: de}
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		// Our own context ended: say so the usual way.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// The driver's did: keep errors.Is working.
		cause := context.Canceled
		if st.Code() == codes.DeadlineExceeded {
			cause = context.DeadlineExceeded
		}
		return &remoteError{msg: st.Message(), err: cause}
	case codes.Unknown:
		// A plain error returned by the driver.
		return errors.New(st.Message())
	}
	return fmt.Errorf("driver plugin: %w", err)
}

// Durations and times.

func durToPB(d time.Duration) int64    { return int64(d) }
func durFromPB(ns int64) time.Duration { return time.Duration(ns) }

func timeToPB(t time.Time) *pb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return &pb.Timestamp{Seconds: t.Unix(), Nanos: int32(t.Nanosecond())}
}

func timeFromPB(ts *pb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return time.Unix(ts.GetSeconds(), int64(ts.GetNanos()))
}

// Structs, in the order of driver.go.

func hostInfoToPB(h driver.HostInfo) *pb.HostInfoResponse {
	return &pb.HostInfoResponse{
		Uri:               h.URI,
		Hostname:          h.Hostname,
		Uuid:              h.UUID,
		Cpus:              int64(h.CPUs),
		MemoryBytes:       h.MemoryBytes,
		FreeMemoryBytes:   h.FreeMemoryBytes,
		Hypervisor:        h.Hypervisor,
		HypervisorVersion: h.HypervisorVersion,
		LibvirtVersion:    h.LibvirtVersion,
		Accelerators:      h.Accelerators,
	}
}

func hostInfoFromPB(h *pb.HostInfoResponse) driver.HostInfo {
	return driver.HostInfo{
		URI:               h.GetUri(),
		Hostname:          h.GetHostname(),
		UUID:              h.GetUuid(),
		CPUs:              int(h.GetCpus()),
		MemoryBytes:       h.GetMemoryBytes(),
		FreeMemoryBytes:   h.GetFreeMemoryBytes(),
		Hypervisor:        h.GetHypervisor(),
		HypervisorVersion: h.GetHypervisorVersion(),
		LibvirtVersion:    h.GetLibvirtVersion(),
		Accelerators:      h.GetAccelerators(),
	}
}

func domainToPB(d driver.Domain) *pb.Domain {
	return &pb.Domain{
		Name:       d.Name,
		Uuid:       d.UUID,
		State:      d.State,
		Persistent: d.Persistent,
		Vcpus:      int64(d.VCPUs),
		MemoryMib:  d.MemoryMiB,
		Labels:     d.Labels,
	}
}

func domainFromPB(d *pb.Domain) driver.Domain {
	return driver.Domain{
		Name:       d.GetName(),
		UUID:       d.GetUuid(),
		State:      d.GetState(),
		Persistent: d.GetPersistent(),
		VCPUs:      int(d.GetVcpus()),
		MemoryMiB:  d.GetMemoryMib(),
		Labels:     d.GetLabels(),
	}
}

func domainsToPB(ds []driver.Domain) []*pb.Domain {
	if ds == nil {
		return nil
	}
	out := make([]*pb.Domain, len(ds))
	for i, d := range ds {
		out[i] = domainToPB(d)
	}
	return out
}

func domainsFromPB(ds []*pb.Domain) []driver.Domain {
	if len(ds) == 0 {
		return nil
	}
	out := make([]driver.Domain, len(ds))
	for i, d := range ds {
		out[i] = domainFromPB(d)
	}
	return out
}

func specToPB(s driver.DomainSpec) *pb.DomainSpec {
	return &pb.DomainSpec{
		Name:         s.Name,
		Vcpus:        int64(s.VCPUs),
		MemoryMib:    s.MemoryMiB,
		Accelerator:  s.Accelerator,
		Kernel:       s.Kernel,
		Initrd:       s.Initrd,
		Cmdline:      s.Cmdline,
		BaseImage:    s.BaseImage,
		OverlayDir:   s.OverlayDir,
		Bridge:       s.Bridge,
		Mac:          s.MAC,
		Labels:       s.Labels,
		ReuseOverlay: s.ReuseOverlay,
	}
}

func specFromPB(s *pb.DomainSpec) driver.DomainSpec {
	return driver.DomainSpec{
		Name:         s.GetName(),
		VCPUs:        int(s.GetVcpus()),
		MemoryMiB:    s.GetMemoryMib(),
		Accelerator:  s.GetAccelerator(),
		Kernel:       s.GetKernel(),
		Initrd:       s.GetInitrd(),
		Cmdline:      s.GetCmdline(),
		BaseImage:    s.GetBaseImage(),
		OverlayDir:   s.GetOverlayDir(),
		Bridge:       s.GetBridge(),
		MAC:          s.GetMac(),
		Labels:       s.GetLabels(),
		ReuseOverlay: s.GetReuseOverlay(),
	}
}

func hostStatsToPB(h driver.HostStats) *pb.HostStats {
	out := &pb.HostStats{
		Time:             timeToPB(h.Time),
		Cpus:             int64(h.CPUs),
		CpuUserNs:        h.CPUUserNs,
		CpuSystemNs:      h.CPUSystemNs,
		CpuIdleNs:        h.CPUIdleNs,
		CpuIowaitNs:      h.CPUIowaitNs,
		MemoryTotalBytes: h.MemoryTotalBytes,
		MemoryFreeBytes:  h.MemoryFreeBytes,
	}
	for _, d := range h.Domains {
		out.Domains = append(out.Domains, &pb.DomainStats{
			Name:         d.Name,
			Uuid:         d.UUID,
			State:        d.State,
			CpuTimeNs:    d.CPUTimeNs,
			Vcpus:        int64(d.VCPUs),
			BalloonKib:   d.BalloonKiB,
			RssKib:       d.RSSKiB,
			BlockRdBytes: d.BlockRdBytes,
			BlockWrBytes: d.BlockWrBytes,
			NetRxBytes:   d.NetRxBytes,
			NetTxBytes:   d.NetTxBytes,
			Labels:       d.Labels,
		})
	}
	return out
}

func hostStatsFromPB(h *pb.HostStats) driver.HostStats {
	out := driver.HostStats{
		Time:             timeFromPB(h.GetTime()),
		CPUs:             int(h.GetCpus()),
		CPUUserNs:        h.GetCpuUserNs(),
		CPUSystemNs:      h.GetCpuSystemNs(),
		CPUIdleNs:        h.GetCpuIdleNs(),
		CPUIowaitNs:      h.GetCpuIowaitNs(),
		MemoryTotalBytes: h.GetMemoryTotalBytes(),
		MemoryFreeBytes:  h.GetMemoryFreeBytes(),
	}
	for _, d := range h.GetDomains() {
		out.Domains = append(out.Domains, driver.DomainStats{
			Name:         d.GetName(),
			UUID:         d.GetUuid(),
			State:        d.GetState(),
			CPUTimeNs:    d.GetCpuTimeNs(),
			VCPUs:        int(d.GetVcpus()),
			BalloonKiB:   d.GetBalloonKib(),
			RSSKiB:       d.GetRssKib(),
			BlockRdBytes: d.GetBlockRdBytes(),
			BlockWrBytes: d.GetBlockWrBytes(),
			NetRxBytes:   d.GetNetRxBytes(),
			NetTxBytes:   d.GetNetTxBytes(),
			Labels:       d.GetLabels(),
		})
	}
	return out
}

func migrateRequestToPB(r driver.MigrateRequest) *pb.MigrateRequest {
	o := r.Options
	return &pb.MigrateRequest{
		Domain:       r.Domain,
		SourceUri:    r.SourceURI,
		DestUri:      r.DestURI,
		DestPeerUri:  r.DestPeerURI,
		MigrationUri: r.MigrationURI,
		Options: &pb.MigrateOptions{
			BandwidthMibs:      o.BandwidthMiBs,
			MaxDowntimeNs:      durToPB(o.MaxDowntime),
			AutoConverge:       o.AutoConverge,
			PostCopy:           o.PostCopy,
			PostCopyAfterNs:    durToPB(o.PostCopyAfter),
			Persistent:         o.Persistent,
			UndefineSource:     o.UndefineSource,
			CopyStorage:        o.CopyStorage,
			Tunnelled:          o.Tunnelled,
			Unsafe:             o.Unsafe,
			ProgressTimeoutNs:  durToPB(o.ProgressTimeout),
			CompletionPerGibNs: durToPB(o.CompletionPerGiB),
			Tls:                o.TLS,
		},
	}
}

func migrateRequestFromPB(r *pb.MigrateRequest) driver.MigrateRequest {
	o := r.GetOptions()
	return driver.MigrateRequest{
		Domain:       r.GetDomain(),
		SourceURI:    r.GetSourceUri(),
		DestURI:      r.GetDestUri(),
		DestPeerURI:  r.GetDestPeerUri(),
		MigrationURI: r.GetMigrationUri(),
		Options: driver.MigrateOptions{
			BandwidthMiBs:    o.GetBandwidthMibs(),
			MaxDowntime:      durFromPB(o.GetMaxDowntimeNs()),
			AutoConverge:     o.GetAutoConverge(),
			PostCopy:         o.GetPostCopy(),
			PostCopyAfter:    durFromPB(o.GetPostCopyAfterNs()),
			Persistent:       o.GetPersistent(),
			UndefineSource:   o.GetUndefineSource(),
			CopyStorage:      o.GetCopyStorage(),
			Tunnelled:        o.GetTunnelled(),
			Unsafe:           o.GetUnsafe(),
			ProgressTimeout:  durFromPB(o.GetProgressTimeoutNs()),
			CompletionPerGiB: durFromPB(o.GetCompletionPerGibNs()),
			TLS:              o.GetTls(),
		},
	}
}

func progressToPB(p driver.MigrateProgress) *pb.MigrateProgress {
	return &pb.MigrateProgress{
		ElapsedNs:       durToPB(p.Elapsed),
		DataTotal:       p.DataTotal,
		DataProcessed:   p.DataProcessed,
		DataRemaining:   p.DataRemaining,
		PostCopy:        p.PostCopy,
		ThrottlePercent: int32(p.ThrottlePercent),
	}
}

func progressFromPB(p *pb.MigrateProgress) driver.MigrateProgress {
	return driver.MigrateProgress{
		Elapsed:         durFromPB(p.GetElapsedNs()),
		DataTotal:       p.GetDataTotal(),
		DataProcessed:   p.GetDataProcessed(),
		DataRemaining:   p.GetDataRemaining(),
		PostCopy:        p.GetPostCopy(),
		ThrottlePercent: int(p.GetThrottlePercent()),
	}
}

func jobToPB(j driver.Job) *pb.Job {
	return &pb.Job{State: j.State, Progress: progressToPB(j.Progress), DowntimeNs: int64(j.Downtime), DirtyRate: j.DirtyRate}
}

func jobFromPB(j *pb.Job) driver.Job {
	return driver.Job{State: j.GetState(), Progress: progressFromPB(j.GetProgress()), Downtime: time.Duration(j.GetDowntimeNs()),
		DirtyRate: j.GetDirtyRate()}
}

func domainEventToPB(e driver.DomainEvent) *pb.DomainEvent {
	return &pb.DomainEvent{Time: timeToPB(e.Time), Domain: e.Domain, Uuid: e.UUID, Kind: e.Kind, Event: e.Event, Detail: e.Detail,
		Job: jobToPB(e.Job)}
}

func domainEventFromPB(e *pb.DomainEvent) driver.DomainEvent {
	return driver.DomainEvent{Time: timeFromPB(e.GetTime()), Domain: e.GetDomain(), UUID: e.GetUuid(), Kind: e.GetKind(),
		Event: e.GetEvent(), Detail: e.GetDetail(), Job: jobFromPB(e.GetJob())}
}

func resultToPB(r driver.MigrateResult) *pb.MigrateResult {
	return &pb.MigrateResult{
		Uuid:       r.UUID,
		ElapsedNs:  durToPB(r.Elapsed),
		DowntimeNs: durToPB(r.Downtime),
		Bytes:      r.Bytes,
		PostCopy:   r.PostCopy,
	}
}

func resultFromPB(r *pb.MigrateResult) driver.MigrateResult {
	return driver.MigrateResult{
		UUID:     r.GetUuid(),
		Elapsed:  durFromPB(r.GetElapsedNs()),
		Downtime: durFromPB(r.GetDowntimeNs()),
		Bytes:    r.GetBytes(),
		PostCopy: r.GetPostCopy(),
	}
}

func recordToPB(r driver.Record) *pb.Record {
	return &pb.Record{Kind: r.Kind, Name: r.Name, Generation: r.Generation, Data: r.Data}
}

func recordFromPB(r *pb.Record) driver.Record {
	return driver.Record{Kind: r.GetKind(), Name: r.GetName(), Generation: r.GetGeneration(), Data: r.GetData()}
}

func recordsToPB(rs []driver.Record) []*pb.Record {
	if rs == nil {
		return nil
	}
	out := make([]*pb.Record, len(rs))
	for i, r := range rs {
		out[i] = recordToPB(r)
	}
	return out
}

func recordsFromPB(rs []*pb.Record) []driver.Record {
	if len(rs) == 0 {
		return nil
	}
	out := make([]driver.Record, len(rs))
	for i, r := range rs {
		out[i] = recordFromPB(r)
	}
	return out
}
