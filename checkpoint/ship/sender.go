package ship

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sync"

	"github.com/virtpool/virtpool/checkpoint"
)

// Sender sends a primary's images to one receiver, remembering per guest
// the manifest the receiver holds, so that each image costs only its new
// chunks.
type Sender struct {
	Client *http.Client
	URL    string // the receiver's base URL, e.g. https://h2:8481

	mu   sync.Mutex
	held map[string]checkpoint.Manifest // by guest: the receiver's last image
}

// Send sends the image at path (on this host) as guest name's newest
// image. A sender that does not know what the receiver holds asks it
// first; a receiver that lacks chunks the sender thought it had gets the
// whole image once more.
func (s *Sender) Send(ctx context.Context, name, path string) (Stats, error) {
	held, err := s.heldBy(ctx, name)
	if err != nil {
		return Stats{}, err
	}
	st, m, missing, err := s.post(ctx, name, path, held)
	if err == nil && missing {
		st, m, missing, err = s.post(ctx, name, path, nil)
		if err == nil && missing {
			err = fmt.Errorf("send image of %s to %s: chunks still missing after sending all of them", name, s.URL)
		}
	}
	if err != nil {
		s.forget(name)
		return st, err
	}
	s.mu.Lock()
	s.held[name] = m
	s.mu.Unlock()
	return st, nil
}

func (s *Sender) forget(name string) {
	s.mu.Lock()
	delete(s.held, name)
	s.mu.Unlock()
}

// heldBy returns the manifest of the receiver's last image of name (nil:
// none).
func (s *Sender) heldBy(ctx context.Context, name string) (checkpoint.Manifest, error) {
	s.mu.Lock()
	if s.held == nil {
		s.held = map[string]checkpoint.Manifest{}
	}
	m, ok := s.held[name]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	return getManifest(ctx, s.Client, s.URL, name)
}

// getManifest asks the receiver at base for the manifest of its last
// image of name (nil: none).
func getManifest(ctx context.Context, client *http.Client, base, name string) (checkpoint.Manifest, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/images/"+url.PathEscape(name)+"/manifest", nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask %s for its image of %s: %w", base, name, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNotFound:
		return nil, nil
	case http.StatusOK:
		m, err := readManifest(bufio.NewReader(resp.Body))
		if err != nil {
			return nil, fmt.Errorf("manifest of %s from %s: %w", name, base, err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("ask %s for its image of %s: %w", base, name, statusError(resp))
	}
}

// post sends one image, skipping the chunks of held; missing says the
// receiver lacked some of them.
func (s *Sender) post(ctx context.Context, name, path string, held checkpoint.Manifest) (st Stats, m checkpoint.Manifest, missing bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return st, nil, false, fmt.Errorf("send image of %s: %w", name, err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		var err error
		m, err = writeImage(pw, f, held)
		pw.CloseWithError(err)
		done <- err
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL+"/v1/images/"+url.PathEscape(name), pr)
	if err != nil {
		pr.Close()
		return st, nil, false, errors.Join(err, <-done)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.Client.Do(req)
	pr.CloseWithError(io.ErrClosedPipe) // stops the writer if the request ended early
	werr := <-done
	if err != nil {
		return st, nil, false, fmt.Errorf("send image of %s to %s: %w", name, s.URL, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if werr != nil {
			return st, nil, false, fmt.Errorf("send image of %s: %w", name, werr)
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
			return st, nil, false, fmt.Errorf("send image of %s to %s: its answer: %w", name, s.URL, err)
		}
		return st, m, false, nil
	case http.StatusConflict:
		e := decodeError(resp.Body)
		if e.Missing > 0 {
			return st, nil, true, nil
		}
		return st, nil, false, fmt.Errorf("send image of %s to %s: %w", name, s.URL, &StatusError{Code: resp.StatusCode, Message: e.Error})
	default:
		return st, nil, false, fmt.Errorf("send image of %s to %s: %w", name, s.URL, statusError(resp))
	}
}

// writeImage cuts image and writes its frames: the chunks held does not
// have (each once), the end frame, the manifest.
func writeImage(w io.Writer, image io.Reader, held checkpoint.Manifest) (checkpoint.Manifest, error) {
	bw := bufio.NewWriterSize(w, 256<<10)
	have := make(map[checkpoint.Digest]bool, len(held))
	for _, c := range held {
		have[c.Digest] = true
	}
	m, err := checkpoint.SmallCDC.Each(bufio.NewReaderSize(image, 1<<20), func(c checkpoint.Chunk, data []byte) error {
		if have[c.Digest] {
			return nil
		}
		have[c.Digest] = true
		if err := writeEntry(bw, c); err != nil {
			return err
		}
		_, err := bw.Write(data)
		return err
	})
	if err != nil {
		return nil, err
	}
	if _, err := bw.Write(bytes.Repeat([]byte{0}, entrySize)); err != nil {
		return nil, err
	}
	if err := writeManifest(bw, m); err != nil {
		return nil, err
	}
	return m, bw.Flush()
}
