// Package mvcc is Cairn's multi-version key-value state machine, with the
// semantics of etcd v3's mvcc store and its request layer: revisions,
// generations, ranges with every etcd option, puts, deletes, transactions
// and compaction.
//
// State lives in a storage.Engine: the KV bucket holds every retained
// revision (see revision.go), the Meta bucket the applied raft index and the
// compaction progress. An in-memory index of key histories (key_index.go) is
// rebuilt from the KV bucket at Open.
//
// Concurrency: one goroutine, the store actor, calls the writing methods
// (BeginApply and the Applier it returns, which applies many raft entries in
// one engine commit; Put, DeleteRange, Txn, SetApplied, which apply one;
// Compact). Range, TxnRead and the accessors may be called from any
// goroutine at the same time; each read sees the state at one revision,
// never part of a write nor of an Applier's batch.
//
// Responses and events may share KeyValue messages with each other; callers
// treat everything returned as read-only.
package mvcc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// DefaultMaxTxnOps is etcd's default limit on the operations of one txn
// branch (--max-txn-ops).
const DefaultMaxTxnOps = 128

// Defaults of the compaction pacing options; they are etcd's.
const (
	DefaultCompactionBatchLimit    = 1000
	DefaultCompactionSleepInterval = 10 * time.Millisecond
)

// Options configures a KV. The zero value is usable.
type Options struct {
	// MaxTxnOps is the limit ValidateTxn is called with (see MaxTxnOps);
	// DefaultMaxTxnOps when 0. The apply path itself never enforces it, so
	// members configured differently still apply identically.
	MaxTxnOps int
	// LeaseExists reports whether a lease granted outside this KV exists; a
	// put naming a lease that neither the KV's own lease table (see
	// Applier.LeaseGrant) nor LeaseExists knows fails with ErrLeaseNotFound.
	// It is called from the writer goroutine. Nil means no such lease.
	LeaseExists func(id int64) bool
	// EventsWithPrevKV makes every put event carry the key's previous value
	// (PrevKv), at the cost of an engine read per put. Without it a put
	// event carries PrevKv only when the request asked for prev_kv; delete
	// events always carry it.
	EventsWithPrevKV bool
	// Logger receives compaction and recovery messages; nil discards them.
	Logger *zap.Logger
	// CompactionBatchLimit is the number of revisions one engine batch of
	// physical compaction deletes (etcd's --compaction-batch-limit);
	// DefaultCompactionBatchLimit when 0 or negative (with a negative
	// limit etcd's compaction never finishes).
	CompactionBatchLimit int
	// CompactionSleepInterval is the pause between two such batches, which
	// leaves the engine to the writer; DefaultCompactionSleepInterval when
	// 0, none when negative (--compaction-sleep-interval, as in etcd).
	CompactionSleepInterval time.Duration
}

// KV is the MVCC store over one engine. Create it with Open.
type KV struct {
	e    storage.Engine
	opts Options
	lg   *zap.Logger

	// readers is held shared by every read for its whole duration and taken
	// exclusively by the compactor before it removes history. A read that
	// started before a compaction was published may still be reading below
	// the new compaction revision; the compactor waits it out.
	readers sync.RWMutex

	// mu guards the index and the two revisions. The writer holds it
	// exclusively only to publish a finished write; reads hold it shared
	// only while they walk the index, never while they fetch values.
	mu         sync.RWMutex
	idx        *index
	leases     *leaseTable
	rev        int64 // revision of the last write; 1 for an empty store
	compactRev int64 // revision of the last compaction; -1 if none

	applied atomic.Uint64
	// live is the number of keys that exist at the current revision.
	live atomic.Int64

	metrics   *metrics
	compactor *compactor
	hashes    compactionHashes // see hash.go

	// Writer goroutine only: whether an Applier is open, the tree of its
	// staged keys (kept for the next one), and scratch buffers.
	applying       bool
	staged         *btree.BTreeG[*stagedKey]
	keyBuf, valBuf []byte
}

// Keys of the Meta bucket that belong to this package.
var (
	appliedIndexKey     = []byte("mvcc/applied_index")
	scheduledCompactKey = []byte("mvcc/compact_scheduled")
	finishedCompactKey  = []byte("mvcc/compact_finished")
)

// Open loads the store held by e: it rebuilds the index from the KV bucket
// and resumes a compaction that was scheduled but did not finish. The engine
// stays owned by the caller, who closes it after Close.
func Open(e storage.Engine, opts Options) (*KV, error) {
	if opts.MaxTxnOps == 0 {
		opts.MaxTxnOps = DefaultMaxTxnOps
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.CompactionBatchLimit <= 0 {
		opts.CompactionBatchLimit = DefaultCompactionBatchLimit
	}
	if opts.CompactionSleepInterval == 0 {
		opts.CompactionSleepInterval = DefaultCompactionSleepInterval
	}
	kv := &KV{e: e, opts: opts, lg: opts.Logger, staged: newStagedTree()}
	kv.metrics = newMetrics(kv)
	resume, err := kv.load()
	if err != nil {
		return nil, err
	}
	kv.lg.Info("mvcc store opened",
		zap.Int64("revision", kv.rev),
		zap.Int64("compact-revision", kv.compactRev),
		zap.Uint64("applied-index", kv.applied.Load()),
		zap.Int("keys", kv.idx.tree.Len()))
	kv.startCompactor(resume)
	return kv, nil
}

// Restore replaces the whole state with the engine snapshot read from r
// (see storage.Engine.Restore), as a follower does with its leader's state
// when it has fallen too far behind to be sent the log: the index, the
// revisions, the lease table and the applied index are rebuilt from it.
// Only the writer goroutine calls it, with no Applier open; reads wait for
// it. On storage.ErrCorruptSnapshot the state is unchanged; after any other
// error it is unusable and the member must stop.
func (kv *KV) Restore(r io.Reader) error {
	kv.compactor.close()
	kv.readers.Lock()
	kv.mu.Lock()
	err := kv.e.Restore(r)
	resume := int64(0)
	if err == nil || errors.Is(err, storage.ErrCorruptSnapshot) {
		// Reloading the unchanged state after a corrupt snapshot also
		// finds the compaction the stopped compactor was resuming.
		var lerr error
		if resume, lerr = kv.load(); lerr != nil {
			err = lerr
		}
	}
	kv.mu.Unlock()
	kv.readers.Unlock()
	if err != nil && !errors.Is(err, storage.ErrCorruptSnapshot) {
		return err
	}
	kv.startCompactor(resume)
	if err == nil {
		kv.lg.Info("mvcc store restored from a snapshot",
			zap.Int64("revision", kv.rev),
			zap.Int64("compact-revision", kv.compactRev),
			zap.Uint64("applied-index", kv.applied.Load()),
			zap.Int("keys", kv.idx.tree.Len()))
	}
	return err
}

// load (re)builds the in-memory state from the engine: the applied index,
// the lease table, the key index and the revisions. It returns the
// revision of a compaction that was scheduled but did not finish, to be
// resumed, or 0.
func (kv *KV) load() (int64, error) {
	kv.idx, kv.rev, kv.compactRev = newIndex(), 1, -1
	applied, _, err := readMeta(kv.e, appliedIndexKey)
	if err != nil {
		return 0, err
	}
	kv.applied.Store(uint64(applied))
	finished, finishedFound, err := readMeta(kv.e, finishedCompactKey)
	if err != nil {
		return 0, err
	}
	scheduled, scheduledFound, err := readMeta(kv.e, scheduledCompactKey)
	if err != nil {
		return 0, err
	}
	if kv.leases, err = loadLeases(kv.e); err != nil {
		return 0, err
	}
	lastRev, err := kv.rebuildIndex()
	if err != nil {
		return 0, err
	}
	kv.leases.attachRestored(kv.lg)
	// Compaction keeps the newest record, but the revision must never go
	// back whatever the bucket holds, so, as in etcd, the compaction
	// revisions bound it from below.
	kv.rev = max(kv.rev, lastRev)
	if finishedFound {
		kv.compactRev = finished
		kv.rev = max(kv.rev, finished)
	}
	if scheduledFound {
		kv.rev = max(kv.rev, scheduled)
	}
	// A compaction whose entry was applied but whose background work did
	// not finish is published again and resumed.
	if scheduledFound && scheduled > kv.compactRev {
		kv.compactRev = scheduled
		return scheduled, nil
	}
	return 0, nil
}

// startCompactor starts background compaction, resuming the one at
// revision resume unless it is 0.
func (kv *KV) startCompactor(resume int64) {
	kv.compactor = newCompactor(kv)
	if resume != 0 {
		kv.compactor.schedule(resume)
		kv.lg.Info("resuming unfinished compaction", zap.Int64("revision", resume))
	}
}

// rebuildIndex replays the KV bucket, oldest revision first, into the index
// and returns the newest main revision found (0 if none).
func (kv *KV) rebuildIndex() (int64, error) {
	var (
		last   int64
		kvMsg  mvccpb.KeyValue
		failed error
		// Keys are looked up by string while rebuilding, which is cheaper
		// than the tree; they go into the tree at the end.
		byKey = make(map[string]*keyIndex)
	)
	err := kv.e.Iterate(storage.KV, nil, nil, false, func(k, v []byte) bool {
		r, tomb, err := parseRevKey(k)
		if err != nil {
			failed = err
			return false
		}
		if err := proto.Unmarshal(v, &kvMsg); err != nil {
			failed = fmt.Errorf("mvcc: decode revision %d.%d: %w", r.main, r.sub, err)
			return false
		}
		last = r.main
		kv.leases.restoreKey(kvMsg.Key, kvMsg.Lease, tomb)
		ki := byKey[string(kvMsg.Key)]
		switch {
		case ki == nil:
			ki = newKeyIndex(string(kvMsg.Key))
			kv.idx.restoreFirst(ki, r, tomb, kvMsg.CreateRevision, kvMsg.Version)
			byKey[ki.key()] = ki
		case tomb:
			if !kv.idx.remove(ki, r) {
				kv.lg.Warn("ignoring tombstone of a key that does not exist",
					zap.ByteString("key", kvMsg.Key), zap.Int64("revision", r.main))
			}
		default:
			kv.idx.record(ki, r)
		}
		return true
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return 0, fmt.Errorf("mvcc: rebuild index: %w", err)
	}
	live := int64(0)
	for _, ki := range byKey {
		kv.idx.tree.ReplaceOrInsert(ki)
		if _, _, _, ok := kv.idx.get(ki, math.MaxInt64); ok {
			live++
		}
	}
	kv.live.Store(live)
	return last, nil
}

// Close stops background compaction, waiting for it to stop but not to
// finish; Open resumes it. The writer must have stopped calling, and reads
// must not be started after Close.
func (kv *KV) Close() error {
	kv.compactor.close()
	return nil
}

// Rev returns the current revision: that of the last write, or 1 for an
// empty store.
func (kv *KV) Rev() int64 {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	return kv.rev
}

// CompactRev returns the revision of the last compaction, or -1 if the
// store was never compacted (etcd's value too).
func (kv *KV) CompactRev() int64 {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	return kv.compactRev
}

// AppliedIndex returns the index of the last raft entry applied, persisted
// atomically with its effects. The store actor skips entries at or below it
// when the raft log is replayed.
func (kv *KV) AppliedIndex() uint64 {
	return kv.applied.Load()
}

// MaxTxnOps returns the limit to pass to ValidateTxn.
func (kv *KV) MaxTxnOps() int {
	return kv.opts.MaxTxnOps
}

// SetApplied records that the raft entry at index was applied without
// touching the KV (a lease or membership change, for example), as a
// one-entry Applier.
func (kv *KV) SetApplied(index uint64) error {
	a := kv.BeginApply()
	a.SetApplied(index)
	return a.Commit()
}

// putApplied adds the applied index to a batch: the index commits together
// with the entry's effects, so after a crash an entry is either replayed
// from the raft log or already applied, never both.
func (kv *KV) putApplied(b storage.Batch, index uint64) {
	b.Put(storage.Meta, appliedIndexKey, binary.BigEndian.AppendUint64(nil, index))
}

// readMeta reads one of this package's 8-byte Meta records.
func readMeta(r storage.Reader, key []byte) (v int64, found bool, err error) {
	b, err := r.Get(storage.Meta, key)
	if err != nil {
		return 0, false, fmt.Errorf("mvcc: read %s: %w", key, err)
	}
	if b == nil {
		return 0, false, nil
	}
	if len(b) != 8 {
		return 0, false, fmt.Errorf("mvcc: read %s: %w", key, errCorruptMeta)
	}
	return int64(binary.BigEndian.Uint64(b)), true, nil
}

var errCorruptMeta = errors.New("record is not 8 bytes")

func metaValue(v int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(v))
}
