package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/checkpoint/ship"
	"github.com/virtpool/virtpool/pki"
)

// shipCmd runs 'virtpool ship serve' until interrupted: the per-host
// helper that sends checkpoint images to the standby host and receives
// those this host is standby for (package checkpoint/ship).
func shipCmd(ctx context.Context, log hclog.Logger, args []string) error {
	if len(args) == 0 || args[0] != "serve" {
		return fmt.Errorf("ship: want 'ship serve'\n%s", usage)
	}
	fs := newFlags("ship serve")
	cfg := ship.Config{}
	fs.StringVar(&cfg.Listen, "listen", ship.DefaultListen, "address to serve the agent and the other hosts' helpers on")
	fs.StringVar(&cfg.Dir, "dir", "", "this host's checkpoint directory: images to send must be under it; received ones go into DIR/standby")
	fs.StringVar(&cfg.Server.CA, "ca", pki.CACert, "the CA certificate that the agent's and the peers' client certificates must come from, and the peers' server certificates")
	fs.StringVar(&cfg.Server.Cert, "cert", pki.ServerCert, "the certificate to serve with (libvirtd's)")
	fs.StringVar(&cfg.Server.Key, "key", pki.ServerKey, "its private key")
	fs.StringVar(&cfg.Client.Cert, "client-cert", pki.ClientCert, "the client certificate to present to peers")
	fs.StringVar(&cfg.Client.Key, "client-key", pki.ClientKey, "its private key")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("ship serve: unexpected argument %q", fs.Arg(0))
	}
	if cfg.Dir == "" {
		return errors.New("ship serve: -dir DIR is required (this host's checkpoint directory)")
	}
	cfg.Client.CA = cfg.Server.CA
	return ship.Serve(ctx, cfg, log, nil)
}
