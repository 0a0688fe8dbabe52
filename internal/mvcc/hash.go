package mvcc

import (
	"bytes"
	"cmp"
	"fmt"
	"hash"
	"hash/crc32"
	"slices"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// This file computes etcd's Maintenance.HashKV value, bit for bit, and a
// whole-state hash for Maintenance.Hash.
//
// etcd's HashKV is a CRC-32C over its "key" bolt bucket: the bucket name,
// then each revision record's key (main, '_', sub, ['t']) and value (the
// marshalled mvccpb.KeyValue) in key order, restricted to what a compaction
// at the hashed revision would keep. Cairn's KV bucket uses the same key
// layout and stores puts as etcd does, but its tombstones also carry the
// mod revision, so a tombstone is hashed as etcd stores it: the key alone.
//
// etcd also remembers the hash each compaction computes while it deletes
// (the last ten of them) and answers HashKV at such a revision with it, not
// with a fresh computation; the two differ, so Cairn keeps them too.

// KeyValueHash is the answer to HashKV: the hash of the revisions up to
// Revision, computed relative to the compaction at CompactRevision (-1 if
// none); etcd's mvcc.KeyValueHash.
type KeyValueHash struct {
	Hash            uint32
	CompactRevision int64
	Revision        int64
}

// kvBucketName is the name of etcd's bucket of revisions, the first thing
// etcd's hash covers.
var kvBucketName = []byte("key")

// keptHashes is how many compaction hashes are remembered, as in etcd.
const keptHashes = 10

// HashKV returns etcd's HashKV of the revisions up to rev (the current
// revision when rev is 0), and the current revision. rev below the
// compaction revision fails with ErrCompacted, above the current one with
// ErrFutureRev, unless a compaction at exactly rev was hashed and is still
// remembered: that hash is returned, as etcd does.
//
// It may be called from any goroutine and runs on the caller's; it reads
// every revision up to rev, so it takes time proportional to the history,
// and holds kv.mu shared while it walks the index, as etcd holds its index
// lock. A compaction published meanwhile waits for it, as for any read.
func (kv *KV) HashKV(rev int64) (KeyValueHash, int64, error) {
	if h, ok := kv.hashes.lookup(rev); ok {
		return h, kv.Rev(), nil
	}
	start := time.Now()
	kv.readers.RLock()
	defer kv.readers.RUnlock()

	kv.mu.RLock()
	compactRev, current := kv.compactRev, kv.rev
	switch {
	case rev > 0 && rev < compactRev:
		kv.mu.RUnlock()
		return KeyValueHash{}, 0, ErrCompacted
	case rev > 0 && rev > current:
		kv.mu.RUnlock()
		return KeyValueHash{}, current, ErrFutureRev
	case rev == 0:
		rev = current
	}
	keep := kv.idx.keep(rev)
	kv.mu.RUnlock()

	h := newKVHasher(compactRev, rev, keep)
	var failed error
	err := kv.e.Iterate(storage.KV, nil, mainPrefix(rev+1), false, func(k, v []byte) bool {
		failed = h.write(k, v)
		return failed == nil
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return KeyValueHash{}, 0, fmt.Errorf("mvcc: hash revisions up to %d: %w", rev, err)
	}
	since(kv.metrics.hashRev, start)
	return h.sum(), current, nil
}

// Hash returns a CRC-32C of the whole replicated state (the Meta, KV, Lease
// and Auth buckets, without the applied raft index, which members reach at
// different times), and the current revision. Members holding the same
// state return the same hash; it is not etcd's value, which covers bbolt's
// own buckets. Like etcd's, the hash and the revision are not taken
// atomically: a write committing meanwhile may be in the hash and not yet
// in the revision. It may be called from any goroutine.
func (kv *KV) Hash() (uint32, int64, error) {
	start := time.Now()
	kv.mu.RLock()
	rev := kv.rev
	view, err := kv.e.NewView()
	kv.mu.RUnlock()
	if err != nil {
		return 0, 0, fmt.Errorf("mvcc: hash: %w", err)
	}
	defer view.Close()
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for _, b := range []storage.Bucket{storage.Meta, storage.KV, storage.Lease, storage.Auth} {
		h.Write([]byte(b.String()))
		err := view.Iterate(b, nil, nil, false, func(k, v []byte) bool {
			if b == storage.Meta && bytes.Equal(k, appliedIndexKey) {
				return true
			}
			h.Write(k)
			h.Write(v)
			return true
		})
		if err != nil {
			return 0, 0, fmt.Errorf("mvcc: hash bucket %s: %w", b, err)
		}
	}
	since(kv.metrics.hash, start)
	return h.Sum32(), rev, nil
}

// kvHasher feeds KV bucket records, in key order, into etcd's HashKV: the
// revisions at or below rev, except those at or below compactRev that keep
// does not hold (unless keep is empty, where etcd skips nothing) and the
// tombstones at compactRev, which etcd versions disagree on keeping.
type kvHasher struct {
	h          hash.Hash32
	compactRev int64
	rev        int64
	keep       map[revision]struct{}
	msg        mvccpb.KeyValue
	buf        []byte
}

func newKVHasher(compactRev, rev int64, keep map[revision]struct{}) *kvHasher {
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	h.Write(kvBucketName)
	return &kvHasher{h: h, compactRev: compactRev, rev: rev, keep: keep}
}

// write hashes one KV bucket record if etcd's hash includes it.
func (h *kvHasher) write(k, v []byte) error {
	r, tomb, err := parseRevKey(k)
	if err != nil {
		return err
	}
	if r.main > h.rev {
		return nil
	}
	if r.main <= h.compactRev && len(h.keep) > 0 {
		if _, ok := h.keep[r]; !ok {
			return nil
		}
	}
	if tomb && r.main == h.compactRev {
		return nil
	}
	if tomb {
		// etcd's tombstone value is the key alone.
		h.msg.Reset()
		if err := proto.Unmarshal(v, &h.msg); err != nil {
			return fmt.Errorf("mvcc: decode revision %d.%d: %w", r.main, r.sub, err)
		}
		h.buf, err = proto.MarshalOptions{}.MarshalAppend(h.buf[:0], &mvccpb.KeyValue{Key: h.msg.Key})
		if err != nil {
			return err
		}
		v = h.buf
	}
	h.h.Write(k)
	h.h.Write(v)
	return nil
}

func (h *kvHasher) sum() KeyValueHash {
	return KeyValueHash{Hash: h.h.Sum32(), CompactRevision: h.compactRev, Revision: h.rev}
}

// keep returns the revisions a compaction at atRev would keep, as etcd's
// HashKV counts them: unlike a real compaction (history.compact), a
// tombstone at exactly atRev is not kept. The caller holds kv.mu.
func (ix *index) keep(atRev int64) map[revision]struct{} {
	keep := make(map[revision]struct{})
	ix.tree.Ascend(func(ki *keyIndex) bool {
		ix.keepAt(ki, atRev, keep)
		return true
	})
	return keep
}

// compactionHashes remembers the hashes compactions computed, for HashKV.
// The writer goroutine announces a compaction (expect), the compactor
// computes its hash while it deletes (begin, then finish), and readers look
// them up (lookup).
type compactionHashes struct {
	mu sync.Mutex
	// When expected, the compaction at nextRev, over the one at nextPrev,
	// is to have its hash remembered when it runs.
	expected bool
	nextRev  int64
	nextPrev int64
	hashes   []KeyValueHash // ascending Revision, at most keptHashes
}

// expectCompaction is called by Compact, on the writer goroutine, before it
// schedules a compaction at rev over the compaction at prev. As in etcd,
// the compaction's hash is remembered only if the previous compaction had
// finished: otherwise some of the revisions the hash must cover may already
// be gone, or (Cairn merges queued compactions) it may never run on its
// own. A compaction resumed at Open is never expected, for the same reason.
func (kv *KV) expectCompaction(rev, prev int64) {
	scheduled, sFound, err1 := readMeta(kv.e, scheduledCompactKey)
	finished, fFound, err2 := readMeta(kv.e, finishedCompactKey)
	finishedBefore := err1 == nil && err2 == nil && sFound == fFound && scheduled == finished
	kv.hashes.mu.Lock()
	defer kv.hashes.mu.Unlock()
	kv.hashes.expected, kv.hashes.nextRev, kv.hashes.nextPrev = finishedBefore, rev, prev
}

// beginCompactionHash is called by the compactor once it knows what the
// compaction at rev keeps. It returns the hasher to feed every KV bucket
// record at or below rev, before deleting any, or nil when this
// compaction's hash is not to be remembered.
func (kv *KV) beginCompactionHash(rev int64, keep map[revision]struct{}) *kvHasher {
	c := &kv.hashes
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.expected || c.nextRev != rev {
		return nil
	}
	c.expected = false
	return newKVHasher(c.nextPrev, rev, keep)
}

// finishCompactionHash remembers the hash h computed; h may be nil.
func (kv *KV) finishCompactionHash(h *kvHasher) {
	if h == nil {
		return
	}
	c := &kv.hashes
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hashes = append(c.hashes, h.sum())
	slices.SortStableFunc(c.hashes, func(a, b KeyValueHash) int {
		return cmp.Compare(a.Revision, b.Revision)
	})
	if n := len(c.hashes); n > keptHashes {
		c.hashes = slices.Delete(c.hashes, 0, n-keptHashes)
	}
}

// CompactionHashes returns the hashes the recent compactions computed (at
// most the last ten, as etcd keeps), in ascending Revision: for the
// leader's compaction hash check. They live in memory only, so a member
// that restarted has none until it compacts again. It may be called from
// any goroutine and returns a copy.
func (kv *KV) CompactionHashes() []KeyValueHash {
	kv.hashes.mu.Lock()
	defer kv.hashes.mu.Unlock()
	return slices.Clone(kv.hashes.hashes)
}

func (c *compactionHashes) lookup(rev int64) (KeyValueHash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.hashes {
		if h.Revision == rev {
			return h, true
		}
	}
	return KeyValueHash{}, false
}
