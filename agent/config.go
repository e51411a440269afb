package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/virtpool/virtpool/fleet"
	"github.com/virtpool/virtpool/pki"
	"github.com/virtpool/virtpool/pool"
)

// Keys of the agent's configuration file. The hosts, sampling and driver
// keys are the autoscaler plugins' (package fleet), so that one fleet
// configuration reads the same everywhere; hosts are written as the
// provider's hosts attribute is:
//
//	hosts = {
//	  h1 = { uri = "qemu+tls://h1.example/system", reserved_cpus = 2 }
//	}
const (
	// KeyListen is the address the HTTP server listens on.
	KeyListen = "listen"
	// KeyHosts maps host names to their uri and capacity settings
	// (pool.Capacity: cpus, memory_mib, reserved_cpus, reserved_memory_mib,
	// vcpu_ratio). Pool records found on them add their pools' hosts.
	KeyHosts = fleet.ConfigKeyHosts
	// KeyHostURI is a host's libvirt URI, inside KeyHosts.
	KeyHostURI = "uri"
	// KeyEvents bounds the events kept for the API and the page.
	KeyEvents = "max_events"
	// KeyFence is a host's fence action, inside KeyHosts: the command
	// (a list: program, then arguments; no shell) that powers the host off,
	// e.g. ["ipmitool", "-I", "lanplus", "-H", "bmc-h1", "-U", "admin", "-E",
	// "chassis", "power", "off"] (-E: the password from IPMI_PASSWORD in the
	// agent's environment). Its success (exit 0) is required before the
	// host's guests are restarted elsewhere; without one, they never are.
	KeyFence = "fence"
	// KeyFailoverGrace is how long a host must not answer before it is
	// failed and fenced.
	KeyFailoverGrace = "failover_grace"
	// KeyFenceTimeout bounds a fence action, and a power-on action.
	KeyFenceTimeout = "fence_timeout"
	// KeyPowerOn is a host's power-on action, inside KeyHosts: a command
	// as for KeyFence, e.g. [..., "chassis", "power", "on"]. With both
	// actions, a host on standby (the autoscaler's hosts dimension, or the
	// operator's virtpool_host standby) that has run nothing for
	// KeyStandbyPowerOff is powered off with its fence action, and powered
	// on again when a pool's restore needs room there.
	KeyPowerOn = "power_on"
	// KeyStandbyPowerOff is how long a standby host must stay empty
	// before it is powered off.
	KeyStandbyPowerOff = "standby_power_off_after"
	// KeyCheckpointURL is, inside KeyHosts, the address of the host's
	// checkpoint helper ('virtpool ship serve'), e.g.
	// "https://h1.example:8481", as the agent reaches it;
	// KeyCheckpointPeerURL as the other hosts' helpers do (default: the
	// same); KeyCheckpointDir the helper's directory on the host, where
	// libvirt writes the checkpoints of the guests the host runs. A host
	// without them neither sends nor holds standby images.
	KeyCheckpointURL     = "checkpoint_url"
	KeyCheckpointPeerURL = "checkpoint_peer_url"
	KeyCheckpointDir     = "checkpoint_dir"
	// KeyCheckpointCA, KeyCheckpointCert and KeyCheckpointKey are the
	// files the agent authenticates to the helpers with (mutual TLS):
	// by default libvirt's client certificate (package pki).
	KeyCheckpointCA   = "checkpoint_ca"
	KeyCheckpointCert = "checkpoint_cert"
	KeyCheckpointKey  = "checkpoint_key"
)

// Defaults.
const (
	DefaultListen        = "127.0.0.1:8480"
	DefaultEvents        = 1000
	DefaultFailoverGrace = 30 * time.Second
	DefaultFenceTimeout  = time.Minute
	DefaultStandbyOff    = 5 * time.Minute
)

// Config is the agent's parsed configuration.
type Config struct {
	fleet.Config
	Listen    string
	MaxEvents int
	// Fence holds each host's fence action (KeyFence), by host name.
	Fence map[string][]string
	// PowerOn holds each host's power-on action (KeyPowerOn).
	PowerOn       map[string][]string
	FailoverGrace time.Duration
	FenceTimeout  time.Duration
	StandbyOff    time.Duration // KeyStandbyPowerOff
	// Helpers are the hosts' checkpoint helpers, by host name; HelperTLS
	// what the agent presents to them.
	Helpers   map[string]Helper
	HelperTLS pki.Files
}

// Helper is a host's checkpoint helper (KeyCheckpointURL, …).
type Helper struct {
	URL, PeerURL, Dir string
}

var knownKeys = []string{KeyListen, KeyHosts, KeyEvents, fleet.ConfigKeyDriverPath,
	fleet.ConfigKeySampleInterval, fleet.ConfigKeyRetention, fleet.ConfigKeyMaxSamples,
	KeyFailoverGrace, KeyFenceTimeout, KeyStandbyPowerOff, KeyCheckpointCA, KeyCheckpointCert, KeyCheckpointKey}

// LoadConfig reads the agent's configuration file.
func LoadConfig(path string) (Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("agent config: %w", err)
	}
	c, err := ParseConfig(src, path)
	if err != nil {
		return Config{}, fmt.Errorf("agent config: %w", err)
	}
	return c, nil
}

// ParseConfig parses the HCL source of a configuration file named
// filename (for error positions). Errors name the key and where it is.
func ParseConfig(src []byte, filename string) (Config, error) {
	f, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return Config{}, diags
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		// JustAttributes refuses blocks: say which keys are allowed.
		return Config{}, fmt.Errorf("%w (keys: %s)", diags, strings.Join(sorted(knownKeys), ", "))
	}
	known := map[string]bool{}
	for _, k := range knownKeys {
		known[k] = true
	}
	raw := map[string]string{}
	var seeds []fleet.Seed
	var acts actions
	for _, name := range sortedKeys(attrs) {
		a := attrs[name]
		at := func(err error) error { return fmt.Errorf("%s: %s: %w", a.NameRange, name, err) }
		if !known[name] {
			return Config{}, fmt.Errorf("%s: unknown key %q (keys: %s)", a.NameRange, name, strings.Join(sorted(knownKeys), ", "))
		}
		v, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			return Config{}, diags
		}
		var err error
		if name == KeyHosts {
			if seeds, acts, err = parseHosts(v); err == nil && len(seeds) == 0 {
				err = errors.New("no host given")
			}
		} else {
			raw[name], err = scalar(v)
		}
		if err != nil {
			return Config{}, at(err)
		}
	}
	if len(seeds) == 0 {
		return Config{}, fmt.Errorf("%s: %s missing: name the hosts to watch, e.g. hosts = { h1 = { uri = \"qemu+tls://h1.example/system\" } }",
			filename, KeyHosts)
	}
	fc, err := fleet.ParseSettings(raw, seeds)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", filename, err)
	}
	c := Config{Config: fc, Listen: DefaultListen, Fence: acts.fence, PowerOn: acts.powerOn, Helpers: acts.helpers,
		HelperTLS: pki.Client}
	for k, f := range map[string]*string{KeyCheckpointCA: &c.HelperTLS.CA, KeyCheckpointCert: &c.HelperTLS.Cert, KeyCheckpointKey: &c.HelperTLS.Key} {
		if v, ok := raw[k]; ok {
			*f = v
		}
	}
	if c.FailoverGrace, err = fleet.Duration(raw, KeyFailoverGrace, DefaultFailoverGrace); err != nil {
		return Config{}, fmt.Errorf("%s: %w", filename, err)
	}
	if c.FenceTimeout, err = fleet.Duration(raw, KeyFenceTimeout, DefaultFenceTimeout); err != nil {
		return Config{}, fmt.Errorf("%s: %w", filename, err)
	}
	if c.StandbyOff, err = fleet.Duration(raw, KeyStandbyPowerOff, DefaultStandbyOff); err != nil {
		return Config{}, fmt.Errorf("%s: %w", filename, err)
	}
	if s, ok := raw[KeyListen]; ok {
		if _, _, err := net.SplitHostPort(s); err != nil {
			return Config{}, fmt.Errorf("%s: %s: %q is not host:port: %w", filename, KeyListen, s, err)
		}
		c.Listen = s
	}
	n, err := fleet.Int(raw, KeyEvents, DefaultEvents, 10, 1_000_000)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", filename, err)
	}
	c.MaxEvents = int(n)
	return c, nil
}

// actions are the hosts' power actions, by host name.
type actions struct {
	fence, powerOn map[string][]string
	helpers        map[string]Helper
}

// parseHosts reads hosts = { NAME = { uri = …, fence = […], power_on =
// […], capacity settings… } }.
func parseHosts(v cty.Value) ([]fleet.Seed, actions, error) {
	acts := actions{fence: map[string][]string{}, powerOn: map[string][]string{}, helpers: map[string]Helper{}}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		return nil, acts, fmt.Errorf("want a map of host names to { %s = …, … }", KeyHostURI)
	}
	var out []fleet.Seed
	hosts := v.AsValueMap()
	for _, name := range sortedKeys(hosts) {
		h := hosts[name]
		if !h.Type().IsObjectType() && !h.Type().IsMapType() {
			return nil, acts, fmt.Errorf("%s: want { %s = …, … }", name, KeyHostURI)
		}
		var uri string
		var settings []string // capacity, as pool.ParseCapacity reads it
		attrs := h.AsValueMap()
		for _, k := range sortedKeys(attrs) {
			if k == KeyFence || k == KeyPowerOn {
				cmd, err := command(attrs[k])
				if err != nil {
					return nil, acts, fmt.Errorf("%s: %s: %w", name, k, err)
				}
				if k == KeyFence {
					acts.fence[name] = cmd
				} else {
					acts.powerOn[name] = cmd
				}
				continue
			}
			s, err := scalar(attrs[k])
			if err != nil {
				return nil, acts, fmt.Errorf("%s: %s: %w", name, k, err)
			}
			switch k {
			case KeyHostURI:
				uri = s
				continue
			case KeyCheckpointURL, KeyCheckpointPeerURL, KeyCheckpointDir:
				hp := acts.helpers[name]
				switch k {
				case KeyCheckpointURL:
					hp.URL = s
				case KeyCheckpointPeerURL:
					hp.PeerURL = s
				default:
					hp.Dir = s
				}
				acts.helpers[name] = hp
				continue
			}
			settings = append(settings, k+"="+s)
		}
		if uri == "" {
			return nil, acts, fmt.Errorf("%s: %s missing", name, KeyHostURI)
		}
		if hp, ok := acts.helpers[name]; ok {
			if hp.URL == "" || hp.Dir == "" || !filepath.IsAbs(hp.Dir) {
				return nil, acts, fmt.Errorf("%s: a checkpoint helper needs %s and %s (an absolute path on the host)",
					name, KeyCheckpointURL, KeyCheckpointDir)
			}
			if hp.PeerURL == "" {
				hp.PeerURL = hp.URL
				acts.helpers[name] = hp
			}
		}
		if _, on := acts.powerOn[name]; on && len(acts.fence[name]) == 0 {
			return nil, acts, fmt.Errorf("%s: %s given without %s: a standby host is powered off with its %s action, "+
				"and on again with %s", name, KeyPowerOn, KeyFence, KeyFence, KeyPowerOn)
		}
		capa, err := pool.ParseCapacity(strings.Join(settings, ";"))
		if err != nil {
			return nil, acts, fmt.Errorf("%s: %w", name, err)
		}
		sd, err := fleet.NewSeed(name, uri, capa)
		if err != nil {
			return nil, acts, fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, sd)
	}
	return out, acts, nil
}

// command reads a command as a list of strings: the program, then its
// arguments.
func command(v cty.Value) ([]string, error) {
	isList := v.Type().IsTupleType() || v.Type().IsListType()
	if v.IsNull() || !v.IsKnown() || !isList || v.LengthInt() == 0 {
		return nil, errors.New(`want a command as a list: ["program", "argument", …]`)
	}
	var out []string
	for _, e := range v.AsValueSlice() {
		s, err := scalar(e)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", len(out), err)
		}
		out = append(out, s)
	}
	if out[0] == "" {
		return nil, errors.New("empty program name")
	}
	return out, nil
}

// scalar is a string, number or bool value as text.
func scalar(v cty.Value) (string, error) {
	if v.IsNull() || !v.IsKnown() {
		return "", errors.New("no value")
	}
	switch t := v.Type(); t {
	case cty.String, cty.Number, cty.Bool:
		s, err := convert.Convert(v, cty.String)
		if err != nil {
			return "", err
		}
		return s.AsString(), nil
	default:
		return "", fmt.Errorf("want a string, number or bool, not %s", t.FriendlyName())
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
