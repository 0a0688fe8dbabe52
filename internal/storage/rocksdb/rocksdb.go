// Package rocksdb is the persistent storage engine: one RocksDB database per
// member, with one column family per bucket.
//
// Every grocksdb object wraps C memory that the Go garbage collector does not
// see, so each one is freed explicitly, and a read-write lock keeps Close
// from freeing the database while any call is still using it.
package rocksdb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/linxGnu/grocksdb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/storage"
)

// defaultBlockCacheBytes is the block cache size when Options leaves it zero.
const defaultBlockCacheBytes = 64 << 20

// Memtable sizes: each column family's memtable is flushed at
// writeBufferBytes (RocksDB's default is 64 MiB), and all of them together
// hold at most dbWriteBufferBytes. Cairn's raft log, not RocksDB's
// memtables, absorbs write bursts, and the MVCC records are keyed by
// revision, so small flushes land in order and compact cheaply: 2 MiB
// memtables cost no CPU measurable in etcd's benchmark tool against 16 MiB
// ones, and a member after 100 000 puts holds 9 MiB less (performance.md,
// "Memtables of 2 MiB").
const (
	writeBufferBytes   = 2 << 20
	dbWriteBufferBytes = 4 << 20
)

// Options tunes an Engine. The zero value is usable.
type Options struct {
	// Logger receives the engine's own events (open, close, restore).
	// RocksDB's internal log is written to LOG files inside the directory.
	// Nil discards the engine's events.
	Logger *zap.Logger
	// BlockCacheBytes is the size of the LRU block cache shared by every
	// bucket; zero means 64 MiB.
	BlockCacheBytes uint64
}

// Engine is the RocksDB storage.Engine. The zero value is not usable; call
// Open.
type Engine struct {
	dir string
	log *zap.Logger

	// mu is held for reading by every call into RocksDB and for writing by
	// Close, so Close waits for in-flight calls and nothing touches freed C
	// memory afterwards. The fields below it are immutable until Close.
	mu     sync.RWMutex
	closed bool
	db     *grocksdb.DB
	cfs    [storage.NumBuckets]*grocksdb.ColumnFamilyHandle
	// others holds the default column family and any unknown to this
	// version; RocksDB insists they are opened, and they are only destroyed.
	others []*grocksdb.ColumnFamilyHandle
	ro     *grocksdb.ReadOptions
	wo     *grocksdb.WriteOptions
	woSync *grocksdb.WriteOptions
	opts   *grocksdb.Options
	bbto   *grocksdb.BlockBasedTableOptions
	cache  *grocksdb.Cache

	// commitMu is held exclusively by commits that read a bucket's last key
	// to resolve an open-ended range (and by Restore), and shared by all
	// other commits, so the last key cannot change under them.
	commitMu sync.RWMutex

	// viewsMu guards views: the open views, whose snapshots Close releases
	// if their owners did not, because RocksDB cannot close with live
	// snapshots.
	viewsMu sync.Mutex
	views   map[*view]struct{}
}

var _ storage.Engine = (*Engine)(nil)

// Open opens or creates the database in dir, creating the column family of
// every bucket that is missing.
func Open(dir string, o Options) (*Engine, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("rocksdb engine: %w", err)
	}
	e := &Engine{dir: dir, log: o.Logger, views: make(map[*view]struct{})}
	if e.log == nil {
		e.log = zap.NewNop()
	}
	cacheBytes := o.BlockCacheBytes
	if cacheBytes == 0 {
		cacheBytes = defaultBlockCacheBytes
	}
	e.cache = grocksdb.NewLRUCache(cacheBytes)
	e.bbto = grocksdb.NewDefaultBlockBasedTableOptions()
	e.bbto.SetBlockCache(e.cache)
	e.opts = grocksdb.NewDefaultOptions()
	e.opts.SetCreateIfMissing(true)
	e.opts.SetCreateIfMissingColumnFamilies(true)
	e.opts.SetBlockBasedTableFactory(e.bbto)
	// A librocksdb built with assertions (Debian's) logs at DEBUG by
	// default, which floods the LOG files; they stay in dir (no db_log_dir)
	// and are rotated.
	e.opts.SetInfoLogLevel(grocksdb.InfoInfoLogLevel)
	e.opts.SetKeepLogFileNum(4)
	e.opts.SetMaxLogFileSize(16 << 20)
	e.opts.SetEnableWriteThreadAdaptiveYield(false)
	e.opts.SetWriteBufferSize(writeBufferBytes)
	e.opts.SetDbWriteBufferSize(dbWriteBufferBytes)

	names, err := e.columnFamilies()
	if err != nil {
		e.freeOptions()
		return nil, fmt.Errorf("rocksdb engine: %w", err)
	}
	cfOpts := make([]*grocksdb.Options, len(names))
	for i := range cfOpts {
		cfOpts[i] = e.opts
	}
	db, handles, err := grocksdb.OpenDbColumnFamilies(e.opts, dir, names, cfOpts)
	if err != nil {
		e.freeOptions()
		return nil, fmt.Errorf("rocksdb engine: open %s: %w", dir, err)
	}
	e.db = db
	// Only now, with RocksDB's LOCK held, is no other process restoring here.
	if err := removeRestoreLeftovers(dir); err != nil {
		e.log.Warn("rocksdb engine: cannot remove restore leftovers", zap.Error(err))
	}
	for i, h := range handles {
		if i < int(storage.NumBuckets) {
			e.cfs[i] = h
		} else {
			e.others = append(e.others, h)
		}
	}
	e.ro = grocksdb.NewDefaultReadOptions()
	e.wo = grocksdb.NewDefaultWriteOptions()
	e.woSync = grocksdb.NewDefaultWriteOptions()
	e.woSync.SetSync(true)
	e.log.Info("rocksdb engine opened", zap.String("dir", dir), zap.Strings("column-families", names))
	return e, nil
}

// columnFamilies lists the column families to open: the buckets first, in
// bucket order, then "default" and any others the database already has.
func (e *Engine) columnFamilies() ([]string, error) {
	names := make([]string, 0, storage.NumBuckets+1)
	for b := range storage.NumBuckets {
		names = append(names, b.String())
	}
	names = append(names, "default")
	if _, err := os.Stat(filepath.Join(e.dir, "CURRENT")); errors.Is(err, os.ErrNotExist) {
		return names, nil
	}
	existing, err := grocksdb.ListColumnFamilies(e.opts, e.dir)
	if err != nil {
		return nil, fmt.Errorf("list column families: %w", err)
	}
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	for _, n := range existing {
		if !known[n] {
			e.log.Warn("rocksdb engine: unknown column family kept untouched", zap.String("name", n))
			names = append(names, n)
		}
	}
	return names, nil
}

func (e *Engine) freeOptions() {
	e.opts.Destroy()
	e.bbto.Destroy()
	e.cache.Destroy()
}

// Get implements storage.Reader.
func (e *Engine) Get(b storage.Bucket, key []byte) ([]byte, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, storage.ErrClosed
	}
	return e.get(e.ro, b, key)
}

// get reads key through ro; the caller holds e.mu for reading.
func (e *Engine) get(ro *grocksdb.ReadOptions, b storage.Bucket, key []byte) ([]byte, error) {
	h, err := e.db.GetPinnedCF(ro, e.cfs[b], key)
	if err != nil {
		return nil, fmt.Errorf("rocksdb engine: get: %w", err)
	}
	if !h.Exists() {
		return nil, nil
	}
	defer h.Destroy()
	data := h.Data()
	// make, not bytes.Clone: an empty value must stay non-nil so that it is
	// not mistaken for an absent key.
	v := make([]byte, len(data))
	copy(v, data)
	return v, nil
}

// Iterate implements storage.Reader. RocksDB iterators read an implicit
// snapshot, so a batch committed during the iteration is not seen at all.
// fn must not call Close, and should not call back into the engine: a
// concurrent Close would then deadlock.
func (e *Engine) Iterate(b storage.Bucket, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	return e.iterate(nil, b, start, end, reverse, fn)
}

// iterate runs Iterate at snap, or at the latest state when snap is nil; the
// caller holds e.mu for reading.
func (e *Engine) iterate(snap *grocksdb.Snapshot, b storage.Bucket, start, end []byte, reverse bool, fn func(key, value []byte) bool) error {
	// An empty upper bound would reach the C API as a null pointer, which
	// means "no bound"; an empty or inverted range is answered here.
	if end != nil && (len(end) == 0 || bytes.Compare(start, end) >= 0) {
		return nil
	}
	ro := grocksdb.NewDefaultReadOptions()
	defer ro.Destroy()
	if snap != nil {
		ro.SetSnapshot(snap)
	}
	// The bounds let RocksDB skip deleted keys outside the range, and make
	// SeekToFirst and SeekToLast land on the first and last key inside it.
	if len(start) > 0 {
		ro.SetIterateLowerBound(start)
	}
	if end != nil {
		ro.SetIterateUpperBound(end)
	}
	it := e.db.NewIteratorCF(ro, e.cfs[b])
	defer it.Close()
	if reverse {
		it.SeekToLast()
	} else {
		it.SeekToFirst()
	}
	for it.Valid() {
		if !fn(it.Key().Data(), it.Value().Data()) {
			return nil
		}
		if reverse {
			it.Prev()
		} else {
			it.Next()
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("rocksdb engine: iterate: %w", err)
	}
	return nil
}

// lastKey returns a copy of the last key of bucket b, and false when b is
// empty; the caller holds e.mu for reading.
func (e *Engine) lastKey(b storage.Bucket) ([]byte, bool, error) {
	it := e.db.NewIteratorCF(e.ro, e.cfs[b])
	defer it.Close()
	it.SeekToLast()
	if !it.Valid() {
		if err := it.Err(); err != nil {
			return nil, false, fmt.Errorf("rocksdb engine: seek last: %w", err)
		}
		return nil, false, nil
	}
	return bytes.Clone(it.Key().Data()), true, nil
}

// NewBatch implements storage.Engine.
func (e *Engine) NewBatch() storage.Batch { return &batch{e: e} }

// NewView implements storage.Engine with a RocksDB snapshot.
func (e *Engine) NewView() (storage.View, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return nil, storage.ErrClosed
	}
	v := &view{e: e, snap: e.db.NewSnapshot(), ro: grocksdb.NewDefaultReadOptions()}
	v.ro.SetSnapshot(v.snap)
	e.viewsMu.Lock()
	e.views[v] = struct{}{}
	e.viewsMu.Unlock()
	return v, nil
}

// Stats implements storage.Engine from RocksDB's properties, summed over the
// buckets. It returns zero Stats after Close.
func (e *Engine) Stats() storage.Stats {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var s storage.Stats
	if e.closed {
		return s
	}
	for _, cf := range e.cfs {
		mem := e.intProperty(cf, "rocksdb.cur-size-all-mem-tables")
		s.SizeBytes += e.intProperty(cf, "rocksdb.total-sst-files-size") + mem
		s.SizeInUseBytes += e.intProperty(cf, "rocksdb.estimate-live-data-size") + mem
		s.Keys += e.intProperty(cf, "rocksdb.estimate-num-keys")
	}
	// The live-data estimate counts SST files only, but it can run ahead of
	// the total while obsolete files are deleted.
	s.SizeInUseBytes = min(s.SizeInUseBytes, s.SizeBytes)
	return s
}

// intProperty reads a numeric property; a missing or malformed one counts
// as zero, since Stats is informational and has no error to return.
func (e *Engine) intProperty(cf *grocksdb.ColumnFamilyHandle, name string) int64 {
	n, err := strconv.ParseInt(e.db.GetPropertyCF(name, cf), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// Checkpoint implements storage.Engine by syncing the WAL, which holds every
// committed batch not yet in a (synced) SST file.
func (e *Engine) Checkpoint() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	if err := e.db.FlushWAL(true); err != nil {
		return fmt.Errorf("rocksdb engine: checkpoint: %w", err)
	}
	return nil
}

// Defragment implements storage.Engine with a full manual compaction of
// every column family. RocksDB compacts in its background threads while
// reads and writes go on; only Close waits for it.
func (e *Engine) Defragment() error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	for _, cf := range e.cfs {
		e.db.CompactRangeCF(cf, grocksdb.Range{})
	}
	return nil
}

// Close implements storage.Engine. It waits for in-flight calls, syncs the
// WAL so that a clean shutdown loses nothing, and releases the snapshots of
// views left open (their later calls return storage.ErrClosed). Closing
// twice is a no-op.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	err := e.db.FlushWAL(true)

	e.viewsMu.Lock()
	if len(e.views) > 0 {
		e.log.Warn("rocksdb engine closed with open views", zap.Int("views", len(e.views)))
	}
	for v := range e.views {
		v.release()
	}
	e.views = nil
	e.viewsMu.Unlock()

	e.ro.Destroy()
	e.wo.Destroy()
	e.woSync.Destroy()
	// Debian's librocksdb asserts that no column family handle outlives the
	// database.
	for _, h := range e.cfs {
		h.Destroy()
	}
	for _, h := range e.others {
		h.Destroy()
	}
	e.db.Close()
	e.freeOptions()
	e.log.Info("rocksdb engine closed", zap.String("dir", e.dir))
	if err != nil {
		return fmt.Errorf("rocksdb engine: close: %w", err)
	}
	return nil
}
