// Command terraform-provider-virtpool is virtpool's Terraform provider
// (plugin protocol 6). Terraform starts it; run it with -debug to attach a
// debugger (Terraform then reattaches through TF_REATTACH_PROVIDERS).
package main

import (
	"context"
	"flag"
	"log"

	"github.com/hashicorp/terraform-plugin-framework/providerserver"

	"github.com/virtpool/virtpool/provider"
)

// version is set by the linker (-X main.version=…) in release builds.
var version = "dev"

func main() {
	debug := flag.Bool("debug", false, "run with support for debuggers like delve")
	flag.Parse()
	err := providerserver.Serve(context.Background(), provider.New(version), providerserver.ServeOpts{
		Address: provider.Address,
		Debug:   *debug,
	})
	// Serve returns when Terraform is done with the provider: stop the
	// driver process it started, cleanly, before exiting.
	provider.CloseDrivers()
	if err != nil {
		log.Fatal(err)
	}
}
