// Command virtpool runs virtpool's agent, the per-host checkpoint helper,
// its local lab and its demo.
//
//	virtpool agent -config FILE
//	virtpool ship serve -dir DIR [-listen ADDR] [-ca FILE -cert FILE -key FILE -client-cert FILE -client-key FILE]
//	virtpool lab up [--hosts N] [--guest-dir DIR]
//	virtpool lab status
//	virtpool lab down
//	virtpool lab crash|fence|partition|heal|start HOST
//	virtpool demo [--hosts N] [--keep]
//	virtpool story [--keep] [--dir DIR] [--phase D]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

func main() {
	log := hclog.New(&hclog.LoggerOptions{Name: "virtpool", Level: hclog.LevelFromString(envOr("VIRTPOOL_LOG", "info"))})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, log, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "virtpool:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

const usage = `usage:
  virtpool agent -config FILE                     sample the hosts, serve the live page, API and /metrics
  virtpool ship serve -dir DIR [-listen ADDR]     on each host: send checkpoint images to standby hosts and receive them, over
                                                  mutual TLS with libvirt's certificates (-ca, -cert, -key, -client-cert, -client-key)
  virtpool lab up [--hosts N] [--guest-dir DIR]   bring the local lab up (idempotent)
  virtpool lab status                             show the lab's hosts and guests
  virtpool lab down                               remove everything the lab made
  virtpool lab crash HOST                         kill everything the host runs at once (SIGKILL), guests too
  virtpool lab fence HOST                         power the host off: then nothing of it runs, whatever its state
  virtpool lab partition HOST                     cut the host off (switch port down, libvirtd stopped); its guests run on
  virtpool lab heal HOST                          undo partition
  virtpool lab start HOST                         power the host on again after crash or fence
  virtpool demo [--hosts N] [--keep]              live-migrate a streaming guest A→B→A
  virtpool story [--keep] [--dir DIR] [--phase D] terraform + the Nomad Autoscaler drive a pool as its load goes up and down`

func run(ctx context.Context, log hclog.Logger, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	switch args[0] {
	case "lab":
		if len(args) < 2 {
			return fmt.Errorf("lab: missing subcommand\n%s", usage)
		}
		return labCmd(ctx, log.Named("lab"), args[1], args[2:])
	case "agent":
		return agentCmd(ctx, log.Named("agent"), args[1:])
	case "ship":
		return shipCmd(ctx, log.Named("ship"), args[1:])
	case "demo":
		return demoCmd(ctx, log, args[1:])
	case "story":
		return storyCmd(ctx, log, args[1:])
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	return fs
}
