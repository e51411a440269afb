package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtpool/virtpool/checkpoint/ship"
	"github.com/virtpool/virtpool/pki"
	"github.com/virtpool/virtpool/pki/pkitest"
)

// buildVirtpool builds this command as a user gets it.
func buildVirtpool(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go, to build virtpool: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "virtpool")
	// -p 1: the machine's other work keeps its cores, as for the tests.
	if out, err := exec.Command(goBin, "build", "-p", "1", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// shipProcess is a 'virtpool ship serve' process and what it logged.
type shipProcess struct {
	cmd  *exec.Cmd
	url  string
	mu   sync.Mutex
	log  strings.Builder
	done chan struct{} // its stderr is read to its end
}

func (p *shipProcess) logged() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

var listening = regexp.MustCompile(`virtpool\.ship: listening: addr=(\S+)`)

// startShip runs 'virtpool ship serve' on 127.0.0.1 (a port the system
// picks, read from its log) with host certificates of ca.
func startShip(t *testing.T, bin string, ca *pkitest.CA, name string) (*shipProcess, string) {
	t.Helper()
	dir := t.TempDir()
	server, client := ca.Host(t.TempDir(), name)
	p := &shipProcess{done: make(chan struct{})}
	p.cmd = exec.Command(bin, "ship", "serve", "-listen", "127.0.0.1:0", "-dir", dir,
		"-ca", server.CA, "-cert", server.Cert, "-key", server.Key, "-client-cert", client.Cert, "-client-key", client.Key)
	p.cmd.Env = append(os.Environ(), "VIRTPOOL_LOG=info")
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil { // the test failed before stopping it
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.mu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	select {
	case a := <-addr:
		p.url = "https://" + a
	case <-p.done:
		t.Fatalf("virtpool ship serve (%s) ended before listening:\n%s", name, p.logged())
	case <-time.After(30 * time.Second):
		t.Fatalf("virtpool ship serve (%s) not listening after 30 s:\n%s", name, p.logged())
	}
	return p, dir
}

// stop sends SIGTERM, as an init system does, and waits for a clean exit.
func (p *shipProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() {
		<-p.done // Wait closes stderr: read it all first
		exited <- p.cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("virtpool ship serve after SIGTERM: %v\n%s", err, p.logged())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("virtpool ship serve still running 20 s after SIGTERM:\n%s", p.logged())
	}
	log := p.logged()
	for _, bad := range []string{"[ERROR]", "PRIVATE KEY"} {
		if strings.Contains(log, bad) {
			t.Errorf("its log has %q:\n%s", bad, log)
		}
	}
	if !strings.Contains(log, "virtpool.ship: stopped") {
		t.Errorf("its log does not say it stopped:\n%s", log)
	}
}

// Two hosts' helpers as a user runs them: the agent has A send an image
// to B, which holds it byte for byte; SIGTERM stops each cleanly. Bad
// command lines fail at once, naming what is wrong.
func TestShipServe(t *testing.T) {
	bin := buildVirtpool(t)
	pkiDir := t.TempDir()
	ca := pkitest.NewCA(t, pkiDir, "test CA")
	a, aDir := startShip(t, bin, ca, "a")
	b, bDir := startShip(t, bin, ca, "b")

	img := make([]byte, 1<<20)
	_, _ = rand.Read(img)
	path := filepath.Join(aDir, "vm-1.ckpt")
	if err := os.WriteFile(path, img, 0o600); err != nil {
		t.Fatal(err)
	}
	conf, err := ca.Client(filepath.Join(pkiDir, "agent"), "agent").ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	agent := &ship.Client{Base: a.url, TLS: conf}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sent, err := agent.Send(ctx, "vm-1", path, b.url)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(ship.StandbyImage(bDir, "vm-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, img) || sent.ImageBytes != int64(len(img)) || sent.ChunkBytes != int64(len(img)) {
		t.Errorf("B's image equal: %v; sent %+v, want all %d bytes", bytes.Equal(got, img), sent, len(img))
	}
	a.stop(t)
	b.stop(t)
	// Read once stopped: the reply can reach the agent before the reader
	// of A's stderr has taken the line logged before it.
	if !strings.Contains(a.logged(), "virtpool.ship: sent: guest=vm-1 to="+b.url) {
		t.Errorf("A's log has no send of vm-1:\n%s", a.logged())
	}

	missing := filepath.Join(pkiDir, "missing.pem")
	for _, tc := range []struct {
		name   string
		args   []string
		want   string
		absent string // skip where this file exists
	}{
		{"no subcommand", []string{"ship"}, "want 'ship serve'", ""},
		{"no directory", []string{"ship", "serve"}, "-dir DIR is required", ""},
		{"an argument too many", []string{"ship", "serve", "-dir", t.TempDir(), "now"}, `unexpected argument "now"`, ""},
		{"no such certificate", []string{"ship", "serve", "-dir", t.TempDir(), "-ca", filepath.Join(pkiDir, "cacert.pem"), "-cert", missing},
			"ship: serving TLS: certificate: open " + missing, ""},
		{"libvirt's files by default", []string{"ship", "serve", "-dir", t.TempDir()}, "ship: serving TLS: CA certificate: open " + pki.CACert, pki.CACert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := os.Stat(tc.absent); tc.absent != "" && err == nil {
				t.Skipf("%s exists on this machine", tc.absent)
			}
			out, err := exec.Command(bin, tc.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) {
				t.Errorf("virtpool %s: %v\n%s\nwant exit status 1 and %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
}
