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
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/plugins/base"
	"github.com/hashicorp/nomad-autoscaler/plugins/target"
	"github.com/hashicorp/nomad-autoscaler/sdk"
	"github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
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
	// configKeyAutoConverge, configKeyPostCopy, configKeyProgressTimeout
	// and configKeyCompletion: how a migration that does not converge
	// ends, where the pool's migration policy says nothing.
	configKeyAutoConverge    = "migration_auto_converge"
	configKeyPostCopy        = "migration_post_copy"
	configKeyProgressTimeout = "migration_progress_timeout"
	configKeyCompletion      = "migration_completion_timeout_per_gib"
	// configKeyTLS encrypts every migration stream (VIR_MIGRATE_TLS).
	configKeyTLS = "migration_tls"
	// configKeyScaleTimeout bounds one Scale call.
	configKeyScaleTimeout = "scale_timeout"
	// configKeyEventLog is a file the plugin appends its records to (one
	// JSON object a line, package event): what it was asked, what a dry
	// run would do, the migrations it makes and the members it creates
	// and removes, and restarts of its driver process. Tools follow that
	// file rather than the log.
	configKeyEventLog = "event_log"
	// configKeyPowerOn powers on a standby host that virtpool agent
	// powered off: a command, split on white space and run without a
	// shell, whose {host} is replaced by the host's name, e.g.
	// "ipmitool -I lanplus -H bmc-{host} -U admin -E chassis power on"
	// (-E: the password from IPMI_PASSWORD in the autoscaler's
	// environment). With it, the hosts dimension and a pool that needs
	// room power such hosts on; without it they stay off.
	configKeyPowerOn = "power_on"
	// configKeyNomadInherit is the agent's: the plugin accepts it.
	configKeyNomadInherit = "nomad_config_inherit"
	// configKeyNomadAddress is the agent's Nomad address (nomadhelper's).
	configKeyNomadAddress = "nomad_address"

	// Keys of a policy's target block.
	policyKeyPool      = "pool"
	policyKeyDimension = "dimension"
	policyKeyDryRun    = "dry-run" // read by the agent: Scale gets count -1
	// policyKeyNodeDrain: drain the Nomad client running in a member
	// (its node's meta pool.NomadMetaDomain, or else its name, is the
	// member's name) before removing it.
	policyKeyNodeDrain      = "node_drain"
	policyKeyDrainDeadline  = sdk.TargetConfigKeyDrainDeadline
	policyKeyDrainIgnoreSys = sdk.TargetConfigKeyIgnoreSystemJobs
	// policyKeyNodeClass, policyKeyDatacenter and policyKeyNodePool (with
	// node_drain): only members whose Nomad node has that node class,
	// datacenter and node pool (all those given) may be removed, as in
	// the aws-asg target.
	policyKeyNodeClass  = sdk.TargetConfigKeyClass
	policyKeyDatacenter = sdk.TargetConfigKeyDatacenter
	policyKeyNodePool   = sdk.TargetConfigKeyNodePool
	// policyKeyNodeSelector (with node_drain): how Nomad picks among the
	// members with a Nomad node (least_busy, empty, empty_ignore_system,
	// newest_create_index, oldest_create_index; least_busy if unset).
	policyKeyNodeSelector = sdk.TargetConfigNodeSelectorStrategy
	// policyKeyNodePurge (with node_drain): purge a removed member's Nomad
	// node rather than leave it down until Nomad's GC.
	policyKeyNodePurge        = sdk.TargetConfigKeyNodePurge
	policyKeyAgentGRPCTimeout = "_nomad_autoscaler_grpc_timeout"
	// Keys of a cluster policy's target block (no pool): its migration
	// policy, named as in virtpool_migration_policy.
	policyKeyCPULow        = pool.PolicyKeyCPULow
	policyKeyCPUHigh       = pool.PolicyKeyCPUHigh
	policyKeyMemoryLow     = pool.PolicyKeyMemoryLow
	policyKeyMemoryHigh    = pool.PolicyKeyMemoryHigh
	policyKeyTarget        = pool.PolicyKeyTarget
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

var pluginInfo = &base.PluginInfo{Name: PluginName, PluginType: sdk.PluginTypeTarget}

var _ target.Target = (*Plugin)(nil)

// Plugin is the virtpool-target plugin.
type Plugin struct {
	logger   hclog.Logger
	start    fleet.Starter // fleet.Start; tests give one over a fake driver (newPlugin)
	policies *policyCache
	track    *tracker // actions in flight, last events

	mu      sync.Mutex
	cfg     config
	sampler *fleet.Sampler
	nomad   *api.Client
}

// New returns the plugin; it does nothing until SetConfig.
func New(log hclog.Logger) *Plugin { return newPlugin(log, fleet.Start) }

func newPlugin(log hclog.Logger, start fleet.Starter) *Plugin {
	return &Plugin{logger: log, start: start, policies: newPolicyCache(), track: newTracker()}
}

// PluginInfo implements base.Base.
func (p *Plugin) PluginInfo() (*base.PluginInfo, error) { return pluginInfo, nil }

// Stop ends the sampling and the driver process. The Nomad Autoscaler
// ends the plugin's process, and them with it; a user of the plugin in
// its own process calls Stop.
func (p *Plugin) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sampler.Stop()
	p.sampler = nil
	p.closeEventLog()
}

// closeEventLog closes the event log of the configuration in use (p.mu
// held).
func (p *Plugin) closeEventLog() {
	if err := p.cfg.EventLog.Close(); err != nil {
		p.logger.Warn("event log", "error", err)
	}
	p.cfg.EventLog = nil
}

// SetConfig implements base.Base: it validates every key, then starts
// sampling the hosts (again, if it was running with an older config).
func (p *Plugin) SetConfig(raw map[string]string) error {
	var events *event.Log
	// The event log opens once parseConfig has checked its key, before
	// the sampling starts: the driver process's supervisor records its
	// restarts there.
	start := func(fc fleet.Config, log hclog.Logger) (*fleet.Sampler, error) {
		if path := raw[configKeyEventLog]; path != "" {
			var err error
			if events, err = event.Open(path); err != nil {
				return nil, fmt.Errorf("%s: %w", configKeyEventLog, err)
			}
			fc.Events = events
		}
		s, err := p.start(fc, log)
		if err != nil {
			_ = events.Close() // nothing written to it yet
			events = nil
		}
		return s, err
	}
	c, s, err := fleet.Configure(PluginName, raw, configKeys, parseConfig, start, p.logger)
	if err != nil {
		return err
	}
	c.EventLog = events
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sampler.Stop()
	p.closeEventLog()
	p.cfg, p.sampler, p.nomad = c, s, nil
	p.logger.Info("configured", "seeds", len(c.Seeds), "sample_interval", c.SampleInterval.String(),
		"load_window", c.LoadWindow.String(), "event_log", c.EventLogPath)
	return nil
}

// Scale implements target.Controller. It runs the action to the end (the
// agent waits, and Status says not ready meanwhile). With dry-run it plans
// and logs what it would do, and changes nothing.
func (p *Plugin) Scale(action sdk.ScalingAction, raw map[string]string) error {
	pc, err := p.policies.parse(raw)
	if err != nil {
		return err
	}
	c, f, err := p.state()
	if err != nil {
		return err
	}
	if err := checkPolicy(c, pc); err != nil {
		return err
	}
	dry := action.Count == sdk.StrategyActionMetaValueDryRunCount
	want := action.Count
	if dry {
		want = dryRunCount(action.Meta)
	}
	log := p.logger.Named("scale").With(pc.logArgs()...)
	emit := func(e event.Event) { c.EventLog.Emit(pc.stamp(e)) }
	log.Info("scale requested", "count", want, "direction", action.Direction.String(), "reason", action.Reason, "dry_run", dry)
	emit(event.Event{Kind: event.ScaleRequested, Count: want, Direction: action.Direction.String(), Reason: action.Reason,
		DryRun: dry, Message: "scale requested"})
	what := fmt.Sprintf("%s to %d", pc.Dimension, want)
	if b, ok := p.track.try(pc, what); !ok {
		return sdk.NewTargetScalingNoOpError("%s is busy (%s)", pc.subject(), b)
	}
	defer p.track.done(pc)
	ctx, cancel := context.WithTimeout(context.Background(), c.ScaleTimeout)
	defer cancel()
	start := time.Now()
	changed, err := p.scale(ctx, c, f, pc, request{want: want, dry: dry, log: log, emit: emit})
	switch {
	case errors.Is(err, errInFlight):
		log.Info("not scaling now", "why", err)
		return sdk.NewTargetScalingNoOpError("%s: %v", pc.subject(), err)
	case err != nil:
		log.Error("scale failed", "count", want, "took", time.Since(start).String(), "error", err)
		emit(event.Event{Kind: event.ScaleFailed, Count: want, DryRun: dry, ElapsedMs: time.Since(start).Milliseconds(),
			Error: err.Error(), Message: "scale failed"})
		return fmt.Errorf("%s: %s: %s: %w", PluginName, pc.subject(), what, err)
	}
	if changed {
		p.track.event(pc, f.Time())
	}
	log.Info("scale done", "count", want, "changed", changed, "dry_run", dry, "took", time.Since(start).String())
	emit(event.Event{Kind: event.ScaleDone, Count: want, DryRun: dry, ElapsedMs: time.Since(start).Milliseconds(),
		Message: "scale done"})
	return nil
}

// Status implements target.Controller. Only a bad policy (a bad key, a
// pool no host knows) is an error; while hosts cannot be read, or an
// action or a migration is in flight, the target is not ready. With hosts
// of the scope down it counts what runs on the others, and is not ready:
// the members there are unknown until the agent fences the host and
// restores the pool.
func (p *Plugin) Status(raw map[string]string) (*sdk.TargetStatus, error) {
	pc, err := p.policies.parse(raw)
	if err != nil {
		return nil, err
	}
	c, f, err := p.state()
	if err != nil {
		return nil, err
	}
	if err := checkPolicy(c, pc); err != nil {
		return nil, err
	}
	log := p.logger.Named("status").With(pc.logArgs()...)
	ctx, cancel := context.WithTimeout(context.Background(), pc.StatusTimeout)
	defer cancel()
	st := &sdk.TargetStatus{Meta: map[string]string{metaPool: pc.Pool}}
	p.track.lastEventMeta(pc, st.Meta)

	s, err := resolve(ctx, f, pc)
	if errors.Is(err, errPoolNotFound) {
		return nil, fmt.Errorf("%s: %s %q: %w", PluginName, policyKeyPool, pc.Pool, err)
	}
	if err != nil {
		log.Warn("hosts unreadable; not ready", "error", err)
		return st, nil
	}
	if err := s.checkDimension(pc); err != nil {
		return nil, fmt.Errorf("%s: %w", PluginName, err)
	}
	v, err := s.newOps(c, f, log).View(ctx, s.allowed())
	var down pool.HostsDown
	if err := s.unknown(err); errors.As(err, &down) {
		log.Warn("hosts down; not ready", "hosts", down.Names(), "error", err)
		st.Meta[metaDown] = strings.Join(down.Names(), ",")
	} else if err != nil {
		log.Warn("hosts unreadable; not ready", "error", err)
		return st, nil
	}
	cnt, err := countOf(pc.Dimension, s, v)
	if err != nil {
		log.Warn("cannot measure; not ready", "error", err)
		return st, nil
	}
	busy := p.track.busy(pc)
	measured := f.History.Len() >= 2
	restoring := s.restoring(cnt.Members)
	if restoring {
		st.Meta[metaRestoring] = "true"
	}
	st.Ready = busy == "" && len(v.InFlight) == 0 && len(down) == 0 && !restoring && (measured || pc.Dimension == DimensionSize) &&
		p.nomadReady(ctx, pc, s, v, st, log)
	report(st, cnt, busy, v.InFlight)
	log.Debug("status", "count", st.Count, "ready", st.Ready, "busy", busy, "in_flight", v.InFlight,
		"hot", cnt.Hot, "loads", cnt.Loads)
	return st, nil
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
