package provider

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/pool"
)

// Config is the provider's configuration, resolved.
type Config struct {
	Hosts           pool.Inventory
	DriverPath      string // "" = beside the provider binary, then $PATH
	ShutdownTimeout time.Duration
	DefaultTimeout  time.Duration
	// Migration holds the live-migration settings of guests whose pool
	// has no migration policy saying otherwise.
	Migration driver.MigrateOptions
	// Credentials are the hosts' logins by URI (username, password).
	Credentials map[string]driver.Credential
}

// Client is what resources and data sources get from Configure: the
// inventory and a driver. The driver process starts on first use, so that
// validating or planning a configuration that needs no host never starts it.
type Client struct {
	cfg Config
}

// The driver processes of this provider process, by binary path and logins. Terraform
// configures a provider many times in one process (and tests run many
// providers in one process); they all share one driver process, which
// CloseDrivers stops when the provider process ends.
var drivers struct {
	sync.Mutex
	sups map[string]*plugin.Supervisor
}

// driverLogger is where the driver process's log lines go: the provider's
// stderr, which Terraform shows with TF_LOG.
func driverLogger() hclog.Logger {
	lvl := os.Getenv("VIRTPOOL_LOG")
	if lvl == "" {
		lvl = "warn"
	}
	return hclog.New(&hclog.LoggerOptions{Name: "virtpool", Level: hclog.LevelFromString(lvl), Output: os.Stderr})
}

// Driver returns the driver, starting its process if needed (or again, if
// it died).
func (c *Client) Driver(ctx context.Context) (driver.Driver, error) {
	path, err := plugin.FindBinary(c.cfg.DriverPath)
	if err != nil {
		return nil, fmt.Errorf("driver_path: %w", err)
	}
	env, err := driver.CredentialsEnvEntry(c.cfg.Credentials)
	if err != nil {
		return nil, err
	}
	return supervisor(path, env).Driver(ctx)
}

// supervisor returns the supervisor of the driver binary at path started
// with env (the logins it answers hosts with). It is kept after
// CloseDrivers, so that a process a late call starts is still one
// CloseDrivers stops.
func supervisor(path, env string) *plugin.Supervisor {
	drivers.Lock()
	defer drivers.Unlock()
	// One process per binary and logins: configurations with other
	// logins (provider aliases) get their own.
	key := path + "\x00" + env
	s := drivers.sups[key]
	if s == nil {
		s = plugin.NewSupervisor(path, driverLogger(), env)
		if drivers.sups == nil {
			drivers.sups = map[string]*plugin.Supervisor{}
		}
		drivers.sups[key] = s
	}
	return s
}

// CloseDrivers stops every driver process this provider process started.
func CloseDrivers() {
	drivers.Lock()
	defer drivers.Unlock()
	for _, s := range drivers.sups {
		s.Close()
	}
}

// poolLocks serialise read-modify-write of one pool's record within this
// process (a pool and its policy may be applied at the same time).
var poolLocks sync.Map // name → *sync.Mutex

func lockPool(name string) func() {
	m, _ := poolLocks.LoadOrStore(name, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

// ops returns the shared pool operations (package pool) over the
// provider's hosts and driver, logging to Terraform's log through ctx.
func (c *Client) ops(ctx context.Context) *pool.Ops {
	return &pool.Ops{Hosts: c.cfg.Hosts, Driver: c.Driver, Log: tfLogger(ctx), ShutdownTimeout: c.cfg.ShutdownTimeout,
		Migration: c.migrationDefaults()}
}

// migrationDefaults are the provider's live-migration settings, which a
// pool's migration policy overrides (pool.MigrateOptions).
func (c *Client) migrationDefaults() driver.MigrateOptions {
	return c.cfg.Migration
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
