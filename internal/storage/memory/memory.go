// Package memory is the in-memory storage engine: one copy-on-write B-tree
// per bucket, made durable by snapshot files that Checkpoint writes under its
// directory. Together with the raft log, which lives beside it (see
// raftlog), the snapshot file recovers the full state after a crash.
package memory

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/google/btree"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/internal/storage"
)

// snapshotFile is the name of the durable state file inside the directory.
const snapshotFile = "state.snap"

// item is one key with its value, as the trees hold it: a pointer to one
// allocation with the key followed by the value, and the two lengths. The
// B-tree keeps items by value in its nodes, and a bucket keyed by revision
// grows only at its end, which leaves its nodes half full; 16 bytes instead
// of two slice headers (48) saves about 64 bytes per record. A request is
// at most 2 GiB (gRPC's limit), so both lengths fit in 32 bits; Restore
// checks the lengths it reads.
type item struct {
	p          *byte
	klen, vlen uint32
}

// newItem packs copies of key and value into one allocation.
func newItem(key, value []byte) item {
	kv := make([]byte, len(key)+len(value))
	copy(kv, key)
	copy(kv[len(key):], value)
	return item{p: unsafe.SliceData(kv), klen: uint32(len(key)), vlen: uint32(len(value))}
}

// probe is an item with key alone and no copy of it, to search by.
func probe(key []byte) item {
	return item{p: unsafe.SliceData(key), klen: uint32(len(key))}
}

func (it item) kv() []byte { return unsafe.Slice(it.p, int(it.klen)+int(it.vlen)) }

// key returns the item's key; its capacity ends with it, so an append by a
// caller cannot reach the value.
func (it item) key() []byte { return it.kv()[:it.klen:it.klen] }

// value returns the item's value: never nil for a stored item, empty or
// not, as a nil value and an empty one are the same to the engine.
func (it item) value() []byte { return it.kv()[it.klen:] }

// size is the bytes of key and value, as Stats counts them.
func (it item) size() int64 { return int64(it.klen) + int64(it.vlen) }

func less(a, b item) bool { return bytes.Compare(a.key(), b.key()) < 0 }

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
	it, ok := t[b].Get(probe(key))
	if !ok {
		return nil
	}
	return bytes.Clone(it.value())
}

// ascendSpan calls fn, in key order, for the items of [start, end) (a nil
// start is the first key, a nil end is past the last) until fn returns
// false.
func ascendSpan(t *btree.BTreeG[item], start, end []byte, fn func(it item) bool) {
	switch {
	case start == nil && end == nil:
		t.Ascend(fn)
	case start == nil:
		t.AscendLessThan(probe(end), fn)
	case end == nil:
		t.AscendGreaterOrEqual(probe(start), fn)
	default:
		t.AscendRange(probe(start), probe(end), fn)
	}
}

func iterate(t *btree.BTreeG[item], start, end []byte, reverse bool, fn func(k, v []byte) bool) {
	if !reverse {
		ascendSpan(t, start, end, func(it item) bool { return fn(it.key(), it.value()) })
		return
	}
	// Descend* bounds are (greaterThan, lessOrEqual]; the range here is
	// [start, end), so the end key itself is skipped and start is included.
	inRange := func(it item) bool {
		k := it.key()
		if end != nil && bytes.Compare(k, end) >= 0 {
			return true
		}
		if start != nil && bytes.Compare(k, start) < 0 {
			return false
		}
		return fn(k, it.value())
	}
	if end == nil {
		t.Descend(inRange)
	} else {
		t.DescendLessOrEqual(probe(end), inRange)
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
		if uint64(len(k)) > math.MaxUint32 || uint64(len(v)) > math.MaxUint32 {
			return fmt.Errorf("memory engine: a record of %d+%d bytes in the snapshot is too large", len(k), len(v))
		}
		if old, ok := t[b].ReplaceOrInsert(newItem(k, v)); ok {
			size -= old.size()
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
		size += it.size()
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
	kind byte // 'p' put, 'd' delete, 'r' delete range
	b    storage.Bucket
	it   item // put: the new record
	// key is the key deleted, or with value the range [key, value)
	// deleted (nil bounds as for Iterate).
	key, value []byte
}

type batch struct {
	e   *Engine
	ops []op
}

// Put copies key and value into one allocation. The value is never nil,
// even when empty, because get tells an absent key by a nil value.
func (b *batch) Put(bk storage.Bucket, key, value []byte) {
	b.ops = append(b.ops, op{kind: 'p', b: bk, it: newItem(key, value)})
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
			if old, ok := t.ReplaceOrInsert(o.it); ok {
				e.size -= old.size()
				e.keys--
			}
			e.size += o.it.size()
			e.keys++
		case 'd':
			if old, ok := t.Delete(probe(o.key)); ok {
				e.size -= old.size()
				e.keys--
			}
		case 'r':
			var doomed []item
			ascendSpan(t, o.key, o.value, func(it item) bool {
				doomed = append(doomed, it)
				return true
			})
			for _, it := range doomed {
				t.Delete(it)
				e.size -= it.size()
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
