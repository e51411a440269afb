package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"
)

// Log appends records to a JSON-lines file, one line per record. Each line
// is one write on a file opened with O_APPEND, so processes that share
// the file (both plugins of an autoscaler agent) never interleave their
// lines. A nil *Log records nothing: callers without an event log need no
// checks.
type Log struct {
	path string

	mu  sync.Mutex
	f   *os.File
	err error // the first failed write: records are best effort, the caller's work goes on
}

// Open opens (creating it if needed) the file at path for appending.
func Open(path string) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err // a *fs.PathError: it names the file; callers name their setting
	}
	return &Log{path: path, f: f}, nil
}

// Emit appends e, with the time now if it has none. A failed write drops
// the record (Close reports the first failure).
func (l *Log) Emit(e Event) {
	if l == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b, err := json.Marshal(e)
	if err == nil {
		b = append(b, '\n')
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil && l.f == nil {
		err = os.ErrClosed
	}
	if err == nil {
		_, err = l.f.Write(b)
	}
	if err != nil && l.err == nil {
		l.err = fmt.Errorf("event log %s: %s record dropped: %w", l.path, e.Kind, err)
	}
}

// Close closes the file and returns the first failed write, if any.
// Records emitted after Close are dropped.
func (l *Log) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return l.err
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		err = fmt.Errorf("event log %s: %w", l.path, err)
	}
	return errors.Join(l.err, err)
}

// ReadFile reads the records of the file at path from byte offset on, and
// returns them with the offset after the last complete line: a line still
// being written is left for the next read. A file that does not exist
// (yet) has no records. A line that is not a record is skipped and
// reported in the error, with the records read.
func ReadFile(path string, offset int64) ([]Event, int64, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, offset, nil
	}
	if err != nil {
		return nil, offset, fmt.Errorf("event log: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.NewSectionReader(f, offset, 1<<62))
	if err != nil {
		return nil, offset, fmt.Errorf("event log: %w", err)
	}
	var (
		out  []Event
		errs []error
	)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			return out, offset, errors.Join(errs...)
		}
		if line := bytes.TrimSpace(data[:i]); len(line) > 0 {
			var e Event
			if err := json.Unmarshal(line, &e); err != nil {
				errs = append(errs, fmt.Errorf("event log %s at byte %d: %w", path, offset, err))
			} else {
				out = append(out, e)
			}
		}
		offset += int64(i) + 1
		data = data[i+1:]
	}
}
