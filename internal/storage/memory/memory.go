// Package memory is the in-memory storage engine: one copy-on-write B-tree
// per bucket, made durable by snapshot files that Checkpoint writes under its
// directory. Together with the raft log, which lives beside it (see
// raftlog), the snapshot file recovers the full state after a crash.
package memory

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/google/btree"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/internal/storage"
)

// snapshotFile is the name of the durable state file inside the directory.
const snapshotFile = "state.snap"

type item struct {
	key, value []byte
}

func less(a, b item) bool { return bytes.Compare(a.key, b.key) < 0 }

type trees [storage.NumBuckets]*btree.BTreeG[item]

// Engine is the in-memory storage.Engine. The zero value is not usable; call
// Open.
type Engine struct {
	dir string

	// checkpointMu serialises Checkpoint, whose temporary file is shared.
	checkpointMu sync.Mutex

	mu     sync.RWMutex
	t      trees
	size   int64 // bytes of keys and values over all buckets
	keys   int64
	closed bool
}

var _ storage.Engine = (*Engine)(nil)

// Open returns an engine holding the state of the last Checkpoint written to
// dir. An empty dir gives a purely volatile engine whose Checkpoint is a
// no-op.
func Open(dir string) (*Engine, error) {
	e := &Engine{dir: dir}
	for i := range e.t {
		e.t[i] = btree.NewG[item](32, less)
	}
	if dir == "" {
		return e, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("memory engine: %w", err)
	}
	f, err := os.Open(filepath.Join(dir, snapshotFile))
	if os.IsNotExist(err) {
		return e, nil
	}
	if err != nil {
		return nil, fmt.Errorf("memory engine: %w", err)
	}
	defer f.Close()
	if err := e.Restore(f); err != nil {
		return nil, fmt.Errorf("memory engine: load %s: %w", f.Name(), err)
	}
	return e, nil
}

// Get implements storage.Reader.
func (e *Engine) Get(b storage.Bucket, key []byte) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, storage.ErrClosed
	}
	return get(&e.t, b, key), nil
}

// Iterate implements storage.Reader. The read lock is held for the whole
// iteration, so fn must not call back into the engine: a write would
// deadlock at once, and a read would deadlock as soon as a writer waits.
func (e *Engine) Iterate(b storage.Bucket, start, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	iterate(e.t[b], start, end, reverse, fn)
	return nil
}

func get(t *trees, b storage.Bucket, key []byte) []byte {
	it, ok := t[b].Get(item{key: key})
	if !ok {
		return nil
	}
	return bytes.Clone(it.value)
}

func iterate(t *btree.BTreeG[item], start, end []byte, reverse bool, fn func(k, v []byte) bool) {
	visit := func(it item) bool { return fn(it.key, it.value) }
	if !reverse {
		switch {
		case start == nil && end == nil:
			t.Ascend(visit)
		case start == nil:
			t.AscendLessThan(item{key: end}, visit)
		case end == nil:
			t.AscendGreaterOrEqual(item{key: start}, visit)
		default:
			t.AscendRange(item{key: start}, item{key: end}, visit)
		}
		return
	}
	// Descend* bounds are (greaterThan, lessOrEqual]; the range here is
	// [start, end), so the end key itself is skipped and start is included.
	inRange := func(it item) bool {
		if end != nil && bytes.Compare(it.key, end) >= 0 {
			return true
		}
		if start != nil && bytes.Compare(it.key, start) < 0 {
			return false
		}
		return fn(it.key, it.value)
	}
	if end == nil {
		t.Descend(inRange)
	} else {
		t.DescendLessOrEqual(item{key: end}, inRange)
	}
}

// NewBatch implements storage.Engine.
func (e *Engine) NewBatch() storage.Batch { return &batch{e: e} }

// NewView implements storage.Engine: an O(1) lazy clone of every tree.
func (e *Engine) NewView() (storage.View, error) {
	// Clone mutates the shared copy-on-write bookkeeping, so it needs the
	// write lock.
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, storage.ErrClosed
	}
	v := &view{}
	for i, t := range e.t {
		v.t[i] = t.Clone()
	}
	return v, nil
}

// Stats implements storage.Engine. It returns zero Stats after Close.
func (e *Engine) Stats() storage.Stats {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return storage.Stats{SizeBytes: e.size, SizeInUseBytes: e.size, Keys: e.keys}
}

// Checkpoint implements storage.Engine by atomically replacing the snapshot
// file (write to a temporary file, fsync, rename, fsync the directory). The
// Raft bucket is not written: the raft log is kept beside this engine.
func (e *Engine) Checkpoint() error {
	e.checkpointMu.Lock()
	defer e.checkpointMu.Unlock()
	if err := e.checkpoint(); err != nil {
		return fmt.Errorf("memory engine: checkpoint: %w", err)
	}
	return nil
}

// checkpointChunk is how much of state.snap is written before the kernel
// is asked to write it to disk (see fsutil.Writeback).
const checkpointChunk = 8 << 20

func (e *Engine) checkpoint() error {
	e.mu.RLock()
	closed := e.closed
	e.mu.RUnlock()
	if closed {
		return storage.ErrClosed
	}
	if e.dir == "" {
		return nil
	}
	tmp := filepath.Join(e.dir, snapshotFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = e.WriteSnapshot(fsutil.NewWriteback(f, checkpointChunk))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(e.dir, snapshotFile))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return fsutil.SyncDir(e.dir)
}

// Defragment implements storage.Engine: B-trees free deleted items at
// once, so there is nothing to reclaim.
func (e *Engine) Defragment() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	return nil
}

// WriteSnapshot implements storage.Engine. It encodes a view, so writers are
// not held up while the snapshot streams.
func (e *Engine) WriteSnapshot(w io.Writer) error {
	v, err := e.NewView()
	if err != nil {
		return err
	}
	defer v.Close()
	sw := storage.NewSnapshotWriter(w)
	for b := storage.Bucket(0); b < storage.NumBuckets; b++ {
		if b == storage.Raft {
			continue
		}
		var werr error
		iterate(v.(*view).t[b], nil, nil, false, func(k, val []byte) bool {
			werr = sw.Add(b, k, val)
			return werr == nil
		})
		if werr != nil {
			return werr
		}
	}
	return sw.Close()
}

// Restore implements storage.Engine. The new state is built aside and swapped
// in only when the whole snapshot has been read and verified.
func (e *Engine) Restore(r io.Reader) error {
	var t trees
	for i := range t {
		t[i] = btree.NewG[item](32, less)
	}
	var size, keys int64
	err := storage.ReadSnapshot(r, func(b storage.Bucket, k, v []byte) error {
		if b == storage.Raft {
			return nil
		}
		if old, ok := t[b].ReplaceOrInsert(item{key: k, value: v}); ok {
			size -= int64(len(old.key) + len(old.value))
			keys--
		}
		size += int64(len(k) + len(v))
		keys++
		return nil
	})
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return storage.ErrClosed
	}
	// The raft bucket is not part of a snapshot and survives a restore.
	raft := e.t[storage.Raft]
	raft.Ascend(func(it item) bool {
		size += int64(len(it.key) + len(it.value))
		keys++
		return true
	})
	t[storage.Raft] = raft
	e.t, e.size, e.keys = t, size, keys
	return nil
}

// Close implements storage.Engine. It does not checkpoint. Views stay
// readable: they hold their own clones of the trees.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	e.t, e.size, e.keys = trees{}, 0, 0
	return nil
}

type op struct {
	kind       byte // 'p' put, 'd' delete, 'r' delete range
	b          storage.Bucket
	key, value []byte
}

type batch struct {
	e   *Engine
	ops []op
}

// Put copies key and value into one allocation. The value is never nil,
// even when empty, because get tells an absent key by a nil value.
func (b *batch) Put(bk storage.Bucket, key, value []byte) {
	kv := make([]byte, len(key)+len(value))
	copy(kv, key)
	copy(kv[len(key):], value)
	b.ops = append(b.ops, op{kind: 'p', b: bk, key: kv[:len(key):len(key)], value: kv[len(key):]})
}

func (b *batch) Delete(bk storage.Bucket, key []byte) {
	b.ops = append(b.ops, op{kind: 'd', b: bk, key: bytes.Clone(key)})
}

// DeleteRange records the removal of [start, end); as for Iterate, a nil
// start is the first key and a nil end is past the last key.
func (b *batch) DeleteRange(bk storage.Bucket, start, end []byte) {
	b.ops = append(b.ops, op{kind: 'r', b: bk, key: bytes.Clone(start), value: bytes.Clone(end)})
}

func (b *batch) Len() int { return len(b.ops) }

func (b *batch) Close() { b.ops = nil }

// Commit applies the operations under the write lock; sync has no meaning
// for memory, whose durability comes from Checkpoint and the raft log.
func (b *batch) Commit(bool) error {
	e := b.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return storage.ErrClosed
	}
	for _, o := range b.ops {
		t := e.t[o.b]
		switch o.kind {
		case 'p':
			if old, ok := t.ReplaceOrInsert(item{key: o.key, value: o.value}); ok {
				e.size -= int64(len(old.key) + len(old.value))
				e.keys--
			}
			e.size += int64(len(o.key) + len(o.value))
			e.keys++
		case 'd':
			if old, ok := t.Delete(item{key: o.key}); ok {
				e.size -= int64(len(old.key) + len(old.value))
				e.keys--
			}
		case 'r':
			var doomed []item
			iterate(t, o.key, o.value, false, func(k, v []byte) bool {
				doomed = append(doomed, item{key: k, value: v})
				return true
			})
			for _, it := range doomed {
				t.Delete(it)
				e.size -= int64(len(it.key) + len(it.value))
				e.keys--
			}
		}
	}
	b.ops = nil
	return nil
}

type view struct {
	mu     sync.RWMutex
	t      trees
	closed bool
}

func (v *view) Get(b storage.Bucket, key []byte) ([]byte, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return nil, storage.ErrClosed
	}
	return get(&v.t, b, key), nil
}

func (v *view) Iterate(b storage.Bucket, start, end []byte, reverse bool, fn func(k, v []byte) bool) error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return storage.ErrClosed
	}
	iterate(v.t[b], start, end, reverse, fn)
	return nil
}

func (v *view) Close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.closed = true
	v.t = trees{}
}
