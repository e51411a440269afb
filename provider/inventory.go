package provider

import (
	"fmt"
	"net/url"
)

// validMigrationURI checks a QEMU migration URI (tcp://host[:port]).
func validMigrationURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("migration URI %q does not parse: %w", s, err)
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("migration URI %q: want scheme://host[:port], e.g. tcp://10.0.0.2", s)
	}
	return nil
}

// isLocalURI reports whether a libvirt URI names a daemon on this machine,
// where the provider can check that image files exist.
func isLocalURI(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	return u.Host == "" || u.Hostname() == "localhost" || u.Hostname() == "127.0.0.1"
}
