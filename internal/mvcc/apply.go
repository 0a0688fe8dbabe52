package mvcc

import (
	"bytes"
	"fmt"

	"github.com/google/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Applier stages consecutive raft entries into one engine batch, so that
// the entries of one raft Ready cost one engine commit (one WAL record on
// RocksDB) instead of one each, as etcd's batched backend commits do.
//
// Only the writer goroutine uses an Applier, and at most one is open at a
// time: from BeginApply until Commit or Abort the writer calls none of KV's
// own writing methods (Put, DeleteRange, Txn, SetApplied, Compact), which
// are one-entry Appliers themselves. A compaction publishes its revision
// at once, so it never joins a batch: the caller commits the Applier before
// a compaction entry, calls Compact, and opens a new Applier after it.
//
// Each staged entry sees the entries staged before it exactly as if they
// had been applied one by one: their revisions (one per writing entry),
// versions, create revisions and deletions, also through reads at the
// revisions they made. Readers see nothing of the batch until Commit, and
// then all of it.
//
// The responses and events a staging call returns are final, but they
// describe state that is neither durable nor visible yet: the caller must
// not release them (answer a client, notify a watcher) before Commit has
// succeeded.
type Applier struct {
	kv *KV
	b  storage.Batch
	// base is the revision at BeginApply, the newest the index knows; rev
	// is the revision after the entries staged so far.
	base, rev, compactRev int64
	// changes holds every change of the staged entries in the order they
	// were made, so their revisions ascend; keys lists, in key order, the
	// changes of each key. Together they are the overlay through which the
	// entries read each other's effects before the index has them.
	changes []change
	keys    *btree.BTreeG[*stagedKey] // KV.staged, emptied by close
	probe   stagedKey                 // for lookups in keys, without allocating
	applied uint64                    // index of the last staged entry; 0 if none
	// leaseOps are the staged lease grants and revokes, in order.
	leaseOps []leaseOp
	// totals counts the operations of the staged entries for etcd's
	// operation counters, which they reach at Commit.
	totals opTotals
	// err is the engine failure that poisoned the Applier: every later
	// call, and Commit, returns it and nothing is committed.
	err  error
	done bool
}

// stagedKey lists the positions in Applier.changes of one key's changes,
// ascending. Most keys change once or twice in a batch; buf holds those
// positions without another allocation.
type stagedKey struct {
	key []byte
	pos []int
	buf [2]int
}

func newStagedTree() *btree.BTreeG[*stagedKey] {
	return btree.NewG(16, func(x, y *stagedKey) bool { return bytes.Compare(x.key, y.key) < 0 })
}

// lookup returns the staged key k, or nil.
func (a *Applier) lookup(k []byte) *stagedKey {
	a.probe.key = k
	sk, _ := a.keys.Get(&a.probe)
	a.probe.key = nil
	return sk
}

// BeginApply opens an Applier on top of the current state. It panics if
// another Applier is open, which is a bug of the writer.
func (kv *KV) BeginApply() *Applier {
	if kv.applying {
		panic("mvcc: BeginApply while another Applier is open")
	}
	kv.applying = true
	kv.mu.RLock()
	rev, compactRev := kv.rev, kv.compactRev
	kv.mu.RUnlock()
	return &Applier{kv: kv, b: kv.e.NewBatch(), base: rev, rev: rev, compactRev: compactRev, keys: kv.staged}
}

// Put stages the raft entry at index, a put. Besides the response it
// returns the one event the put causes. An entry that fails with one of
// this package's sentinels stages nothing but its index. Any other error
// is an engine failure: it poisons the Applier, whose later calls and
// Commit return it, and the caller should stop applying.
func (a *Applier) Put(index uint64, req *pb.PutRequest) (*pb.PutResponse, []*mvccpb.Event, error) {
	return stageEntry(a, index, func(w *writeTxn) (*pb.PutResponse, error) { return w.put(req) })
}

// DeleteRange stages the raft entry at index, a delete, and returns one
// event per deleted key, in key order. Deleting nothing leaves the revision
// as it is. Errors are as for Put.
func (a *Applier) DeleteRange(index uint64, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, []*mvccpb.Event, error) {
	return stageEntry(a, index, func(w *writeTxn) (*pb.DeleteRangeResponse, error) { return w.deleteRange(req) })
}

// Txn stages the raft entry at index, a txn, and returns one event per
// changed key in the order the txn made the changes. The request is
// expected to have passed ValidateTxn. Errors are as for Put: a txn that
// fails (a lease or key that does not exist, a range at a compacted or
// future revision) stages nothing but its index.
func (a *Applier) Txn(index uint64, req *pb.TxnRequest) (*pb.TxnResponse, []*mvccpb.Event, error) {
	return stageEntry(a, index, func(w *writeTxn) (*pb.TxnResponse, error) { return w.txn(req) })
}

// TxnWithoutRanges is Txn for an entry whose response nobody waits for
// (one another member proposed, or replayed at start): its range
// operations are not run, and their responses carry only a header, as
// etcd 3.7 applies such txns. Their revisions are still checked, so the
// txn fails, or not, as Txn would.
func (a *Applier) TxnWithoutRanges(index uint64, req *pb.TxnRequest) (*pb.TxnResponse, []*mvccpb.Event, error) {
	return stageEntry(a, index, func(w *writeTxn) (*pb.TxnResponse, error) {
		w.skipRanges = true
		return w.txn(req)
	})
}

// SetApplied stages the raft entry at index, one that does not touch the
// KV (a leader no-op, a lease or membership change, for example).
func (a *Applier) SetApplied(index uint64) {
	a.checkOpen()
	if a.err == nil {
		a.applied = index
	}
}

// SetRecord stages the raft entry at index as a write of value under key in
// bucket b: a replicated record that belongs to no MVCC key, committed with
// the entries around it and carried by snapshots. b is Meta (records of
// the state as a whole, such as a member's published attributes; keys
// under "mvcc/" are this package's own and must not be used) or Auth
// (package auth's table of users, roles and switches). The other buckets
// have writers of their own (KV and Lease this package, Raft the raft
// log): SetRecord panics on them, a bug of the caller.
func (a *Applier) SetRecord(b storage.Bucket, index uint64, key, value []byte) {
	checkRecordBucket(b)
	a.checkOpen()
	if a.err == nil {
		a.b.Put(b, key, value)
		a.applied = index
	}
}

// DeleteRecord stages the raft entry at index as the removal of key from
// bucket b, Meta or Auth (see SetRecord).
func (a *Applier) DeleteRecord(b storage.Bucket, index uint64, key []byte) {
	checkRecordBucket(b)
	a.checkOpen()
	if a.err == nil {
		a.b.Delete(b, key)
		a.applied = index
	}
}

// SetMeta is SetRecord in the Meta bucket, for the store's member
// records.
func (a *Applier) SetMeta(index uint64, key, value []byte) {
	a.SetRecord(storage.Meta, index, key, value)
}

// DeleteMeta is DeleteRecord in the Meta bucket.
func (a *Applier) DeleteMeta(index uint64, key []byte) {
	a.DeleteRecord(storage.Meta, index, key)
}

// checkRecordBucket panics unless b takes records from outside this
// package (see SetRecord).
func checkRecordBucket(b storage.Bucket) {
	if b != storage.Meta && b != storage.Auth {
		panic("mvcc: record staged in bucket " + b.String())
	}
}

// Commit writes the staged entries and the index of the last one in one
// engine batch, without fsync (raft's log is the durable record), and then
// publishes their index updates and revision, and after them the applied
// index, all at once with respect to readers. An Applier that staged
// nothing commits nothing. On error nothing is committed nor published,
// and the caller should stop applying. The Applier is done either way.
func (a *Applier) Commit() error {
	a.checkOpen()
	defer a.close()
	if a.err != nil {
		return a.err
	}
	if a.applied == 0 {
		return nil
	}
	kv := a.kv
	kv.putApplied(a.b, a.applied)
	if err := a.b.Commit(false); err != nil {
		return fmt.Errorf("mvcc: commit entries up to %d: %w", a.applied, err)
	}
	kv.metrics.record(a.totals)
	if len(a.changes) > 0 || len(a.leaseOps) > 0 {
		live := int64(0)
		kv.mu.Lock()
		a.commitLeases()
		for _, c := range a.changes {
			switch {
			case !c.deleted:
				kv.idx.put(c.kv.Key, c.rev)
				if c.kv.CreateRevision == c.rev.main {
					live++
				}
			case kv.idx.tombstone(c.kv.Key, c.rev):
				live--
			default:
				kv.lg.Error("deleted key missing from the index", zap.ByteString("key", c.kv.Key))
			}
		}
		kv.rev = a.rev
		kv.mu.Unlock()
		kv.live.Add(live)
	}
	// Published after the revision, so that whoever waits for an applied
	// index to read its effects finds them.
	kv.applied.Store(a.applied)
	return nil
}

// Abort discards the staged entries; readers never see them. It does
// nothing after Commit.
func (a *Applier) Abort() {
	if !a.done {
		a.close()
	}
}

func (a *Applier) close() {
	a.checkOpen()
	a.done = true
	a.kv.applying = false
	a.b.Close() // after Commit too: storage.Batch.Close is a no-op then
	// The tree's nodes go to its free list, for the next Applier.
	a.keys.Clear(true)
}

func (a *Applier) checkOpen() {
	if a.done {
		panic("mvcc: Applier used after Commit or Abort")
	}
}

// stageEntry runs one entry's request through a writeTxn on top of the
// staged entries and ends it with end.
func stageEntry[R any](a *Applier, index uint64, do func(*writeTxn) (R, error)) (R, []*mvccpb.Event, error) {
	var zero R
	a.checkOpen()
	if a.err != nil {
		return zero, nil, a.err
	}
	w := &writeTxn{view: view{kv: a.kv, rev: a.rev, compactRev: a.compactRev}, a: a, start: len(a.changes)}
	w.view.w = w
	w.view.ops = &w.tally
	resp, err := do(w)
	a.totals.add(&w.tally)
	evs, err := a.end(w, index, err)
	if err != nil {
		return zero, nil, err
	}
	return resp, evs, nil
}

// end finishes the entry at index that w staged. If failed is nil the
// entry's changes go into the batch and, if there are any, its revision
// becomes the Applier's; it returns their events. If failed is a sentinel
// of this package the changes are dropped and only the index is kept. Any
// other error poisons the Applier.
func (a *Applier) end(w *writeTxn, index uint64, failed error) ([]*mvccpb.Event, error) {
	if failed != nil {
		a.unstage(w.start)
		if !isRequestError(failed) {
			a.err = failed
			return nil, failed
		}
		a.applied = index
		return nil, failed
	}
	kv := a.kv
	own := a.changes[w.start:]
	for _, c := range own {
		val, err := proto.MarshalOptions{}.MarshalAppend(kv.valBuf[:0], c.kv)
		if err != nil {
			a.unstage(w.start)
			a.err = fmt.Errorf("mvcc: encode key-value: %w", err)
			return nil, a.err
		}
		kv.valBuf = val
		kv.keyBuf = appendRevKey(kv.keyBuf[:0], c.rev, c.deleted)
		a.b.Put(storage.KV, kv.keyBuf, val)
	}
	a.applied = index
	if len(own) == 0 {
		return nil, nil
	}
	a.rev++
	return w.events(), nil
}

// stage adds a change of the entry that starts at position start of
// a.changes. prior is the key's value just before the change; the change's
// before is the key's value before the entry (see change).
func (a *Applier) stage(start int, c change) {
	sk := a.lookup(c.kv.Key)
	if sk == nil {
		sk = &stagedKey{key: c.kv.Key}
		sk.pos = sk.buf[:0]
		a.keys.ReplaceOrInsert(sk)
	}
	if n := len(sk.pos); n > 0 && sk.pos[n-1] >= start {
		c.before = a.changes[sk.pos[n-1]].before
	}
	sk.pos = append(sk.pos, len(a.changes))
	a.changes = append(a.changes, c)
}

// unstage drops the changes from position start on, those of an entry that
// failed. They are the last of their keys' lists.
func (a *Applier) unstage(start int) {
	for i := len(a.changes) - 1; i >= start; i-- {
		sk := a.lookup(a.changes[i].kv.Key)
		sk.pos = sk.pos[:len(sk.pos)-1]
		if len(sk.pos) == 0 {
			a.keys.Delete(sk)
		}
	}
	clear(a.changes[start:])
	a.changes = a.changes[:start]
}

// visible returns, in key order, the last change at or below main revision
// limit of each key of span s that the staged entries changed. Such a
// change replaces whatever the index knows of the key, which is older.
func (a *Applier) visible(s keySpan, limit int64) []change {
	if len(a.changes) == 0 || limit <= a.base {
		return nil
	}
	var out []change
	add := func(sk *stagedKey) bool {
		for i := len(sk.pos) - 1; i >= 0; i-- {
			if c := a.changes[sk.pos[i]]; c.rev.main <= limit {
				out = append(out, c)
				break
			}
		}
		return true
	}
	if s.single {
		if sk := a.lookup(s.key); sk != nil {
			add(sk)
		}
		return out
	}
	a.probe.key = s.key
	defer func() { a.probe.key = nil }()
	a.keys.AscendGreaterOrEqual(&a.probe, func(sk *stagedKey) bool {
		if s.end != nil && bytes.Compare(sk.key, s.end) >= 0 {
			return false
		}
		return add(sk)
	})
	return out
}

// applyOne applies one entry as a one-entry Applier: the KV's own writing
// methods are this.
func applyOne[R any](kv *KV, stage func(*Applier) (R, []*mvccpb.Event, error)) (R, []*mvccpb.Event, error) {
	a := kv.BeginApply()
	resp, evs, err := stage(a)
	if cerr := a.Commit(); cerr != nil {
		var zero R
		return zero, nil, cerr
	}
	return resp, evs, err
}
