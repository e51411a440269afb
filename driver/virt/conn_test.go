package virt

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"

	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
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
		{"unknown host key, openssh", "qemu+ssh://root@h1.example/system?keyfile=/k/id&command=/k/ssh&no_tty=1",
			"Cannot recv data: Host key verification failed.: Connection reset by peer",
			[]string{"SSH to h1.example", "not the one in the known_hosts file that /k/ssh reads", "ssh-keyscan h1.example prints it"}},
		{"unknown host key, default file", "qemu+ssh://h1/system", "Host key verification failed.",
			[]string{"not the one in ~/.ssh/known_hosts", "ssh-keyscan h1 >> ~/.ssh/known_hosts"}},
		{"refused login, openssh", "qemu+ssh://root@h1.example/system?keyfile=/k/id&command=/k/ssh",
			"Cannot recv data: root@h1.example: Permission denied (publickey).: Connection reset by peer",
			[]string{"login as root was refused", "/k/id"}},
		{"refused login", sshURI, "libssh transport error: failed to authenticate: Access denied for 'publickey'",
			[]string{"login as root was refused", "/k/id"}},
		{"ssh default files", "qemu+ssh://h1/system", "Permission denied (publickey)", []string{"the current user", "~/.ssh"}},
		{"sasl, no login", tlsURI, "authentication failed: Failed to start SASL negotiation: -1 (SASL(-1): generic failure: All-whitespace username.)",
			[]string{"h1.example asks for a login (SASL)", "username and password", "VIRTPOOL_LIBVIRT_CREDENTIALS"}},
		{"sasl, wrong password", tlsURI, "authentication failed: authentication failed", []string{"asks for a login (SASL)"}},
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

func TestAnswer(t *testing.T) {
	cred := driver.Credential{Username: "virtpool", Password: "s3cret"}
	tests := []struct {
		name   string
		cred   driver.Credential
		t      lv.ConnectCredentialType
		want   string
		answer bool
	}{
		{"authname", cred, lv.CRED_AUTHNAME, "virtpool", true},
		{"username", cred, lv.CRED_USERNAME, "virtpool", true},
		{"password", cred, lv.CRED_PASSPHRASE, "s3cret", true},
		{"a prompt (SSH host key)", cred, lv.CRED_ECHOPROMPT, "", false},
		{"no login", driver.Credential{}, lv.CRED_PASSPHRASE, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := answer(tc.cred, tc.t)
			if got != tc.want || ok != tc.answer {
				t.Fatalf("answer %q, %t; want %q, %t", got, ok, tc.want, tc.answer)
			}
		})
	}
}

// A dial outlives a caller that gives up, and callers meanwhile share it:
// each URI is dialled once.
func TestConnPoolDialOnce(t *testing.T) {
	const uri = "test:///default"
	p := newConnPool(hclog.NewNullLogger())
	var dials atomic.Int32
	p.connected = func(string, *lv.Connect) { dials.Add(1) }
	defer func() {
		if err := p.closeAll(); err != nil {
			t.Error(err)
		}
	}()

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = p.get(gone, uri) // the caller gives up at once; the dial goes on
	p.mu.Lock()
	d := p.dialing[uri]
	p.mu.Unlock()
	if d != nil {
		<-d.done
	}
	p.mu.Lock()
	kept := p.conns[uri] != nil
	p.mu.Unlock()
	if !kept {
		t.Fatal("the connection dialled for a caller that gave up was not kept")
	}

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.get(context.Background(), uri)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials of %s, want 1", n, uri)
	}
}
