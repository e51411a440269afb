package ship

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtpool/virtpool/checkpoint"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

type fixture struct {
	t    *testing.T
	rc   *Receiver
	srv  *httptest.Server
	dir  string // the primary's images
	seq  int
	send *Sender
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{t: t, rc: &Receiver{Dir: t.TempDir()}, dir: t.TempDir()}
	f.srv = httptest.NewServer(f.rc)
	t.Cleanup(f.srv.Close)
	f.send = f.sender()
	return f
}

func (f *fixture) sender() *Sender { return &Sender{Client: f.srv.Client(), URL: f.srv.URL} }

// image writes an image on the "primary" and returns its path.
func (f *fixture) image(b []byte) string {
	f.seq++
	p := filepath.Join(f.dir, "img"+string(rune('a'+f.seq)))
	if err := os.WriteFile(p, b, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return p
}

// held is the receiver's image of guest vm-1.
func (f *fixture) held() []byte {
	b, err := os.ReadFile(f.rc.ImagePath("vm-1"))
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

func TestSendOnlyWhatChanged(t *testing.T) {
	f := newFixture(t)
	first := randomBytes(2<<20, 1)
	second := bytes.Clone(first)
	copy(second[1<<20:], randomBytes(checkpoint.PageSize, 2)) // one page rewritten
	third := append(randomBytes(100, 3), second...)           // then a shift
	overhead := func(b []byte) int64 {                        // the manifest and the end frame
		m, _ := checkpoint.SmallCDC.Cut(bytes.NewReader(b))
		return m.ManifestBytes() + 4 + int64(entrySize)
	}
	for _, tc := range []struct {
		name    string
		sender  func() *Sender
		img     []byte
		maxWire int64 // beyond the manifest
		minWire int64
	}{
		{"first image: all of it", func() *Sender { return f.send }, first, 2<<20 + 64<<10, 2 << 20},
		{"one page rewritten", func() *Sender { return f.send }, second, 64 << 10, 1},
		{"100 bytes inserted", func() *Sender { return f.send }, third, 64 << 10, 1},
		{"a restarted sender resumes from the receiver's image", f.sender, third, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := tc.sender().Send(context.Background(), "vm-1", f.image(tc.img))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(f.held(), tc.img) {
				t.Fatal("the receiver's image differs from the primary's")
			}
			wire := st.WireBytes - overhead(tc.img)
			if wire > tc.maxWire || wire < tc.minWire {
				t.Errorf("%d bytes of chunks on the wire (%d chunks of %d), want %d…%d", wire, st.NewChunks, st.Chunks, tc.minWire, tc.maxWire)
			}
			if framing := int64((st.NewChunks + 1) * entrySize); st.ChunkBytes+st.ManifestBytes+framing != st.WireBytes {
				t.Errorf("%d bytes of chunks + %d of manifest + %d of framing, but %d on the wire", st.ChunkBytes, st.ManifestBytes, framing, st.WireBytes)
			}
			if st.ImageBytes != int64(len(tc.img)) {
				t.Errorf("image of %d bytes reported, want %d", st.ImageBytes, len(tc.img))
			}
		})
	}
}

// A receiver that lost its chunks gets the whole image again; a bad
// stream leaves its last image as it was.
func TestSendRecovers(t *testing.T) {
	f := newFixture(t)
	img := randomBytes(512<<10, 1)
	if _, err := f.send.Send(context.Background(), "vm-1", f.image(img)); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(f.rc.Dir, "vm-1", "chunks")); err != nil {
		t.Fatal(err)
	}
	next := append(bytes.Clone(img), randomBytes(8192, 2)...)
	st, err := f.send.Send(context.Background(), "vm-1", f.image(next))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.held(), next) || st.NewChunks != st.Chunks {
		t.Errorf("after the receiver lost its chunks: %d of %d chunks sent, image equal %v", st.NewChunks, st.Chunks, bytes.Equal(f.held(), next))
	}

	for _, tc := range []struct {
		name, guest string
		body        []byte
		code        int
		want        string
	}{
		{"bad name", "../etc", nil, http.StatusNotFound, ""},
		{"bad name characters", "vm 1", nil, http.StatusBadRequest, "guest name"},
		{"truncated", "vm-1", []byte{1, 2, 3}, http.StatusBadRequest, "chunk header"},
		{"damaged chunk", "vm-1", damaged(), http.StatusBadRequest, "not its own"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := f.srv.Client().Post(f.srv.URL+"/v1/images/"+strings.ReplaceAll(tc.guest, " ", "%20"), "application/octet-stream", bytes.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			e := decodeError(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code || !strings.Contains(e.Error, tc.want) {
				t.Errorf("%s: %d %q, want %d with %q", tc.name, resp.StatusCode, e.Error, tc.code, tc.want)
			}
		})
	}
	if !bytes.Equal(f.held(), next) {
		t.Error("a refused image changed the receiver's last one")
	}
}

// damaged is a stream whose one chunk's data is not its digest's.
func damaged() []byte {
	data := randomBytes(4096, 9)
	c := checkpoint.Chunk{Digest: checkpoint.Digest{1, 2, 3}, Len: uint32(len(data))}
	var b bytes.Buffer
	_ = writeEntry(&b, c)
	b.Write(data)
	return b.Bytes()
}
