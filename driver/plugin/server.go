package plugin

import (
	"context"
	"sync"
	"time"

	"github.com/virtpool/virtpool/driver"
	pb "github.com/virtpool/virtpool/driver/proto"
)

// Server serves a driver.Driver over gRPC. Each call runs with the call's
// context, so that a caller's cancellation (or its death) reaches Impl.
type Server struct {
	pb.UnimplementedDriverServer
	Impl driver.Driver
}

var _ pb.DriverServer = (*Server)(nil)

func (s *Server) HostInfo(ctx context.Context, req *pb.HostInfoRequest) (*pb.HostInfoResponse, error) {
	h, err := s.Impl.HostInfo(ctx, req.GetUri())
	if err != nil {
		return nil, toStatus(err)
	}
	return hostInfoToPB(h), nil
}

func (s *Server) ListDomains(ctx context.Context, req *pb.ListDomainsRequest) (*pb.ListDomainsResponse, error) {
	ds, err := s.Impl.ListDomains(ctx, req.GetUri())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ListDomainsResponse{Domains: domainsToPB(ds)}, nil
}

func (s *Server) CreateDomain(ctx context.Context, req *pb.CreateDomainRequest) (*pb.Domain, error) {
	d, err := s.Impl.CreateDomain(ctx, req.GetUri(), specFromPB(req.GetSpec()))
	if err != nil {
		return nil, toStatus(err)
	}
	return domainToPB(d), nil
}

func (s *Server) ShutdownDomain(ctx context.Context, req *pb.ShutdownDomainRequest) (*pb.Empty, error) {
	err := s.Impl.ShutdownDomain(ctx, req.GetUri(), req.GetName(), durFromPB(req.GetTimeoutNs()))
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.Empty{}, nil
}

func (s *Server) UndefineDomain(ctx context.Context, req *pb.UndefineDomainRequest) (*pb.Empty, error) {
	if err := s.Impl.UndefineDomain(ctx, req.GetUri(), req.GetName(), driver.UndefineOptions{KeepStorage: req.GetKeepStorage()}); err != nil {
		return nil, toStatus(err)
	}
	return &pb.Empty{}, nil
}

func (s *Server) Stats(ctx context.Context, req *pb.StatsRequest) (*pb.HostStats, error) {
	h, err := s.Impl.Stats(ctx, req.GetUri())
	if err != nil {
		return nil, toStatus(err)
	}
	return hostStatsToPB(h), nil
}

// Migrate streams each progress report as it comes, then the result.
func (s *Server) Migrate(req *pb.MigrateRequest, stream pb.Driver_MigrateServer) error {
	// The driver may report progress from its own goroutine; a stream must
	// not be sent on concurrently, nor after the handler has returned.
	var (
		mu      sync.Mutex
		done    bool
		sendErr error
	)
	progress := func(p driver.MigrateProgress) {
		mu.Lock()
		defer mu.Unlock()
		if done || sendErr != nil {
			// A failed Send means the caller is gone; the stream's context
			// is then cancelled, which aborts the migration.
			return
		}
		sendErr = stream.Send(&pb.MigrateEvent{Event: &pb.MigrateEvent_Progress{Progress: progressToPB(p)}})
	}
	res, err := s.Impl.Migrate(stream.Context(), migrateRequestFromPB(req), progress)
	mu.Lock()
	done = true
	mu.Unlock()
	if err != nil {
		return toStatus(err)
	}
	return stream.Send(&pb.MigrateEvent{Event: &pb.MigrateEvent_Result{Result: resultToPB(res)}})
}

func (s *Server) AbortMigration(ctx context.Context, req *pb.AbortMigrationRequest) (*pb.Empty, error) {
	if err := s.Impl.AbortMigration(ctx, req.GetUri(), req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.Empty{}, nil
}

func (s *Server) CheckpointDomain(ctx context.Context, req *pb.CheckpointDomainRequest) (*pb.Checkpoint, error) {
	cp, err := s.Impl.CheckpointDomain(ctx, req.GetUri(), req.GetName(), driver.CheckpointOptions{Path: req.GetPath(),
		MaxDowntime: time.Duration(req.GetMaxDowntimeNs()), Compact: req.GetCompact()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.Checkpoint{ElapsedNs: int64(cp.Elapsed), DowntimeNs: int64(cp.Downtime), Bytes: cp.Bytes}, nil
}

func (s *Server) RestoreDomain(ctx context.Context, req *pb.RestoreDomainRequest) (*pb.Empty, error) {
	if err := s.Impl.RestoreDomain(ctx, req.GetUri(), req.GetPath()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.Empty{}, nil
}

func (s *Server) JobStats(ctx context.Context, req *pb.JobStatsRequest) (*pb.Job, error) {
	j, err := s.Impl.JobStats(ctx, req.GetUri(), req.GetName())
	if err != nil {
		return nil, toStatus(err)
	}
	return jobToPB(j), nil
}

func (s *Server) Watch(req *pb.WatchRequest, stream pb.Driver_WatchServer) error {
	var sendErr error
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	err := s.Impl.Watch(ctx, req.GetUri(), func(e driver.DomainEvent) {
		if sendErr == nil {
			if sendErr = stream.Send(domainEventToPB(e)); sendErr != nil {
				cancel() // the client is gone
			}
		}
	})
	if sendErr != nil {
		return sendErr
	}
	return toStatus(err)
}

func (s *Server) PutRecord(ctx context.Context, req *pb.PutRecordRequest) (*pb.Empty, error) {
	if err := s.Impl.PutRecord(ctx, req.GetUri(), recordFromPB(req.GetRecord())); err != nil {
		return nil, toStatus(err)
	}
	return &pb.Empty{}, nil
}

// ListRecords fails as a whole when a record cannot be read: a reader that
// takes the highest generation must not silently miss one.
func (s *Server) ListRecords(ctx context.Context, req *pb.ListRecordsRequest) (*pb.ListRecordsResponse, error) {
	rs, err := s.Impl.ListRecords(ctx, req.GetUri())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ListRecordsResponse{Records: recordsToPB(rs)}, nil
}

func (s *Server) DeleteRecord(ctx context.Context, req *pb.DeleteRecordRequest) (*pb.Empty, error) {
	if err := s.Impl.DeleteRecord(ctx, req.GetUri(), req.GetKind(), req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	return &pb.Empty{}, nil
}
