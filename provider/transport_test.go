package provider

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	tfresource "github.com/hashicorp/terraform-plugin-testing/helper/resource"

	"github.com/virtpool/virtpool/lab"
)

// TestAccTransportErrors: over the lab's secure transports, credentials a
// host refuses (a certificate, an SSH key, a SASL login, or none), or that
// refuse the host (its certificate or host key), fail the plan of a pool using that
// host with a diagnostic naming the host and what to fix, and nothing of the
// pool is created on its other host. It runs where the lab is up over tls
// or ssh ('make testacc-transports'); over unix there are no credentials.
func TestAccTransportErrors(t *testing.T) {
	needAcc(t)
	tr := theLab.Transport()
	if tr == lab.Unix {
		t.Skip("needs the lab over tls or ssh: make testacc-transports (VIRTPOOL_LAB_TRANSPORT=tls or ssh) runs it")
	}
	const name, ipBase = "vpt-cred", 191
	h2 := mustHost(t, "h2")
	dir := t.TempDir()
	type credCase struct {
		name string
		uri  string              // h2's URI with the bad credentials
		edit func(string) string // or: changes h2's block in the provider's hosts
		want string              // regexp of the diagnostic
	}
	// Terraform wraps diagnostics at spaces.
	words := func(s string) string { return strings.ReplaceAll(regexp.QuoteMeta(s), " ", `\s+`) }
	var cases []credCase
	switch tr {
	case lab.TLS:
		for _, trust := range []bool{true, false} {
			pki := filepath.Join(dir, map[bool]string{true: "refused-client", false: "untrusted-host"}[trust])
			if err := os.MkdirAll(pki, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := lab.ForeignClientPKI(context.Background(), pki, trust); err != nil {
				t.Fatal(err)
			}
			c := credCase{uri: strings.Replace(h2.URI, lab.ClientPKI, pki, 1),
				want: `(?s)host\s+h2\s.*` + words("TLS to "+h2.Loopback) + `.*` + words("pkipath "+pki)}
			c.name = "client certificate of another CA"
			if !trust {
				c.name = "host certificate of another CA"
			}
			cases = append(cases, c)
		}
		// The lab's hosts ask for a SASL login too.
		login, err := lab.LabLogin()
		if err != nil {
			t.Fatal(err)
		}
		pwLine := fmt.Sprintf("password = %q", login.Password)
		sasl := `(?s)host\s+h2\s.*` + words(h2.Loopback+" asks for a login (SASL)")
		cases = append(cases,
			credCase{name: "no login", edit: func(b string) string {
				return strings.Replace(strings.Replace(b, fmt.Sprintf("username = %q", login.Username), "", 1), pwLine, "", 1)
			}, want: sasl},
			credCase{name: "wrong password", edit: func(b string) string {
				return strings.Replace(b, pwLine, `password = "not-the-password"`, 1)
			}, want: sasl})
	case lab.SSH:
		empty := filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(empty, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		key := filepath.Join(dir, "id_ed25519")
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v: %s", err, out)
		}
		// An ssh that reads an empty known_hosts: h2's key is unknown to it.
		stranger := filepath.Join(dir, "ssh")
		if err := lab.SSHWrapper(stranger, empty); err != nil {
			t.Fatal(err)
		}
		cases = []credCase{
			{"unknown host key", strings.Replace(h2.URI, lab.SSHCommand, stranger, 1), nil,
				`(?s)host\s+h2\s.*` + words("SSH to "+h2.Loopback) + `.*` + words("host key is not the one in the known_hosts file that "+stranger+" reads")},
			{"refused login", strings.Replace(h2.URI, lab.SSHKey, key, 1), nil,
				`(?s)host\s+h2\s.*` + words("login as root was refused") + `.*` + regexp.QuoteMeta(key)},
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			provider := providerConfig()
			// h2's block in the provider's hosts.
			block := regexp.MustCompile(`(?s)\n    h2 = \{.*?\n    \}`).FindString(provider)
			bad := block
			if tc.uri != "" {
				bad = strings.Replace(block, `uri = "`+h2.URI+`"`, `uri = "`+tc.uri+`"`, 1)
			}
			if tc.edit != nil {
				bad = tc.edit(bad)
			}
			if block == "" || bad == block {
				t.Fatalf("the bad credentials did not change h2's entry %q", block)
			}
			config := strings.Replace(provider, block, bad, 1) + poolBlock("p", name, []string{"h1", "h2"}, 2, ipBase, true)
			tfresource.Test(t, tfresource.TestCase{
				ProtoV6ProviderFactories: accProviders,
				CheckDestroy:             checkNothingLeft(name),
				Steps:                    []tfresource.TestStep{{Config: config, ExpectError: regexp.MustCompile(tc.want)}},
			})
		})
	}
}
