package virt

import (
	lv "libvirt.org/go/libvirt"

	"github.com/virtpool/virtpool/driver"
)

// SetCredentials gives the driver the logins to answer hosts with, by URI.
func (d *Driver) SetCredentials(creds map[string]driver.Credential) {
	d.conns.mu.Lock()
	defer d.conns.mu.Unlock()
	d.conns.creds = creds
}

// authFor is the callback that answers libvirt's questions while it opens
// a connection: the user name and password of cred, nothing else. A
// question left unanswered fails the connection, and libvirt says so.
func authFor(cred driver.Credential) *lv.ConnectAuth {
	return &lv.ConnectAuth{
		CredType: []lv.ConnectCredentialType{lv.CRED_AUTHNAME, lv.CRED_USERNAME, lv.CRED_PASSPHRASE},
		Callback: func(creds []*lv.ConnectCredential) {
			for _, c := range creds {
				if v, ok := answer(cred, c.Type); ok {
					c.Result, c.ResultLen = v, len(v)
				}
			}
		},
	}
}

// answer is cred's answer to a question of libvirt's of type t, if it has
// one.
func answer(cred driver.Credential, t lv.ConnectCredentialType) (string, bool) {
	switch t {
	case lv.CRED_AUTHNAME, lv.CRED_USERNAME:
		return cred.Username, cred.Username != ""
	case lv.CRED_PASSPHRASE:
		return cred.Password, cred.Password != ""
	}
	return "", false
}
