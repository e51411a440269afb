package ship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/virtpool/virtpool/checkpoint"
)

// Receiver keeps guests' images on a standby host, one directory each
// under Dir: chunks/ (the chunk store), image (the last complete image,
// what a failover restores: ImagePath) and manifest.
type Receiver struct {
	Dir string
	Log hclog.Logger

	once sync.Once
	mux  *http.ServeMux
	busy oneAtATime // guests whose image is being received
}

// oneAtATime holds the guests being worked on, so that a second request
// for one is refused instead of interleaved.
type oneAtATime struct {
	mu   sync.Mutex
	busy map[string]bool
}

// start marks name busy and returns what ends that, or false if it is
// busy already.
func (o *oneAtATime) start(name string) (done func(), ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.busy[name] {
		return nil, false
	}
	if o.busy == nil {
		o.busy = map[string]bool{}
	}
	o.busy[name] = true
	return func() {
		o.mu.Lock()
		delete(o.busy, name)
		o.mu.Unlock()
	}, true
}

// validName: a guest's name as a directory, nothing that climbs out of Dir.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ImagePath is where the last complete image of a guest is.
func (rc *Receiver) ImagePath(name string) string { return filepath.Join(rc.Dir, name, "image") }

func (rc *Receiver) log() hclog.Logger {
	if rc.Log == nil {
		return hclog.NewNullLogger()
	}
	return rc.Log
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rc.once.Do(func() {
		rc.mux = http.NewServeMux()
		rc.mux.HandleFunc("POST /v1/images/{name}", rc.receive)
		rc.mux.HandleFunc("GET /v1/images/{name}/manifest", rc.manifest)
	})
	rc.mux.ServeHTTP(w, r)
}

// errBusy: the guest's image is being received.
var errBusy = errors.New("an image is being received")

// remove deletes what this receiver keeps of guest name (held: there was
// something), unless an image of it is being received.
func (rc *Receiver) remove(name string) (held bool, err error) {
	done, ok := rc.busy.start(name)
	if !ok {
		return false, fmt.Errorf("%s: %w", name, errBusy)
	}
	defer done()
	dir := filepath.Join(rc.Dir, name)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	return true, os.RemoveAll(dir)
}

func fail(w http.ResponseWriter, code int, e errorBody) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(e)
}

// checkName refuses a guest name that is not a valid directory name.
func checkName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("guest name %q: want letters, digits, '.', '_' or '-'", name)
	}
	return nil
}

func (rc *Receiver) name(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	if err := checkName(name); err != nil {
		fail(w, http.StatusBadRequest, errorBody{Error: err.Error()})
		return "", false
	}
	return name, true
}

func (rc *Receiver) manifest(w http.ResponseWriter, r *http.Request) {
	name, ok := rc.name(w, r)
	if !ok {
		return
	}
	b, err := os.ReadFile(filepath.Join(rc.Dir, name, "manifest"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		fail(w, http.StatusNotFound, errorBody{Error: "no image of " + name + " here"})
	case err != nil:
		fail(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(b)
	}
}

// countingReader counts what was read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (rc *Receiver) receive(w http.ResponseWriter, r *http.Request) {
	name, ok := rc.name(w, r)
	if !ok {
		return
	}
	// One image of a guest at a time: a second sender is an error of the
	// caller's (two primaries), not something to interleave.
	done, ok := rc.busy.start(name)
	if !ok {
		fail(w, http.StatusConflict, errorBody{Error: "an image of " + name + " is being received already"})
		return
	}
	defer done()

	dir := filepath.Join(rc.Dir, name)
	store, err := checkpoint.OpenStore(filepath.Join(dir, "chunks"))
	if err != nil {
		fail(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	body := &countingReader{r: r.Body}
	m, st, err := readImage(body, store, uint32(checkpoint.SmallCDC.MaxSize))
	st.WireBytes = body.n
	if err != nil {
		rc.log().Warn("image refused", "guest", name, "error", err)
		fail(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("image of %s: %v", name, err)})
		return
	}
	if miss := store.Missing(m); len(miss) > 0 {
		// The sender thought this store held chunks it does not (it was
		// emptied, or the sender's record is of another standby).
		fail(w, http.StatusConflict, errorBody{Error: fmt.Sprintf("image of %s: %d chunks missing", name, len(miss)), Missing: len(miss)})
		return
	}
	if err := store.Assemble(m, rc.ImagePath(name)); err != nil {
		fail(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	if err := checkpoint.WriteFile(filepath.Join(dir, "manifest"), encodeManifest(m)); err != nil {
		fail(w, http.StatusInternalServerError, errorBody{Error: err.Error()})
		return
	}
	if _, err := store.Prune(m); err != nil {
		rc.log().Warn("old chunks not pruned", "guest", name, "error", err)
	}
	rc.log().Debug("image received", "guest", name, "chunks", st.Chunks, "new_chunks", st.NewChunks, "wire_bytes", st.WireBytes)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}
