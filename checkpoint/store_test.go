package checkpoint

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ship sends img to the store as a primary would: the chunks the store
// lacks, then the manifest, and assembles the standby's image at out.
func ship(t *testing.T, s *Store, img []byte, out string) (Manifest, int64) {
	t.Helper()
	var sent int64
	m, err := SmallCDC.Each(bytes.NewReader(img), func(c Chunk, data []byte) error {
		if s.Has(c.Digest) {
			return nil
		}
		sent += int64(len(data))
		return s.Put(c, data)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Assemble(m, out); err != nil {
		t.Fatal(err)
	}
	return m, sent
}

func TestStoreShipsWhatChanged(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(filepath.Join(dir, "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "guest.img")
	first := randomBytes(1<<20, 1)
	second := append([]byte{}, first...)
	copy(second[300<<10:], randomBytes(PageSize, 2)) // one page rewritten
	third := append(randomBytes(64, 3), second...)   // and a shift

	var kept []Manifest
	for _, tc := range []struct {
		name    string
		img     []byte
		maxSent int64
	}{
		{"first image: everything", first, 1 << 20},
		{"one page rewritten", second, 64 << 10},
		{"64 bytes inserted", third, 64 << 10},
		{"the same again", third, 0},
	} {
		m, sent := ship(t, s, tc.img, out)
		kept = append(kept, m)
		if sent > tc.maxSent {
			t.Errorf("%s: %d bytes sent, want at most %d", tc.name, sent, tc.maxSent)
		}
		got, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.img) {
			t.Fatalf("%s: the assembled image differs from the primary's", tc.name)
		}
	}
	// Only the last image's chunks are needed once it is assembled.
	n, err := s.Prune(kept[len(kept)-1])
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 || len(s.Missing(kept[len(kept)-1])) != 0 {
		t.Errorf("prune removed %d chunks, and the last image lacks %d", n, len(s.Missing(kept[len(kept)-1])))
	}
	if len(s.Missing(kept[0])) == 0 {
		t.Error("the first image's replaced chunks were kept")
	}
}

// A damaged chunk is refused, and an image with a chunk missing leaves the
// standby's last image as it was.
func TestStoreRefuses(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenStore(filepath.Join(dir, "chunks"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "guest.img")
	old := randomBytes(64<<10, 1)
	ship(t, s, old, out)

	data := randomBytes(4096, 2)
	c := Chunk{Digest: digestOf(data), Len: uint32(len(data))}
	damaged := append([]byte{}, data...)
	damaged[7] ^= 1
	if err := s.Put(c, damaged); err == nil || !strings.Contains(err.Error(), "not its own") {
		t.Errorf("a damaged chunk: %v, want it refused", err)
	}
	if s.Has(c.Digest) {
		t.Error("the damaged chunk was stored")
	}
	next, err := SmallCDC.Cut(bytes.NewReader(append(data, old...)))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Assemble(next, out); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("an image with a chunk missing: %v, want it refused", err)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, old) {
		t.Error("a failed assembly changed the standby's last image")
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".guest.img.*")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}
