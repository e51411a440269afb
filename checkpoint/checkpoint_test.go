package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestSaveHeaderRoundTrip(t *testing.T) {
	xml := "<domain type='qemu'><name>g</name></domain>"
	var b bytes.Buffer
	if err := WriteSaveHeader(&b, xml, true); err != nil {
		t.Fatal(err)
	}
	b.WriteString("QEVM")
	r := bytes.NewReader(b.Bytes())
	h, err := ReadSaveHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	if h.XML != xml || !h.WasRunning || h.Compressed != 0 || h.CookieOffset != 0 {
		t.Errorf("read back %+v", h)
	}
	if h.StreamOffset()%4096 != 0 {
		t.Errorf("stream at %d, want a 4 KiB boundary", h.StreamOffset())
	}
	if rest, _ := io.ReadAll(r); string(rest) != "QEVM" {
		t.Errorf("after the header: %q, want the stream", rest)
	}
}

func TestSaveHeaderRefusals(t *testing.T) {
	for name, head := range map[string]string{
		"partial":   "LibvirtQemudPart",
		"other":     "QEVM\x00\x00\x00\x03.......",
		"too short": "Libvirt",
	} {
		if _, err := ReadSaveHeader(strings.NewReader(head + strings.Repeat("\x00", 92-min(92, len(head))))); err == nil {
			t.Errorf("%s: read as a save image", name)
		}
	}
	if _, err := ReadSaveHeader(strings.NewReader("Libvirt")); err == nil {
		t.Error("a truncated header was read")
	}
}

// stream writes a QEMU migration stream as QEMU 7.2 does (see stream.go).
type stream struct{ bytes.Buffer }

func (s *stream) u32(v uint32) { _ = binary.Write(s, binary.BigEndian, v) }
func (s *stream) u64(v uint64) { _ = binary.Write(s, binary.BigEndian, v) }
func (s *stream) str(v string) { s.WriteByte(byte(len(v))); s.WriteString(v) }

func newStream(blocks ...Block) *stream {
	s := &stream{}
	s.u32(streamMagic)
	s.u32(streamVersion)
	s.WriteByte(secConfiguration)
	s.u32(13)
	s.WriteString("pc-i440fx-7.2")
	s.WriteByte(secStart)
	s.u32(2)
	s.str("ram")
	s.u32(0)
	s.u32(4)
	var total uint64
	for _, b := range blocks {
		total += b.Size
	}
	s.u64(total | flagMemSize)
	for _, b := range blocks {
		s.str(b.Name)
		s.u64(b.Size)
	}
	s.u64(flagEOS)
	s.footer()
	return s
}

func (s *stream) footer() { s.WriteByte(secFooter); s.u32(2) }

// page writes one page record: fill >= 0 for a page of that byte sent
// as such (a zero record), else data.
func (s *stream) page(block string, n uint64, fill int, data []byte) {
	flags := uint64(flagPage)
	if fill >= 0 {
		flags = flagZero
	}
	if block == "" {
		flags |= flagContinue
	}
	s.u64(n*PageSize | flags)
	if block != "" {
		s.str(block)
	}
	if fill >= 0 {
		s.WriteByte(byte(fill))
	} else {
		s.Write(data)
	}
}

func (s *stream) section(t byte) { s.WriteByte(t); s.u32(2) }
func (s *stream) end()           { s.u64(flagEOS); s.footer() }

func TestReadRAM(t *testing.T) {
	blocks := []Block{{"pc.ram", 4 * PageSize}, {"pc.bios", PageSize}}
	data := bytes.Repeat([]byte{7}, PageSize)
	build := func(last []byte) []byte {
		s := newStream(blocks...)
		s.section(secPart)
		s.page("pc.ram", 0, -1, data)
		s.page("", 1, 0, nil)
		s.page("", 2, 0, nil)
		s.end()
		s.section(secPart) // continues pc.ram across sections
		s.page("", 3, 1, nil)
		s.page("pc.bios", 0, -1, data)
		s.page("pc.ram", 2, -1, last) // sent again: the last copy counts
		s.end()
		s.WriteByte(secFull) // device state: not read
		s.WriteString("timer and more")
		return s.Bytes()
	}
	a, err := ReadRAM(bytes.NewReader(build(data)))
	if err != nil {
		t.Fatal(err)
	}
	if !a.Complete() || !a.Device || a.Records != 6 || a.ZeroRecords != 3 || len(a.Pages) != 5 || a.Size() != 5*PageSize {
		t.Errorf("read %d blocks, %d pages (%d records, %d zero), complete %t, device %t", len(a.Blocks), len(a.Pages), a.Records, a.ZeroRecords, a.Complete(), a.Device)
	}
	if a.Pages[PageKey(0, 2)] != a.Pages[PageKey(0, 0)] || a.Pages[PageKey(0, 1)] != zeroDigest || a.Pages[PageKey(0, 3)] == zeroDigest {
		t.Error("page digests are not the pages' last contents")
	}
	other := bytes.Repeat([]byte{8}, PageSize)
	b, err := ReadRAM(bytes.NewReader(build(other)))
	if err != nil {
		t.Fatal(err)
	}
	if n := b.Changed(a); n != 1 {
		t.Errorf("%d pages changed, want 1", n)
	}

	whole := build(data)
	if _, err := ReadRAM(bytes.NewReader(whole[:len(whole)/2])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a truncated stream: %v, want an unexpected EOF", err)
	}
	if _, err := ReadRAM(strings.NewReader("LibvirtQemudSave")); err == nil {
		t.Error("a save image's header was read as a stream")
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestCDCFindsShiftedContent(t *testing.T) {
	img := randomBytes(1<<20, 1)
	// The second image: 100 bytes inserted near the start, one page
	// rewritten in the middle.
	next := append(append(append([]byte{}, img[:1000]...), randomBytes(100, 2)...), img[1000:]...)
	copy(next[512<<10:], randomBytes(PageSize, 3))

	a, err := SmallCDC.Cut(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	b, err := SmallCDC.Cut(bytes.NewReader(next))
	if err != nil {
		t.Fatal(err)
	}
	if a.Bytes() != int64(len(img)) || b.Bytes() != int64(len(next)) {
		t.Fatalf("chunks cover %d and %d bytes, want %d and %d", a.Bytes(), b.Bytes(), len(img), len(next))
	}
	for i, c := range a {
		if c.Len > uint32(SmallCDC.MaxSize) || (c.Len < uint32(SmallCDC.MinSize) && i < len(a)-1) {
			t.Fatalf("chunk of %d bytes", c.Len)
		}
	}
	if _, n := b.New(a); n > 64<<10 {
		t.Errorf("content-defined chunks: %d new bytes after a 100-byte insert and one page, want a few chunks' worth", n)
	}
	fa, _ := CutFixed(bytes.NewReader(img), PageSize)
	fb, _ := CutFixed(bytes.NewReader(next), PageSize)
	if _, n := fb.Changed(fa); n < int64(len(next))*9/10 {
		t.Errorf("fixed chunks by position: %d bytes changed after a shift, want nearly all", n)
	}
	if c, n := fa.Changed(fa); c != 0 || n != 0 {
		t.Errorf("an image differs from itself by %d chunks", c)
	}
	if _, err := (CDC{Pol: Pol, MinSize: 8, MaxSize: 4}).Cut(bytes.NewReader(img)); err == nil {
		t.Error("impossible chunk sizes accepted")
	}
}

func TestNewCountsEachChunkOnce(t *testing.T) {
	x, y := Chunk{Digest: Digest{1}, Len: 10}, Chunk{Digest: Digest{2}, Len: 20}
	if c, n := (Manifest{x, y, y, x}).New(Manifest{x}); c != 1 || n != 20 {
		t.Errorf("New: %d chunks, %d bytes; want 1, 20", c, n)
	}
	if got := (Manifest{x, y}).ManifestBytes(); got != 2*int64(ManifestEntry) {
		t.Errorf("manifest of 2 chunks: %d bytes", got)
	}
}
