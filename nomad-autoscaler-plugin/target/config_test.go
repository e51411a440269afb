package target

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/nomad/api"

	"github.com/virtpool/virtpool/fleet/fleettest"
	"github.com/virtpool/virtpool/pool"
	"github.com/virtpool/virtpool/pool/pooltest"
)

func TestSetConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := func(kv ...string) map[string]string {
		m := map[string]string{"hosts": "h1=fake:///h1", "sample_interval": "1s"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name    string
		cfg     map[string]string
		wantErr string
	}{
		{"ok", base(), ""},
		{"everything", base("load_window", "30s", "shutdown_timeout", "0s", "migration_bandwidth_mib", "2000",
			"migration_max_downtime", "50ms", "migration_auto_converge", "true", "migration_post_copy", "false",
			"migration_progress_timeout", "1m", "migration_completion_timeout_per_gib", "90s",
			"migration_tls", "true", "scale_timeout", "5m", "retention", "10m", "max_samples", "100"), ""},
		{"agent's nomad keys", base("nomad_address", "http://127.0.0.1:4646", "nomad_config_inherit", "true"), ""},
		{"unknown key", base("load_windw", "5s"), `virtpool-target: unknown key "load_windw"`},
		{"no hosts", map[string]string{}, "virtpool-target: hosts: empty"},
		{"window shorter than a sample", base("sample_interval", "10s", "load_window", "5s"), "load_window: 5s is shorter than sample_interval 10s"},
		{"window longer than retention", base("load_window", "2h"), "load_window: 2h0m0s is longer than retention"},
		{"bad window", base("load_window", "fast"), `load_window: "fast" is not a duration`},
		{"negative shutdown", base("shutdown_timeout", "-1s"), `shutdown_timeout: "-1s" is not a duration of 0 or more`},
		{"bad bandwidth", base("migration_bandwidth_mib", "fast"), `migration_bandwidth_mib: "fast" is not an integer`},
		{"bad downtime", base("migration_max_downtime", "0s"), "migration_max_downtime: 0s must be positive"},
		{"bad post-copy", base("migration_post_copy", "yes please"), `migration_post_copy: "yes please" is not true or false`},
		{"bad progress timeout", base("migration_progress_timeout", "-5s"), "migration_progress_timeout: -5s must be positive"},
		{"bad completion timeout", base("migration_completion_timeout_per_gib", "soon"), `migration_completion_timeout_per_gib: "soon" is not a duration`},
		{"bad tls", base("migration_tls", "on"), `migration_tls: "on" is not true or false`},
		{"bad inherit", base("nomad_config_inherit", "maybe"), `nomad_config_inherit: "maybe" is not true or false`},
		{"event log", base("event_log", filepath.Join(dir, "events.jsonl")), ""},
		{"power on", base("power_on", "ipmitool -H bmc-{host} -E chassis power on"), ""},
		{"power on empty", base("power_on", " "), "power_on: empty; give the command that powers a host on"},
		{"event log in no directory", base("event_log", filepath.Join(dir, "nodir", "events.jsonl")),
			`event_log: "` + filepath.Join(dir, "nodir", "events.jsonl") + `": want a file in an existing directory; ` + filepath.Join(dir, "nodir") + " is none"},
		{"event log under a file", base("event_log", filepath.Join(file, "events.jsonl")), "event_log: "},
		{"event log is a directory", base("event_log", dir), "event_log: open " + dir},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPlugin(hclog.NewNullLogger(), fleettest.Starter(pooltest.New(2, 8, "fake:///h1"), nil))
			err := p.SetConfig(tc.cfg)
			defer p.Stop()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name    string
		cfg     map[string]string
		wantErr string
		check   func(policyConfig) error
	}{
		{"size", map[string]string{"pool": "web", "dimension": "size", "_nomad_autoscaler_grpc_timeout": "1.5s"}, "",
			func(pc policyConfig) error {
				if pc.StatusTimeout != 1350*time.Millisecond {
					return fmt.Errorf("status timeout %s, want 90%% of the agent's 1.5s", pc.StatusTimeout)
				}
				return nil
			}},
		{"drain", map[string]string{"pool": "web", "dimension": "size", "node_drain": "true", "node_drain_deadline": "2m",
			"node_drain_ignore_system_jobs": "true", "dry-run": "false"}, "",
			func(pc policyConfig) error {
				if !pc.NodeDrain || pc.DrainDeadline != 2*time.Minute || !pc.DrainIgnore {
					return fmt.Errorf("drain settings %+v", pc)
				}
				return nil
			}},
		{"hot_hosts", map[string]string{"pool": "web", "dimension": "hot_hosts"}, "", nil},
		{"hosts", map[string]string{"pool": "web", "dimension": "hosts"}, "", nil},
		{"unknown key", map[string]string{"pool": "web", "dimension": "size", "poool": "x"}, `unknown key "poool"`, nil},
		{"no pool", map[string]string{"dimension": "size"}, "pool missing", nil},
		{"cluster hosts", map[string]string{"dimension": "hosts", "cpu_high": "0.9", "target_utilisation": "0.75",
			"max_parallel_migrations": "2"}, "",
			func(pc policyConfig) error {
				c := pc.ClusterPolicy
				if !pc.Cluster || pc.Pool != "" || c == nil || c.Mode != "consolidate" || c.CPUHigh != 0.9 || c.TargetUtilisation != 0.75 ||
					c.MaxParallel != 2 || c.MemoryHigh != pool.DefaultPolicy().MemoryHigh {
					return fmt.Errorf("cluster policy %+v", c)
				}
				return nil
			}},
		{"cluster hot_hosts", map[string]string{"dimension": "hot_hosts"}, "", nil},
		{"cluster key with a pool", map[string]string{"pool": "web", "dimension": "hosts", "cpu_high": "0.9"},
			"cpu_high: only for the whole cluster (no pool); pool web has its virtpool_migration_policy", nil},
		{"cluster bad fraction", map[string]string{"dimension": "hosts", "target_utilisation": "80"},
			`target_utilisation: "80" is not a fraction in (0, 1]`, nil},
		{"cluster low above high", map[string]string{"dimension": "hosts", "cpu_low": "0.9", "cpu_high": "0.5"},
			"cpu_low (0.9) must be below cpu_high (0.5)", nil},
		{"cluster target above the watermarks", map[string]string{"dimension": "hosts", "target_utilisation": "0.95"},
			"target_utilisation 0.95 must lie between the low and high watermarks (cpu_low 0.3 … cpu_high 0.8)", nil},
		{"cluster target below the watermarks", map[string]string{"dimension": "hot_hosts", "memory_low": "0.5", "target_utilisation": "0.4"},
			"target_utilisation 0.4 must lie between the low and high watermarks (memory_low 0.5", nil},
		{"no dimension", map[string]string{"pool": "web"}, "dimension missing: one of size, hosts, hot_hosts", nil},
		{"bad dimension", map[string]string{"pool": "web", "dimension": "count"}, `dimension: "count" is not one of`, nil},
		{"bad dry-run", map[string]string{"pool": "web", "dimension": "size", "dry-run": "yes"}, `dry-run: "yes" is not true or false`, nil},
		{"drain on hosts", map[string]string{"pool": "web", "dimension": "hosts", "node_drain": "true"},
			"node_drain: only the size dimension removes members", nil},
		{"bad deadline", map[string]string{"pool": "web", "dimension": "size", "node_drain_deadline": "soon"},
			`node_drain_deadline: "soon" is not a duration`, nil},
		{"nomad nodes", map[string]string{"pool": "web", "dimension": "size", "node_drain": "true", "node_class": "virt",
			"datacenter": "dc1", "node_pool": "batch", "node_selector_strategy": "empty", "node_purge": "true"}, "",
			func(pc policyConfig) error {
				n := pc.Nodes
				if n.Filter == nil || n.Selector != "empty" || !n.Purge ||
					!n.Filter.IsPoolMember(&api.NodeListStub{NodeClass: "virt", Datacenter: "dc1", NodePool: "batch"}) ||
					n.Filter.IsPoolMember(&api.NodeListStub{NodeClass: "virt", Datacenter: "dc2", NodePool: "batch"}) {
					return fmt.Errorf("node choice %+v", n)
				}
				return nil
			}},
		{"nomad defaults", map[string]string{"pool": "web", "dimension": "size", "node_drain": "true"}, "",
			func(pc policyConfig) error {
				if n := pc.Nodes; n.Filter != nil || n.Selector != "least_busy" || n.Purge {
					return fmt.Errorf("node choice %+v, want any node, least_busy, no purge", n)
				}
				return nil
			}},
		{"node key without drain", map[string]string{"pool": "web", "dimension": "size", "node_class": "virt"},
			"node_class: only with node_drain = true", nil},
		{"empty node_pool", map[string]string{"pool": "web", "dimension": "size", "node_drain": "true", "node_pool": ""},
			"node_pool: empty", nil},
		{"bad selector", map[string]string{"pool": "web", "dimension": "size", "node_drain": "true",
			"node_selector_strategy": "random"}, `node_selector_strategy: "random" is not one of least_busy, empty`, nil},
		{"bad purge", map[string]string{"pool": "web", "dimension": "size", "node_drain": "true", "node_purge": "maybe"},
			`node_purge: "maybe" is not true or false`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := New(hclog.NewNullLogger())
			pc, err := p.policies.parse(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				// Cached: the same answer again.
				if _, err2 := p.policies.parse(tc.cfg); err2 == nil || err2.Error() != err.Error() {
					t.Errorf("second parse: %v", err2)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				if err := tc.check(pc); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestCheckPolicy(t *testing.T) {
	withNomad := map[string]string{"hosts": "h1=fake:///h1", "nomad_address": "http://127.0.0.1:4646", "scale_timeout": "15m"}
	noNomad := map[string]string{"hosts": "h1=fake:///h1"}
	drain := func(deadline string) map[string]string {
		return map[string]string{"pool": "web", "dimension": "size", "node_drain": "true", "node_drain_deadline": deadline}
	}
	tests := []struct {
		name    string
		cfg     map[string]string
		policy  map[string]string
		victims int64 // > 0: also check draining that many
		wantErr string
	}{
		{"no drain, no Nomad", noNomad, map[string]string{"pool": "web", "dimension": "size"}, 0, ""},
		{"drain with Nomad", withNomad, drain("5m"), 2, ""},
		{"drain without Nomad", noNomad, drain("5m"), 0,
			`node_drain = true, but the plugin has no Nomad configuration: set nomad_address in the agent's target "virtpool-target" config block`},
		{"deadline above scale_timeout", withNomad, drain("15m"), 0,
			"node_drain_deadline 15m0s (plus 1m0s margin) is 16m0s, above scale_timeout 15m0s"},
		// Drains run at once: many victims need no more time than one.
		{"many victims drained at once", withNomad, drain("10m"), 4, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			pc, err := parsePolicy(tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			err = checkPolicy(c, pc)
			if err == nil && tc.victims > 0 {
				err = checkDrainTime(c, pc)
			}
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
}
