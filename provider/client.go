package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/pool"
)

// Config is the provider's configuration, resolved.
type Config struct {
	Hosts                 Inventory
	DriverPath            string // "" = beside the provider binary, then $PATH
	ShutdownTimeout       time.Duration
	DefaultTimeout        time.Duration
	MigrationBandwidthMiB int64
	MigrationMaxDowntime  time.Duration
}

// Client is what resources and data sources get from Configure: the
// inventory and a driver. The driver process starts on first use, so that
// validating or planning a configuration that needs no host never starts it.
type Client struct {
	cfg Config
}

// The driver processes of this provider process, by binary path. Terraform
// configures a provider many times in one process (and tests run many
// providers in one process); they all share one driver process, which
// CloseDrivers stops when the provider process ends.
var drivers struct {
	sync.Mutex
	procs map[string]*plugin.Process
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
	drivers.Lock()
	defer drivers.Unlock()
	if p := drivers.procs[path]; p != nil {
		if !p.Exited() {
			return p.Driver, nil
		}
		tflog.Warn(ctx, "driver process exited; starting it again", map[string]any{"path": path})
		p.Close()
	}
	tflog.Debug(ctx, "starting driver process", map[string]any{"path": path})
	p, err := plugin.Start(path, driverLogger())
	if err != nil {
		return nil, err
	}
	if drivers.procs == nil {
		drivers.procs = map[string]*plugin.Process{}
	}
	drivers.procs[path] = p
	return p.Driver, nil
}

// CloseDrivers stops every driver process this provider process started.
func CloseDrivers() {
	drivers.Lock()
	defer drivers.Unlock()
	for path, p := range drivers.procs {
		p.Close()
		delete(drivers.procs, path)
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

// eachHost runs fn for every named host in parallel and joins the errors.
func eachHost(names []string, fn func(name string) error) error {
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ops returns the shared pool operations (package pool) over the
// provider's hosts and driver, logging to Terraform's log through ctx.
func (c *Client) ops(ctx context.Context) *pool.Ops {
	return &pool.Ops{Hosts: c.cfg.Hosts, Driver: c.Driver, Log: tfLogger(ctx), ShutdownTimeout: c.cfg.ShutdownTimeout,
		Migration: c.migrationDefaults()}
}

// Located is a domain and the host it is on.
type Located = pool.Located

// listAll lists the domains of the given hosts (all hosts if nil).
func (c *Client) listAll(ctx context.Context, hosts []string) (map[string][]driver.Domain, error) {
	return c.ops(ctx).ListAll(ctx, hosts)
}

// findDomain looks for a domain by name on every host. A running copy wins
// over a defined, stopped one (a leftover definition); running on two
// hosts is reported, never guessed about.
func (c *Client) findDomain(ctx context.Context, name string) (Located, bool, error) {
	return c.ops(ctx).FindDomain(ctx, name)
}

// Member is one pool member where it runs.
type Member = pool.Member

// members returns a pool's members on every host, by index. Members are
// found by their labels, wherever they are, so a member the autoscaler
// moved is where Read says it is.
func (c *Client) members(ctx context.Context, name string) ([]Member, error) {
	return c.ops(ctx).Members(ctx, name)
}

// HostState is a host's virtpool state, kept in its host record.
type HostState = pool.HostState

func (c *Client) hostState(ctx context.Context, name string) (HostState, error) {
	return c.ops(ctx).HostState(ctx, name)
}

func (c *Client) putHostState(ctx context.Context, name string, s HostState) error {
	return c.ops(ctx).PutHostState(ctx, name, s)
}

// readPool finds a pool's record on every host and returns the highest
// generation: a write that reached only some hosts before it was
// interrupted is then still seen.
func (c *Client) readPool(ctx context.Context, name string) (PoolRecord, []string, bool, error) {
	return c.ops(ctx).ReadPool(ctx, name, nil)
}

// writePool stores a pool record, one generation up from the highest seen,
// on every host of the pool, and removes it from hosts that held it but are
// no longer the pool's (stale).
func (c *Client) writePool(ctx context.Context, pr PoolRecord, stale []string) (PoolRecord, error) {
	return c.ops(ctx).WritePool(ctx, pr, stale)
}

// deletePoolRecord removes a pool's record from the given hosts.
func (c *Client) deletePoolRecord(ctx context.Context, name string, hosts []string) error {
	return c.ops(ctx).DeletePoolRecord(ctx, name, hosts)
}

// removeGuest stops a guest (gracefully, up to the shutdown timeout) and
// removes its definition and overlay. Both steps are no-ops on a guest that
// is already gone, so an interrupted removal is simply retried.
func (c *Client) removeGuest(ctx context.Context, host, name string) error {
	return c.ops(ctx).RemoveGuest(ctx, host, name)
}

// migrate live-migrates a guest between two inventory hosts, logging
// progress. Cancelling ctx (Terraform's timeout or interrupt) aborts it;
// libvirt then leaves the guest running on the source, never on both.
func (c *Client) migrate(ctx context.Context, name, from, to string, o driver.MigrateOptions) (driver.MigrateResult, error) {
	return c.ops(ctx).Migrate(ctx, name, from, to, o)
}

// cluster builds the planner's view of every host: capacity from the host,
// state from its host record, guests (running or paused) from libvirt.
// Hosts outside allowed (nil: all) are shown in maintenance so that no
// decision puts anything there.
func (c *Client) cluster(ctx context.Context, allowed map[string]bool) (*pool.View, error) {
	return c.ops(ctx).View(ctx, allowed)
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
