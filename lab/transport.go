package lab

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/template"
	"time"

	"github.com/virtpool/virtpool/driver"
)

// Transport is how virtpool, and the hosts' libvirtds among themselves,
// reach a lab host's libvirtd.
//
//	unix  virtpool over the host's unix socket, peers over plain TCP (auth none): the default, and the fastest
//	tls   qemu+tls:// only: client certificates from the lab's CA and a SASL login (SCRAM-SHA-256, LabLogin), migration streams encrypted too (QEMU refuses any other)
//	ssh   qemu+ssh:// (OpenSSH's client) to an sshd per host (key login, the lab's known_hosts checked); libvirtd listens on no TCP port
//
// With tls and ssh, virtpool reaches the hosts as a remote machine would:
// across the lab's switch, from the client namespace. A relay (socat, in
// the root namespace) listens on the host's loopback address (127.0.2.N,
// LoopbackIP) and carries each connection to the host's address on the
// lab segment from the client namespace, because the root namespace has no
// route into the lab (the machine's own network may use the lab's
// addresses). A partition therefore cuts virtpool off from the host as a
// real one would.
type Transport string

// The lab's transports.
const (
	Unix Transport = "unix"
	TLS  Transport = "tls"
	SSH  Transport = "ssh"
)

// ParseTransport checks a transport name ("" is Unix).
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(s); t {
	case "", Unix:
		return Unix, nil
	case TLS, SSH:
		return t, nil
	}
	return "", fmt.Errorf("lab transport %q: want unix, tls or ssh", s)
}

// Ports the relay carries, by transport.
var transportPort = map[Transport]int{TLS: 16514, SSH: 22}

// Where the lab keeps what the transports need.
var (
	pkiDir    = filepath.Join(Dir, "pki")           // CA, and the client certificate virtpool and the hosts' libvirtds present
	clientPKI = filepath.Join(pkiDir, "client")     // a libvirt pkipath: cacert.pem, clientcert.pem, clientkey.pem
	sshDir    = filepath.Join(Dir, "ssh")           // the client key, authorized_keys, known_hosts
	relayDir  = filepath.Join(Dir, "relay")         // the relays' pid files
	loginFile = filepath.Join(pkiDir, "login")      // the SASL login: user, password
	authConf  = filepath.Join(pkiDir, "auth.conf")  // the same, as libvirt's auth.conf
	caCert    = filepath.Join(pkiDir, "cacert.pem") // the lab's CA
)

// SSHKey is the private key the lab's hosts accept for root, KnownHosts
// the lab's known_hosts file, which holds every host's key, and SSHCommand
// the ssh that libvirt runs for the lab (SSHWrapper: OpenSSH reading the
// lab's known_hosts, never the machine's ~/.ssh).
var (
	SSHKey     = filepath.Join(sshDir, "id_ed25519")
	KnownHosts = filepath.Join(sshDir, "known_hosts")
	SSHCommand = filepath.Join(sshDir, "ssh")
	// ClientPKI is the pkipath of a client the hosts' libvirtds accept.
	ClientPKI = clientPKI
	// CACert is the certificate of the lab's CA.
	CACert = caCert
)

// LoopbackIP is the address in the root namespace that the relay serves
// lab host i on (127.0.2.10+i): loopback, and one per host, so each host's
// certificate and known_hosts entry name an address of its own.
func loopbackIP(i int) string { return fmt.Sprintf("127.0.2.%d", hostIPBase+i) }

// uris sets how virtpool (URI) and the other hosts (PeerURI) reach host h
// over transport t.
func (h *Host) uris(t Transport) {
	switch t {
	case TLS:
		q := "/system?pkipath=" + clientPKI
		h.URI, h.PeerURI = "qemu+tls://"+h.Loopback+q, "qemu+tls://"+h.IP+q
	case SSH:
		// OpenSSH's client (qemu+ssh), as the guide's example: its
		// configuration comes from the lab's wrapper (SSHWrapper).
		q := "/system?keyfile=" + SSHKey + "&command=" + SSHCommand + "&no_tty=1"
		h.URI, h.PeerURI = "qemu+ssh://root@"+h.Loopback+q, "qemu+ssh://root@"+h.IP+q
	default:
		h.URI, h.PeerURI = "qemu+unix:///system?socket="+socketIn(h.StateDir), "qemu+tcp://"+h.IP+"/system"
	}
}

// prepareTransport makes what transport t needs before the hosts start:
// the CA and every certificate (tls), or the keys and known_hosts (ssh).
// What exists already is kept, so Up stays idempotent.
func prepareTransport(ctx context.Context, t Transport, hosts []Host) error {
	// The certificates serve the checkpoint helpers over any transport.
	if err := makePKI(ctx, hosts); err != nil {
		return err
	}
	switch t {
	case TLS:
		return makeLogins(ctx, hosts)
	case SSH:
		return makeSSHKeys(ctx, hosts)
	}
	return nil
}

// certtool templates (RSA keys: libvirt wants key encipherment, which
// ECDSA keys cannot have): the CA, and one certificate per host, which its
// libvirtd serves and its QEMU uses both ways in migrations; the client's
// is what virtpool (and a host's libvirtd calling another) presents.
var (
	caTemplate = `cn = "virtpool lab CA"
ca
cert_signing_key
expiration_days = 3650
`
	hostTemplate = template.Must(template.New("host.cfg").Parse(`organization = "virtpool lab"
cn = "{{.Name}}"
dns_name = "{{.Name}}"
ip_address = "{{.IP}}"
ip_address = "{{.Loopback}}"
tls_www_server
tls_www_client
signing_key
encryption_key
expiration_days = 3650
`))
	clientTemplate = `organization = "virtpool lab"
cn = "virtpool"
tls_www_client
signing_key
encryption_key
expiration_days = 3650
`
)

// saslUser is the user name of the lab's SASL login.
const saslUser = "virtpool"

// LabLogin is the SASL login every host of a lab over tls asks for.
func LabLogin() (driver.Credential, error) {
	b, err := os.ReadFile(loginFile)
	if err != nil {
		return driver.Credential{}, fmt.Errorf("the lab's login: %w", err)
	}
	user, pass, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
	if !ok {
		return driver.Credential{}, fmt.Errorf("the lab's login %s: want a user and a password line", loginFile)
	}
	return driver.Credential{Username: user, Password: pass}, nil
}

// Credentials are the logins the lab's hosts ask for, by URI (none but
// over tls), as driver.CredentialsEnv carries them.
func (l *Lab) Credentials() (map[string]driver.Credential, error) {
	if l.Transport() != TLS {
		return nil, nil
	}
	login, err := LabLogin()
	if err != nil {
		return nil, err
	}
	creds := map[string]driver.Credential{}
	for _, h := range l.Hosts {
		creds[h.URI] = login
	}
	return creds, nil
}

// saslConf: libvirtd's SASL server (SASL_CONF_PATH names its directory):
// SCRAM-SHA-256, which needs TLS underneath, and a database of the host's.
var saslConf = template.Must(template.New("libvirt.conf").Parse(`mech_list: scram-sha-256
sasldb_path: {{.SASLDir}}/passwd.db
`))

// SASLDir holds the host's SASL configuration and user database.
func (h Host) SASLDir() string { return filepath.Join(h.StateDir, "sasl2") }

// makeLogins makes the lab's SASL login (a random password, kept in
// loginFile and, for the hosts' libvirtds calling each other in migrations
// and for virsh, in an auth.conf), and each host's database holding it.
func makeLogins(ctx context.Context, hosts []Host) error {
	if !exists(loginFile) {
		pw := make([]byte, 18)
		if _, err := rand.Read(pw); err != nil {
			return err
		}
		login := saslUser + "\n" + base64.RawURLEncoding.EncodeToString(pw) + "\n"
		if err := os.WriteFile(loginFile, []byte(login), 0o600); err != nil {
			return err
		}
	}
	login, err := LabLogin()
	if err != nil {
		return err
	}
	conf := fmt.Sprintf("[credentials-lab]\nauthname=%s\npassword=%s\n\n[auth-libvirt-default]\ncredentials=lab\n", login.Username, login.Password)
	if err := os.WriteFile(authConf, []byte(conf), 0o600); err != nil {
		return err
	}
	for _, h := range hosts {
		if err := os.MkdirAll(h.SASLDir(), 0o700); err != nil {
			return err
		}
		var c strings.Builder
		if err := saslConf.Execute(&c, h); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(h.SASLDir(), "libvirt.conf"), []byte(c.String()), 0o600); err != nil {
			return err
		}
		// The host's libvirtd, as a client of the others, reads /etc/libvirt/auth.conf.
		if err := os.MkdirAll(filepath.Join(h.StateDir, "etc"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(h.StateDir, "etc", "auth.conf"), []byte(conf), 0o600); err != nil {
			return err
		}
		// The realm is the host's name: libvirtd's SASL server takes the
		// host name for it.
		cmd := exec.CommandContext(ctx, "saslpasswd2", "-p", "-c", "-a", "libvirt", "-f", filepath.Join(h.SASLDir(), "passwd.db"), "-u", h.Name, login.Username)
		cmd.Stdin = strings.NewReader(login.Password)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("host %s: saslpasswd2: %w: %s", h.Name, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// makePKI makes the lab's CA, a certificate per host (in its state
// directory: libvirtd's key_file and cert_file, and QEMU's migration x509
// directory) and the client certificate (pkipath layout).
func makePKI(ctx context.Context, hosts []Host) error {
	for _, d := range []string{pkiDir, clientPKI} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	caKey := filepath.Join(pkiDir, "cakey.pem")
	if err := selfSigned(ctx, caKey, caCert, caTemplate); err != nil {
		return fmt.Errorf("lab CA: %w", err)
	}
	if err := signed(ctx, caKey, caCert, filepath.Join(clientPKI, "clientkey.pem"), filepath.Join(clientPKI, "clientcert.pem"), clientTemplate); err != nil {
		return fmt.Errorf("lab client certificate: %w", err)
	}
	if err := copyFile(caCert, filepath.Join(clientPKI, "cacert.pem")); err != nil {
		return err
	}
	for _, h := range hosts {
		var cfg strings.Builder
		if err := hostTemplate.Execute(&cfg, h); err != nil {
			return err
		}
		dir := h.PKIDir()
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		key, cert := filepath.Join(dir, "server-key.pem"), filepath.Join(dir, "server-cert.pem")
		if err := signed(ctx, caKey, caCert, key, cert, cfg.String()); err != nil {
			return fmt.Errorf("host %s certificate: %w", h.Name, err)
		}
		// QEMU's x509 directory: the source of a migration is the client.
		for src, dst := range map[string]string{key: "client-key.pem", cert: "client-cert.pem", caCert: "ca-cert.pem"} {
			if err := copyFile(src, filepath.Join(dir, dst)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ForeignClientPKI makes, in dir, a pkipath whose client certificate is
// signed by a CA of its own, which no lab host trusts: the credentials of
// a client of another cluster. trustLab adds the lab's CA to its
// cacert.pem (the client trusts the hosts, they refuse it); without it
// the client trusts only the other CA and refuses the hosts.
func ForeignClientPKI(ctx context.Context, dir string, trustLab bool) error {
	caKey, ca := filepath.Join(dir, "cakey.pem"), filepath.Join(dir, "cacert.pem")
	if err := selfSigned(ctx, caKey, ca, strings.Replace(caTemplate, "virtpool lab CA", "another CA", 1)); err != nil {
		return err
	}
	if err := signed(ctx, caKey, ca, filepath.Join(dir, "clientkey.pem"), filepath.Join(dir, "clientcert.pem"), clientTemplate); err != nil {
		return err
	}
	if !trustLab {
		return nil
	}
	// A bundle: the client checks its own certificate against it too.
	own, err := os.ReadFile(ca)
	if err != nil {
		return err
	}
	labCA, err := os.ReadFile(caCert)
	if err != nil {
		return err
	}
	return os.WriteFile(ca, append(own, labCA...), 0o644)
}

// PKIDir is the host's certificate directory, laid out as QEMU's x509
// directory; its libvirtd serves the same key and certificate.
func (h Host) PKIDir() string { return filepath.Join(h.StateDir, "pki") }

func selfSigned(ctx context.Context, key, cert, cfg string) error {
	return certificate(ctx, key, cert, cfg, "--generate-self-signed")
}

func signed(ctx context.Context, caKey, ca, key, cert, cfg string) error {
	return certificate(ctx, key, cert, cfg, "--generate-certificate", "--load-ca-certificate", ca, "--load-ca-privkey", caKey)
}

// certificate makes key and cert (certtool template cfg) unless cert
// exists, with how's certtool arguments: self-signed, or by a CA.
func certificate(ctx context.Context, key, cert, cfg string, how ...string) error {
	if exists(cert) {
		return nil
	}
	tmpl, err := writeTemp(cfg)
	if err != nil {
		return err
	}
	defer os.Remove(tmpl)
	if err := run(ctx, "certtool", "--generate-privkey", "--key-type=rsa", "--bits=2048", "--outfile", key); err != nil {
		return err
	}
	return run(ctx, "certtool", append(how, "--load-privkey", key, "--template", tmpl, "--outfile", cert)...)
}

// sshdConfig: key login for root only, the lab's authorized_keys, on the
// host's lab address. SetEnv SHLVL=1: bash, root's shell, runs ~/.bashrc
// for a command from sshd only when it is the first shell (SHLVL unset),
// and the machine's root .bashrc is not the lab's (there, pyenv's rehash
// waited 60 s for a lock that a cut login had left: every later login took
// a minute). MaxStartups above OpenSSH's 10:30:100, which drops new
// connections at random once 10 are still logging in.
var sshdConfig = template.Must(template.New("sshd_config").Parse(`# virtpool lab host {{.Name}}
ListenAddress {{.IP}}
HostKey {{.SSHDir}}/host_ed25519
PidFile {{.SSHDir}}/sshd.pid
AuthorizedKeysFile ` + sshDir + `/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
UseDNS no
MaxStartups 100
SetEnv SHLVL=1
`))

// SSHDir holds the host's sshd configuration and host key.
func (h Host) SSHDir() string { return filepath.Join(h.StateDir, "ssh") }

// makeSSHKeys makes the client key (root's authorized key on every host),
// each host's key and sshd configuration, and known_hosts, which names
// each host by both its addresses.
func makeSSHKeys(ctx context.Context, hosts []Host) error {
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	if err := sshKeygen(ctx, SSHKey, "virtpool lab client"); err != nil {
		return err
	}
	if err := copyFile(SSHKey+".pub", filepath.Join(sshDir, "authorized_keys")); err != nil {
		return err
	}
	var known strings.Builder
	for _, h := range hosts {
		if err := os.MkdirAll(h.SSHDir(), 0o700); err != nil {
			return err
		}
		key := filepath.Join(h.SSHDir(), "host_ed25519")
		if err := sshKeygen(ctx, key, "virtpool lab "+h.Name); err != nil {
			return fmt.Errorf("host %s: %w", h.Name, err)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			return err
		}
		f := strings.Fields(string(pub)) // type, key, comment
		if len(f) < 2 {
			return fmt.Errorf("host %s: cannot read its public key %s", h.Name, key+".pub")
		}
		for _, addr := range []string{h.IP, h.Loopback} {
			fmt.Fprintf(&known, "%s %s %s\n", addr, f[0], f[1])
		}
		var cfg strings.Builder
		if err := sshdConfig.Execute(&cfg, h); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(h.SSHDir(), "sshd_config"), []byte(cfg.String()), 0o600); err != nil {
			return err
		}
	}
	if err := os.WriteFile(KnownHosts, []byte(known.String()), 0o644); err != nil {
		return err
	}
	return SSHWrapper(SSHCommand, KnownHosts)
}

// sshWrapper runs OpenSSH with a configuration of its own (-F: no
// ~/.ssh/config), so that the hosts' keys are checked against one
// known_hosts file; libvirt's qemu+ssh runs it as its ssh (?command=) and
// adds the user, the key (-i) and BatchMode (no_tty=1).
var sshWrapper = template.Must(template.New("ssh").Parse(`#!/bin/sh
# ssh for libvirt's qemu+ssh:// (?command=): host keys from {{.Known}} only
exec {{.SSH}} -F {{.Config}} "$@"
`))

// sshClientConfig: only the given key (IdentitiesOnly), host keys checked
// against one file, no prompt; a host that stops answering is given up
// after 15 s, as virtpool's host deadline.
var sshClientConfig = template.Must(template.New("ssh_config").Parse(`Host *
  UserKnownHostsFile {{.Known}}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  IdentitiesOnly yes
  BatchMode yes
  ConnectTimeout 10
  ServerAliveInterval 5
  ServerAliveCountMax 3
`))

// SSHWrapper writes an ssh command at path (and its configuration beside
// it, path+"_config") for libvirt's qemu+ssh:// ?command=, which checks
// host keys against knownHosts only.
func SSHWrapper(path, knownHosts string) error {
	ssh, err := exec.LookPath("ssh")
	if err != nil {
		return fmt.Errorf("ssh command for the lab: %w (Debian package openssh-client)", err)
	}
	v := struct{ SSH, Known, Config string }{ssh, knownHosts, path + "_config"}
	for _, f := range []struct {
		path string
		t    *template.Template
		mode os.FileMode
	}{{v.Config, sshClientConfig, 0o644}, {path, sshWrapper, 0o755}} {
		var b strings.Builder
		if err := f.t.Execute(&b, v); err != nil {
			return err
		}
		if err := os.WriteFile(f.path, []byte(b.String()), f.mode); err != nil {
			return fmt.Errorf("ssh command for the lab: %w", err)
		}
	}
	return nil
}

func sshKeygen(ctx context.Context, key, comment string) error {
	if exists(key) {
		return nil
	}
	return run(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", key)
}

// startRelays starts the relays to host h that transport t and its
// checkpoint helper need.
func startRelays(ctx context.Context, t Transport, h Host) error {
	if port, ok := transportPort[t]; ok {
		if err := startRelay(ctx, h, port); err != nil {
			return err
		}
	}
	if h.ShipBin != "" {
		return startRelay(ctx, h, ShipPort)
	}
	return nil
}

// startRelay starts the relay to port on host h unless it runs. It is a
// socat in the root namespace, listening on the host's loopback address,
// that hands each connection to a socat in the client namespace connected
// to the host's lab address: the connection crosses the lab's switch.
func startRelay(ctx context.Context, h Host, port int) error {
	name := fmt.Sprintf("%s-%d", h.Name, port)
	pidFile := filepath.Join(relayDir, name+".pid")
	if pid, err := readPID(pidFile); err == nil && isRelay(pid) {
		return nil
	}
	if err := os.MkdirAll(relayDir, 0o755); err != nil {
		return err
	}
	listen := fmt.Sprintf("TCP-LISTEN:%d,bind=%s,reuseaddr,fork", port, h.Loopback)
	connect := fmt.Sprintf("SYSTEM:exec ip netns exec %s socat STDIO TCP\\:%s\\:%d", clientNS, h.IP, port)
	cmd := exec.Command("socat", listen, connect)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives the lab's caller
	log, err := os.OpenFile(filepath.Join(relayDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("relay to host %s: %w", h.Name, err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return err
	}
	// Listening once the port accepts; socat binds at once.
	addr := fmt.Sprintf("%s:%d", h.Loopback, port)
	deadline := time.Now().Add(5 * time.Second)
	for !portOpen(addr) {
		if !isRelay(pid) {
			b, _ := os.ReadFile(filepath.Join(relayDir, name+".log"))
			return fmt.Errorf("relay to host %s on %s exited: %s", h.Name, addr, strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("relay to host %s: %s does not listen after 5s", h.Name, addr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// stopRelays ends every relay the lab started (their pid files), and
// each connection it carries.
func stopRelays() error {
	files, err := filepath.Glob(filepath.Join(relayDir, "*.pid"))
	if err != nil {
		return err
	}
	var errs []error
	for _, f := range files {
		pid, err := readPID(f)
		if err != nil || !isRelay(pid) {
			continue
		}
		// socat's children (one per connection) are in its session.
		if err := syscall.Kill(-pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop relay %d: %w", pid, err))
		}
		for deadline := time.Now().Add(5 * time.Second); isRelay(pid) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if isRelay(pid) {
			errs = append(errs, fmt.Errorf("relay %d survives SIGTERM", pid))
		}
	}
	return errors.Join(errs...)
}

func readPID(file string) (int, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// isRelay reports whether pid is a live (not zombie) socat.
func isRelay(pid int) bool {
	p, err := readProcess(pid)
	return err == nil && p.Name == "socat" && p.State != "Z"
}

func portOpen(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func writeTemp(content string) (string, error) {
	f, err := os.CreateTemp("", "virtpool-lab-*.cfg")
	if err != nil {
		return "", err
	}
	defer f.Close()
	_, err = f.WriteString(content)
	return f.Name(), err
}
