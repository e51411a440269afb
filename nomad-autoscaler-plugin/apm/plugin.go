// Package apm is virtpool-apm, a Nomad Autoscaler APM plugin that reads
// the load of virtpool hosts and guests. It samples every host's stats
// through the virtpool driver into a bounded in-memory history and answers
// queries (see Query for the syntax) from it, so a policy's query_window
// is answered from real samples, with rates derived from the counters.
package apm

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad-autoscaler/plugins/apm"
	"github.com/hashicorp/nomad-autoscaler/plugins/base"
	"github.com/hashicorp/nomad-autoscaler/sdk"

	"github.com/virtpool/virtpool/fleet"
)

// PluginName is the plugin's name: the agent's apm block must use it as
// driver, and the binary in plugin_dir must have it as file name. Its
// configuration keys (the agent's apm "config" block) are the common ones
// of package fleet.
const PluginName = "virtpool-apm"

var pluginInfo = &base.PluginInfo{Name: PluginName, PluginType: sdk.PluginTypeAPM}

var _ apm.APM = (*Plugin)(nil)

// Plugin is the virtpool-apm plugin.
type Plugin struct {
	logger hclog.Logger
	start  fleet.Starter // fleet.Start; tests give one over a fake driver (newPlugin)

	mu      sync.Mutex
	cfg     fleet.Config
	sampler *fleet.Sampler
}

// New returns the plugin; it does nothing until SetConfig.
func New(log hclog.Logger) *Plugin { return newPlugin(log, fleet.Start) }

func newPlugin(log hclog.Logger, start fleet.Starter) *Plugin {
	return &Plugin{logger: log, start: start}
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
}

// SetConfig implements base.Base: it validates every key, then starts
// sampling (again, if it was already running with an older config).
func (p *Plugin) SetConfig(config map[string]string) error {
	cfg, s, err := fleet.Configure(PluginName, config, nil, fleet.ParseConfig, p.start, p.logger)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sampler.Stop()
	p.cfg, p.sampler = cfg, s
	p.logger.Info("sampling hosts", "seeds", len(cfg.Seeds), "interval", cfg.SampleInterval.String(),
		"retention", cfg.Retention.String(), "max_samples", cfg.MaxSamples)
	return nil
}

// state returns the fleet (nil until SetConfig) and its configuration.
func (p *Plugin) state() (*fleet.Fleet, fleet.Config) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sampler == nil {
		return nil, p.cfg
	}
	return p.sampler.Fleet, p.cfg
}

// Query implements apm.Looker.
func (p *Plugin) Query(q string, r sdk.TimeRange) (sdk.TimestampedMetrics, error) {
	f, cfg := p.state()
	if f == nil {
		return nil, errors.New("virtpool-apm is not configured")
	}
	query, err := ParseQuery(q)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	if f.History.Len() < 2 {
		return nil, fmt.Errorf("query %q: not enough samples yet (%d; one every %s)", q, f.History.Len(), cfg.SampleInterval)
	}
	topo := f.Topology()
	if err := known(query, topo); err != nil {
		return nil, fmt.Errorf("query %q: %w", q, err)
	}
	from, to := r.From, r.To
	if !from.Before(to) {
		// An instant query: the newest sample at or before To.
		from = to.Add(-2 * cfg.SampleInterval)
	}
	frames := f.History.Frames(from, to)
	ms := Eval(query, frames)
	if len(ms) == 0 {
		oldest, newest := f.History.Span()
		if len(frames) == 0 {
			return nil, fmt.Errorf("query %q: no samples between %s and %s (history: %d samples from %s to %s, one every %s)",
				q, from.Format(time.RFC3339), to.Format(time.RFC3339), f.History.Len(),
				oldest.Format(time.RFC3339), newest.Format(time.RFC3339), cfg.SampleInterval)
		}
		return nil, fmt.Errorf("query %q: nothing to measure in the %d samples between %s and %s (no running guest or host matches)",
			q, len(frames), from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	p.logger.Trace("query answered", "query", query.String(), "points", len(ms), "last", ms[len(ms)-1].Value)
	return ms, nil
}

// known checks that the pool or host a query names exists.
func known(q Query, t fleet.Topology) error {
	if q.Pool != "" {
		if _, ok := t.Pools[q.Pool]; !ok {
			return fmt.Errorf("pool %q not found in the pool records (pools: %s)", q.Pool, list(t.PoolNames()))
		}
	}
	if q.Host != "" {
		if _, ok := t.Hosts[q.Host]; !ok {
			return fmt.Errorf("host %q unknown (hosts: %s)", q.Host, list(t.Hosts.Names()))
		}
	}
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	s = append([]string(nil), s...)
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// QueryMultiple implements apm.Looker: one series, as Query.
func (p *Plugin) QueryMultiple(q string, r sdk.TimeRange) ([]sdk.TimestampedMetrics, error) {
	ms, err := p.Query(q, r)
	if err != nil {
		return nil, err
	}
	return []sdk.TimestampedMetrics{ms}, nil
}
