package ship

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/checkpoint"
	"github.com/virtpool/virtpool/pki/pkitest"
)

// logBuffer is a log that tests read while the helper writes it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// helperHost is one host's helper, run by Serve as 'virtpool ship serve'
// runs it, on 127.0.0.1 with certificates of ca.
type helperHost struct {
	dir string
	url string
	log *logBuffer
}

func startHelper(t *testing.T, ca *pkitest.CA, name string) *helperHost {
	t.Helper()
	server, client := ca.Host(t.TempDir(), name)
	h := &helperHost{dir: t.TempDir(), log: &logBuffer{}}
	log := hclog.New(&hclog.LoggerOptions{Name: "ship", Output: h.log, Level: hclog.Debug})
	ctx, cancel := context.WithCancel(context.Background())
	addr, done := make(chan string, 1), make(chan error, 1)
	go func() {
		done <- Serve(ctx, Config{Listen: "127.0.0.1:0", Dir: h.dir, Server: server, Client: client}, log, func(a string) { addr <- a })
	}()
	select {
	case a := <-addr:
		h.url = "https://" + a
	case err := <-done:
		cancel()
		t.Fatalf("helper %s: %v", name, err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("helper %s: %v", name, err)
		}
		if strings.Contains(h.log.String(), "PRIVATE KEY") {
			t.Errorf("helper %s logged key material", name)
		}
	})
	return h
}

// image writes an image into the helper's directory.
func (h *helperHost) image(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(h.dir, "checkpoints", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func agentClient(t *testing.T, ca *pkitest.CA, base string) *Client {
	t.Helper()
	conf, err := ca.Client(t.TempDir(), "agent").ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return &Client{Base: base, TLS: conf}
}

// The agent has host A send images to host B: B holds each, byte for
// byte, and a small change costs a small send.
func TestHelperSends(t *testing.T) {
	ca := pkitest.NewCA(t, t.TempDir(), "test CA")
	a, b := startHelper(t, ca, "a"), startHelper(t, ca, "b")
	agent := agentClient(t, ca, a.url)

	first := randomBytes(2<<20, 1)
	second := bytes.Clone(first)
	copy(second[1<<20:], randomBytes(checkpoint.PageSize, 2)) // one page rewritten
	var firstWire int64
	for _, tc := range []struct {
		name               string
		img                []byte
		minChunk, maxChunk int64 // bytes of new chunks
	}{
		{"first image: all of it", first, 2 << 20, 2 << 20},
		{"one page rewritten: a few chunks", second, 1, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := a.image(t, tc.name, tc.img)
			sent, err := agent.Send(context.Background(), "vm-1", path, b.url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(StandbyImage(b.dir, "vm-1"))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.img) {
				t.Fatal("B's image differs from the file on A")
			}
			if sent.Name != "vm-1" || sent.To != b.url || sent.Elapsed <= 0 || sent.ImageBytes != int64(len(tc.img)) {
				t.Errorf("sent %+v: want vm-1 to %s, an elapsed time, %d image bytes", sent, b.url, len(tc.img))
			}
			if sent.ChunkBytes < tc.minChunk || sent.ChunkBytes > tc.maxChunk {
				t.Errorf("%d bytes of new chunks, want %d…%d", sent.ChunkBytes, tc.minChunk, tc.maxChunk)
			}
			if want := int64(4 + sent.Chunks*checkpoint.ManifestEntry); sent.ManifestBytes != want {
				t.Errorf("manifest of %d bytes reported, want %d", sent.ManifestBytes, want)
			}
			if firstWire == 0 {
				firstWire = sent.WireBytes
			} else if sent.WireBytes*20 > firstWire {
				t.Errorf("%d bytes on the wire for one page changed, %d for the whole image: want under 5 %%", sent.WireBytes, firstWire)
			}
			m, err := agentClient(t, ca, b.url).Manifest(context.Background(), "vm-1")
			if err != nil {
				t.Fatal(err)
			}
			if want, _ := checkpoint.SmallCDC.Cut(bytes.NewReader(tc.img)); !equalManifests(m, want) {
				t.Errorf("B's manifest: %d chunks, not the image's %d", len(m), len(want))
			}
		})
	}
	if m, err := agent.Manifest(context.Background(), "vm-1"); err != nil || m != nil {
		t.Errorf("A, which is standby for nothing: manifest %v, %v; want none", m, err)
	}
	if !strings.Contains(a.log.String(), "ship: sent: guest=vm-1 to="+b.url) {
		t.Errorf("A's log has no send of vm-1 to %s:\n%s", b.url, a.log)
	}
}

func equalManifests(a, b checkpoint.Manifest) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A bad request is refused, naming what is wrong; a peer whose
// certificate is of another CA fails the send, naming the peer.
func TestHelperRefuses(t *testing.T) {
	ca := pkitest.NewCA(t, t.TempDir(), "test CA")
	a, b := startHelper(t, ca, "a"), startHelper(t, ca, "b")
	foreign := startHelper(t, pkitest.NewCA(t, t.TempDir(), "another CA"), "c")
	agent := agentClient(t, ca, a.url)
	img := a.image(t, "vm-1.img", randomBytes(64<<10, 1))
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("not an image"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(a.dir, "checkpoints", "link.img")
	if err := os.Symlink(outside, link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, guest, path, to string
		code                  int
		want                  string
	}{
		{"relative path", "vm-1", "checkpoints/vm-1.img", b.url, http.StatusBadRequest, `path "checkpoints/vm-1.img": not absolute`},
		{"path outside the directory", "vm-1", outside, b.url, http.StatusBadRequest, `path "` + outside + `": outside ` + a.dir},
		{"path climbing out", "vm-1", a.dir + "/../x", b.url, http.StatusBadRequest, `path "` + a.dir + `/../x": outside`},
		{"link to outside the directory", "vm-1", link, b.url, http.StatusBadRequest, `path "` + link + `": a link to ` + outside},
		{"no such image", "vm-1", filepath.Join(a.dir, "none.img"), b.url, http.StatusBadRequest, "none.img: no such file"},
		{"the directory itself", "vm-1", a.dir, b.url, http.StatusBadRequest, "outside"},
		{"bad guest name", "../vm", img, b.url, http.StatusBadRequest, `guest name "../vm"`},
		{"plain HTTP peer", "vm-1", img, "http://127.0.0.1:1", http.StatusBadRequest, `to "http://127.0.0.1:1": want`},
		{"peer with a path", "vm-1", img, b.url + "/x", http.StatusBadRequest, `to "` + b.url + `/x": want`},
		{"peer of another CA", "vm-1", img, foreign.url, http.StatusBadGateway, "ask " + foreign.url + " for its image of vm-1: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := agent.Send(context.Background(), tc.guest, tc.path, tc.to)
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.code || !strings.Contains(se.Message, tc.want) {
				t.Errorf("error %v, want %d with %q", err, tc.code, tc.want)
			}
		})
	}
	if _, err := os.Stat(StandbyImage(b.dir, "vm-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("B holds an image after refused sends only: %v", err)
	}
}

// Only clients with a certificate of the CA get an answer, over TLS 1.3,
// and the agent checks the helper's certificate too.
func TestHelperMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, "test CA")
	h := startHelper(t, ca, "a")
	good, err := ca.Client(filepath.Join(dir, "agent"), "agent").ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	other := pkitest.NewCA(t, filepath.Join(dir, "other"), "another CA")
	foreign, err := other.Client(filepath.Join(dir, "other"), "agent").ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	trusting := func(c *tls.Config) *tls.Config { // trusts the helper, and presents its certificate whatever the helper asks for
		c = c.Clone()
		c.RootCAs = good.RootCAs
		if len(c.Certificates) > 0 {
			cert := c.Certificates[0]
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
		}
		return c
	}
	noCert := trusting(&tls.Config{MinVersion: tls.VersionTLS12})
	tls12 := good.Clone()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	for _, tc := range []struct {
		name   string
		conf   *tls.Config
		client string // in the agent's error: a refusal of its own
		helper string // in the helper's log: the handshake it refused
	}{
		{"no certificate", noCert, "", "tls: client didn't provide a certificate"},
		{"certificate of another CA", trusting(foreign), "", "tls: failed to verify certificate: x509: certificate signed by unknown authority"},
		{"TLS 1.2", tls12, "", "tls: client offered only unsupported versions"},
		{"helper's certificate not of the agent's CA", foreign, "x509: certificate signed by unknown authority", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := strings.Count(h.log.String(), "TLS handshake error")
			_, err := (&Client{Base: h.url, TLS: tc.conf}).Manifest(context.Background(), "vm-1")
			var se *StatusError
			// The alert the helper sends, or a reset, depending on timing:
			// the helper's log says why, deterministically.
			if err == nil || errors.As(err, &se) || !strings.Contains(err.Error(), tc.client) {
				t.Fatalf("error %v, want a failed handshake (no HTTP answer) with %q", err, tc.client)
			}
			if tc.helper == "" {
				return
			}
			deadline := time.Now().Add(5 * time.Second) // the helper may log it after the agent saw it
			for {
				logged := h.log.String()
				if i := strings.LastIndex(logged, "TLS handshake error"); strings.Count(logged, "TLS handshake error") > before && strings.Contains(logged[i:], tc.helper) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the helper logged no refused handshake with %q:\n%s", tc.helper, logged)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	if _, err := (&Client{Base: h.url, TLS: good}).Manifest(context.Background(), "vm-1"); err != nil {
		t.Errorf("the agent's own certificate: %v", err)
	}
}

// One send of a guest at a time: a second is refused while the first
// runs, another guest's is not held up.
func TestHelperOneSendPerGuest(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t, dir, "test CA")
	a := startHelper(t, ca, "a")
	agent := agentClient(t, ca, a.url)

	// The peer: a Receiver whose first request waits until released.
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	rc := &Receiver{Dir: t.TempDir()}
	peer := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "vm-1") {
			once.Do(func() { close(started); <-release })
		}
		rc.ServeHTTP(w, r)
	}))
	server, _ := ca.Host(filepath.Join(dir, "peer"), "peer")
	conf, err := server.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	peer.TLS = conf
	peer.StartTLS()
	defer peer.Close()

	img := a.image(t, "vm.img", randomBytes(64<<10, 1))
	first := make(chan error, 1)
	go func() {
		_, err := agent.Send(context.Background(), "vm-1", img, peer.URL)
		first <- err
	}()
	<-started
	_, err = agent.Send(context.Background(), "vm-1", img, peer.URL)
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(se.Message, "vm-1 is being sent already") {
		t.Errorf("a second send of vm-1 while one runs: %v, want 409", err)
	}
	if _, err := agent.Send(context.Background(), "vm-2", img, peer.URL); err != nil {
		t.Errorf("vm-2 while vm-1 is being sent: %v", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Errorf("the first send of vm-1: %v", err)
	}
	if _, err := agent.Send(context.Background(), "vm-1", img, peer.URL); err != nil {
		t.Errorf("vm-1 once the first send ended: %v", err)
	}
}

// TestHelperRemoves: once a guest is gone, the agent has its standby's
// helper forget its image, and its primary's its last checkpoint; asking
// again finds nothing; a bad name is refused.
func TestHelperRemoves(t *testing.T) {
	ca := pkitest.NewCA(t, t.TempDir(), "test CA")
	a, b := startHelper(t, ca, "a"), startHelper(t, ca, "b")
	ctx := context.Background()
	out := OutImage(a.dir, "vm-1")
	if err := os.WriteFile(out, randomBytes(1<<20, 3), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := agentClient(t, ca, a.url).Send(ctx, "vm-1", out, b.url); err != nil {
		t.Fatal(err)
	}
	// A capture being written is no guest's image.
	if err := os.WriteFile(filepath.Join(filepath.Dir(out), "vm-2.img.tmp"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	lists := func(when string, want ...string) {
		t.Helper()
		for _, h := range []string{a.url, b.url} {
			if got, err := agentClient(t, ca, h).List(ctx); err != nil || !slices.Equal(got, want) {
				t.Errorf("%s: %s lists %q, %v; want %q", when, h, got, err, want)
			}
		}
	}
	lists("sent", "vm-1")
	for _, tc := range []struct {
		name     string
		base     string
		gone     string // the file that must be gone after
		held     bool
		wantFail string
	}{
		{"the standby's image", b.url, StandbyImage(b.dir, "vm-1"), true, ""},
		{"the primary's last checkpoint", a.url, out, true, ""},
		{"again: nothing held", b.url, StandbyImage(b.dir, "vm-1"), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := agentClient(t, ca, tc.base).Remove(ctx, "vm-1")
			if err != nil || r.Held != tc.held || r.Name != "vm-1" {
				t.Fatalf("removed %+v, %v; want held %v", r, err, tc.held)
			}
			if _, err := os.Stat(tc.gone); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s still there (%v)", tc.gone, err)
			}
		})
	}
	if m, err := agentClient(t, ca, b.url).Manifest(ctx, "vm-1"); err != nil || m != nil {
		t.Errorf("after the removal B's manifest of vm-1: %v, %v; want none", m, err)
	}
	if _, err := agentClient(t, ca, b.url).Remove(ctx, "../etc"); err == nil || !strings.Contains(err.Error(), "400") && !strings.Contains(err.Error(), "guest name") {
		t.Errorf("a bad name: %v, want it refused", err)
	}
	lists("removed")
}
