// Package storage defines the seam between Cairn's state machine and the
// byte-level storage engines beneath it.
//
// An Engine is an ordered key-value store split into a fixed set of buckets
// (column families in RocksDB, separate trees in memory). Exactly one Engine
// instance backs a member: MVCC data, metadata (applied index, compaction
// progress, membership) and, for engines that keep it, the raft log.
//
// Concurrency contract, shared by every implementation:
//   - A Batch is built by one goroutine. Batches may be committed from
//     several goroutines (the store actor applies entries while a background
//     compaction deletes old revisions); each Commit is atomic with respect
//     to readers and to other commits.
//   - Get, Iterate, NewView and Stats may be called from any goroutine, also
//     while a batch is being committed. A reader sees either all of a
//     committed batch or none of it.
//   - Slices passed to callbacks are valid only until the callback returns;
//     callers copy what they keep.
package storage

import (
	"errors"
	"io"
)

// Bucket names one keyspace inside an engine. Keys in different buckets never
// collide and iteration never crosses a bucket.
type Bucket uint8

// The buckets every engine provides. Their numeric values are persisted in
// snapshots, so new buckets are only ever appended.
const (
	// Meta holds small records about the replicated state as a whole: the
	// applied raft index, compaction progress. Member-local facts (the
	// member's own identity) never go here: snapshots copy this bucket.
	Meta Bucket = iota
	// KV holds MVCC revisions: revision bytes -> encoded mvccpb.KeyValue.
	KV
	// Lease holds lease records.
	Lease
	// Auth holds users, roles and the auth switch.
	Auth
	// Raft holds the raft log when the engine keeps it (see raftlog).
	Raft
	// NumBuckets is the number of buckets; not a bucket itself.
	NumBuckets
)

// String returns the bucket's name, also used as the RocksDB column family
// name.
func (b Bucket) String() string {
	switch b {
	case Meta:
		return "meta"
	case KV:
		return "kv"
	case Lease:
		return "lease"
	case Auth:
		return "auth"
	case Raft:
		return "raft"
	}
	return "unknown"
}

// ErrClosed is returned by every method called after Close.
var ErrClosed = errors.New("storage: engine is closed")

// ErrCorruptSnapshot is returned by Restore when the snapshot stream is
// truncated or fails its checksum.
var ErrCorruptSnapshot = errors.New("storage: snapshot is corrupt")

// Reader reads committed state. Both Engine (the latest state) and View (a
// frozen state) implement it.
type Reader interface {
	// Get returns a copy of the value stored under key, or (nil, nil) when the
	// key is absent. A key stored with an empty value returns a non-nil empty
	// slice. The empty key is a valid key.
	Get(b Bucket, key []byte) ([]byte, error)
	// Iterate calls fn for each key in [start, end) in ascending key order,
	// or in descending order when reverse is set. A nil start means the first
	// key of the bucket; a nil end means past the last key. Iteration stops
	// early when fn returns false. The key and value slices are only valid
	// during the call to fn, and fn must not call back into the engine or
	// view (a waiting writer or Close would deadlock it).
	Iterate(b Bucket, start, end []byte, reverse bool, fn func(key, value []byte) bool) error
}

// View is a consistent, read-only snapshot of an engine taken at one moment.
// Later batches are not visible through it. A View must be closed; it may be
// used from any goroutine, and its methods return ErrClosed after Close.
type View interface {
	Reader
	Close()
}

// Batch collects writes that are applied atomically by Commit. A Batch is
// used by one goroutine and discarded after Commit or Close.
type Batch interface {
	// Put sets key to value; a nil value is stored as empty. Both slices may
	// be reused by the caller after Put returns.
	Put(b Bucket, key, value []byte)
	// Delete removes key; deleting an absent key is not an error.
	Delete(b Bucket, key []byte)
	// DeleteRange removes every key in [start, end). A nil start or end
	// means no bound; start at or after end deletes nothing.
	DeleteRange(b Bucket, start, end []byte)
	// Len is the number of operations recorded so far.
	Len() int
	// Commit applies every operation atomically. With sync set the batch is
	// durable (fsynced) when Commit returns; without it the batch may be lost
	// by a crash of the machine, but not reordered with later batches.
	Commit(sync bool) error
	// Close releases the batch without applying it; it is a no-op after
	// Commit.
	Close()
}

// Stats describes an engine's size, as reported by Maintenance.Status.
type Stats struct {
	// SizeBytes is the space the engine occupies, on disk or in memory.
	SizeBytes int64
	// SizeInUseBytes is the part of SizeBytes that holds live data.
	SizeInUseBytes int64
	// Keys is the number of keys over all buckets (may be an estimate).
	Keys int64
}

// Engine is an ordered, bucketed key-value store. See the package comment
// for the concurrency contract.
type Engine interface {
	Reader
	// NewBatch starts an atomic write batch.
	NewBatch() Batch
	// NewView returns a consistent snapshot of the current state.
	NewView() (View, error)
	// Stats reports the engine's size; zeros after Close.
	Stats() Stats
	// Checkpoint makes every committed batch durable, so that reopening the
	// engine after a crash yields at least the state at the time of the
	// call. The memory engine writes a snapshot file; RocksDB syncs its WAL.
	// It may run concurrently with every other method.
	Checkpoint() error
	// Defragment reclaims the space of deleted and overwritten keys. It runs
	// alongside reads and writes, which it never stops (unlike etcd's bbolt
	// defragmentation), and returns when it is done. The memory engine has
	// nothing to reclaim.
	Defragment() error
	// WriteSnapshot streams the full content of every bucket except Raft to
	// w in the engine-independent format of snapshot.go.
	WriteSnapshot(w io.Writer) error
	// Restore replaces the content of every bucket except Raft with the
	// snapshot read from r. The stream is verified before anything is
	// replaced, so on ErrCorruptSnapshot the engine is unchanged; after any
	// other error its content is unspecified and must not be served.
	Restore(r io.Reader) error
	// Close releases the engine. Views should be closed first; one used
	// after its engine closed may answer ErrClosed.
	Close() error
}
