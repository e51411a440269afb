package checkpoint

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// PageSize is the guest page size of x86 QEMU's RAM migration.
const PageSize = 4096

// The QEMU 7.2 migration stream (migration/savevm.c, migration/ram.c): a
// magic and version, a configuration section, then sections of which
// only the RAM ones are read here. Device state (QEMU_VM_SECTION_FULL)
// has no length and needs each device's description to be skipped; in a
// precopy stream and in a background snapshot it follows the RAM.
const (
	streamMagic   = 0x5145564d // "QEVM"
	streamVersion = 3

	secEOF           = 0x00
	secStart         = 0x01
	secPart          = 0x02
	secEnd           = 0x03
	secFull          = 0x04
	secConfiguration = 0x07
	secFooter        = 0x7e

	flagZero     = 0x02
	flagMemSize  = 0x04
	flagPage     = 0x08
	flagEOS      = 0x10
	flagContinue = 0x20
	flagsMask    = PageSize - 1
)

// Block is one RAM block of the guest (pc.ram, the BIOS, option ROMs, …).
type Block struct {
	Name string
	Size uint64
}

// RAM is the guest memory a migration stream holds: each page's last
// content, as a digest.
type RAM struct {
	Blocks []Block
	// Pages maps each page (PageKey) to the digest of its content.
	Pages map[uint64]Digest
	// Records counts page records (a page sent again counts again) and
	// ZeroRecords those that said "all one byte" instead of sending it.
	Records, ZeroRecords int
	// Device says the stream went on past the RAM to device state (a
	// whole stream); Bytes is how far into it the RAM was read.
	Device bool
	Bytes  int64
}

// PageKey names page n of RAM block b.
func PageKey(b int, n uint64) uint64 { return uint64(b)<<40 | n }

// Complete says whether every page of every block was in the stream.
func (m *RAM) Complete() bool {
	var want uint64
	for _, b := range m.Blocks {
		want += b.Size / PageSize
	}
	return uint64(len(m.Pages)) == want
}

// Size is the guest's RAM in bytes (all blocks).
func (m *RAM) Size() uint64 {
	var n uint64
	for _, b := range m.Blocks {
		n += b.Size
	}
	return n
}

// Changed is how many of m's pages differ from (or are not in) prev: the
// pages a copy holding prev would need, were pages shipped by address.
func (m *RAM) Changed(prev *RAM) int {
	n := 0
	for k, d := range m.Pages {
		if p, ok := prev.Pages[k]; !ok || p != d {
			n++
		}
	}
	return n
}

// fillDigest is the digest of a page of one repeated byte.
func fillDigest(b byte) Digest {
	var page [PageSize]byte
	for i := range page {
		page[i] = b
	}
	return digestOf(page[:])
}

var zeroDigest = fillDigest(0)

// ReadRAM reads the RAM sections of a QEMU migration stream, stopping at
// the first other section (device state) or at the end of the stream.
func ReadRAM(r io.Reader) (*RAM, error) {
	s := &streamReader{r: bufio.NewReaderSize(r, 1<<20), block: -1}
	m := &RAM{Pages: map[uint64]Digest{}}
	if magic, version := s.u32(), s.u32(); s.err == nil && (magic != streamMagic || version != streamVersion) {
		return nil, fmt.Errorf("not a QEMU migration stream (magic %#x, version %d)", magic, version)
	}
	ramID := int64(-1)
	for s.err == nil {
		t := s.byte()
		if s.err != nil {
			break
		}
		switch t {
		case secConfiguration:
			s.skip(int64(s.u32())) // the machine type
			continue
		case secStart:
			id := s.u32()
			name := s.str()
			s.u32() // instance
			s.u32() // version
			if s.err == nil && name != "ram" {
				return m, fmt.Errorf("stream section %q: only RAM is read (a guest with disks or dirty bitmaps?)", name)
			}
			ramID = int64(id)
		case secPart, secEnd:
			if id := s.u32(); s.err == nil && int64(id) != ramID {
				return m, fmt.Errorf("stream section %d is not the RAM's (%d)", id, ramID)
			}
		case secFull, secEOF:
			m.Device = t == secFull
			m.Bytes = s.n - 1
			return m, s.err
		default:
			return m, fmt.Errorf("stream section type %#x at byte %d not understood", t, s.n-1)
		}
		if err := s.ramRecords(m); err != nil {
			return m, err
		}
		if b, err := s.r.Peek(1); err == nil && b[0] == secFooter {
			s.skip(5) // footer: type and section id
		}
	}
	m.Bytes = s.n
	if errors.Is(s.err, io.EOF) {
		return m, fmt.Errorf("stream ends in its RAM (byte %d): %w", s.n, io.ErrUnexpectedEOF)
	}
	return m, s.err
}

// ramRecords reads one RAM section's records up to its end-of-section.
// A record that continues the block of the one before may follow it in
// another section.
func (s *streamReader) ramRecords(m *RAM) error {
	page := make([]byte, PageSize)
	for s.err == nil {
		v := s.u64()
		flags, addr := v&flagsMask, v&^uint64(flagsMask)
		switch {
		case flags&flagEOS != 0:
			return s.err
		case flags&flagMemSize != 0: // the list of blocks, at the start
			for total := uint64(0); total < addr && s.err == nil; {
				b := Block{Name: s.str(), Size: s.u64()}
				m.Blocks = append(m.Blocks, b)
				total += b.Size
			}
			continue
		case flags&(flagZero|flagPage) == 0:
			return fmt.Errorf("RAM record flags %#x at byte %d not understood (compression, xbzrle?)", flags, s.n-8)
		}
		if flags&flagContinue == 0 {
			name := s.str()
			s.block = -1
			for i, b := range m.Blocks {
				if b.Name == name {
					s.block = i
				}
			}
			if s.err == nil && s.block < 0 {
				return fmt.Errorf("RAM record for unknown block %q", name)
			}
		}
		if s.block < 0 {
			return fmt.Errorf("RAM record continues no block (byte %d)", s.n-8)
		}
		var d Digest
		if flags&flagZero != 0 {
			d = zeroDigest
			if fill := s.byte(); fill != 0 {
				d = fillDigest(fill)
			}
			m.ZeroRecords++
		} else {
			s.full(page)
			d = digestOf(page)
		}
		m.Records++
		if s.err == nil {
			m.Pages[PageKey(s.block, addr/PageSize)] = d
		}
	}
	return s.err
}

// streamReader reads big-endian fields, keeping the first error.
type streamReader struct {
	r     *bufio.Reader
	n     int64
	err   error
	buf   [8]byte
	block int // of the last page record, for the next one that continues it
}

func (s *streamReader) full(b []byte) {
	if s.err != nil {
		return
	}
	var n int
	n, s.err = io.ReadFull(s.r, b)
	s.n += int64(n)
}

func (s *streamReader) byte() byte {
	s.full(s.buf[:1])
	return s.buf[0]
}

func (s *streamReader) u32() uint32 {
	s.full(s.buf[:4])
	return binary.BigEndian.Uint32(s.buf[:4])
}

func (s *streamReader) u64() uint64 {
	s.full(s.buf[:8])
	return binary.BigEndian.Uint64(s.buf[:8])
}

// str reads a string of up to 255 bytes after its length byte.
func (s *streamReader) str() string {
	b := make([]byte, s.byte())
	s.full(b)
	return string(b)
}

func (s *streamReader) skip(n int64) {
	if s.err != nil {
		return
	}
	var k int64
	k, s.err = io.CopyN(io.Discard, s.r, n)
	s.n += k
}

func digestOf(b []byte) Digest {
	sum := sha256.Sum256(b)
	var d Digest
	copy(d[:], sum[:])
	return d
}
