package virt

import (
	"strings"
	"testing"
)

func TestConnectHint(t *testing.T) {
	const (
		tlsURI = "qemu+tls://h1.example/system?pkipath=/etc/virtpool/pki"
		sshURI = "qemu+libssh://root@h1.example/system?keyfile=/k/id&known_hosts=/k/known"
	)
	tests := []struct {
		name, uri, msg string
		want           []string // in the hint; none: no hint
	}{
		{"tls certificate", tlsURI, "authentication failed: Failed to verify peer's certificate",
			[]string{"TLS to h1.example", "pkipath /etc/virtpool/pki", "signed by that CA"}},
		{"tls default paths", "qemu+tls://h1/system", "unable to read TLS certificate", []string{"/etc/pki/CA/cacert.pem"}},
		{"tls unrelated", tlsURI, "Cannot recv data: Connection reset by peer", nil},
		{"unknown host key", sshURI, "libssh transport error: SSH host key for 'h1.example' (aa:bb) was not accepted",
			[]string{"SSH to h1.example", "not the one in /k/known", "ssh-keyscan h1.example >> /k/known"}},
		{"refused login", sshURI, "libssh transport error: failed to authenticate: Access denied for 'publickey'",
			[]string{"login as root was refused", "/k/id"}},
		{"ssh default files", "qemu+ssh://h1/system", "Permission denied (publickey)", []string{"the current user", "~/.ssh"}},
		{"tcp", "qemu+tcp://h1/system", "authentication failed: certificate", nil},
		{"unix", "qemu:///system", "Failed to connect socket", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := connectHint(tc.uri, tc.msg)
			if len(tc.want) == 0 && got != "" {
				t.Fatalf("hint %q, want none", got)
			}
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("hint %q lacks %q", got, w)
				}
			}
		})
	}
}
