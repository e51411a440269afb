package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/driver/plugin"
)

// Parsed is a plugin's parsed configuration: the common part, and the
// plugin's own beside it.
type Parsed interface{ Common() Config }

// Common implements Parsed for a plugin with no keys of its own, and for
// every configuration that embeds Config.
func (c Config) Common() Config { return c }

// Sampler is a plugin's fleet with what keeps its history filling: the
// driver process and the background sampling, both ended by Stop.
type Sampler struct {
	Fleet *Fleet
	stop  func()
}

// Stop ends the sampling and the driver process. A nil Sampler is stopped.
func (s *Sampler) Stop() {
	if s != nil && s.stop != nil {
		s.stop()
	}
}

// Starter starts sampling the fleet a configuration describes; log is the
// plugin's. Start is the plugins' own; their tests give one over a fake
// driver.
type Starter func(c Config, log hclog.Logger) (*Sampler, error)

// Open returns the fleet c describes, reached through the virtpool-driver
// binary (ConfigKeyDriverPath, else beside the running binary, else
// $PATH) run under a Supervisor, and the function that stops that process.
func Open(c Config, log hclog.Logger) (*Fleet, func(), error) {
	path, err := plugin.FindBinary(c.DriverPath)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", ConfigKeyDriverPath, err)
	}
	sup := plugin.NewSupervisor(path, log.Named("driver"))
	sup.SetEvents(c.Events)
	return New(c, sup.Driver, log), sup.Close, nil
}

// Start opens the fleet (Open) and samples it every SampleInterval until
// Stop.
func Start(c Config, log hclog.Logger) (*Sampler, error) {
	f, closeDriver, err := Open(c, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go f.Run(ctx, c.SampleInterval)
	return &Sampler{Fleet: f, stop: func() {
		cancel()
		closeDriver()
	}}, nil
}

// New returns the fleet c describes, reached through d, logging as the
// plugin's "sampler".
func New(c Config, d func(context.Context) (driver.Driver, error), log hclog.Logger) *Fleet {
	// A host's calls in a round may take one interval, and at least 2s.
	return &Fleet{Seeds: c.Seeds, Driver: d, Log: log.Named("sampler"),
		History: NewHistory(c.MaxSamples, c.Retention), CallTimeout: max(c.SampleInterval, 2*time.Second)}
}

// Configure is what both plugins' SetConfig do before they swap in the new
// state: check that raw holds only the common keys, the plugin's own keys
// and the agent's; parse it with parse (the common keys and the plugin's
// own); and start sampling the fleet it describes. Errors name the plugin.
func Configure[C Parsed](name string, raw map[string]string, own []string, parse func(map[string]string) (C, error),
	start Starter, log hclog.Logger) (C, *Sampler, error) {
	var zero C
	if err := CheckKeys(name, raw, append(append([]string(nil), CommonKeys...), own...)...); err != nil {
		return zero, nil, err
	}
	c, err := parse(raw)
	if err != nil {
		return zero, nil, fmt.Errorf("%s: %w", name, err)
	}
	s, err := start(c.Common(), log)
	if err != nil {
		return zero, nil, fmt.Errorf("%s: %w", name, err)
	}
	return c, s, nil
}
