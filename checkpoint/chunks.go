package checkpoint

import (
	"errors"
	"fmt"
	"io"

	"github.com/restic/chunker"
)

// Digest names a chunk or page by its content (the first 16 bytes of its
// SHA-256).
type Digest [16]byte

// Chunk is one piece of an image: its content's digest and its length.
type Chunk struct {
	Digest Digest
	Len    uint32
}

// ManifestEntry is the size of one chunk's entry in a manifest (digest
// and length): what a standby needs besides the chunks it lacks to put
// an image together.
const ManifestEntry = len(Digest{}) + 4

// Manifest is an image as its chunks, in order.
type Manifest []Chunk

// Bytes is the image's size.
func (m Manifest) Bytes() int64 {
	var n int64
	for _, c := range m {
		n += int64(c.Len)
	}
	return n
}

// ManifestBytes is the size of the manifest itself.
func (m Manifest) ManifestBytes() int64 { return int64(len(m) * ManifestEntry) }

// New is what m holds that prev does not, by content: the chunks (and
// their bytes) a store holding prev's chunks would have to be sent, each
// once however often it occurs.
func (m Manifest) New(prev Manifest) (chunks int, bytes int64) {
	have := make(map[Digest]bool, len(prev))
	for _, c := range prev {
		have[c.Digest] = true
	}
	for _, c := range m {
		if !have[c.Digest] {
			have[c.Digest] = true
			chunks++
			bytes += int64(c.Len)
		}
	}
	return chunks, bytes
}

// Changed is what differs from prev by position (for fixed-size chunks:
// the blocks at the same offsets): the bytes an in-place update of a copy
// of prev writes, as an upload at an offset (virStorageVolUpload) can.
func (m Manifest) Changed(prev Manifest) (chunks int, bytes int64) {
	for i, c := range m {
		if i >= len(prev) || prev[i] != c {
			chunks++
			bytes += int64(c.Len)
		}
	}
	return chunks, bytes
}

// CDC says how content-defined chunks are cut (restic's chunker: a
// Rabin fingerprint over a 64-byte window; a chunk ends where the
// fingerprint's low AverageBits bits are zero, once it has MinSize bytes,
// and at MaxSize at the latest).
type CDC struct {
	Pol              chunker.Pol
	MinSize, MaxSize uint
	AverageBits      int
}

// Pol is a fixed irreducible polynomial, so that images cut at different
// times or places share their chunks' boundaries.
const Pol = chunker.Pol(0x3DA3358B4DC173)

// SmallCDC cuts chunks of about 5 KiB (1 KiB + 4 KiB on average, at most
// 64 KiB): small enough that one dirty 4 KiB page costs little more than
// itself.
var SmallCDC = CDC{Pol: Pol, MinSize: 1 << 10, MaxSize: 64 << 10, AverageBits: 12}

// Cut reads r to its end and returns its content-defined chunks.
func (p CDC) Cut(r io.Reader) (Manifest, error) {
	return p.Each(r, nil)
}

// Each is Cut that also hands each chunk's bytes to fn (if not nil), in
// order; fn must not keep data, which the next chunk overwrites.
func (p CDC) Each(r io.Reader, fn func(c Chunk, data []byte) error) (Manifest, error) {
	if p.MinSize < 64 || p.MaxSize < p.MinSize || p.AverageBits < 1 {
		return nil, fmt.Errorf("chunk sizes min %d, max %d, %d average bits: want 64 <= min <= max", p.MinSize, p.MaxSize, p.AverageBits)
	}
	c := chunker.NewWithBoundaries(r, p.Pol, p.MinSize, p.MaxSize)
	c.SetAverageBits(p.AverageBits)
	buf := make([]byte, p.MaxSize)
	var m Manifest
	for {
		ch, err := c.Next(buf)
		if errors.Is(err, io.EOF) {
			return m, nil
		}
		if err != nil {
			return m, err
		}
		k := Chunk{Digest: digestOf(ch.Data), Len: uint32(ch.Length)}
		if fn != nil {
			if err := fn(k, ch.Data); err != nil {
				return m, err
			}
		}
		m = append(m, k)
	}
}

// CutFixed reads r to its end and returns its chunks of size bytes (the
// last one shorter).
func CutFixed(r io.Reader, size int) (Manifest, error) {
	buf := make([]byte, size)
	var m Manifest
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			m = append(m, Chunk{Digest: digestOf(buf[:n]), Len: uint32(n)})
		}
		switch {
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return m, nil
		case err != nil:
			return m, err
		}
	}
}
