package rocksdb

import (
	"sync"

	"github.com/linxGnu/grocksdb"

	"github.com/cairn-kv/cairn/internal/storage"
)

// view reads at a RocksDB snapshot.
//
// Locking: reads hold v.mu then e.mu, both for reading. Close holds v.mu for
// writing, so it waits for this view's reads, and e.mu for reading, so it
// cannot race Engine.Close. Engine.Close releases views holding only e.mu
// for writing, which excludes every read and every view Close.
type view struct {
	e  *Engine
	mu sync.RWMutex
	// snap and ro are nil once released.
	snap *grocksdb.Snapshot
	ro   *grocksdb.ReadOptions
}

func (v *view) Get(b storage.Bucket, key []byte) ([]byte, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	v.e.mu.RLock()
	defer v.e.mu.RUnlock()
	if v.snap == nil {
		return nil, storage.ErrClosed
	}
	return v.e.get(v.ro, b, key)
}

func (v *view) Iterate(b storage.Bucket, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	v.e.mu.RLock()
	defer v.e.mu.RUnlock()
	if v.snap == nil {
		return storage.ErrClosed
	}
	return v.e.iterate(v.snap, b, start, end, reverse, fn)
}

// Close releases the snapshot; closing twice, or after Engine.Close, is a
// no-op.
func (v *view) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	e := v.e
	e.mu.RLock()
	defer e.mu.RUnlock()
	if v.snap == nil {
		return
	}
	e.viewsMu.Lock()
	delete(e.views, v)
	e.viewsMu.Unlock()
	v.release()
}

// release frees the snapshot and its read options. The caller holds e.mu
// and excludes v's readers.
func (v *view) release() {
	v.e.db.ReleaseSnapshot(v.snap)
	v.ro.Destroy()
	v.snap, v.ro = nil, nil
}
