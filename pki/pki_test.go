package pki_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/pki"
	"github.com/virtpool/virtpool/pki/pkitest"
)

func TestConfigs(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, "test CA")
	server, client := ca.Host(dir, "h1")
	s, err := server.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	if s.MinVersion != tls.VersionTLS13 || s.ClientAuth != tls.RequireAndVerifyClientCert || s.ClientCAs == nil || len(s.Certificates) != 1 {
		t.Errorf("server config: min version %x, client auth %v, client CAs %v, %d certificates", s.MinVersion, s.ClientAuth, s.ClientCAs != nil, len(s.Certificates))
	}
	c, err := client.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.MinVersion != tls.VersionTLS13 || c.RootCAs == nil || len(c.Certificates) != 1 {
		t.Errorf("client config: min version %x, root CAs %v, %d certificates", c.MinVersion, c.RootCAs != nil, len(c.Certificates))
	}
}

// Every error names the file at fault, and never shows a key.
func TestFilesRefused(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, "test CA")
	good, _ := ca.Host(dir, "h1")
	other := pkitest.NewCA(t, filepath.Join(dir, "other"), "other CA")
	otherFiles := other.Client(filepath.Join(dir, "other"), "x")
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name string
		f    pki.Files
		want string
	}{
		{"no CA file", pki.Files{CA: missing, Cert: good.Cert, Key: good.Key}, "CA certificate: open " + missing},
		{"CA not PEM", pki.Files{CA: junk, Cert: good.Cert, Key: good.Key}, "CA certificate " + junk + ": no PEM certificate"},
		{"no certificate", pki.Files{CA: good.CA, Cert: missing, Key: good.Key}, "certificate: open " + missing},
		{"no key", pki.Files{CA: good.CA, Cert: good.Cert, Key: missing}, "private key: open " + missing},
		{"key of another certificate", pki.Files{CA: good.CA, Cert: good.Cert, Key: otherFiles.Key}, "certificate " + good.Cert + " with key " + otherFiles.Key},
		{"certificate not PEM", pki.Files{CA: good.CA, Cert: junk, Key: good.Key}, "certificate " + junk + " with key " + good.Key},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for role, load := range map[string]func() (*tls.Config, error){"server": tc.f.ServerConfig, "client": tc.f.ClientConfig} {
				_, err := load()
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: error %v, want one with %q", role, err, tc.want)
				}
				if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
					t.Errorf("%s: the error shows key material: %v", role, err)
				}
			}
		})
	}
}
