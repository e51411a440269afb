// Package nomadserver runs a Nomad server for the lab's pool members to
// join: a real `nomad agent` (server only, one voter) inside the lab's
// client namespace, bound to the client's address on the lab segment,
// where the Nomad clients in the members reach it. This process, and the
// autoscaler agent it starts, reach its HTTP API through a lab.Forward on
// loopback. Nothing of it listens anywhere else.
package nomadserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	nomad "github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/lab"
	"github.com/virtpool/virtpool/lab/autoscaler"
)

// Nomad's default ports, free in the client namespace (the lab's own).
const (
	HTTPPort = 4646
	RPCPort  = 4647
	SerfPort = 4648
)

// Config says which Nomad to run and where it keeps its state.
type Config struct {
	Bin string   // the nomad binary
	Dir string   // its configuration, data directory and log (made if missing)
	Lab *lab.Lab // whose client namespace it runs in
	Log hclog.Logger
}

// Server is a running Nomad server.
type Server struct {
	// RPC is what a client's `servers` names (virtpool.nomad= on a member's
	// command line).
	RPC string
	// Addr is its HTTP API from this namespace, for NOMAD_ADDR or the
	// autoscaler's nomad block.
	Addr string
	API  *nomad.Client
	Log  string // its log file

	proc *autoscaler.Agent
	fwd  *lab.Forward
}

// config: server only, its Consul integration pointed at a socket nothing
// listens on (Nomad 1.6 cannot turn it off) and the update check off, so
// that it sends nothing off the lab segment.
const config = `
bind_addr            = %[1]q
data_dir             = %[2]q
disable_update_check = true
log_level            = "INFO"

server {
  enabled          = true
  bootstrap_expect = 1
}

client {
  enabled = false
}

consul {
  address          = "unix://%[3]s"
  auto_advertise   = false
  server_auto_join = false
  client_auto_join = false
}
`

// Start runs the server and returns once it has elected itself leader.
func Start(ctx context.Context, c Config) (*Server, error) {
	if c.Log == nil {
		c.Log = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("nomad server: %w", err)
	}
	ip := c.Lab.ClientIP
	cfg := filepath.Join(c.Dir, "server.hcl")
	body := fmt.Sprintf(config, ip, filepath.Join(c.Dir, "data"), filepath.Join(c.Dir, "no-consul.sock"))
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("nomad server: %w", err)
	}
	s := &Server{RPC: net.JoinHostPort(ip, strconv.Itoa(RPCPort)), Log: filepath.Join(c.Dir, "nomad.log")}
	var err error
	s.proc, err = autoscaler.Start(autoscaler.Config{Bin: "ip", Args: []string{"netns", "exec", c.Lab.ClientNamespace, c.Bin, "agent", "-config", cfg},
		Dir: c.Dir, Env: env(), LogFile: s.Log, Grace: 15 * time.Second, Log: c.Log})
	if err != nil {
		return nil, fmt.Errorf("nomad server: %w", err)
	}
	if s.fwd, err = lab.NewForward(c.Lab.ClientNamespace, net.JoinHostPort(ip, strconv.Itoa(HTTPPort))); err != nil {
		s.Stop()
		return nil, fmt.Errorf("nomad server: %w", err)
	}
	s.Addr = "http://" + s.fwd.Addr
	if s.API, err = nomad.NewClient(&nomad.Config{Address: s.Addr}); err != nil {
		s.Stop()
		return nil, fmt.Errorf("nomad server: %w", err)
	}
	if err := s.waitLeader(ctx); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

// waitLeader waits for the server to lead its one-server cluster.
func (s *Server) waitLeader(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		leader, err := s.API.Status().Leader()
		if err == nil && leader != "" {
			return nil
		}
		if err == nil {
			err = errors.New("no leader elected yet")
		}
		last = err
		select {
		case <-s.proc.Done():
			return fmt.Errorf("nomad server exited: %w; its last lines:\n%s", s.proc.Err(), s.Tail(20))
		case <-ctx.Done():
			return fmt.Errorf("nomad server: no leader: %w (last answer: %w)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// Tail is the last n lines of its output.
func (s *Server) Tail(n int) string { return s.proc.Tail(n) }

// Stop ends the server (SIGINT, then its process group is killed) and
// the forward.
func (s *Server) Stop() {
	if s.fwd != nil {
		_ = s.fwd.Close()
	}
	s.proc.Stop()
}

// env is this process's environment less any NOMAD_* setting, which
// would send the agent elsewhere.
func env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NOMAD_") {
			env = append(env, kv)
		}
	}
	return env
}
