package main

import (
	"context"
	"errors"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/agent"
)

// agentCmd runs 'virtpool agent -config FILE' until interrupted.
func agentCmd(ctx context.Context, log hclog.Logger, args []string) error {
	fs := newFlags("agent")
	path := fs.String("config", "", "the agent's configuration file (HCL, see examples/agent/agent.hcl)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("agent: -config FILE is required (see examples/agent/agent.hcl)")
	}
	cfg, err := agent.LoadConfig(*path)
	if err != nil {
		return err
	}
	return agent.Serve(ctx, cfg, log, nil)
}
