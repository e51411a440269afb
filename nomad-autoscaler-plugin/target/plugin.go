// Package target is virtpool-target, a Nomad Autoscaler target plugin that
// scales virtpool pools and live-migrates their members. A policy's target
// names a pool and one dimension:
//
//   - size: the pool's member count. Scale adds members (placed by the
//     scheduler) or removes them (victims chosen by the scheduler, after
//     draining the Nomad client in each if node_drain is set).
//   - hosts: how many of the pool's hosts are in use. Scale consolidates
//     onto fewer hosts by live migration and marks the freed hosts standby,
//     or brings standby hosts back and spreads onto them (DPM-like).
//   - hot_hosts: how many of the pool's hosts are above the high watermark
//     of the pool's migration policy. Scale to 0 (strategy fixed-value)
//     moves members until no host is hot (DRS-like).
//
// Without a pool, hosts and hot_hosts act on the whole cluster: every host
// the plugin knows, and the members of every pool (each migrated with its
// own pool's options; other guests count for load and stay put), under a
// migration policy given in the target block with the keys of
// virtpool_migration_policy (cpu_high, target_utilisation, …).
//
// Status reports Ready=false while a scale action or a migration is in
// flight, so the agent waits. Every action re-reads the hosts and is safe to
// repeat: an action cut short (the driver process killed, a host down) is
// finished by the next evaluation, and no guest is lost or runs on two
// hosts.
package target

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/plugins/base"
	"github.com/hashicorp/nomad-autoscaler/plugins/target"
	"github.com/hashicorp/nomad-autoscaler/sdk"
	nomadhelper "github.com/hashicorp/nomad-autoscaler/sdk/helper/nomad"
	"github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/nomad-autoscaler-plugin/internal/fleet"
	"github.com/virtpool/virtpool/pool"
)

const (
	// PluginName is the plugin's name: the agent's target block must use
	// it as driver, and the binary in plugin_dir must have it as file name.
	PluginName = "virtpool-target"

	// Configuration keys of the agent's target "config" block, besides
	// the common ones of package fleet.
	//
	// configKeyLoadWindow: guests' CPU demand is averaged over this window
	// to decide which hosts are hot and to plan moves.
	configKeyLoadWindow = "load_window"
	// configKeyShutdownTimeout: how long a removed member may take to
	// power off before it is destroyed.
	configKeyShutdownTimeout = "shutdown_timeout"
	// configKeyBandwidth and configKeyMaxDowntime: migration defaults
	// where the pool's migration policy sets none.
	configKeyBandwidth   = "migration_bandwidth_mib"
	configKeyMaxDowntime = "migration_max_downtime"
	// configKeyScaleTimeout bounds one Scale call.
	configKeyScaleTimeout = "scale_timeout"

	// Keys of a policy's target block.
	policyKeyPool      = "pool"
	policyKeyDimension = "dimension"
	policyKeyDryRun    = "dry-run" // read by the agent: Scale gets count -1
	// policyKeyNodeDrain: drain the Nomad client running in a member
	// (node name = member name) before removing it.
	policyKeyNodeDrain        = "node_drain"
	policyKeyDrainDeadline    = sdk.TargetConfigKeyDrainDeadline
	policyKeyDrainIgnoreSys   = sdk.TargetConfigKeyIgnoreSystemJobs
	policyKeyAgentGRPCTimeout = "_nomad_autoscaler_grpc_timeout"
	// Keys of a cluster policy's target block (no pool): its migration
	// policy, named as in virtpool_migration_policy.
	policyKeyCPULow        = "cpu_low"
	policyKeyCPUHigh       = "cpu_high"
	policyKeyMemoryLow     = "memory_low"
	policyKeyMemoryHigh    = "memory_high"
	policyKeyTarget        = "target_utilisation"
	policyKeyMaxMigrations = "max_migrations_per_round"
	policyKeyMaxParallel   = "max_parallel_migrations"

	// Dimensions.
	DimensionSize     = "size"
	DimensionHosts    = "hosts"
	DimensionHotHosts = "hot_hosts"
)

// Defaults.
const (
	defaultLoadWindow      = time.Minute
	defaultShutdownTimeout = 30 * time.Second
	defaultScaleTimeout    = 15 * time.Minute
	defaultDrainDeadline   = 5 * time.Minute
	defaultStatusTimeout   = 10 * time.Second
)

var (
	pluginInfo = &base.PluginInfo{Name: PluginName, PluginType: sdk.PluginTypeTarget}
	configKeys = []string{configKeyLoadWindow, configKeyShutdownTimeout, configKeyBandwidth, configKeyMaxDowntime, configKeyScaleTimeout,
		"nomad_config_inherit"}
	clusterKeys = []string{policyKeyCPULow, policyKeyCPUHigh, policyKeyMemoryLow, policyKeyMemoryHigh, policyKeyTarget,
		policyKeyMaxMigrations, policyKeyMaxParallel}
	policyKeys = append([]string{policyKeyPool, policyKeyDimension, policyKeyDryRun, policyKeyNodeDrain,
		policyKeyDrainDeadline, policyKeyDrainIgnoreSys, policyKeyAgentGRPCTimeout}, clusterKeys...)
	dimensions = []string{DimensionSize, DimensionHosts, DimensionHotHosts}
)

var _ target.Target = (*Plugin)(nil)

// config is the agent-level configuration, parsed.
type config struct {
	fleet.Config
	LoadWindow      time.Duration
	ShutdownTimeout time.Duration
	Migration       driver.MigrateOptions
	ScaleTimeout    time.Duration
	Nomad           *api.Config
}

// policyConfig is one policy's target block, parsed.
type policyConfig struct {
	Pool          string       // "": the whole cluster
	Cluster       *pool.Policy // the cluster's migration policy, without Pool
	Dimension     string
	NodeDrain     bool
	DrainDeadline time.Duration
	DrainIgnore   bool
	StatusTimeout time.Duration
}

// Plugin is the virtpool-target plugin.
type Plugin struct {
	logger hclog.Logger
	start  fleet.Starter // fleet.Start; tests give one over a fake driver (newPlugin)

	mu      sync.Mutex
	cfg     config
	sampler *fleet.Sampler
	nomad   *api.Client
	// busy holds, by pool, the action in flight in this plugin.
	busy map[string]string
	// lastEvent is when each policy target last changed something.
	lastEvent map[string]time.Time
	policies  map[string]policyResult // parsed policy configs by canonical text
}

type policyResult struct {
	pc  policyConfig
	err error
}

// New returns the plugin; it does nothing until SetConfig.
func New(log hclog.Logger) *Plugin { return newPlugin(log, fleet.Start) }

func newPlugin(log hclog.Logger, start fleet.Starter) *Plugin {
	return &Plugin{logger: log, start: start, busy: map[string]string{}, lastEvent: map[string]time.Time{}, policies: map[string]policyResult{}}
}

// PluginInfo implements base.Base.
func (p *Plugin) PluginInfo() (*base.PluginInfo, error) { return pluginInfo, nil }

// SetConfig implements base.Base: it validates every key, then starts
// sampling the hosts (again, if it was running with an older config).
func (p *Plugin) SetConfig(raw map[string]string) error {
	c, s, err := fleet.Configure(PluginName, raw, configKeys, parseConfig, p.start, p.logger)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sampler.Stop()
	p.cfg, p.sampler, p.nomad = c, s, nil
	p.logger.Info("configured", "seeds", len(c.Seeds), "sample_interval", c.SampleInterval.String(),
		"load_window", c.LoadWindow.String())
	return nil
}

func parseConfig(raw map[string]string) (config, error) {
	var c config
	var err error
	if c.Config, err = fleet.ParseConfig(raw); err != nil {
		return c, err
	}
	if c.LoadWindow, err = fleet.Duration(raw, configKeyLoadWindow, defaultLoadWindow); err != nil {
		return c, err
	}
	if c.LoadWindow < c.SampleInterval {
		return c, fmt.Errorf("%s: %s is shorter than %s %s: no load could be measured", configKeyLoadWindow, c.LoadWindow,
			fleet.ConfigKeySampleInterval, c.SampleInterval)
	}
	if c.LoadWindow > c.Retention {
		return c, fmt.Errorf("%s: %s is longer than %s %s", configKeyLoadWindow, c.LoadWindow, fleet.ConfigKeyRetention, c.Retention)
	}
	c.ShutdownTimeout = defaultShutdownTimeout
	if s := raw[configKeyShutdownTimeout]; s != "" {
		// 0 is allowed: guests without ACPI are simply stopped.
		if c.ShutdownTimeout, err = time.ParseDuration(s); err != nil || c.ShutdownTimeout < 0 {
			return c, fmt.Errorf("%s: %q is not a duration of 0 or more (e.g. 30s)", configKeyShutdownTimeout, s)
		}
	}
	if c.ScaleTimeout, err = fleet.Duration(raw, configKeyScaleTimeout, defaultScaleTimeout); err != nil {
		return c, err
	}
	bw, err := fleet.Int(raw, configKeyBandwidth, 0, 0, 1<<20)
	if err != nil {
		return c, err
	}
	c.Migration.BandwidthMiBs = uint64(bw)
	if _, ok := raw[configKeyMaxDowntime]; ok {
		if c.Migration.MaxDowntime, err = fleet.Duration(raw, configKeyMaxDowntime, 0); err != nil {
			return c, err
		}
	}
	if _, err := fleet.Bool(raw, "nomad_config_inherit", true); err != nil {
		return c, err
	}
	c.Nomad = nomadhelper.ConfigFromNamespacedMap(raw)
	return c, nil
}

// policy parses (once per distinct config) a policy's target block.
func (p *Plugin) policy(raw map[string]string) (policyConfig, error) {
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q;", k, raw[k])
	}
	p.mu.Lock()
	r, ok := p.policies[b.String()]
	p.mu.Unlock()
	if ok {
		return r.pc, r.err
	}
	r.pc, r.err = parsePolicy(raw)
	if r.err != nil {
		r.err = fmt.Errorf("%s: policy target: %w", PluginName, r.err)
	}
	p.mu.Lock()
	p.policies[b.String()] = r
	p.mu.Unlock()
	return r.pc, r.err
}

func parsePolicy(raw map[string]string) (policyConfig, error) {
	var pc policyConfig
	if err := fleet.CheckKeys("", raw, policyKeys...); err != nil {
		return pc, err
	}
	pc.Dimension = raw[policyKeyDimension]
	switch pc.Dimension {
	case DimensionSize, DimensionHosts, DimensionHotHosts:
	case "":
		return pc, fmt.Errorf("%s missing: one of %s", policyKeyDimension, strings.Join(dimensions, ", "))
	default:
		return pc, fmt.Errorf("%s: %q is not one of %s", policyKeyDimension, pc.Dimension, strings.Join(dimensions, ", "))
	}
	var err error
	pc.Pool = raw[policyKeyPool]
	switch {
	case pc.Pool == "" && pc.Dimension == DimensionSize:
		return pc, fmt.Errorf("%s missing: name the virtpool pool whose size to scale", policyKeyPool)
	case pc.Pool == "":
		if pc.Cluster, err = parseClusterPolicy(raw); err != nil {
			return pc, err
		}
	default:
		for _, k := range clusterKeys {
			if _, ok := raw[k]; ok {
				return pc, fmt.Errorf("%s: only for the whole cluster (no %s); pool %s has its virtpool_migration_policy",
					k, policyKeyPool, pc.Pool)
			}
		}
	}
	if _, err := fleet.Bool(raw, policyKeyDryRun, false); err != nil {
		return pc, err
	}
	if pc.NodeDrain, err = fleet.Bool(raw, policyKeyNodeDrain, false); err != nil {
		return pc, err
	}
	if pc.NodeDrain && pc.Dimension != DimensionSize {
		return pc, fmt.Errorf("%s: only the %s dimension removes members", policyKeyNodeDrain, DimensionSize)
	}
	if pc.DrainDeadline, err = fleet.Duration(raw, policyKeyDrainDeadline, defaultDrainDeadline); err != nil {
		return pc, err
	}
	if pc.DrainIgnore, err = fleet.Bool(raw, policyKeyDrainIgnoreSys, false); err != nil {
		return pc, err
	}
	// The agent bounds Status by this; answer a little sooner.
	pc.StatusTimeout = defaultStatusTimeout
	if s := raw[policyKeyAgentGRPCTimeout]; s != "" {
		if d, err := time.ParseDuration(s); err == nil && d > 0 {
			pc.StatusTimeout = d * 9 / 10
		}
	}
	return pc, nil
}

// parseClusterPolicy reads a cluster policy's migration policy: the
// defaults of virtpool_migration_policy, in consolidate mode (the hosts
// dimension frees hosts only in that mode), with the target block's keys.
func parseClusterPolicy(raw map[string]string) (*pool.Policy, error) {
	pol := pool.DefaultPolicy()
	pol.Mode = "consolidate"
	for _, f := range []struct {
		key string
		v   *float64
	}{{policyKeyCPULow, &pol.CPULow}, {policyKeyCPUHigh, &pol.CPUHigh}, {policyKeyMemoryLow, &pol.MemoryLow},
		{policyKeyMemoryHigh, &pol.MemoryHigh}, {policyKeyTarget, &pol.TargetUtilisation}} {
		s, ok := raw[f.key]
		if !ok {
			continue
		}
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || !(x > 0 && x <= 1) {
			return nil, fmt.Errorf("%s: %q is not a fraction in (0, 1]", f.key, s)
		}
		*f.v = x
	}
	var err error
	if pol.MaxMigrationsPerRound, err = fleet.Int(raw, policyKeyMaxMigrations, pol.MaxMigrationsPerRound, 0, 1000); err != nil {
		return nil, err
	}
	if pol.MaxParallel, err = fleet.Int(raw, policyKeyMaxParallel, pol.MaxParallel, 1, 100); err != nil {
		return nil, err
	}
	if pol.CPULow >= pol.CPUHigh {
		return nil, fmt.Errorf("%s %v is not below %s %v", policyKeyCPULow, pol.CPULow, policyKeyCPUHigh, pol.CPUHigh)
	}
	if pol.MemoryLow >= pol.MemoryHigh {
		return nil, fmt.Errorf("%s %v is not below %s %v", policyKeyMemoryLow, pol.MemoryLow, policyKeyMemoryHigh, pol.MemoryHigh)
	}
	return &pol, nil
}

// subject names what a policy acts on, for messages.
func (pc policyConfig) subject() string {
	if pc.Pool == "" {
		return "the cluster"
	}
	return "pool " + pc.Pool
}

// logArgs are a policy's key/value pairs for its log lines.
func (pc policyConfig) logArgs() []any {
	if pc.Pool == "" {
		return []any{"cluster", true, "dimension", pc.Dimension}
	}
	return []any{"pool", pc.Pool, "dimension", pc.Dimension}
}

// state returns what the plugin needs for an action, or an error if it is
// not configured.
func (p *Plugin) state() (config, *fleet.Fleet, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sampler == nil {
		return config{}, nil, errors.New(PluginName + " is not configured")
	}
	return p.cfg, p.sampler.Fleet, nil
}

// ops returns operations on a pool's hosts (as its record lists them,
// with their migration addresses and the capacity the plugin's hosts
// setting may override; a host down elsewhere does not stop the pool),
// with guests' demand measured over the load window.
func (p *Plugin) ops(c config, f *fleet.Fleet, rec pool.Record, log hclog.Logger) *pool.Ops {
	demand := f.History.Demand(c.LoadWindow)
	return &pool.Ops{
		Hosts: f.Topology().WithCapacity(rec.Spec.Inventory()), Driver: f.Driver, Log: log, ShutdownTimeout: c.ShutdownTimeout, Migration: c.Migration,
		Demand: func(uuid string) (float64, int64, bool) {
			d, ok := demand[uuid]
			return d.CPU, d.RSSBytes, ok
		},
	}
}

// tryBusy marks a pool ("": the cluster) busy with what, unless it, or
// anything an action on it would touch, already is.
func (p *Plugin) tryBusy(poolName, what string) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b := p.busyLocked(poolName); b != "" {
		return b, false
	}
	p.busy[poolName] = what
	return "", true
}

// busyLocked is what keeps poolName busy: its own action, or one on the
// cluster; for the cluster, any action. p.mu is held.
func (p *Plugin) busyLocked(poolName string) string {
	for k, b := range p.busy {
		if k == poolName || k == "" || poolName == "" {
			return b
		}
	}
	return ""
}

func (p *Plugin) done(poolName string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.busy, poolName)
}

func (p *Plugin) busyWith(poolName string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busyLocked(poolName)
}

func eventKey(pc policyConfig) string { return pc.Pool + "/" + pc.Dimension }

// event records that pc's target changed something at t.
func (p *Plugin) event(pc policyConfig, t time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastEvent[eventKey(pc)] = t
}

func (p *Plugin) lastEventMeta(pc policyConfig, meta map[string]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.lastEvent[eventKey(pc)]; ok {
		meta[sdk.TargetStatusMetaKeyLastEvent] = strconv.FormatInt(t.UnixNano(), 10)
	}
}
