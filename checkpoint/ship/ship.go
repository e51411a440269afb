// Package ship sends a guest's checkpoint images from its primary host to
// its standby incrementally: the sender cuts each image into
// content-defined chunks (checkpoint.SmallCDC) and sends only the chunks
// the standby does not hold yet, then the image's manifest; the receiver,
// on the standby, keeps the chunks (checkpoint.Store) and assembles the
// image beside its last one, which it replaces only once complete, so
// that the standby always holds a restorable image.
//
// One image is one HTTP request (POST /v1/images/NAME), its body a stream
// of frames, so the sender cuts and sends in one pass:
//
//	chunk:    digest (16 bytes) | length (u32, > 0) | data
//	end:      16 zero bytes | 0
//	manifest: entries (u32) | entries × (digest | length u32)
//
// GET /v1/images/NAME/manifest returns the manifest of the last image the
// receiver holds (404: none), so that a sender that restarted resumes
// from it instead of sending everything again. Receiver is an
// http.Handler and Send takes an *http.Client: any transport will do.
//
// On the hosts, Serve runs a Helper ('virtpool ship serve') on every
// host, over mutual TLS with libvirt's certificates (package pki): the
// Receiver of the images the host is standby for, and POST /v1/send, by
// which the agent (Client) has the primary's helper send an image to the
// standby's with a Sender, so that images cross from host to host and
// only control crosses to the agent:
//
//	POST /v1/send {"name": NAME, "path": ABSOLUTE PATH UNDER ITS DIRECTORY, "to": "https://PEER:PORT"}
//	→ 200 Sent (JSON: the Stats and the time taken); 400 bad input, named;
//	  409 a send of NAME under way; 502 the peer failed or refused it
package ship

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/virtpool/virtpool/checkpoint"
)

// Stats are what one image cost to send.
type Stats struct {
	Chunks        int   `json:"chunks"`         // chunks in the image
	NewChunks     int   `json:"new_chunks"`     // chunks sent
	ImageBytes    int64 `json:"image_bytes"`    // the image's size
	ChunkBytes    int64 `json:"chunk_bytes"`    // the data of the chunks sent
	ManifestBytes int64 `json:"manifest_bytes"` // the manifest, as sent
	WireBytes     int64 `json:"wire_bytes"`     // the request body: chunks sent, framing and manifest
}

const entrySize = checkpoint.ManifestEntry

// writeEntry writes a chunk's digest and length.
func writeEntry(w io.Writer, c checkpoint.Chunk) error {
	var b [entrySize]byte
	copy(b[:], c.Digest[:])
	binary.BigEndian.PutUint32(b[len(c.Digest):], c.Len)
	_, err := w.Write(b[:])
	return err
}

func readEntry(r io.Reader) (checkpoint.Chunk, error) {
	var b [entrySize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return checkpoint.Chunk{}, err
	}
	var c checkpoint.Chunk
	copy(c.Digest[:], b[:])
	c.Len = binary.BigEndian.Uint32(b[len(c.Digest):])
	return c, nil
}

// manifestHeader is the manifest's count of entries, before them.
const manifestHeader = 4

// writeManifest writes a manifest: its count, then its entries.
func writeManifest(w io.Writer, m checkpoint.Manifest) error {
	if err := binary.Write(w, binary.BigEndian, uint32(len(m))); err != nil {
		return err
	}
	for _, c := range m {
		if err := writeEntry(w, c); err != nil {
			return err
		}
	}
	return nil
}

// maxManifest bounds a manifest read from the wire (64 GiB of 1 KiB
// chunks), so that a damaged count cannot make the reader allocate
// without end.
const maxManifest = 64 << 20

func readManifest(r io.Reader) (checkpoint.Manifest, error) {
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if n > maxManifest {
		return nil, fmt.Errorf("manifest of %d chunks: more than %d", n, maxManifest)
	}
	m := make(checkpoint.Manifest, 0, n)
	for range n {
		c, err := readEntry(r)
		if err != nil {
			return nil, fmt.Errorf("manifest: %w", err)
		}
		m = append(m, c)
	}
	return m, nil
}

// encodeManifest is a manifest's wire form.
func encodeManifest(m checkpoint.Manifest) []byte {
	var b bytes.Buffer
	_ = writeManifest(&b, m) // a bytes.Buffer does not fail
	return b.Bytes()
}

// readImage reads an image's frames into store and returns its manifest.
func readImage(body io.Reader, store *checkpoint.Store, maxChunk uint32) (checkpoint.Manifest, Stats, error) {
	r := bufio.NewReaderSize(body, 256<<10)
	var st Stats
	buf := make([]byte, maxChunk)
	for {
		c, err := readEntry(r)
		if err != nil {
			return nil, st, fmt.Errorf("chunk header: %w", err)
		}
		if c.Len == 0 {
			if c.Digest != (checkpoint.Digest{}) {
				return nil, st, errors.New("a chunk of 0 bytes that is not the end frame")
			}
			break
		}
		if c.Len > maxChunk {
			return nil, st, fmt.Errorf("chunk %x of %d bytes: more than %d", c.Digest, c.Len, maxChunk)
		}
		if _, err := io.ReadFull(r, buf[:c.Len]); err != nil {
			return nil, st, fmt.Errorf("chunk %x: %w", c.Digest, err)
		}
		if err := store.Put(c, buf[:c.Len]); err != nil {
			return nil, st, err
		}
		st.NewChunks++
		st.ChunkBytes += int64(c.Len)
	}
	m, err := readManifest(r)
	if err != nil {
		return nil, st, err
	}
	st.Chunks, st.ImageBytes, st.ManifestBytes = len(m), m.Bytes(), manifestHeader+m.ManifestBytes()
	return m, st, nil
}

// errorBody is the receiver's answer to a refused image.
type errorBody struct {
	Error   string `json:"error"`
	Missing int    `json:"missing,omitempty"` // chunks the receiver lacks: send everything again
}

// StatusError is a refusal from the other end: its HTTP status and what
// it said.
type StatusError struct {
	Code    int
	Message string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

func statusError(resp *http.Response) error {
	return &StatusError{Code: resp.StatusCode, Message: decodeError(resp.Body).Error}
}

func decodeError(r io.Reader) errorBody {
	var e errorBody
	b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
	if json.Unmarshal(b, &e) != nil || e.Error == "" {
		e.Error = string(bytes.TrimSpace(b))
	}
	return e
}
