package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// own is a plugin's configuration with one key of its own.
type own struct {
	Config
	Window time.Duration
}

func parseOwn(raw map[string]string) (own, error) {
	var c own
	var err error
	if c.Config, err = ParseConfig(raw); err != nil {
		return c, err
	}
	c.Window, err = Duration(raw, "window", time.Minute)
	return c, err
}

func TestConfigure(t *testing.T) {
	base := func(kv ...string) map[string]string {
		m := map[string]string{ConfigKeyHosts: "h1=fake:///h1", ConfigKeySampleInterval: "1s"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	failing := func(Config, hclog.Logger) (*Sampler, error) { return nil, errors.New("no driver") }
	tests := []struct {
		name    string
		raw     map[string]string
		start   Starter
		wantErr string
		window  time.Duration
	}{
		{name: "common keys", raw: base(), window: time.Minute},
		{name: "own key", raw: base("window", "5s"), window: 5 * time.Second},
		{name: "agent's keys", raw: base("nomad_address", "http://127.0.0.1:4646"), window: time.Minute},
		{name: "unknown key", raw: base("windw", "5s"), wantErr: `plugin-x: unknown key "windw" (known keys: driver_path, hosts, max_samples, retention, sample_interval, window)`},
		{name: "bad common key", raw: base(ConfigKeyRetention, "1s"), wantErr: "plugin-x: retention: 1s keeps fewer than two samples"},
		{name: "bad own key", raw: base("window", "soon"), wantErr: `plugin-x: window: "soon" is not a duration`},
		{name: "start fails", raw: base(), start: failing, wantErr: "plugin-x: no driver"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var started *Config
			start := tc.start
			if start == nil {
				start = func(c Config, log hclog.Logger) (*Sampler, error) {
					started = &c
					return &Sampler{Fleet: New(c, nil, log)}, nil
				}
			}
			c, s, err := Configure("plugin-x", tc.raw, []string{"window"}, parseOwn, start, hclog.NewNullLogger())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if s != nil {
					t.Error("a sampler despite the error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Window != tc.window {
				t.Errorf("window %s, want %s", c.Window, tc.window)
			}
			if started == nil || started.SampleInterval != time.Second || len(started.Seeds) != 1 {
				t.Fatalf("started with %+v, want the common config", started)
			}
			if s.Fleet.CallTimeout != 2*time.Second || s.Fleet.History == nil {
				t.Errorf("fleet call timeout %s, history %v", s.Fleet.CallTimeout, s.Fleet.History)
			}
			s.Stop() // without a stop function: nothing to end
		})
	}
}

func TestStartNeedsTheDriver(t *testing.T) {
	_, err := Start(Config{DriverPath: "/nonexistent/virtpool-driver"}, hclog.NewNullLogger())
	if err == nil || !strings.HasPrefix(err.Error(), ConfigKeyDriverPath+": ") {
		t.Fatalf("error %v, want one naming %s", err, ConfigKeyDriverPath)
	}
	var s *Sampler
	s.Stop() // a nil sampler is stopped
}
