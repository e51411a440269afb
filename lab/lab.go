// Package lab runs a cluster of libvirt hosts on one Linux machine, for the
// demo and the acceptance tests. Each host is a network namespace plus a
// mount and UTS namespace with its own libvirtd, virtlogd and host UUID;
// a "switch" namespace bridges the hosts and a client namespace onto one
// layer-2 segment (192.0.2.0/24, TEST-NET-1, never routed anywhere), and all
// hosts share one image directory, so live migration between them is real
// QEMU live migration. Everything the lab makes is named with the vpl- prefix
// and lives under Dir, so Down can remove it even after a crash.
package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/virtpool/virtpool/driver"
	"github.com/virtpool/virtpool/pool"
)

// Dir holds the lab's state: per-host libvirt directories and the shared
// image directory.
const Dir = "/var/lib/virtpool/lab"

// Subnet plan: hosts are .11, .12, …; the client is .2; guests are .101+.
const (
	subnet     = "192.0.2."
	prefixLen  = 24
	clientIP   = subnet + "2"
	hostIPBase = 10
	guestBase  = 100
	nsPrefix   = "vpl-"
	switchNS   = nsPrefix + "sw"
	clientNS   = nsPrefix + "client"
	// GuestBridge is the bridge guests join on every host.
	GuestBridge = "br0"
)

// Host is one lab host.
type Host struct {
	Name      string `json:"name"`       // h1, h2, …
	Namespace string `json:"namespace"`  // network namespace
	IP        string `json:"ip"`         // address on the lab segment
	UUID      string `json:"uuid"`       // libvirt host UUID
	URI       string `json:"uri"`        // how virtpool reaches its libvirtd (unix socket)
	PeerURI   string `json:"peer_uri"`   // how other hosts' libvirtd reach it (TCP)
	Bridge    string `json:"bridge"`     // bridge for guest NICs
	StateDir  string `json:"state_dir"`  // private /etc, /run, /var dirs of its libvirtd
	MigrateTo string `json:"migrate_to"` // QEMU migration URI (tcp://IP)
	// Transport is how URI and PeerURI reach its libvirtd, and Loopback
	// the address virtpool reaches it at through the relay (tls, ssh).
	Transport Transport `json:"transport,omitempty"`
	Loopback  string    `json:"loopback,omitempty"`
	// CPUs and MemoryMiB are the host's capacity for guests: its budget
	// (see HostCPUs), which virtpool must plan with instead of the
	// machine's cores and memory that libvirt reports.
	CPUs      float64 `json:"cpus"`
	MemoryMiB int64   `json:"memory_mib"`
	VCPURatio float64 `json:"vcpu_ratio"` // vCPUs per core of CPUs: its guests are tiny
	// Cgroups hold the host's processes and enforce its budget.
	Cgroups Cgroups `json:"cgroups"`
	// ShipBin is the virtpool binary whose 'ship serve' runs on the host
	// as its checkpoint helper ("": none; see ShipPort).
	ShipBin string `json:"ship_bin,omitempty"`
}

// Socket is the unix socket of the host's libvirtd, which URI names.
func (h Host) Socket() string { return socketIn(h.StateDir) }

// socketIn is the libvirtd socket of a host whose state is in dir: run/ is
// its /run/libvirt.
func socketIn(dir string) string { return filepath.Join(dir, "run", "libvirt-sock") }

// Capacity is the host's capacity as virtpool's host entries declare it.
func (h Host) Capacity() pool.Capacity {
	return pool.Capacity{CPUs: h.CPUs, MemoryMiB: h.MemoryMiB, VCPURatio: h.VCPURatio}
}

// Entry is the host as virtpool names and reaches it: a pool record's
// entry, with its migration addresses and capacity.
func (h Host) Entry() pool.HostEntry {
	return pool.HostEntry{Name: h.Name, URI: h.URI, PeerURI: h.PeerURI, MigrationURI: h.MigrateTo, Capacity: h.Capacity()}
}

// Inventory is every lab host's entry, by name.
func (l *Lab) Inventory() pool.Inventory {
	inv := pool.Inventory{}
	for _, h := range l.Hosts {
		inv[h.Name] = h.Entry()
	}
	return inv
}

// Guest image files, in the shared image directory.
type Image struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"` // fixed part; GuestCmdline adds address and name
}

// Lab is a running lab, as recorded in Dir/lab.json.
type Lab struct {
	Hosts           []Host `json:"hosts"`
	ClientNamespace string `json:"client_namespace"`
	ClientIP        string `json:"client_ip"`
	ImageDir        string `json:"image_dir"`
	Image           Image  `json:"image"`
	// Accelerator guests should use ("" = let the driver choose).
	Accelerator string `json:"accelerator,omitempty"`
	// Budgets says whether the hosts have CPU and memory budgets of their
	// own (cgroups, and the capacity they declare), or share the machine.
	Budgets bool `json:"budgets"`
}

// Transport is how the lab's hosts are reached (every host the same way).
func (l *Lab) Transport() Transport {
	if len(l.Hosts) == 0 || l.Hosts[0].Transport == "" {
		return Unix
	}
	return l.Hosts[0].Transport
}

func stateFile() string { return filepath.Join(Dir, "lab.json") }

// Load reads the running lab's description.
func Load() (*Lab, error) {
	b, err := os.ReadFile(stateFile())
	if err != nil {
		return nil, fmt.Errorf("lab is not up (run 'virtpool lab up'): %w", err)
	}
	var l Lab
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("read %s: %w", stateFile(), err)
	}
	return &l, nil
}

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(stateFile(), b, 0o644)
}

// GuestIP is the address of the n-th guest (n from 1).
func GuestIP(n int) string { return fmt.Sprintf("%s%d", subnet, guestBase+n) }

// GuestMAC is a stable locally administered MAC for the n-th guest.
func GuestMAC(n int) string { return fmt.Sprintf("52:54:00:c0:02:%02x", (guestBase+n)&0xff) }

// GuestCmdline is the kernel command line of the n-th guest, which keeps
// the sequence file /seq (seed R-T3; pool members do without: it costs an
// idle guest most of its CPU).
func (l *Lab) GuestCmdline(name string, n int) string {
	return fmt.Sprintf("%s virtpool.ip=%s/%d virtpool.name=%s virtpool.seq=1", l.Image.Cmdline, GuestIP(n), prefixLen, name)
}

// Host returns the host with the given name.
func (l *Lab) Host(name string) (Host, error) {
	for _, h := range l.Hosts {
		if h.Name == name {
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("lab has no host %q", name)
}

// GuestSpec is the domain spec of the n-th lab guest (n from 1), which
// answers at GuestIP(n) once booted.
func (l *Lab) GuestSpec(name string, n int, h Host, memMiB uint64, vcpus int, labels map[string]string) driver.DomainSpec {
	return driver.DomainSpec{
		Name: name, VCPUs: vcpus, MemoryMiB: memMiB, Accelerator: l.Accelerator,
		Kernel: l.Image.Kernel, Initrd: l.Image.Initrd, Cmdline: l.GuestCmdline(name, n),
		Bridge: h.Bridge, MAC: GuestMAC(n), Labels: labels,
	}
}

// MigrateRequest is the request that moves a domain from one lab host to
// another over the lab segment.
func MigrateRequest(name string, from, to Host, o driver.MigrateOptions) driver.MigrateRequest {
	// Over tls the lab's QEMUs refuse migrations in the clear.
	o.TLS = o.TLS || from.Transport == TLS
	return driver.MigrateRequest{
		Domain: name, SourceURI: from.URI, DestURI: to.URI,
		DestPeerURI: to.PeerURI, MigrationURI: to.MigrateTo, Options: o,
	}
}
