// Package pki makes TLS configurations from libvirt's certificate files,
// so that what virtpool runs between hosts (checkpoint/ship) authenticates
// with the certificates every libvirt host over TLS already has: no new
// CA for operators to run. Both ends authenticate (mutual TLS), as
// libvirtd does, and nothing older than TLS 1.3 is spoken.
package pki

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// Where libvirt reads its certificates unless told otherwise (libvirtd's
// ca_file, cert_file, key_file; a client's default pkipath).
const (
	CACert     = "/etc/pki/CA/cacert.pem"
	ServerCert = "/etc/pki/libvirt/servercert.pem"
	ServerKey  = "/etc/pki/libvirt/private/serverkey.pem"
	ClientCert = "/etc/pki/libvirt/clientcert.pem"
	ClientKey  = "/etc/pki/libvirt/private/clientkey.pem"
)

// Files are the CA that vouches for the other end, and this end's own
// certificate and private key.
type Files struct {
	CA, Cert, Key string
}

// Server and Client are libvirt's default files for each role.
var (
	Server = Files{CA: CACert, Cert: ServerCert, Key: ServerKey}
	Client = Files{CA: CACert, Cert: ClientCert, Key: ClientKey}
)

// ServerConfig serves with f's certificate and accepts only clients that
// present a certificate f's CA signed.
func (f Files) ServerConfig() (*tls.Config, error) {
	c, pool, err := f.config()
	if err != nil {
		return nil, err
	}
	c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	return c, nil
}

// ClientConfig presents f's certificate and trusts only servers whose
// certificate f's CA signed (for the name dialled).
func (f Files) ClientConfig() (*tls.Config, error) {
	c, pool, err := f.config()
	if err != nil {
		return nil, err
	}
	c.RootCAs = pool
	return c, nil
}

// config is what both ends have: TLS 1.3 and f's certificate; and the
// pool of f's CA, for the end to trust.
func (f Files) config() (*tls.Config, *x509.CertPool, error) {
	pool, cert, err := f.load()
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}, pool, nil
}

// load reads the three files; each error names the file (never its
// content: one holds a private key).
func (f Files) load() (*x509.CertPool, tls.Certificate, error) {
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, tls.Certificate{}, fmt.Errorf("CA certificate %s: no PEM certificate in it", f.CA)
	}
	certPEM, err := os.ReadFile(f.Cert)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(f.Key)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("private key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, tls.Certificate{}, fmt.Errorf("certificate %s with key %s: %w", f.Cert, f.Key, err)
	}
	return pool, cert, nil
}
