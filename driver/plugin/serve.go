package plugin

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/virtpool/virtpool/driver"
)

// Serve serves impl as the driver plugin; it is the whole main of the plugin
// binary and returns when virtpool closes the connection. logger should
// write JSON to stderr so that virtpool can re-emit the plugin's log lines.
func Serve(impl driver.Driver, logger hclog.Logger) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}},
		GRPCServer:      plugin.DefaultGRPCServer,
		Logger:          logger,
	})
}
