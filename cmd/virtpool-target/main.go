// Command virtpool-target is the Nomad Autoscaler target plugin of
// virtpool: it scales pools and live-migrates their members. Put it in the
// agent's plugin_dir; see nomad-autoscaler-plugin/target and
// examples/autoscaler.
package main

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/plugins"

	"github.com/virtpool/virtpool/nomad-autoscaler-plugin/target"
)

func main() {
	plugins.Serve(func(log hclog.Logger) any { return target.New(log) })
}
