package agent

import (
	"strings"
	"testing"
	"time"

	"github.com/virtpool/virtpool/pki"
	"github.com/virtpool/virtpool/pool"
)

func TestParseConfig(t *testing.T) {
	const hosts = `hosts = { h1 = { uri = "qemu+tls://h1.example/system" } }` + "\n"
	tests := []struct {
		name    string
		src     string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "defaults", src: hosts, check: func(t *testing.T, c Config) {
			if c.Listen != DefaultListen || c.SampleInterval != 10*time.Second || c.MaxEvents != DefaultEvents || len(c.Seeds) != 1 {
				t.Errorf("got %+v", c)
			}
		}},
		{name: "everything", src: `
listen          = "0.0.0.0:9000"
sample_interval = "1s"
retention       = "10m"
max_samples     = 700
max_events      = 50
driver_path     = "/opt/virtpool/virtpool-driver"
hosts = {
  h1 = { uri = "qemu+tls://h1.example/system", reserved_cpus = 2, reserved_memory_mib = 4096 }
  h2 = { uri = "qemu+unix:///system?socket=/run/h2.sock", cpus = 0.5, memory_mib = 2048, vcpu_ratio = 16 }
}`, check: func(t *testing.T, c Config) {
			if c.Listen != "0.0.0.0:9000" || c.SampleInterval != time.Second || c.Retention != 10*time.Minute ||
				c.MaxSamples != 700 || c.MaxEvents != 50 || c.DriverPath != "/opt/virtpool/virtpool-driver" {
				t.Errorf("settings: %+v", c)
			}
			want := map[string]pool.Capacity{"h1": {ReservedCPUs: 2, ReservedMemoryMiB: 4096},
				"h2": {CPUs: 0.5, MemoryMiB: 2048, VCPURatio: 16}}
			if len(c.Seeds) != 2 {
				t.Fatalf("seeds %+v", c.Seeds)
			}
			for _, s := range c.Seeds {
				if s.Capacity != want[s.Name] {
					t.Errorf("%s: capacity %+v, want %+v", s.Name, s.Capacity, want[s.Name])
				}
			}
		}},
		{name: "unknown key", src: hosts + `sample_intervall = "1s"`, wantErr: `agent.hcl:2,1-17: unknown key "sample_intervall" (keys: checkpoint_ca, checkpoint_cert, checkpoint_key, driver_path, failover_grace`},
		{name: "checkpoint helpers", src: `
checkpoint_ca = "/etc/virtpool/ca.pem"
hosts = {
  h1 = { uri = "qemu+tls://h1.example/system", checkpoint_url = "https://h1.example:8481", checkpoint_dir = "/var/lib/virtpool/ship" }
  h2 = { uri = "qemu+tls://h2.example/system", checkpoint_url = "https://127.0.0.1:18481", checkpoint_peer_url = "https://h2.example:8481",
         checkpoint_dir = "/srv/ship" }
  h3 = { uri = "qemu+tls://h3.example/system" }
}`, check: func(t *testing.T, c Config) {
			want := map[string]Helper{"h1": {URL: "https://h1.example:8481", PeerURL: "https://h1.example:8481", Dir: "/var/lib/virtpool/ship"},
				"h2": {URL: "https://127.0.0.1:18481", PeerURL: "https://h2.example:8481", Dir: "/srv/ship"}}
			if len(c.Helpers) != 2 || c.Helpers["h1"] != want["h1"] || c.Helpers["h2"] != want["h2"] {
				t.Errorf("helpers %+v, want %+v", c.Helpers, want)
			}
			if c.HelperTLS.CA != "/etc/virtpool/ca.pem" || c.HelperTLS.Cert != pki.ClientCert || c.HelperTLS.Key != pki.ClientKey {
				t.Errorf("helper TLS %+v: want the CA given, libvirt's client certificate", c.HelperTLS)
			}
			for _, s := range c.Seeds {
				if s.Capacity != (pool.Capacity{}) {
					t.Errorf("%s: capacity %+v from the helper's keys", s.Name, s.Capacity)
				}
			}
		}},
		{name: "checkpoint helper without dir", src: `hosts = { h1 = { uri = "qemu:///system", checkpoint_url = "https://h1:8481" } }`,
			wantErr: "h1: a checkpoint helper needs checkpoint_url and checkpoint_dir (an absolute path on the host)"},
		{name: "checkpoint dir relative", src: `hosts = { h1 = { uri = "qemu:///system", checkpoint_url = "https://h1:8481", checkpoint_dir = "ship" } }`,
			wantErr: "h1: a checkpoint helper needs checkpoint_url and checkpoint_dir"},
		{name: "failover", src: `
failover_grace = "5s"
fence_timeout  = "20s"
hosts = {
  h1 = { uri = "qemu+tls://h1.example/system", fence = ["ipmitool", "-H", "bmc-h1", "-E", "chassis", "power", "off"] }
  h2 = { uri = "qemu+tls://h2.example/system" }
}`, check: func(t *testing.T, c Config) {
			if c.FailoverGrace != 5*time.Second || c.FenceTimeout != 20*time.Second || len(c.Fence) != 1 ||
				strings.Join(c.Fence["h1"], " ") != "ipmitool -H bmc-h1 -E chassis power off" {
				t.Errorf("failover settings: grace %s, timeout %s, fence %q", c.FailoverGrace, c.FenceTimeout, c.Fence)
			}
		}},
		{name: "failover defaults", src: hosts, check: func(t *testing.T, c Config) {
			if c.FailoverGrace != DefaultFailoverGrace || c.FenceTimeout != DefaultFenceTimeout || len(c.Fence) != 0 ||
				c.StandbyOff != DefaultStandbyOff || len(c.PowerOn) != 0 {
				t.Errorf("failover settings: grace %s, timeout %s, fence %q", c.FailoverGrace, c.FenceTimeout, c.Fence)
			}
		}},
		{name: "power actions", src: `
standby_power_off_after = "10m"
hosts = {
  h1 = { uri = "qemu+tls://h1.example/system", fence = ["ipmitool", "power", "off"], power_on = ["ipmitool", "power", "on"] }
}`, check: func(t *testing.T, c Config) {
			if c.StandbyOff != 10*time.Minute || strings.Join(c.PowerOn["h1"], " ") != "ipmitool power on" {
				t.Errorf("power settings: after %s, power_on %q", c.StandbyOff, c.PowerOn)
			}
		}},
		{name: "power_on without fence", src: `hosts = { h1 = { uri = "qemu:///system", power_on = ["ipmitool", "power", "on"] } }`,
			wantErr: "hosts: h1: power_on given without fence: a standby host is powered off with its fence action"},
		{name: "fence not a list", src: `hosts = { h1 = { uri = "qemu:///system", fence = "ipmitool power off" } }`,
			wantErr: `hosts: h1: fence: want a command as a list: ["program", "argument", …]`},
		{name: "fence empty", src: `hosts = { h1 = { uri = "qemu:///system", fence = [] } }`, wantErr: `h1: fence: want a command as a list`},
		{name: "bad grace", src: hosts + `failover_grace = "0s"`, wantErr: "failover_grace: 0s must be positive"},
		{name: "block", src: hosts + `host "h2" {}`, wantErr: "Unexpected \"host\" block"},
		{name: "no hosts", src: `listen = "127.0.0.1:1"`, wantErr: "agent.hcl: hosts missing"},
		{name: "empty hosts", src: `hosts = {}`, wantErr: "hosts: no host given"},
		{name: "host without uri", src: `hosts = { h1 = { cpus = 1 } }`, wantErr: "hosts: h1: uri missing"},
		{name: "bad capacity key", src: `hosts = { h1 = { uri = "qemu:///system", cpu = 1 } }`, wantErr: `hosts: h1: unknown setting "cpu"`},
		{name: "bad capacity", src: `hosts = { h1 = { uri = "qemu:///system", reserved_cpus = 2, cpus = 1 } }`, wantErr: "h1: reserved_cpus = 2 leaves nothing of cpus = 1"},
		{name: "bad uri", src: `hosts = { h1 = { uri = "h1.example" } }`, wantErr: `h1: "h1.example" is not a libvirt URI`},
		{name: "bad host name", src: `hosts = { "b@d" = { uri = "qemu:///system" } }`, wantErr: `host name "b@d"`},
		{name: "same uri twice", src: `hosts = { a = { uri = "qemu:///system" }, b = { uri = "qemu:///system" } }`, wantErr: "qemu:///system listed twice"},
		{name: "not a duration", src: hosts + `sample_interval = "often"`, wantErr: `sample_interval: "often" is not a duration`},
		{name: "retention too short", src: hosts + "sample_interval = \"10s\"\nretention = \"15s\"", wantErr: "retention: 15s keeps fewer than two samples"},
		{name: "bad listen", src: hosts + `listen = "8480"`, wantErr: `listen: "8480" is not host:port`},
		{name: "list value", src: hosts + `listen = ["a"]`, wantErr: "listen: want a string, number or bool, not tuple"},
		{name: "syntax", src: `hosts = {`, wantErr: "agent.hcl:1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tc.src), "agent.hcl")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}
