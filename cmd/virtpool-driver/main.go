// Command virtpool-driver is virtpool's hypervisor driver: a go-plugin
// process serving driver.Driver on libvirt. It is started by the provider,
// the autoscaler plugins and the tools; it is not meant to be run by hand.
package main

import (
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/driver/virt"
)

func main() {
	// go-plugin forwards this stderr logger's JSON lines to the host's logger.
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "virtpool-driver",
		Level:      hclog.LevelFromString(os.Getenv("VIRTPOOL_LOG")),
		JSONFormat: true,
		Output:     os.Stderr,
	})
	creds, err := driver.CredentialsFromEnv()
	if err != nil {
		log.Error("cannot start", "error", err)
		os.Exit(1)
	}
	d := virt.New(log.Named("libvirt"))
	d.SetCredentials(creds)
	plugin.Serve(d, log)
	d.Close()
}
