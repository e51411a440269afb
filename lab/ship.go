package lab

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/virtpool/virtpool/pki"
)

// ShipPort is where each host's checkpoint helper ('virtpool ship serve',
// package checkpoint/ship) listens, on the host's lab address, when the
// lab runs one (Config.ShipBin): the hosts send checkpoint images to each
// other there, over mutual TLS with the lab's certificates; virtpool
// reaches it through the relay on the host's loopback address.
const ShipPort = 8481

// ShipDir is the host's checkpoint directory: what its helper may send
// lies under it, what it receives as standby goes into its standby/.
func (h Host) ShipDir() string { return filepath.Join(h.StateDir, "ship") }

// ShipURL is the host's helper as virtpool reaches it (the relay), and
// ShipPeerURL as the other hosts' helpers do, across the lab's switch.
func (h Host) ShipURL() string     { return fmt.Sprintf("https://%s:%d", h.Loopback, ShipPort) }
func (h Host) ShipPeerURL() string { return fmt.Sprintf("https://%s:%d", h.IP, ShipPort) }

// ShipClientFiles are what virtpool presents to the hosts' helpers: the
// lab's client certificate, trusting the lab's CA; ShipClientTLS the
// configuration made of them.
func ShipClientFiles() pki.Files {
	return pki.Files{CA: caCert, Cert: filepath.Join(clientPKI, "clientcert.pem"), Key: filepath.Join(clientPKI, "clientkey.pem")}
}

func ShipClientTLS() (*tls.Config, error) { return ShipClientFiles().ClientConfig() }

// startShip starts the host's checkpoint helper unless it answers, as
// one of the host's processes: in its namespace and its cgroups, with the
// host's certificate (it serves with it and presents it to its peers),
// its log in the host's log directory.
func startShip(ctx context.Context, h Host) error {
	if h.ShipBin == "" {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, time.Second)
	c, err := DialFrom(dctx, clientNS, fmt.Sprintf("%s:%d", h.IP, ShipPort))
	cancel()
	if err == nil {
		c.Close()
		return nil
	}
	if err := os.MkdirAll(h.ShipDir(), 0o700); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(h.StateDir, "log", "ship.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// The shell joins the host's cgroups, then becomes (exec) the helper
	// in the host's namespace: its CPU counts against the host's budget.
	var join strings.Builder
	for _, d := range h.Cgroups.Dirs {
		fmt.Fprintf(&join, "echo $$ > %s/cgroup.procs && ", d)
	}
	pki := h.PKIDir()
	cmd := exec.Command("sh", "-c", join.String()+`exec ip netns exec "$0" "$1" ship serve -listen "$2" -dir "$3" -ca "$4" -cert "$5" -key "$6" -client-cert "$5" -client-key "$6"`,
		h.Namespace, h.ShipBin, fmt.Sprintf("%s:%d", h.IP, ShipPort), h.ShipDir(),
		filepath.Join(pki, "ca-cert.pem"), filepath.Join(pki, "server-cert.pem"), filepath.Join(pki, "server-key.pem"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // outlives the lab's caller
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("host %s: start its checkpoint helper: %w", h.Name, err)
	}
	return cmd.Process.Release()
}

// waitShip waits until the host's helper completes a TLS handshake with
// the lab's client certificate on its lab address (from the client
// namespace, as a peer would reach it).
func waitShip(ctx context.Context, h Host) error {
	conf, err := ShipClientTLS()
	if err != nil {
		return err
	}
	conf.ServerName = h.IP
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		c, err := DialFrom(ctx, clientNS, fmt.Sprintf("%s:%d", h.IP, ShipPort))
		if err == nil {
			tc := tls.Client(c, conf)
			err = tc.HandshakeContext(ctx)
			tc.Close()
			if err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("host %s: its checkpoint helper does not listen on %s:%d (see %s): %w", h.Name, h.IP, ShipPort,
				filepath.Join(h.StateDir, "log", "ship.log"), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
