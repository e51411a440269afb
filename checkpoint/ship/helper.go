package ship

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/pki"
)

// DefaultListen is where a host's helper listens unless told: every
// interface (its peers reach it across the hosts' network), the port
// after the agent's.
const DefaultListen = ":8481"

// Config is one host's helper ('virtpool ship serve').
type Config struct {
	Listen string    // host:port
	Dir    string    // this host's checkpoint directory
	Server pki.Files // served to the agent and the peers; its CA vouches for their client certificates
	Client pki.Files // presented to the peers this host sends images to
}

// Serve runs cfg's helper over mutual TLS until ctx ends, then lets the
// requests under way end (up to shutdownGrace). ready, if not nil, gets
// the address it listens on once it does.
func Serve(ctx context.Context, cfg Config, log hclog.Logger, ready func(addr string)) error {
	serverTLS, err := cfg.Server.ServerConfig()
	if err != nil {
		return fmt.Errorf("ship: serving TLS: %w", err)
	}
	clientTLS, err := cfg.Client.ClientConfig()
	if err != nil {
		return fmt.Errorf("ship: TLS to peers: %w", err)
	}
	h, err := NewHelper(cfg.Dir, httpClient(clientTLS), log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("ship: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         serverTLS,
		ReadHeaderTimeout: 10 * time.Second,
		// A send's request context ends with the helper, and with it the
		// send to the peer: the peer keeps its last image.
		BaseContext: func(net.Listener) context.Context { return ctx },
		// Refused handshakes (a client without a certificate of the CA)
		// land here: the client's address and the reason, no key.
		ErrorLog: h.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}),
	}
	h.log.Info("listening", "addr", ln.Addr().String(), "dir", h.Dir, "ca", cfg.Server.CA,
		"cert", cfg.Server.Cert, "client_cert", cfg.Client.Cert)
	if ready != nil {
		ready(ln.Addr().String())
	}
	stopped := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err := srv.Shutdown(sctx)
		if err != nil {
			err = errors.Join(fmt.Errorf("ship: requests still under way after %s: %w", shutdownGrace, err), srv.Close())
		}
		stopped <- err
	}()
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ship: serve: %w", err)
	}
	// Serve returns at once on Shutdown; the receives under way end first.
	if err := <-stopped; err != nil {
		return err
	}
	h.log.Info("stopped")
	return nil
}

// shutdownGrace is how long a stopping helper lets a receive end: an image
// received whole is kept, one cut off leaves the last one as it was.
const shutdownGrace = 10 * time.Second

// httpClient reaches helpers over tlsConf, directly: host to host, never
// through a proxy from the environment.
func httpClient(tlsConf *tls.Config) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConnsPerHost: 4,
	}}
}

// Helper is what runs on every host: the Receiver of the images of the
// guests this host is standby for (in Dir/standby, StandbyImage), and
// POST /v1/send, through which the agent has this host send an image it
// holds under Dir to a peer's helper. The bytes of an image thus go from
// the primary host to the standby host directly, never through the agent.
// NewHelper makes one.
type Helper struct {
	Dir string // absolute, links resolved

	peers   *http.Client
	log     hclog.Logger
	rc      *Receiver
	mux     *http.ServeMux
	busy    oneAtATime // guests whose image is being sent
	mu      sync.Mutex
	senders map[string]*Sender // by peer: each remembers what its peer holds
}

// NewHelper makes dir (if need be) and a helper on it that sends through
// peers.
func NewHelper(dir string, peers *http.Client, log hclog.Logger) (*Helper, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o700)
	}
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err == nil {
		err = os.MkdirAll(outDir(abs), 0o755) // libvirt writes there
	}
	if err != nil {
		return nil, fmt.Errorf("ship: directory %s: %w", dir, err)
	}
	h := &Helper{Dir: abs, peers: peers, log: log, senders: map[string]*Sender{},
		rc: &Receiver{Dir: standbyDir(abs), Log: log}}
	h.mux = http.NewServeMux()
	h.mux.HandleFunc("POST /v1/send", h.send)
	h.mux.HandleFunc("GET /v1/images", h.list)
	h.mux.HandleFunc("DELETE /v1/images/{name}", h.remove)
	h.mux.Handle("/v1/images/", h.rc)
	return h, nil
}

// remove forgets guest name here (DELETE /v1/images/{name}): the image
// this host is standby for and the last one it checkpointed, once the
// guest is gone. A guest whose image is being sent or received is
// refused (409).
func (h *Helper) remove(w http.ResponseWriter, r *http.Request) {
	name, ok := h.rc.name(w, r)
	if !ok {
		return
	}
	done, ok := h.busy.start(name)
	if !ok {
		fail(w, http.StatusConflict, errorBody{Error: "an image of " + name + " is being sent"})
		return
	}
	defer done()
	held, err := h.rc.remove(name)
	if err == nil {
		if err = os.Remove(OutImage(h.Dir, name)); errors.Is(err, os.ErrNotExist) {
			err = nil
		} else if err == nil {
			held = true
		}
	}
	switch {
	case errors.Is(err, errBusy):
		fail(w, http.StatusConflict, errorBody{Error: err.Error()})
	case err != nil:
		fail(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
	default:
		h.log.Info("images removed", "guest", name, "held", held)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(Removed{Name: name, Held: held})
	}
}

// list names the guests this host holds images of (GET /v1/images): as
// their standby, or its last checkpoint of them. An agent started after
// a guest was removed finds there what to remove.
func (h *Helper) list(w http.ResponseWriter, _ *http.Request) {
	names, err := h.held()
	if err != nil {
		fail(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(names)
}

// held lists, sorted, the guests with a directory under the standby
// directory or an image in the out directory; other files (a capture
// being written) are not guests'.
func (h *Helper) held() ([]string, error) {
	names := map[string]bool{}
	for _, d := range []string{standbyDir(h.Dir), outDir(h.Dir)} {
		es, err := os.ReadDir(d)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("list images: %w", err)
		}
		for _, e := range es {
			name, isImage := strings.CutSuffix(e.Name(), ".img")
			if (e.IsDir() || isImage && e.Type().IsRegular()) && checkName(name) == nil {
				names[name] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(names)), nil
}

// Removed says what removing a guest's images found.
type Removed struct {
	Name string `json:"name"`
	Held bool   `json:"held"` // there was an image of it
}

func (h *Helper) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func standbyDir(dir string) string { return filepath.Join(dir, "standby") }
func outDir(dir string) string     { return filepath.Join(dir, "out") }

// OutImage is where the agent has libvirt write guest name's checkpoints
// on a host whose helper's directory is dir: the helper sends them from
// there.
func OutImage(dir, name string) string { return filepath.Join(outDir(dir), name+".img") }

// StandbyImage is where the helper on directory dir keeps the last
// complete image of guest name that it received: what a failover on that
// host restores.
func StandbyImage(dir, name string) string {
	rc := Receiver{Dir: standbyDir(dir)}
	return rc.ImagePath(name)
}

// SendRequest asks a helper to send an image it holds to a peer.
type SendRequest struct {
	Name string `json:"name"` // the guest
	Path string `json:"path"` // the image, absolute, under the helper's directory
	To   string `json:"to"`   // the peer's helper, https://HOST:PORT
}

// Sent is what sending one image cost.
type Sent struct {
	Name string `json:"name"`
	To   string `json:"to"`
	Stats
	Elapsed time.Duration `json:"elapsed_ns"`
}

func (h *Helper) send(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("send request: %v", err)})
		return
	}
	path, perr := h.checkPath(req.Path)
	to, terr := peerURL(req.To)
	if err := errors.Join(checkName(req.Name), perr, terr); err != nil {
		fail(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return
	}
	done, ok := h.busy.start(req.Name)
	if !ok {
		fail(w, http.StatusConflict, errorBody{Error: "an image of " + req.Name + " is being sent already"})
		return
	}
	defer done()
	start := time.Now()
	st, err := h.sender(to).Send(r.Context(), req.Name, path)
	if err != nil {
		h.log.Warn("send failed", "guest", req.Name, "to", to, "error", err)
		// The error names the guest and the peer (Sender's).
		fail(w, http.StatusBadGateway, errorBody{Error: err.Error()})
		return
	}
	sent := Sent{Name: req.Name, To: to, Stats: st, Elapsed: time.Since(start)}
	h.log.Info("sent", "guest", req.Name, "to", to, "path", path, "chunks", st.Chunks, "new_chunks", st.NewChunks,
		"chunk_bytes", st.ChunkBytes, "manifest_bytes", st.ManifestBytes, "wire_bytes", st.WireBytes, "elapsed", sent.Elapsed)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(sent)
}

// checkPath refuses an image that is not a regular file under h.Dir, by
// its name and once its links are resolved: the helper sends what the
// checkpoints put there, nothing else of the host's.
func (h *Helper) checkPath(p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", fmt.Errorf("path %q: not absolute", p)
	}
	if !within(h.Dir, filepath.Clean(p)) {
		return "", fmt.Errorf("path %q: outside %s", p, h.Dir)
	}
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return "", fmt.Errorf("path %q: %w", p, err)
	}
	if !within(h.Dir, real) {
		return "", fmt.Errorf("path %q: a link to %s, outside %s", p, real, h.Dir)
	}
	if fi, err := os.Stat(real); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("path %q: not a regular file", p)
	}
	return real, nil
}

// within says whether p (clean) is below dir.
func within(dir, p string) bool {
	rel, err := filepath.Rel(dir, p)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// peerURL checks a peer helper's address and returns it as the Sender's
// base URL.
func peerURL(to string) (string, error) {
	u, err := url.Parse(to)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("to %q: want the peer's helper as https://HOST:PORT", to)
	}
	return "https://" + u.Host, nil
}

// sender is the Sender to peer, kept so that it remembers what the peer
// holds: each image then costs only its new chunks.
func (h *Helper) sender(peer string) *Sender {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.senders[peer]
	if s == nil {
		s = &Sender{Client: h.peers, URL: peer}
		h.senders[peer] = s
	}
	return s
}
