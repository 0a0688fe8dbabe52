package raftlog

import (
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// copyChunk bounds the entries read from the source log at a time.
const copyChunk = 64 << 20

// Copy saves into dst, which must be empty, everything src holds: its
// snapshot, its entries after the snapshot and its hard state, so that a
// raft node opened on dst starts where one on src would. It is how a member
// moves its log from one implementation to the other. Both logs are used
// from the calling goroutine only.
func Copy(dst, src Log) error {
	hs, _, err := src.InitialState()
	if err != nil {
		return fmt.Errorf("raftlog: copy: %w", err)
	}
	snap, err := src.Snapshot()
	if err != nil {
		return fmt.Errorf("raftlog: copy: %w", err)
	}
	first, err := src.FirstIndex()
	if err != nil {
		return fmt.Errorf("raftlog: copy: %w", err)
	}
	last, err := src.LastIndex()
	if err != nil {
		return fmt.Errorf("raftlog: copy: %w", err)
	}
	if !raft.IsEmptySnap(snap) {
		// The entries kept before the snapshot stay: dst first restarts at
		// src's compaction point, under a snapshot there, and gets src's
		// snapshot once the entries are in.
		at, err := src.Term(first - 1)
		if err != nil {
			return fmt.Errorf("raftlog: copy: %w", err)
		}
		start := proto.Clone(snap).(*raftpb.Snapshot)
		start.Metadata.Index, start.Metadata.Term = proto.Uint64(first-1), proto.Uint64(at)
		if err := dst.Save(nil, nil, start); err != nil {
			return fmt.Errorf("raftlog: copy snapshot: %w", err)
		}
	}
	for lo := first; lo <= last; {
		ents, err := src.Entries(lo, last+1, copyChunk)
		if err != nil {
			return fmt.Errorf("raftlog: copy entries from %d: %w", lo, err)
		}
		if err := dst.Save(nil, ents, nil); err != nil {
			return fmt.Errorf("raftlog: copy entries from %d: %w", lo, err)
		}
		lo += uint64(len(ents))
	}
	if md := snap.GetMetadata(); md.GetIndex() > first-1 {
		if _, err := dst.CreateSnapshot(md.GetIndex(), md.GetConfState(), snap.GetData(), first-1); err != nil {
			return fmt.Errorf("raftlog: copy snapshot: %w", err)
		}
	}
	if !raft.IsEmptyHardState(hs) {
		if err := dst.Save(hs, nil, nil); err != nil {
			return fmt.Errorf("raftlog: copy hard state: %w", err)
		}
	}
	return nil
}
