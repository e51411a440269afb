package pool_test

import (
	"strings"
	"testing"

	"github.com/virtpool/virtpool/pool"
)

func TestValidLibvirtURI(t *testing.T) {
	cases := []struct {
		uri  string
		want string // "" if valid, else part of the error
	}{
		{"qemu:///system", ""},
		{"qemu:///session", ""},
		{"qemu+unix:///system", ""},
		{"qemu+unix:///system?socket=/run/h1/libvirt-sock", ""},
		{"qemu+tcp://10.0.0.2/system", ""},
		{"qemu+tls://h1.example/system", ""},
		{"qemu+tls://h1.example:16514/system?pkipath=/x", ""},
		{"qemu+ssh://root@10.0.0.2/system", ""},
		{"qemu+ssh://virtpool@kvm3/system?keyfile=/k&known_hosts=/kh&sshauth=privkey", ""},
		{"qemu+libssh://root@kvm3/system?known_hosts=/kh", ""},
		{"qemu+libssh2://root@kvm3/system?sshauth=privkey", ""},
		{"qemu+ext:///system?command=/opt/bin/tunnel", ""},
		{"xen:///system", ""},
		{"xen+ssh://root@xen1/system", ""},
		{"QEMU+TLS://h1/system", ""},
		{"test:///default", ""},
		{"", "empty URI"},
		{"/var/run/libvirt-sock", "has no scheme"},
		{"qemu:system", "want driver[+transport]://"},
		{"qemu+tcp://[::1/system", "does not parse"},
		{"http://h1.example/system", `"http" is not a libvirt driver virtpool manages: the scheme is one of qemu, xen, test`},
		{"lxc:///system", `"lxc" is not a libvirt driver`},
		{"qemu+carrier://h1/system", `"carrier" is not a libvirt transport: use one of unix, tcp, tls, ssh, libssh, libssh2, ext`},
		{"qemu+tcp:///system", "the tcp transport reaches another machine, and the URI names none: write qemu+tcp://HOST/system"},
		{"qemu+ssh:///system?keyfile=/k", "the ssh transport reaches another machine"},
		{"qemu+tls://h1.example", `has no path: add the daemon's, e.g. qemu+tls://h1.example/system`},
		{"qemu:///", "has no path"},
	}
	for _, c := range cases {
		err := pool.ValidLibvirtURI(c.uri)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("ValidLibvirtURI(%q) = %v, want valid", c.uri, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("ValidLibvirtURI(%q) = %v, want an error with %q", c.uri, err, c.want)
		case c.want != "" && c.uri != "" && !strings.Contains(err.Error(), c.uri):
			t.Errorf("ValidLibvirtURI(%q) = %v: does not name the URI", c.uri, err)
		}
	}
}
