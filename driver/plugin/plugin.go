// Package plugin runs a driver.Driver in its own process behind
// hashicorp/go-plugin over gRPC, so that a libvirt crash or hang never takes
// its caller down. The plugin binary calls Serve; virtpool calls Start and
// uses Process.Driver like any other driver.Driver. Errors keep their
// *driver.Error form (and libvirt code) across the process boundary.
package plugin

import (
	"context"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/virtpool/virtpool/driver"
	pb "github.com/virtpool/virtpool/driver/proto"
)

// Handshake makes sure that virtpool only talks to a virtpool driver plugin
// of the same protocol, and that the plugin binary refuses to run by hand.
// Bump ProtocolVersion on any incompatible change of driver.proto.
var Handshake = plugin.HandshakeConfig{
	// 2: records (PutRecord, ListRecords, DeleteRecord); 3: CheckpointDomain,
	// RestoreDomain; 4: UndefineDomain's keep_storage and DomainSpec's
	// reuse_overlay (a driver of 3 would ignore them: delete a disk another
	// copy of the guest uses, refuse to restart a guest on its own disk).
	ProtocolVersion:  4,
	MagicCookieKey:   "VIRTPOOL_DRIVER_PLUGIN",
	MagicCookieValue: "5d1f0b3e-virtpool-driver",
}

// PluginName is the name the driver is served and dispensed under.
const PluginName = "driver"

// GRPCPlugin is the go-plugin glue for driver.Driver. Impl is only needed on
// the plugin side.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	Impl driver.Driver
}

var _ plugin.GRPCPlugin = (*GRPCPlugin)(nil)

// GRPCServer registers Impl's gRPC adapter on s.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterDriverServer(s, &Server{Impl: p.Impl})
	return nil
}

// GRPCClient returns a driver.Driver (a *Client) calling the plugin on c.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return NewClient(c), nil
}
