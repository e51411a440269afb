package driver

import (
	"encoding/json"
	"fmt"
	"os"
)

// Credential is a login a host's libvirtd may ask for (SASL, e.g.
// auth_tls = "sasl" with SCRAM-SHA-256): the only credential types virtpool
// answers are a user name and a password.
type Credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// CredentialsEnv names the environment variable the driver process reads
// logins from: a JSON object from libvirt URI to Credential. The provider
// sets it from its hosts' username and password; the autoscaler plugins
// and the agent pass on their own environment. libvirt's own auth.conf
// (LIBVIRT_AUTH_FILE) is read too, before these.
const CredentialsEnv = "VIRTPOOL_LIBVIRT_CREDENTIALS"

// CredentialsFromEnv reads CredentialsEnv (none when it is unset).
func CredentialsFromEnv() (map[string]Credential, error) {
	v := os.Getenv(CredentialsEnv)
	if v == "" {
		return nil, nil
	}
	var creds map[string]Credential
	if err := json.Unmarshal([]byte(v), &creds); err != nil {
		// Not the value: it holds passwords.
		return nil, fmt.Errorf("%s: not a JSON object from libvirt URI to {\"username\", \"password\"}: %w", CredentialsEnv, err)
	}
	return creds, nil
}

// CredentialsEnvEntry is creds as the KEY=value entry of CredentialsEnv
// for a driver process's environment, or "" without any.
func CredentialsEnvEntry(creds map[string]Credential) (string, error) {
	if len(creds) == 0 {
		return "", nil
	}
	b, err := json.Marshal(creds)
	if err != nil {
		return "", err
	}
	return CredentialsEnv + "=" + string(b), nil
}
