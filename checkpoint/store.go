package checkpoint

import (
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Store keeps chunks by digest in a directory: a standby's copy of a
// guest's images, from which it puts a whole image together. A chunk is
// written once (whatever image it came in), and an image is assembled
// into a new file that replaces the old one only once complete and synced,
// so that the standby's last image is always restorable.
type Store struct {
	dir string
}

// OpenStore opens (and creates) a store in dir.
func OpenStore(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("chunk store: %w", err)
	}
	return &Store{dir: dir}, nil
}

// path is a chunk's file: 256 subdirectories, by the digest's first byte.
func (s *Store) path(d Digest) string {
	h := hex.EncodeToString(d[:])
	return filepath.Join(s.dir, h[:2], h[2:])
}

// Has says whether the store holds a chunk.
func (s *Store) Has(d Digest) bool {
	_, err := os.Stat(s.path(d))
	return err == nil
}

// Missing lists the chunks of m the store lacks, each once, in order: what
// a sender must still send for m.
func (s *Store) Missing(m Manifest) []Chunk {
	var out []Chunk
	seen := map[Digest]bool{}
	for _, c := range m {
		if !seen[c.Digest] && !s.Has(c.Digest) {
			out = append(out, c)
		}
		seen[c.Digest] = true
	}
	return out
}

// Put stores a chunk, checking that data is c: a chunk damaged on its way
// is refused, not stored under a digest it does not have.
func (s *Store) Put(c Chunk, data []byte) error {
	if uint32(len(data)) != c.Len || digestOf(data) != c.Digest {
		return fmt.Errorf("chunk %x: %d bytes whose digest is not its own (want %d bytes)", c.Digest, len(data), c.Len)
	}
	p := s.path(c.Digest)
	if s.Has(c.Digest) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("chunk %x: %w", c.Digest, err)
	}
	return WriteFile(p, data)
}

// Assemble writes the image m into path from the store's chunks. It checks
// first that every chunk is there (an error naming how many are missing
// leaves path as it was) and replaces path only once the new image is
// complete and synced.
func (s *Store) Assemble(m Manifest, path string) error {
	if miss := s.Missing(m); len(miss) > 0 {
		return fmt.Errorf("assemble %s: %d of its chunks are missing (first %x): send them first", path, len(miss), miss[0].Digest)
	}
	return writeAtomic(path, func(f *os.File) error {
		for _, c := range m {
			data, err := os.ReadFile(s.path(c.Digest))
			if err != nil {
				return err
			}
			if uint32(len(data)) != c.Len || digestOf(data) != c.Digest {
				return fmt.Errorf("chunk %x in the store is damaged", c.Digest)
			}
			if _, err := f.Write(data); err != nil {
				return err
			}
		}
		return nil
	})
}

// Prune removes every chunk that none of keep holds, and returns how many
// went: the chunks of images the standby no longer needs. Chunks being
// written (temporary files) are left alone.
func (s *Store) Prune(keep ...Manifest) (int, error) {
	need := map[string]bool{}
	for _, m := range keep {
		for _, c := range m {
			need[s.path(c.Digest)] = true
		}
	}
	n := 0
	err := filepath.WalkDir(s.dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || need[p] || e.Name()[0] == '.' {
			return err
		}
		if err := os.Remove(p); err != nil {
			return err
		}
		n++
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("prune chunk store %s: %w", s.dir, err)
	}
	return n, nil
}

// WriteFile replaces path with data as writeAtomic does.
func WriteFile(path string, data []byte) error {
	return writeAtomic(path, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// writeAtomic writes path through a temporary file beside it, synced and
// renamed over path: a reader sees the old file or the whole new one.
func writeAtomic(path string, write func(*os.File) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
