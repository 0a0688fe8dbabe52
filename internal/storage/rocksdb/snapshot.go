package rocksdb

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/linxGnu/grocksdb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/storage"
)

// restoreFilePattern names the temporary copy of a snapshot being restored,
// inside the engine's directory (RocksDB ignores files it does not know).
const restoreFilePattern = "restore-*.tmp"

// restoreBatchBytes bounds the write batches of Restore, so a snapshot of
// many gigabytes never needs a batch of the same size.
const restoreBatchBytes = 4 << 20

// WriteSnapshot implements storage.Engine. It streams from a view, so
// writers are not held up while the snapshot is written.
func (e *Engine) WriteSnapshot(w io.Writer) error {
	v, err := e.NewView()
	if err != nil {
		return err
	}
	defer v.Close()
	sw := storage.NewSnapshotWriter(w)
	for b := range storage.NumBuckets {
		if b == storage.Raft {
			continue
		}
		var werr error
		err := v.Iterate(b, nil, nil, false, func(k, val []byte) bool {
			werr = sw.Add(b, k, val)
			return werr == nil
		})
		if err != nil {
			return err
		}
		if werr != nil {
			return fmt.Errorf("rocksdb engine: write snapshot: %w", werr)
		}
	}
	if err := sw.Close(); err != nil {
		return fmt.Errorf("rocksdb engine: write snapshot: %w", err)
	}
	return nil
}

// Restore implements storage.Engine. The stream is first copied to a
// temporary file and verified, so a corrupt or truncated snapshot returns an
// error wrapping storage.ErrCorruptSnapshot and leaves the engine untouched.
// The verified copy then replaces the buckets in batches of bounded size,
// the last one synced; other commits wait until Restore returns. A crash
// or an I/O error during that phase leaves the buckets part old, part new.
func (e *Engine) Restore(r io.Reader) error {
	if e.isClosed() {
		return storage.ErrClosed
	}
	f, err := os.CreateTemp(e.dir, restoreFilePattern)
	if err != nil {
		return fmt.Errorf("rocksdb engine: restore: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sp := &spool{r: r, w: f}
	err = storage.ReadSnapshot(sp, func(storage.Bucket, []byte, []byte) error { return nil })
	if sp.err != nil {
		return fmt.Errorf("rocksdb engine: restore: spool: %w", sp.err)
	}
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rocksdb engine: restore: %w", err)
	}

	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	for b := range storage.NumBuckets {
		if b == storage.Raft {
			continue
		}
		last, ok, err := e.lastKey(b)
		if err != nil {
			return err
		}
		if ok {
			wb.DeleteRangeCF(e.cfs[b], nil, after(last))
		}
	}
	var pending, records int
	err = storage.ReadSnapshot(f, func(b storage.Bucket, k, v []byte) error {
		if b == storage.Raft {
			return nil
		}
		wb.PutCF(e.cfs[b], k, v)
		records++
		pending += len(k) + len(v)
		if pending < restoreBatchBytes {
			return nil
		}
		if err := e.db.Write(e.wo, wb); err != nil {
			return fmt.Errorf("rocksdb engine: restore: %w", err)
		}
		wb.Clear()
		pending = 0
		return nil
	})
	if err != nil {
		return err
	}
	// A synced write also syncs the unsynced writes before it in the WAL.
	if err := e.db.Write(e.woSync, wb); err != nil {
		return fmt.Errorf("rocksdb engine: restore: %w", err)
	}
	e.log.Info("rocksdb engine restored from snapshot", zap.Int("records", records))
	return nil
}

func (e *Engine) isClosed() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.closed
}

// spool copies everything read from r to w. It keeps w's error apart, so
// that a full disk is not reported as a corrupt snapshot.
type spool struct {
	r   io.Reader
	w   io.Writer
	err error
}

func (s *spool) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 && s.err == nil {
		_, s.err = s.w.Write(p[:n])
	}
	if s.err != nil {
		return n, s.err
	}
	return n, err
}

// removeRestoreLeftovers deletes temporary snapshot copies left by a crash
// during Restore.
func removeRestoreLeftovers(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, ent := range entries {
		// The pattern is constant and valid, so Match cannot fail.
		if ok, _ := filepath.Match(restoreFilePattern, ent.Name()); ok {
			if err := os.Remove(filepath.Join(dir, ent.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
