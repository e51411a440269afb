package provider

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/terraform-plugin-log/tflog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/scheduler"
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

// Located is a domain and the host it is on.
type Located struct {
	Host string
	driver.Domain
}

// listAll lists the domains of the given hosts (all hosts if nil).
func (c *Client) listAll(ctx context.Context, hosts []string) (map[string][]driver.Domain, error) {
	d, err := c.Driver(ctx)
	if err != nil {
		return nil, err
	}
	if hosts == nil {
		hosts = c.cfg.Hosts.Names()
	}
	var mu sync.Mutex
	out := make(map[string][]driver.Domain, len(hosts))
	err = eachHost(hosts, func(n string) error {
		h, err := c.cfg.Hosts.Lookup(n)
		if err != nil {
			return err
		}
		doms, err := d.ListDomains(ctx, h.URI)
		if err != nil {
			return fmt.Errorf("list guests of host %s: %w", n, err)
		}
		mu.Lock()
		out[n] = doms
		mu.Unlock()
		return nil
	})
	return out, err
}

// findDomain looks for a domain by name on every host. A running copy wins
// over a defined, stopped one (a leftover definition); running on two
// hosts is reported, never guessed about.
func (c *Client) findDomain(ctx context.Context, name string) (Located, bool, error) {
	all, err := c.listAll(ctx, nil)
	if err != nil {
		return Located{}, false, err
	}
	var found []Located
	for _, h := range c.cfg.Hosts.Names() {
		for _, d := range all[h] {
			if d.Name == name {
				found = append(found, Located{Host: h, Domain: d})
			}
		}
	}
	if len(found) == 0 {
		return Located{}, false, nil
	}
	sort.SliceStable(found, func(i, j int) bool {
		return found[i].State == driver.StateRunning && found[j].State != driver.StateRunning
	})
	if len(found) > 1 && found[1].State == driver.StateRunning {
		return Located{}, false, fmt.Errorf("domain %s runs on both %s and %s: resolve by hand before Terraform touches it",
			name, found[0].Host, found[1].Host)
	}
	return found[0], true, nil
}

// Member is one pool member where it runs.
type Member struct {
	Located
	Index int
}

// members returns a pool's members on every host, by index. Members are
// found by their labels, wherever they are, so a member the autoscaler
// moved is where Read says it is.
func (c *Client) members(ctx context.Context, pool string) ([]Member, error) {
	all, err := c.listAll(ctx, nil)
	if err != nil {
		return nil, err
	}
	var out []Member
	for _, h := range c.cfg.Hosts.Names() {
		for _, d := range all[h] {
			if d.Labels[labelPool] != pool || d.Labels[labelRole] != roleMember {
				continue
			}
			n, _ := strconv.Atoi(d.Labels[labelIndex])
			out = append(out, Member{Located: Located{Host: h, Domain: d}, Index: n})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Index != out[j].Index {
			return out[i].Index < out[j].Index
		}
		return out[i].Host < out[j].Host
	})
	return out, nil
}

// HostState is a host's virtpool state, kept in its host record.
type HostState struct {
	Maintenance bool
	Standby     bool
	Generation  int64
	Found       bool // a record exists
}

func (c *Client) hostState(ctx context.Context, name string) (HostState, error) {
	d, err := c.Driver(ctx)
	if err != nil {
		return HostState{}, err
	}
	h, err := c.cfg.Hosts.Lookup(name)
	if err != nil {
		return HostState{}, err
	}
	rs, err := d.ListRecords(ctx, h.URI)
	if err != nil {
		return HostState{}, fmt.Errorf("read state of host %s: %w", name, err)
	}
	for _, r := range rs {
		if r.Kind == driver.RecordHost && r.Name == name {
			return HostState{
				Maintenance: r.Data["maintenance"] == "true",
				Standby:     r.Data["standby"] == "true",
				Generation:  r.Generation,
				Found:       true,
			}, nil
		}
	}
	return HostState{}, nil
}

func (c *Client) putHostState(ctx context.Context, name string, s HostState) error {
	d, err := c.Driver(ctx)
	if err != nil {
		return err
	}
	h, err := c.cfg.Hosts.Lookup(name)
	if err != nil {
		return err
	}
	r := driver.Record{Kind: driver.RecordHost, Name: name, Generation: s.Generation,
		Data: map[string]string{"maintenance": strconv.FormatBool(s.Maintenance), "standby": strconv.FormatBool(s.Standby),
			recordKeyOwner: ownerTerraform}}
	if err := d.PutRecord(ctx, h.URI, r); err != nil {
		return fmt.Errorf("store state of host %s: %w", name, err)
	}
	return nil
}

// readPool finds a pool's record on the given hosts (every host if nil) and
// returns the highest generation: a write that reached only some hosts
// before it was interrupted is then still seen.
func (c *Client) readPool(ctx context.Context, name string, hosts []string) (PoolRecord, []string, bool, error) {
	d, err := c.Driver(ctx)
	if err != nil {
		return PoolRecord{}, nil, false, err
	}
	if hosts == nil {
		hosts = c.cfg.Hosts.Names()
	}
	var (
		mu    sync.Mutex
		best  *driver.Record
		where []string // hosts holding any generation of it
	)
	err = eachHost(hosts, func(n string) error {
		h, err := c.cfg.Hosts.Lookup(n)
		if err != nil {
			return err
		}
		rs, err := d.ListRecords(ctx, h.URI)
		if err != nil {
			return fmt.Errorf("read pool records of host %s: %w", n, err)
		}
		for _, r := range rs {
			if r.Kind == driver.RecordPool && r.Name == name {
				mu.Lock()
				where = append(where, n)
				if best == nil || r.Generation > best.Generation {
					best = &r
				}
				mu.Unlock()
			}
		}
		return nil
	})
	if err != nil {
		return PoolRecord{}, nil, false, err
	}
	sort.Strings(where)
	if best == nil {
		return PoolRecord{}, where, false, nil
	}
	pr, err := decodePoolRecord(*best)
	return pr, where, err == nil, err
}

// writePool stores a pool record, one generation up from the highest seen,
// on every host of the pool, and removes it from hosts that held it but are
// no longer the pool's (stale).
func (c *Client) writePool(ctx context.Context, pr PoolRecord, stale []string) (PoolRecord, error) {
	d, err := c.Driver(ctx)
	if err != nil {
		return pr, err
	}
	old, where, _, err := c.readPool(ctx, pr.Spec.Name, nil)
	if err != nil {
		return pr, err
	}
	pr.Generation = max(pr.Generation, old.Generation) + 1
	r, err := encodePoolRecord(pr)
	if err != nil {
		return pr, err
	}
	keep := map[string]bool{}
	for _, h := range pr.Spec.Hosts {
		keep[h.Name] = true
	}
	err = eachHost(pr.Spec.HostNames(), func(n string) error {
		h, err := c.cfg.Hosts.Lookup(n)
		if err != nil {
			return err
		}
		if err := d.PutRecord(ctx, h.URI, r); err != nil {
			return fmt.Errorf("store pool %s on host %s: %w", pr.Spec.Name, n, err)
		}
		return nil
	})
	if err != nil {
		return pr, err
	}
	var drop []string
	for _, n := range append(where, stale...) {
		if !keep[n] {
			drop = append(drop, n)
		}
	}
	tflog.Debug(ctx, "pool record stored", map[string]any{"pool": pr.Spec.Name, "generation": pr.Generation,
		"hosts": pr.Spec.HostNames(), "removed_from": drop})
	return pr, c.deletePoolRecord(ctx, pr.Spec.Name, drop)
}

// deletePoolRecord removes a pool's record from the given hosts.
func (c *Client) deletePoolRecord(ctx context.Context, name string, hosts []string) error {
	d, err := c.Driver(ctx)
	if err != nil {
		return err
	}
	return eachHost(dedupe(hosts), func(n string) error {
		h, err := c.cfg.Hosts.Lookup(n)
		if err != nil {
			return err
		}
		if err := d.DeleteRecord(ctx, h.URI, driver.RecordPool, name); err != nil {
			return fmt.Errorf("remove pool %s from host %s: %w", name, n, err)
		}
		return nil
	})
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range s {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// removeGuest stops a guest (gracefully, up to the shutdown timeout) and
// removes its definition and overlay. Both steps are no-ops on a guest that
// is already gone, so an interrupted removal is simply retried.
func (c *Client) removeGuest(ctx context.Context, host, name string) error {
	d, err := c.Driver(ctx)
	if err != nil {
		return err
	}
	h, err := c.cfg.Hosts.Lookup(host)
	if err != nil {
		return err
	}
	tflog.Info(ctx, "stopping guest", map[string]any{"domain": name, "host": host, "timeout": c.cfg.ShutdownTimeout.String()})
	if err := d.ShutdownDomain(ctx, h.URI, name, c.cfg.ShutdownTimeout); err != nil {
		return fmt.Errorf("stop %s on host %s: %w", name, host, err)
	}
	if err := d.UndefineDomain(ctx, h.URI, name); err != nil {
		return fmt.Errorf("remove %s from host %s: %w", name, host, err)
	}
	return nil
}

// migrate live-migrates a guest between two inventory hosts, logging
// progress. Cancelling ctx (Terraform's timeout or interrupt) aborts it;
// libvirt then leaves the guest running on the source, never on both.
func (c *Client) migrate(ctx context.Context, name, from, to string, o driver.MigrateOptions) (driver.MigrateResult, error) {
	d, err := c.Driver(ctx)
	if err != nil {
		return driver.MigrateResult{}, err
	}
	src, err := c.cfg.Hosts.Lookup(from)
	if err != nil {
		return driver.MigrateResult{}, err
	}
	dst, err := c.cfg.Hosts.Lookup(to)
	if err != nil {
		return driver.MigrateResult{}, err
	}
	req := driver.MigrateRequest{Domain: name, SourceURI: src.URI, DestURI: dst.URI,
		DestPeerURI: dst.PeerURI, MigrationURI: dst.MigrationURI, Options: o}
	fields := map[string]any{"domain": name, "from": from, "to": to}
	tflog.Info(ctx, "live migration starting", fields)
	last := time.Time{}
	res, err := d.Migrate(ctx, req, func(p driver.MigrateProgress) {
		if time.Since(last) < time.Second {
			return
		}
		last = time.Now()
		pct := 0.0
		if p.DataTotal > 0 {
			pct = 100 * float64(p.DataProcessed) / float64(p.DataTotal)
		}
		tflog.Info(ctx, "live migration progress", map[string]any{"domain": name, "from": from, "to": to,
			"elapsed": p.Elapsed.String(), "percent": fmt.Sprintf("%.0f", pct), "remaining_bytes": p.DataRemaining,
			"postcopy": p.PostCopy})
	})
	if err != nil {
		return res, fmt.Errorf("live-migrate %s from %s to %s: %w", name, from, to, err)
	}
	tflog.Info(ctx, "live migration done", map[string]any{"domain": name, "from": from, "to": to,
		"elapsed": res.Elapsed.String(), "downtime": res.Downtime.String(), "bytes": res.Bytes})
	return res, nil
}

// clusterView is the planner's input built from the hosts, and what the
// provider needs to act on its decisions.
type clusterView struct {
	scheduler.Cluster
	// guests by scheduler name: where and what each is.
	guests map[string]Located
}

// cluster builds the planner's view of every host: capacity from the host,
// state from its host record, guests (running or paused) from libvirt.
// Hosts outside allowed (nil: all) are shown in maintenance so that no
// decision puts anything there.
func (c *Client) cluster(ctx context.Context, allowed map[string]bool) (*clusterView, error) {
	d, err := c.Driver(ctx)
	if err != nil {
		return nil, err
	}
	names := c.cfg.Hosts.Names()
	hosts := make([]scheduler.Host, len(names))
	doms := make([][]driver.Domain, len(names))
	idx := map[string]int{}
	for i, n := range names {
		idx[n] = i
	}
	err = eachHost(names, func(n string) error {
		i := idx[n]
		h := c.cfg.Hosts[n]
		hi, err := d.HostInfo(ctx, h.URI)
		if err != nil {
			return fmt.Errorf("host %s: %w", n, err)
		}
		st, err := c.hostState(ctx, n)
		if err != nil {
			return err
		}
		sh := scheduler.Host{Name: n, Cores: float64(hi.CPUs), MemoryBytes: int64(hi.MemoryBytes), State: scheduler.Active}
		switch {
		case st.Maintenance || (allowed != nil && !allowed[n]):
			sh.State = scheduler.Maintenance
		case st.Standby:
			sh.State = scheduler.Standby
		}
		hosts[i] = sh
		if doms[i], err = d.ListDomains(ctx, h.URI); err != nil {
			return fmt.Errorf("list guests of host %s: %w", n, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	v := &clusterView{Cluster: scheduler.Cluster{Hosts: hosts}, guests: map[string]Located{}}
	for i, n := range names {
		for _, dd := range doms[i] {
			if dd.State == driver.StateShutoff || dd.State == driver.StateCrashed {
				continue // takes no resources
			}
			key := dd.Name
			if _, dup := v.guests[key]; dup {
				key = dd.Name + "@" + n // same name on two hosts: different guests
			}
			v.guests[key] = Located{Host: n, Domain: dd}
			v.Guests = append(v.Guests, scheduler.Guest{
				Name: key, VCPUs: dd.VCPUs, MemoryBytes: int64(dd.MemoryMiB) << 20,
				Pool: dd.Labels[labelPool], AntiAffinity: dd.Labels[labelAntiAffinity], Host: n,
			})
		}
	}
	return v, nil
}

func msDuration(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }
