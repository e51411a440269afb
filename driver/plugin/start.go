package plugin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/virtpool/virtpool/driver"
)

// BinaryName is the driver plugin's executable, looked for by FindBinary.
const BinaryName = "virtpool-driver"

// Process is a running driver plugin.
type Process struct {
	// Driver calls the plugin. Once the process is gone its calls fail
	// (with a gRPC Unavailable error) rather than hang.
	Driver driver.Driver

	client *plugin.Client
	pid    int
}

// Start launches the driver plugin binary at path and connects to it over
// gRPC with mutual TLS, with env (KEY=value) added to its environment.
// The plugin's log lines go to logger.Named("driver").
// The caller must Close the Process.
func Start(path string, logger hclog.Logger, env ...string) (*Process, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cmd := exec.Command(path)
	// After this process's environment, so that env wins (go-plugin would
	// put the environment after it).
	cmd.Env = os.Environ()
	for _, e := range env {
		if e != "" { // "" adds nothing (CredentialsEnvEntry without logins)
			cmd.Env = append(cmd.Env, e)
		}
	}
	c := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          plugin.PluginSet{PluginName: &GRPCPlugin{}},
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		// Not managed: the Process's owner decides when it ends, and no
		// global plugin.CleanupClients is needed.
		Managed: false,
		Logger:  logger.Named("driver"),
	})
	rpc, err := c.Client()
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("start driver plugin %s: %w", path, err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		c.Kill()
		return nil, fmt.Errorf("driver plugin %s: dispense: %w", path, err)
	}
	d, ok := raw.(driver.Driver)
	if !ok {
		c.Kill()
		return nil, fmt.Errorf("driver plugin %s: dispensed %T, not a driver.Driver", path, raw)
	}
	p := &Process{Driver: d, client: c}
	// Kept now: the reattach config is gone once the process has exited,
	// and fault-injecting tests need the pid of the process they killed.
	if rc := c.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	return p, nil
}

// Pid is the plugin process's id (0 if unknown).
func (p *Process) Pid() int { return p.pid }

// Exited reports whether the plugin process has exited (or been killed).
func (p *Process) Exited() bool { return p.client.Exited() }

// Close ends the plugin process: gracefully if it answers, killed after a
// couple of seconds otherwise. It waits for the process to exit and may be
// called more than once.
func (p *Process) Close() { p.client.Kill() }

// FindBinary returns the driver plugin to run: explicit if not empty,
// else BinaryName beside the current executable, else BinaryName in $PATH.
func FindBinary(explicit string) (string, error) {
	if explicit != "" {
		if err := isExecutable(explicit); err != nil {
			return "", fmt.Errorf("driver plugin: %w", err)
		}
		return explicit, nil
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), BinaryName)
		if isExecutable(p) == nil {
			return p, nil
		}
		tried = append(tried, p)
	} else {
		tried = append(tried, fmt.Sprintf("beside the executable (%v)", err))
	}
	if p, err := exec.LookPath(BinaryName); err == nil {
		return p, nil
	}
	tried = append(tried, fmt.Sprintf("$PATH (%s)", os.Getenv("PATH")))
	return "", fmt.Errorf("driver plugin %s not found; tried %s", BinaryName, strings.Join(tried, ", "))
}

// isExecutable says why path cannot be run as the plugin, or nil.
func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
