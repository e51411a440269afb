package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/virtpool/virtpool/driver"
	pb "github.com/virtpool/virtpool/driver/proto"
)

// Client is a driver.Driver that calls a driver plugin over gRPC.
type Client struct {
	rpc pb.DriverClient
}

var _ driver.Driver = (*Client)(nil)

// NewClient returns a driver.Driver calling the Driver service on cc.
func NewClient(cc grpc.ClientConnInterface) *Client {
	return &Client{rpc: pb.NewDriverClient(cc)}
}

func (c *Client) HostInfo(ctx context.Context, uri string) (driver.HostInfo, error) {
	r, err := c.rpc.HostInfo(ctx, &pb.HostInfoRequest{Uri: uri})
	if err != nil {
		return driver.HostInfo{}, fromStatus(ctx, err)
	}
	return hostInfoFromPB(r), nil
}

func (c *Client) ListDomains(ctx context.Context, uri string) ([]driver.Domain, error) {
	r, err := c.rpc.ListDomains(ctx, &pb.ListDomainsRequest{Uri: uri})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return domainsFromPB(r.GetDomains()), nil
}

func (c *Client) CreateDomain(ctx context.Context, uri string, spec driver.DomainSpec) (driver.Domain, error) {
	r, err := c.rpc.CreateDomain(ctx, &pb.CreateDomainRequest{Uri: uri, Spec: specToPB(spec)})
	if err != nil {
		return driver.Domain{}, fromStatus(ctx, err)
	}
	return domainFromPB(r), nil
}

func (c *Client) ShutdownDomain(ctx context.Context, uri, name string, timeout time.Duration) error {
	_, err := c.rpc.ShutdownDomain(ctx, &pb.ShutdownDomainRequest{Uri: uri, Name: name, TimeoutNs: durToPB(timeout)})
	return fromStatus(ctx, err)
}

func (c *Client) UndefineDomain(ctx context.Context, uri, name string, opts driver.UndefineOptions) error {
	_, err := c.rpc.UndefineDomain(ctx, &pb.UndefineDomainRequest{Uri: uri, Name: name, KeepStorage: opts.KeepStorage})
	return fromStatus(ctx, err)
}

func (c *Client) Stats(ctx context.Context, uri string) (driver.HostStats, error) {
	r, err := c.rpc.Stats(ctx, &pb.StatsRequest{Uri: uri})
	if err != nil {
		return driver.HostStats{}, fromStatus(ctx, err)
	}
	return hostStatsFromPB(r), nil
}

// Migrate calls progress (which may be nil) for each report, in order, on the
// calling goroutine. Cancelling ctx cancels the stream, and with it the
// driver's context.
func (c *Client) Migrate(ctx context.Context, req driver.MigrateRequest, progress func(driver.MigrateProgress)) (driver.MigrateResult, error) {
	// Returning early (result received, or an error) must release the stream.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Migrate(ctx, migrateRequestToPB(req))
	if err != nil {
		return driver.MigrateResult{}, fromStatus(ctx, err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return driver.MigrateResult{}, fmt.Errorf("driver plugin: migrate %s: stream ended without a result", req.Domain)
		}
		if err != nil {
			return driver.MigrateResult{}, fromStatus(ctx, err)
		}
		switch e := ev.GetEvent().(type) {
		case *pb.MigrateEvent_Progress:
			if progress != nil {
				progress(progressFromPB(e.Progress))
			}
		case *pb.MigrateEvent_Result:
			return resultFromPB(e.Result), nil
		}
	}
}

func (c *Client) AbortMigration(ctx context.Context, uri, name string) error {
	_, err := c.rpc.AbortMigration(ctx, &pb.AbortMigrationRequest{Uri: uri, Name: name})
	return fromStatus(ctx, err)
}

func (c *Client) CheckpointDomain(ctx context.Context, uri, name string, opts driver.CheckpointOptions) (driver.Checkpoint, error) {
	cp, err := c.rpc.CheckpointDomain(ctx, &pb.CheckpointDomainRequest{Uri: uri, Name: name, Path: opts.Path,
		MaxDowntimeNs: int64(opts.MaxDowntime), Compact: opts.Compact})
	if err != nil {
		return driver.Checkpoint{}, fromStatus(ctx, err)
	}
	return driver.Checkpoint{Elapsed: time.Duration(cp.GetElapsedNs()), Downtime: time.Duration(cp.GetDowntimeNs()),
		Bytes: cp.GetBytes()}, nil
}

func (c *Client) RestoreDomain(ctx context.Context, uri, path string) error {
	_, err := c.rpc.RestoreDomain(ctx, &pb.RestoreDomainRequest{Uri: uri, Path: path})
	return fromStatus(ctx, err)
}

func (c *Client) JobStats(ctx context.Context, uri, name string) (driver.Job, error) {
	j, err := c.rpc.JobStats(ctx, &pb.JobStatsRequest{Uri: uri, Name: name})
	if err != nil {
		return driver.Job{}, fromStatus(ctx, err)
	}
	return jobFromPB(j), nil
}

// Watch ends without an error when ctx does.
func (c *Client) Watch(ctx context.Context, uri string, fn func(driver.DomainEvent)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Watch(ctx, &pb.WatchRequest{Uri: uri})
	if err != nil {
		return fromStatus(ctx, err)
	}
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fromStatus(ctx, err)
		}
		fn(domainEventFromPB(e))
	}
}

func (c *Client) PutRecord(ctx context.Context, uri string, r driver.Record) error {
	_, err := c.rpc.PutRecord(ctx, &pb.PutRecordRequest{Uri: uri, Record: recordToPB(r)})
	return fromStatus(ctx, err)
}

func (c *Client) ListRecords(ctx context.Context, uri string) ([]driver.Record, error) {
	r, err := c.rpc.ListRecords(ctx, &pb.ListRecordsRequest{Uri: uri})
	if err != nil {
		return nil, fromStatus(ctx, err)
	}
	return recordsFromPB(r.GetRecords()), nil
}

func (c *Client) DeleteRecord(ctx context.Context, uri, kind, name string) error {
	_, err := c.rpc.DeleteRecord(ctx, &pb.DeleteRecordRequest{Uri: uri, Kind: kind, Name: name})
	return fromStatus(ctx, err)
}
