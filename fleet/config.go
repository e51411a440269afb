// Package fleet is what the virtpool agent and both autoscaler plugins need
// to look at the hosts: the common configuration keys, the hosts and pools
// found through the pool records, and a bounded in-memory history of stats
// samples from which CPU, memory, disk and network rates are derived.
package fleet

import (
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/virtpool/virtpool/driver/plugin"
	"github.com/virtpool/virtpool/pool"
)

// Configuration keys common to both plugins (the agent's plugin "config").
const (
	// ConfigKeyHosts lists libvirt URIs where pool records are found, as
	// "uri" or "name=uri", separated by commas or white space. The hosts
	// of every pool found there are added (with the names, migration
	// addresses and capacity the pool record gives them), so listing one
	// host of each pool is enough; listing all of them lets the plugins
	// work while some are down. An entry may end with the host's capacity
	// (pool.Capacity) after ';', e.g.
	// "h1=qemu+tls://h1.example/system;reserved_cpus=2;reserved_memory_mib=4096";
	// it then wins over what pool records say of that host.
	ConfigKeyHosts = "hosts"
	// ConfigKeyDriverPath is the virtpool-driver binary; default: beside
	// the plugin binary, then $PATH.
	ConfigKeyDriverPath = "driver_path"
	// ConfigKeySampleInterval is how often every host's stats are sampled.
	ConfigKeySampleInterval = "sample_interval"
	// ConfigKeyRetention is how long samples are kept.
	ConfigKeyRetention = "retention"
	// ConfigKeyMaxSamples bounds the number of samples kept, whatever
	// the retention.
	ConfigKeyMaxSamples = "max_samples"
)

// Defaults of the common keys.
const (
	DefaultSampleInterval = 10 * time.Second
	DefaultRetention      = 30 * time.Minute
	DefaultMaxSamples     = 1000
)

// Keys the autoscaler agent adds to every plugin's configuration (its own
// Nomad settings, see nomad_config_inherit); plugins accept them.
func isAgentKey(k string) bool {
	return strings.HasPrefix(k, "nomad_")
}

// CheckKeys fails on the first key (in sorted order) that is neither
// known nor added by the agent, naming it and listing the known keys; what
// (if not empty) prefixes the message.
func CheckKeys(what string, cfg map[string]string, known ...string) error {
	ok := map[string]bool{}
	for _, k := range known {
		ok[k] = true
	}
	keys := make([]string, 0, len(cfg))
	for k := range cfg {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !ok[k] && !isAgentKey(k) {
			sorted := append([]string(nil), known...)
			sort.Strings(sorted)
			err := fmt.Errorf("unknown key %q (known keys: %s)", k, strings.Join(sorted, ", "))
			if what != "" {
				err = fmt.Errorf("%s: %w", what, err)
			}
			return err
		}
	}
	return nil
}

// Seed is one entry of ConfigKeyHosts.
type Seed struct {
	Name     string // may be empty: named by the pool records, else by URI
	URI      string
	Capacity pool.Capacity
}

// ParseHosts parses ConfigKeyHosts.
func ParseHosts(s string) ([]Seed, error) {
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' })
	if len(fields) == 0 {
		return nil, fmt.Errorf("%s: empty; list libvirt URIs of the hosts, e.g. %q", ConfigKeyHosts,
			"h1=qemu+tls://h1.example/system, h2=qemu+tls://h2.example/system")
	}
	var out []Seed
	for _, f := range fields {
		entry, capa, _ := strings.Cut(f, ";")
		c, err := pool.ParseCapacity(capa)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: capacity: %w", ConfigKeyHosts, f, err)
		}
		// name=uri: a name has no ':' or '/', a URI always has "://".
		name, uri := "", entry
		if i := strings.Index(entry, "="); i > 0 && !strings.ContainsAny(entry[:i], ":/") {
			name, uri = entry[:i], entry[i+1:]
		}
		sd, err := NewSeed(name, uri, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", ConfigKeyHosts, f, err)
		}
		out = append(out, sd)
	}
	if err := checkSeeds(out); err != nil {
		return nil, fmt.Errorf("%s: %w", ConfigKeyHosts, err)
	}
	return out, nil
}

// NewSeed checks a host entry, however the configuration spells it: a
// valid host name (or none) and a libvirt URI.
func NewSeed(name, uri string, c pool.Capacity) (Seed, error) {
	if name != "" {
		if err := pool.ValidHostName(name); err != nil {
			return Seed{}, err
		}
	}
	u, err := url.Parse(uri)
	if err != nil || u.Scheme == "" || u.Opaque != "" || !strings.Contains(uri, "://") {
		return Seed{}, fmt.Errorf("%q is not a libvirt URI (want e.g. qemu+tls://host/system or name=URI)", uri)
	}
	return Seed{Name: name, URI: uri, Capacity: c}, nil
}

// checkSeeds fails on a URI or name listed twice.
func checkSeeds(seeds []Seed) error {
	seen := map[string]bool{}
	for _, sd := range seeds {
		if seen[sd.URI] {
			return fmt.Errorf("%s listed twice", sd.URI)
		}
		seen[sd.URI] = true
		if sd.Name != "" {
			if seen["name "+sd.Name] {
				return fmt.Errorf("host name %s given twice", sd.Name)
			}
			seen["name "+sd.Name] = true
		}
	}
	return nil
}

// Duration parses a positive duration value of key (def if absent).
func Duration(cfg map[string]string, key string, def time.Duration) (time.Duration, error) {
	s, ok := cfg[key]
	if !ok || s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a duration (e.g. 10s, 5m): %w", key, s, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("%s: %s must be positive", key, s)
	}
	return d, nil
}

// Int parses an integer value of key in [lo, hi] (def if absent).
func Int(cfg map[string]string, key string, def, lo, hi int64) (int64, error) {
	s, ok := cfg[key]
	if !ok || s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not an integer", key, s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s: %d out of range [%d, %d]", key, n, lo, hi)
	}
	return n, nil
}

// Bool parses a boolean value of key (def if absent).
func Bool(cfg map[string]string, key string, def bool) (bool, error) {
	s, ok := cfg[key]
	if !ok || s == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%s: %q is not true or false", key, s)
	}
	return b, nil
}

// Config is the parsed common configuration.
type Config struct {
	Seeds          []Seed
	DriverPath     string
	SampleInterval time.Duration
	Retention      time.Duration
	MaxSamples     int
	// Events is no key: a plugin that keeps an event log sets it, and the
	// driver process's supervisor (Open) records its restarts there.
	Events plugin.EventSink
}

// CommonKeys are the keys ParseConfig reads.
var CommonKeys = []string{ConfigKeyHosts, ConfigKeyDriverPath, ConfigKeySampleInterval, ConfigKeyRetention, ConfigKeyMaxSamples}

// ParseConfig reads the common keys.
func ParseConfig(cfg map[string]string) (Config, error) {
	seeds, err := ParseHosts(cfg[ConfigKeyHosts])
	if err != nil {
		return Config{}, err
	}
	return ParseSettings(cfg, seeds)
}

// ParseSettings reads the common keys but ConfigKeyHosts, whose seeds the
// caller parsed (the agent's configuration file spells hosts as the
// provider does).
func ParseSettings(cfg map[string]string, seeds []Seed) (Config, error) {
	c := Config{Seeds: seeds, DriverPath: cfg[ConfigKeyDriverPath]}
	if len(seeds) == 0 {
		return c, fmt.Errorf("%s: none given", ConfigKeyHosts)
	}
	if err := checkSeeds(seeds); err != nil {
		return c, fmt.Errorf("%s: %w", ConfigKeyHosts, err)
	}
	var err error
	if c.SampleInterval, err = Duration(cfg, ConfigKeySampleInterval, DefaultSampleInterval); err != nil {
		return c, err
	}
	if c.Retention, err = Duration(cfg, ConfigKeyRetention, DefaultRetention); err != nil {
		return c, err
	}
	if c.Retention < 2*c.SampleInterval {
		return c, fmt.Errorf("%s: %s keeps fewer than two samples at %s %s", ConfigKeyRetention, c.Retention,
			ConfigKeySampleInterval, c.SampleInterval)
	}
	n, err := Int(cfg, ConfigKeyMaxSamples, DefaultMaxSamples, 2, 1_000_000)
	if err != nil {
		return c, err
	}
	c.MaxSamples = int(n)
	return c, nil
}
