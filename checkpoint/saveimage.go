// Package checkpoint reads and measures the memory images that libvirt
// 9.0 and QEMU 7.2 write of a running guest (issue 14, the first step of
// hot standby): libvirt's save-image header, the RAM pages of the QEMU
// migration stream after it, and what a second image adds to a first
// when both are cut into chunks (content-defined or fixed) or into guest
// pages. BenchmarkCheckpoint (acctest) and docs/guides/continuity.md use
// it; nothing ships chunks yet.
package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The save-image header libvirt's QEMU driver writes before the QEMU
// migration stream, in virDomainSaveFlags' files and in the memory file of
// an external snapshot (src/qemu/qemu_saveimage.h, version 2): a magic, 19
// native-endian (here little-endian) 32-bit words, then DataLen bytes of
// domain XML (NUL-terminated, then an optional cookie, then zero padding).
const (
	saveMagic   = "LibvirtQemudSave"
	savePartial = "LibvirtQemudPart" // the magic while libvirt is still writing
	saveVersion = 2
	// HeaderSize is the fixed part of the header: the magic and 19 words.
	HeaderSize = len(saveMagic) + 19*4
)

// SaveHeader is the header of a libvirt save image.
type SaveHeader struct {
	Version    uint32
	DataLen    uint32 // bytes of XML (and cookie, padding) after the fixed part
	WasRunning bool   // restore starts the guest running (unless told otherwise)
	Compressed uint32 // 0: raw QEMU stream
	// CookieOffset is where libvirt's migration cookie starts in the data
	// (0: none).
	CookieOffset uint32
	XML          string // the domain XML, without its NUL
}

// StreamOffset is where the QEMU migration stream starts in the image.
func (h SaveHeader) StreamOffset() int64 { return int64(HeaderSize) + int64(h.DataLen) }

// ReadSaveHeader reads a save image's header and XML, leaving r at the
// start of the QEMU migration stream.
func ReadSaveHeader(r io.Reader) (SaveHeader, error) {
	var fixed [HeaderSize]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return SaveHeader{}, fmt.Errorf("save image header: %w", err)
	}
	switch string(fixed[:len(saveMagic)]) {
	case saveMagic:
	case savePartial:
		return SaveHeader{}, errors.New("save image is incomplete (libvirt had not finished writing it)")
	default:
		return SaveHeader{}, fmt.Errorf("not a libvirt save image (magic %q)", fixed[:len(saveMagic)])
	}
	word := func(i int) uint32 { return binary.LittleEndian.Uint32(fixed[len(saveMagic)+4*i:]) }
	h := SaveHeader{Version: word(0), DataLen: word(1), WasRunning: word(2) != 0, Compressed: word(3), CookieOffset: word(4)}
	if h.Version != saveVersion {
		return h, fmt.Errorf("save image version %d, want %d", h.Version, saveVersion)
	}
	if h.DataLen > 16<<20 {
		return h, fmt.Errorf("save image header: %d bytes of XML is not believable", h.DataLen)
	}
	data := make([]byte, h.DataLen)
	if _, err := io.ReadFull(r, data); err != nil {
		return h, fmt.Errorf("save image XML: %w", err)
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		data = data[:i]
	}
	h.XML = string(data)
	return h, nil
}

// WriteSaveHeader writes the header of a save image holding a raw QEMU
// migration stream of the domain described by xml (libvirt's migratable
// XML, secrets included), padded so that the stream starts on a 4 KiB
// boundary: what libvirt needs to restore a stream QEMU wrote without it
// (virDomainRestoreFlags). running says whether restore starts the guest.
func WriteSaveHeader(w io.Writer, xml string, running bool) error {
	n := len(xml) + 1 // its NUL
	n += (4096 - (HeaderSize+n)%4096) % 4096
	buf := make([]byte, HeaderSize+n)
	copy(buf, saveMagic)
	put := func(i int, v uint32) { binary.LittleEndian.PutUint32(buf[len(saveMagic)+4*i:], v) }
	put(0, saveVersion)
	put(1, uint32(n))
	if running {
		put(2, 1)
	}
	copy(buf[HeaderSize:], xml)
	_, err := w.Write(buf)
	return err
}
