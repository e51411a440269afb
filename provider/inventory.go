package provider

import (
	"errors"
	"fmt"
	"net/url"
)

// validLibvirtURI says what is wrong with a libvirt connection URI, or nil.
// It accepts what libvirt does: driver[+transport]://[host]/path[?params].
func validLibvirtURI(s string) error {
	if s == "" {
		return errors.New("empty URI")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URI %q does not parse: %w", s, err)
	}
	if u.Scheme == "" {
		return fmt.Errorf("URI %q has no scheme: want e.g. qemu:///system or qemu+tls://host/system", s)
	}
	if u.Opaque != "" {
		return fmt.Errorf("URI %q: want scheme://[host]/path, e.g. qemu:///system", s)
	}
	return nil
}

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
