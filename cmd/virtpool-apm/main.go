// Command virtpool-apm is the Nomad Autoscaler APM plugin of virtpool: the
// load of virtpool hosts, pools and guests. Put it in the agent's
// plugin_dir; see nomad-autoscaler-plugin/apm and examples/autoscaler.
package main

import (
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/plugins"

	"github.com/virtpool/virtpool/nomad-autoscaler-plugin/apm"
)

func main() {
	plugins.Serve(func(log hclog.Logger) any { return apm.New(log) })
}
