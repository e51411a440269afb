package pool

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// hostNameRE: host names become record names and appear in domain labels.
var hostNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// ValidHostName says what is wrong with a host name, or nil. Callers add
// where the name comes from.
func ValidHostName(name string) error {
	if !hostNameRE.MatchString(name) {
		return fmt.Errorf("host name %q: use letters, digits, '_', '.', '-' (at most 63, starting with a letter or digit)", name)
	}
	return nil
}

// HostEntry is one hypervisor: how virtpool reaches its libvirtd, and how
// other hosts reach it during a live migration.
type HostEntry struct {
	Name string `json:"name"`
	URI  string `json:"uri"`
	// PeerURI is how the source host's libvirtd reaches this one in a
	// peer-to-peer migration; default URI.
	PeerURI string `json:"peer_uri,omitempty"`
	// MigrationURI is where QEMU sends migration data (tcp://addr);
	// default: libvirt's choice.
	MigrationURI string `json:"migration_uri,omitempty"`
	// Capacity is what virtpool may plan with on the host (default: all
	// it reports).
	Capacity Capacity `json:"capacity,omitzero"`
}

// Inventory is a set of hosts by name.
type Inventory map[string]HostEntry

// Names returns the host names, sorted.
func (inv Inventory) Names() []string {
	out := make([]string, 0, len(inv))
	for n := range inv {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Lookup returns a host, or an error that lists the known ones.
func (inv Inventory) Lookup(name string) (HostEntry, error) {
	if h, ok := inv[name]; ok {
		return h, nil
	}
	return HostEntry{}, fmt.Errorf("unknown host %q: the known hosts are %s", name, strings.Join(inv.Names(), ", "))
}
