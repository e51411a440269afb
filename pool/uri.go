package pool

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// URIDrivers are the libvirt drivers virtpool manages guests of: the
// scheme of a libvirt URI is driver[+transport].
var URIDrivers = []string{"qemu", "xen", "test"}

// URITransports are libvirt's transports; those in remoteTransports reach
// a daemon on another machine, so their URI must name it.
var URITransports = []string{"unix", "tcp", "tls", "ssh", "libssh", "libssh2", "ext"}

var remoteTransports = map[string]bool{"tcp": true, "tls": true, "ssh": true, "libssh": true, "libssh2": true}

// ValidLibvirtURI says what is wrong with a libvirt connection URI, or nil.
// It accepts what libvirt does for virtpool's drivers:
// driver[+transport]://[user@][host][:port]/path[?params], with a host for
// the remote transports (tcp, tls, ssh, libssh, libssh2) and a path such
// as /system. Callers add which setting the URI comes from.
func ValidLibvirtURI(s string) error {
	if s == "" {
		return errors.New("empty URI: want e.g. qemu:///system or qemu+tls://host/system")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URI %q does not parse: %w", s, err)
	}
	if u.Scheme == "" {
		return fmt.Errorf("URI %q has no scheme: want e.g. qemu:///system or qemu+tls://host/system", s)
	}
	if u.Opaque != "" || !strings.Contains(s, "://") {
		return fmt.Errorf("URI %q: want driver[+transport]://[host]/path, e.g. qemu:///system", s)
	}
	drv, transport, _ := strings.Cut(strings.ToLower(u.Scheme), "+")
	if !slices.Contains(URIDrivers, drv) {
		return fmt.Errorf("URI %q: %q is not a libvirt driver virtpool manages: the scheme is one of %s, "+
			"optionally with +transport (%s), e.g. qemu+tls://host/system", s, drv,
			strings.Join(URIDrivers, ", "), strings.Join(URITransports, ", "))
	}
	if transport != "" && !slices.Contains(URITransports, transport) {
		return fmt.Errorf("URI %q: %q is not a libvirt transport: use one of %s", s, transport,
			strings.Join(URITransports, ", "))
	}
	if remoteTransports[transport] && u.Hostname() == "" {
		return fmt.Errorf("URI %q: the %s transport reaches another machine, and the URI names none: "+
			"write %s://HOST%s", s, transport, u.Scheme, orSlash(u.Path))
	}
	if strings.Trim(u.Path, "/") == "" {
		return fmt.Errorf("URI %q has no path: add the daemon's, e.g. %s://%s/system (test:///default for the test driver)",
			s, u.Scheme, u.Host)
	}
	return nil
}

func orSlash(p string) string {
	if strings.Trim(p, "/") == "" {
		return "/system"
	}
	return p
}
