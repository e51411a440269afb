// Package pkitest makes an ephemeral CA and certificates for tests, laid
// out as libvirt's: a host has a server certificate (serverAuth) and a
// client certificate (clientAuth), as libvirtd's servercert.pem and
// clientcert.pem, so that tests see the same checks of key usage that
// real hosts' certificates get.
package pkitest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/virtpool/virtpool/pki"
)

// CA is a certificate authority that lives as long as the test.
type CA struct {
	t    testing.TB
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

// NewCA makes a CA named name, its certificate in dir/cacert.pem.
func NewCA(t testing.TB, dir, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &CA{t: t, cert: cert, key: key, file: filepath.Join(dir, "cacert.pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// Host writes a host's server and client certificates and keys in dir
// (servercert.pem, serverkey.pem, clientcert.pem, clientkey.pem), for
// 127.0.0.1 and localhost, and returns the files for each role.
func (ca *CA) Host(dir, name string) (server, client pki.Files) {
	return ca.issue(dir, "server", name, x509.ExtKeyUsageServerAuth), ca.Client(dir, name)
}

// Client writes a client certificate and key in dir (clientcert.pem,
// clientkey.pem): what the agent presents.
func (ca *CA) Client(dir, name string) pki.Files {
	return ca.issue(dir, "client", name, x509.ExtKeyUsageClientAuth)
}

func (ca *CA) issue(dir, role, name string, usage x509.ExtKeyUsage) pki.Files {
	t := ca.t
	t.Helper()
	key := newKey(t)
	tmpl := template(t, name)
	tmpl.KeyUsage, tmpl.ExtKeyUsage = x509.KeyUsageDigitalSignature, []x509.ExtKeyUsage{usage}
	tmpl.DNSNames, tmpl.IPAddresses = []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	f := pki.Files{CA: ca.file, Cert: filepath.Join(dir, role+"cert.pem"), Key: filepath.Join(dir, role+"key.pem")}
	writePEM(t, f.Cert, "CERTIFICATE", der)
	writePEM(t, f.Key, "PRIVATE KEY", keyDER)
	return f
}

// template is a certificate for name, valid for the test's day.
func template(t testing.TB, name string) *x509.Certificate {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return &x509.Certificate{
		SerialNumber: n,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
