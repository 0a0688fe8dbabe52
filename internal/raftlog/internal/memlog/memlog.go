// Package memlog is the in-memory side shared by raftlog's implementations:
// it loads a durable log into a raft.MemoryStorage, validates each Save and
// CreateSnapshot before anything is written, and applies them to memory once
// they are durable.
//
// An implementation persists exactly what a plan describes and then applies
// the plan, so what it serves from memory is what it would load after a
// restart. Plans are made and applied on the raft goroutine, and nothing
// else changes the MemoryStorage between a plan and its Apply.
package memlog

import (
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
)

// State is a durable log as an implementation reads it back on open.
type State struct {
	// HardState is the last hard state saved; nil if none was.
	HardState *raftpb.HardState
	// Snapshot is the latest snapshot; nil if there is none.
	Snapshot *raftpb.Snapshot
	// StartIndex and StartTerm name the entry just before the first one
	// kept: the compaction point, whose term raft may still ask for. Both
	// are zero for a log that never started after a snapshot.
	StartIndex, StartTerm uint64
	// Entries are the entries after StartIndex, in order.
	Entries []*raftpb.Entry
}

// Load checks that s is consistent and returns a MemoryStorage holding it.
// Inconsistencies are reported as raftlog.ErrCorrupt.
func Load(s State) (*raft.MemoryStorage, error) {
	last := s.StartIndex + uint64(len(s.Entries))
	for i, e := range s.Entries {
		if want := s.StartIndex + 1 + uint64(i); e.GetIndex() != want {
			return nil, fmt.Errorf("%w: entry %d found where %d belongs", raftlog.ErrCorrupt, e.GetIndex(), want)
		}
	}
	snap := raftpb.EnsureSnapshot(s.Snapshot)
	snapIndex, snapTerm := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	if snapIndex < s.StartIndex || snapIndex > last {
		return nil, fmt.Errorf("%w: snapshot index %d outside the log [%d, %d]", raftlog.ErrCorrupt, snapIndex, s.StartIndex, last)
	}
	if commit := s.HardState.GetCommit(); commit > last {
		return nil, fmt.Errorf("%w: commit index %d beyond last index %d", raftlog.ErrCorrupt, commit, last)
	}

	ms := raft.NewMemoryStorage()
	// MemoryStorage ties its first index to its snapshot; when the log keeps
	// entries from before the snapshot, start it at the compaction point and
	// move the snapshot forward once the entries are in.
	start := snap
	if snapIndex > s.StartIndex {
		start = &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(s.StartIndex), Term: new(s.StartTerm)}}
	} else if snapTerm != s.StartTerm {
		return nil, fmt.Errorf("%w: snapshot term %d differs from the term %d of its index %d", raftlog.ErrCorrupt, snapTerm, s.StartTerm, snapIndex)
	}
	if err := ms.ApplySnapshot(start); err != nil {
		return nil, err
	}
	if err := ms.Append(s.Entries); err != nil {
		return nil, err
	}
	if snapIndex > s.StartIndex {
		if t := s.Entries[snapIndex-s.StartIndex-1].GetTerm(); t != snapTerm {
			return nil, fmt.Errorf("%w: snapshot term %d differs from the term %d of its index %d", raftlog.ErrCorrupt, snapTerm, t, snapIndex)
		}
		if _, err := ms.CreateSnapshot(snapIndex, snap.GetMetadata().GetConfState(), snap.GetData()); err != nil {
			return nil, err
		}
	}
	if s.HardState != nil {
		if err := ms.SetHardState(s.HardState); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// SavePlan is a validated raftlog.Log.Save: what to persist, in this order.
type SavePlan struct {
	// Snapshot, when not nil, resets the log: the snapshot is recorded and
	// the log restarts after its index (StartIndex = snapshot index).
	Snapshot *raftpb.Snapshot
	// Truncate, when not zero, drops every entry with index >= Truncate
	// before Entries are appended.
	Truncate uint64
	// Entries are appended after the last index (after truncation).
	Entries []*raftpb.Entry
	// HardState, when not nil, replaces the hard state.
	HardState *raftpb.HardState
	// MustSync says whether the plan must be fsynced before Save returns:
	// raft needs durability for a snapshot, entries, or a new term or vote.
	// A hard state that only moves the commit index may be lost in a crash
	// (the leader teaches it again), so it is written without an fsync, as
	// etcd does.
	MustSync bool
}

// PlanSave validates a Save of st, ents and snap against ms.
func PlanSave(ms *raft.MemoryStorage, st *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) (SavePlan, error) {
	var p SavePlan
	first, last := bounds(ms)
	if !raft.IsEmptySnap(snap) {
		cur, err := ms.Snapshot()
		if err != nil {
			return p, err
		}
		if snap.GetMetadata().GetIndex() <= cur.GetMetadata().GetIndex() {
			return p, raft.ErrSnapOutOfDate
		}
		p.Snapshot = snap
		first, last = snap.GetMetadata().GetIndex()+1, snap.GetMetadata().GetIndex()
	}
	for i := 1; i < len(ents); i++ {
		if ents[i].GetIndex() != ents[i-1].GetIndex()+1 {
			return p, fmt.Errorf("raftlog: entries not contiguous: %d follows %d", ents[i].GetIndex(), ents[i-1].GetIndex())
		}
	}
	// Like MemoryStorage.Append, ignore what is already compacted.
	if len(ents) > 0 && ents[0].GetIndex() < first {
		ents = ents[min(first-ents[0].GetIndex(), uint64(len(ents))):]
	}
	if len(ents) > 0 {
		switch i := ents[0].GetIndex(); {
		case i > last+1:
			return p, fmt.Errorf("raftlog: entry %d leaves a gap after last index %d", i, last)
		case i <= last:
			// Entries up to the snapshot are committed: raft never replaces
			// them, and a log whose snapshot disagrees with its entries
			// would not open again.
			if p.Snapshot == nil {
				cur, err := ms.Snapshot()
				if err != nil {
					return p, err
				}
				if snapIndex := cur.GetMetadata().GetIndex(); i <= snapIndex {
					return p, fmt.Errorf("raftlog: entry %d would replace an entry covered by the snapshot at %d", i, snapIndex)
				}
			}
			p.Truncate = i
		}
		p.Entries = ents
	}
	if !raft.IsEmptyHardState(st) {
		// raft hands out a fresh HardState per Ready, but keeping a copy
		// costs little and guards against a caller reusing one.
		p.HardState = proto.CloneOf(st)
	}
	p.MustSync = p.Snapshot != nil || len(p.Entries) > 0 || p.Truncate != 0
	if p.HardState != nil && !p.MustSync {
		cur, _, err := ms.InitialState()
		if err != nil {
			return p, err
		}
		p.MustSync = cur.GetTerm() != p.HardState.GetTerm() || cur.GetVote() != p.HardState.GetVote()
	}
	return p, nil
}

// Apply makes p visible in ms. It must follow the PlanSave that made p,
// with no other change to ms in between.
func (p SavePlan) Apply(ms *raft.MemoryStorage) error {
	if p.Snapshot != nil {
		if err := ms.ApplySnapshot(p.Snapshot); err != nil {
			return err
		}
	}
	if err := ms.Append(p.Entries); err != nil {
		return err
	}
	if p.HardState != nil {
		return ms.SetHardState(p.HardState)
	}
	return nil
}

// SnapshotPlan is a validated raftlog.Log.CreateSnapshot: the log's new
// snapshot and compaction point.
type SnapshotPlan struct {
	// Snapshot is the snapshot to record; it is the current one when the
	// call named the current snapshot index.
	Snapshot *raftpb.Snapshot
	// StartIndex and StartTerm are the new compaction point: entries up to
	// StartIndex are dropped. They are the current one when nothing is to
	// be compacted.
	StartIndex, StartTerm uint64

	create, compact bool
}

// PlanSnapshot validates a CreateSnapshot against ms.
func PlanSnapshot(ms *raft.MemoryStorage, index uint64, cs *raftpb.ConfState, data []byte, compactTo uint64) (SnapshotPlan, error) {
	var p SnapshotPlan
	cur, err := ms.Snapshot()
	if err != nil {
		return p, err
	}
	first, last := bounds(ms)
	curIndex := cur.GetMetadata().GetIndex()
	switch {
	case index < curIndex:
		return p, raft.ErrSnapOutOfDate
	case index > last:
		return p, fmt.Errorf("raftlog: snapshot index %d beyond last index %d: %w", index, last, raft.ErrUnavailable)
	case compactTo > index:
		return p, fmt.Errorf("raftlog: compact index %d beyond snapshot index %d", compactTo, index)
	}
	p.Snapshot, p.StartIndex = cur, first-1
	if index > curIndex {
		term, err := ms.Term(index)
		if err != nil {
			return p, err
		}
		if cs == nil {
			cs = cur.GetMetadata().GetConfState()
		}
		p.Snapshot = &raftpb.Snapshot{
			Data: data,
			Metadata: &raftpb.SnapshotMetadata{
				ConfState: raftpb.EnsureConfState(proto.CloneOf(cs)),
				Index:     new(index),
				Term:      new(term),
			},
		}
		p.create = true
	}
	if compactTo > p.StartIndex {
		p.StartIndex, p.compact = compactTo, true
	}
	if p.StartTerm, err = ms.Term(p.StartIndex); err != nil {
		return p, err
	}
	return p, nil
}

// Apply makes p visible in ms. It must follow the PlanSnapshot that made p,
// with no other change to ms in between.
func (p SnapshotPlan) Apply(ms *raft.MemoryStorage) error {
	if p.create {
		md := p.Snapshot.GetMetadata()
		if _, err := ms.CreateSnapshot(md.GetIndex(), md.GetConfState(), p.Snapshot.GetData()); err != nil {
			return err
		}
	}
	if p.compact {
		return ms.Compact(p.StartIndex)
	}
	return nil
}

// bounds returns ms's first and last index; MemoryStorage never fails them.
func bounds(ms *raft.MemoryStorage) (first, last uint64) {
	first, _ = ms.FirstIndex()
	last, _ = ms.LastIndex()
	return first, last
}
