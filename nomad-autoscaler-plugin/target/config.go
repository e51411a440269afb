package target

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	nomadhelper "github.com/hashicorp/nomad-autoscaler/sdk/helper/nomad"
	"github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/event"
	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pool"
)

var (
	// configKeys are the plugin's own keys (fleet adds the common ones).
	configKeys = []string{configKeyLoadWindow, configKeyShutdownTimeout, configKeyBandwidth, configKeyMaxDowntime,
		configKeyAutoConverge, configKeyPostCopy, configKeyProgressTimeout, configKeyCompletion,
		configKeyTLS, configKeyScaleTimeout, configKeyEventLog, configKeyPowerOn, configKeyNomadInherit}
	clusterKeys = []string{policyKeyCPULow, policyKeyCPUHigh, policyKeyMemoryLow, policyKeyMemoryHigh, policyKeyTarget,
		policyKeyMaxMigrations, policyKeyMaxParallel}
	policyKeys = append([]string{policyKeyPool, policyKeyDimension, policyKeyDryRun, policyKeyNodeDrain,
		policyKeyDrainDeadline, policyKeyDrainIgnoreSys, policyKeyAgentGRPCTimeout}, append(nomadKeys, clusterKeys...)...)
	// nomadKeys choose the Nomad nodes of members to remove (node_drain).
	nomadKeys  = []string{policyKeyNodeClass, policyKeyDatacenter, policyKeyNodePool, policyKeyNodeSelector, policyKeyNodePurge}
	dimensions = []string{DimensionSize, DimensionHosts, DimensionHotHosts}
)

// config is the agent-level configuration, parsed.
type config struct {
	fleet.Config
	LoadWindow      time.Duration
	ShutdownTimeout time.Duration
	Migration       driver.MigrateOptions
	ScaleTimeout    time.Duration
	Nomad           *api.Config
	// NomadSet: the config names a Nomad agent (nomad_address, the
	// agent's own when nomad_config_inherit passes it on).
	NomadSet bool
	// EventLogPath is configKeyEventLog ("": none); SetConfig opens it as
	// EventLog (nil: no records).
	EventLogPath string
	EventLog     *event.Log
	// PowerOn is configKeyPowerOn's command template (nil: none).
	PowerOn []string
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
	m := &c.Migration
	if m.AutoConverge, err = fleet.Bool(raw, configKeyAutoConverge, false); err != nil {
		return c, err
	}
	if m.PostCopy, err = fleet.Bool(raw, configKeyPostCopy, false); err != nil {
		return c, err
	}
	if m.TLS, err = fleet.Bool(raw, configKeyTLS, false); err != nil {
		return c, err
	}
	// 0 (unset): the driver's defaults.
	if m.ProgressTimeout, err = fleet.Duration(raw, configKeyProgressTimeout, 0); err != nil {
		return c, err
	}
	if m.CompletionPerGiB, err = fleet.Duration(raw, configKeyCompletion, 0); err != nil {
		return c, err
	}
	if _, err := fleet.Bool(raw, configKeyNomadInherit, true); err != nil {
		return c, err
	}
	if c.EventLogPath = raw[configKeyEventLog]; c.EventLogPath != "" {
		// The plugin creates the file, not its directory.
		dir := filepath.Dir(c.EventLogPath)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return c, fmt.Errorf("%s: %q: want a file in an existing directory; %s is none", configKeyEventLog,
				c.EventLogPath, dir)
		}
	}
	if s, ok := raw[configKeyPowerOn]; ok {
		if c.PowerOn = strings.Fields(s); len(c.PowerOn) == 0 {
			return c, fmt.Errorf("%s: empty; give the command that powers a host on, e.g. %q", configKeyPowerOn,
				"ipmitool -I lanplus -H bmc-{host} -U admin -E chassis power on")
		}
	}
	c.Nomad = nomadhelper.ConfigFromNamespacedMap(raw)
	c.NomadSet = raw[configKeyNomadAddress] != ""
	return c, nil
}

// checkPolicy checks a parsed policy against the plugin's configuration:
// what node_drain needs.
func checkPolicy(c config, pc policyConfig) error {
	if !pc.NodeDrain {
		return nil
	}
	if !c.NomadSet {
		return fmt.Errorf("%s: %s = true, but the plugin has no Nomad configuration: set %s in the agent's target "+
			"%q config block (or the agent's nomad block, with %s = true)", PluginName, policyKeyNodeDrain, configKeyNomadAddress,
			PluginName, configKeyNomadInherit)
	}
	if err := checkDrainTime(c, pc); err != nil {
		return fmt.Errorf("%s: %w", PluginName, err)
	}
	return nil
}

// checkDrainTime says whether draining the members to remove, all at
// once, each up to its deadline and drainMargin, fits in scale_timeout.
func checkDrainTime(c config, pc policyConfig) error {
	need := pc.DrainDeadline + drainMargin
	if need <= c.ScaleTimeout {
		return nil
	}
	return fmt.Errorf("%s %s (plus %s margin) is %s, above %s %s: shorten %s or raise %s in the plugin's config",
		policyKeyDrainDeadline, pc.DrainDeadline, drainMargin, need, configKeyScaleTimeout, c.ScaleTimeout,
		policyKeyDrainDeadline, configKeyScaleTimeout)
}

// policyConfig is one policy's target block, parsed.
type policyConfig struct {
	Pool string // the pool's name, unless Cluster
	// Cluster: the block names no pool, and the policy acts on the whole
	// cluster under ClusterPolicy, the migration policy the block gives.
	Cluster       bool
	ClusterPolicy *pool.Policy
	Dimension     string
	NodeDrain     bool
	DrainDeadline time.Duration
	DrainIgnore   bool
	Nodes         nodeChoice // which Nomad nodes go, with NodeDrain
	StatusTimeout time.Duration
}

// policyCache parses policies' target blocks, once per distinct block:
// the agent passes the block with every Scale and Status call.
type policyCache struct {
	mu     sync.Mutex
	byText map[string]policyResult // by canonical text
}

type policyResult struct {
	pc  policyConfig
	err error
}

func newPolicyCache() *policyCache { return &policyCache{byText: map[string]policyResult{}} }

// parse returns a policy's target block, parsed.
func (c *policyCache) parse(raw map[string]string) (policyConfig, error) {
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q;", k, raw[k])
	}
	c.mu.Lock()
	r, ok := c.byText[b.String()]
	c.mu.Unlock()
	if ok {
		return r.pc, r.err
	}
	r.pc, r.err = parsePolicy(raw)
	if r.err != nil {
		r.err = fmt.Errorf("%s: policy target: %w", PluginName, r.err)
	}
	c.mu.Lock()
	c.byText[b.String()] = r
	c.mu.Unlock()
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
	pc.Cluster = pc.Pool == ""
	switch {
	case pc.Cluster && pc.Dimension == DimensionSize:
		return pc, fmt.Errorf("%s missing: name the virtpool pool whose size to scale", policyKeyPool)
	case pc.Cluster:
		if pc.ClusterPolicy, err = parseClusterPolicy(raw); err != nil {
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
	if pc.Nodes, err = parseNodeChoice(raw, pc.NodeDrain); err != nil {
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
	pol.Mode = pool.ModeConsolidate
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
	// The provider's rule for virtpool_migration_policy: watermarks in
	// order, the target between them.
	if errs := pol.Check(); len(errs) > 0 {
		return nil, errs[0]
	}
	return &pol, nil
}

// subject names what a policy acts on, for messages.
func (pc policyConfig) subject() string {
	if pc.Cluster {
		return "the cluster"
	}
	return "pool " + pc.Pool
}

// stamp fills in what a policy acts on, in a record of its action (as
// logArgs does in its log lines).
func (pc policyConfig) stamp(e event.Event) event.Event {
	e.Pool, e.Cluster, e.Dimension = pc.Pool, pc.Cluster, pc.Dimension
	return e
}

// logArgs are a policy's key/value pairs for its log lines.
func (pc policyConfig) logArgs() []any {
	if pc.Cluster {
		return []any{"cluster", true, "dimension", pc.Dimension}
	}
	return []any{"pool", pc.Pool, "dimension", pc.Dimension}
}
