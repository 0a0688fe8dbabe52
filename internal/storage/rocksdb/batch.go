package rocksdb

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/linxGnu/grocksdb"

	"github.com/cairn-kv/cairn/internal/storage"
)

type opKind uint8

const (
	opPut opKind = iota
	opDelete
	opDeleteRange
)

// op is one recorded write. For opDeleteRange, key and value are the start
// and end of the range; a nil end is resolved at Commit.
type op struct {
	kind       opKind
	b          storage.Bucket
	key, value []byte
}

// batch records its operations in Go memory and builds the RocksDB write
// batch only in Commit. A batch that is dropped without Commit or Close then
// leaks no C memory, and an open-ended DeleteRange can be resolved against
// the state it is committed to rather than the state it was recorded in.
type batch struct {
	e *Engine
	// s holds the operations and copies of their keys and values; nil
	// until the first operation and after Close.
	s         *scratch
	openEnded bool
}

// scratch is a batch's memory: its operations, and an arena with copies of
// every key and value, so that a batch costs a few allocations rather than
// two per operation. RocksDB copies a batch into its own write batch at
// Commit, after which the scratch is no longer needed, and a member commits
// a batch for every few raft entries it applies: Close returns the scratch
// to scratchPool rather than leaving it to the collector.
type scratch struct {
	ops   []op
	arena []byte
}

// scratchPool holds the scratches of closed batches. One that grew beyond
// maxPooledArena bytes of keys and values (large values) or maxPooledOps
// operations (a compaction's deletes) is left to the collector instead of
// being kept for the next batch.
var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

const (
	maxPooledArena = 1 << 20
	maxPooledOps   = 1 << 14
)

// keep copies p into the arena. Earlier copies stay valid when append moves
// the arena: they keep the old array alive.
func (s *scratch) keep(p []byte) []byte {
	if len(p) == 0 {
		// Keeps nil apart from empty, which matters for a range end.
		return p
	}
	n := len(s.arena)
	s.arena = append(s.arena, p...)
	return s.arena[n:len(s.arena):len(s.arena)]
}

// add records o, copying its key and value.
func (b *batch) add(o op) {
	if b.s == nil {
		b.s = scratchPool.Get().(*scratch)
	}
	o.key, o.value = b.s.keep(o.key), b.s.keep(o.value)
	b.s.ops = append(b.s.ops, o)
}

func (b *batch) Put(bk storage.Bucket, key, value []byte) {
	b.add(op{kind: opPut, b: bk, key: key, value: value})
}

func (b *batch) Delete(bk storage.Bucket, key []byte) {
	b.add(op{kind: opDelete, b: bk, key: key})
}

// DeleteRange records the removal of [start, end); as for Iterate, a nil
// start is the first key and a nil end is past the last key.
func (b *batch) DeleteRange(bk storage.Bucket, start, end []byte) {
	if end == nil {
		b.openEnded = true
	}
	b.add(op{kind: opDeleteRange, b: bk, key: start, value: end})
}

func (b *batch) Len() int {
	if b.s == nil {
		return 0
	}
	return len(b.s.ops)
}

// Close drops the operations and gives the batch's memory back for reuse;
// a second Close does nothing.
func (b *batch) Close() {
	s := b.s
	if s == nil {
		return
	}
	b.s = nil
	if cap(s.arena) > maxPooledArena || cap(s.ops) > maxPooledOps {
		return
	}
	clear(s.ops)
	s.ops, s.arena = s.ops[:0], s.arena[:0]
	scratchPool.Put(s)
}

// Commit writes the operations as one RocksDB write batch, atomic for
// readers and durable on return when sync is set.
func (b *batch) Commit(sync bool) error {
	e := b.e
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return storage.ErrClosed
	}
	if b.openEnded {
		e.commitMu.Lock()
		defer e.commitMu.Unlock()
	} else {
		e.commitMu.RLock()
		defer e.commitMu.RUnlock()
	}
	var ops []op
	if b.s != nil {
		ops = b.s.ops
	}
	wb := grocksdb.NewWriteBatch()
	defer wb.Destroy()
	// An open range end must also cover keys put earlier in this batch.
	var maxPut [storage.NumBuckets][]byte
	var put [storage.NumBuckets]bool
	for _, o := range ops {
		cf := e.cfs[o.b]
		switch o.kind {
		case opPut:
			wb.PutCF(cf, o.key, o.value)
			if b.openEnded && (!put[o.b] || bytes.Compare(o.key, maxPut[o.b]) > 0) {
				maxPut[o.b], put[o.b] = o.key, true
			}
		case opDelete:
			wb.DeleteCF(cf, o.key)
		case opDeleteRange:
			end := o.value
			if end == nil {
				last, ok, err := e.lastKey(o.b)
				if err != nil {
					return err
				}
				if put[o.b] && (!ok || bytes.Compare(maxPut[o.b], last) > 0) {
					last, ok = maxPut[o.b], true
				}
				if !ok {
					continue
				}
				end = after(last)
			}
			// RocksDB rejects an inverted range; it is empty here.
			if bytes.Compare(o.key, end) < 0 {
				wb.DeleteRangeCF(cf, o.key, end)
			}
		}
	}
	wo := e.wo
	if sync {
		wo = e.woSync
	}
	if err := e.db.Write(wo, wb); err != nil {
		return fmt.Errorf("rocksdb engine: commit: %w", err)
	}
	b.Close()
	return nil
}

// after returns the smallest key greater than k.
func after(k []byte) []byte {
	return append(k[:len(k):len(k)], 0)
}
