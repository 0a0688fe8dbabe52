// Package raftlog defines the seam through which the raft node persists its
// log: hard state, entries and the latest snapshot metadata.
//
// Two implementations exist. filelog keeps the log in a preallocated
// write-ahead file of its own, beside either storage engine; it holds in
// memory the log's index (each entry's term and place in the file) and the
// newest entries, and reads older ones back from the file, so a log of
// large entries costs disk, not memory. enginelog keeps the log in the
// storage.Raft bucket of the engine, where members on RocksDB created by
// earlier versions have it until Copy moves it; it loads the whole log into
// memory on open.
package raftlog

import (
	"errors"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// ErrCorrupt is returned, wrapped with the details, by an implementation's
// Open when the stored log fails its checksums or is inconsistent with
// itself. The log cannot be served; it must be repaired or replaced from a
// peer.
var ErrCorrupt = errors.New("raftlog: log is corrupt")

// ErrClosed is returned by Save and CreateSnapshot after Close.
var ErrClosed = errors.New("raftlog: log is closed")

// Log is raft's durable log: hard state, entries and the latest snapshot
// metadata.
//
// Every method, the raft.Storage reads included, is called from the raft
// goroutine only, never concurrently: the reads are served from a
// raft.MemoryStorage, whose InitialState is not synchronised with its
// writers, and from files written by Save. The reads follow raft's contract: ErrCompacted below FirstIndex,
// ErrUnavailable past LastIndex.
// Entries returned by Entries and the slices handed to Save are shared with
// raft and must not be modified by anyone.
type Log interface {
	raft.Storage

	// Save records everything a raft Ready asks to persist, durably before
	// returning whenever raft needs it (a snapshot, entries, a new term or
	// vote); a hard state that only advances the commit index is written
	// without an fsync, as raft permits. It records snap if it is not empty (the log then restarts right
	// after snap's index, and a snap not newer than the current snapshot
	// fails with raft.ErrSnapOutOfDate), then ents, which overwrite every
	// entry with an index >= ents[0].Index, then st if it is not empty.
	// Entries at or below the compaction point are ignored; ents must be
	// contiguous and must not leave a gap after the last index. A failed
	// Save may have written part of its records: the caller must stop
	// using the log (later calls return the same error).
	Save(st *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error

	// CreateSnapshot records a snapshot at index with conf state cs (nil
	// keeps the current one) and opaque data, then drops the entries up to
	// and including compactTo so that the log starts at compactTo+1;
	// Term(compactTo) stays answerable. The change is durable on return.
	//
	// index must be <= LastIndex (else raft.ErrUnavailable) and >= the
	// current snapshot's index (else raft.ErrSnapOutOfDate); an index equal
	// to it keeps the current snapshot, cs and data being ignored, and only
	// compacts. compactTo must be <= index; a compactTo at or below the
	// current compaction point compacts nothing. data is kept, not copied.
	CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte, compactTo uint64) (*raftpb.Snapshot, error)

	// Handed tells the log that raft has handed every entry up to index
	// to the state machine. Raft reads those entries again only for a
	// follower that lags or after a restart, so a log that keeps entries
	// in memory may let them go.
	Handed(index uint64)

	// EntrySize returns the size of the encoding of entry i, without
	// reading the entry from disk; raft.ErrCompacted below FirstIndex,
	// raft.ErrUnavailable past LastIndex.
	EntrySize(i uint64) (int, error)

	// Close releases the files the log holds; it does not close an engine
	// the log was opened on. Reads of what the log holds in memory keep
	// working (the hard state, the snapshot, terms and indexes); Entries
	// may fail with ErrClosed for entries that would be read from disk.
	Close() error
}
