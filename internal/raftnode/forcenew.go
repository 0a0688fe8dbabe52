package raftnode

import (
	"fmt"
	"math"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
)

// ForceNewCluster rewrites the log of member self so that, once restarted
// on it, the member is the only voter of its cluster: the recovery of a
// cluster that lost its quorum for good (etcd's --force-new-cluster).
//
// Entries past the commit index are dropped, since no quorum will ever
// commit them. The commit index is the log's or applied, the index the
// state machine has applied, if that is higher: a hard state that only
// moved the commit index is written without an fsync, so the log's may lag
// behind what was applied before a crash. Then, for every other member of the configuration at the
// commit index, a configuration change removing it is appended in the
// current term and the commit index moves past them, so that they apply
// like any committed change as the node restarts: raft's configuration and
// the replicated members table both shrink to self. A self missing from
// the configuration is added back with selfContext. It returns the IDs
// removed; none when self is already alone, and then the log is untouched.
func ForceNewCluster(l raftlog.Log, self uint64, selfContext []byte, applied uint64) ([]uint64, error) {
	hs, cs, err := l.InitialState()
	if err != nil {
		return nil, err
	}
	first, err := l.FirstIndex()
	if err != nil {
		return nil, err
	}
	last, err := l.LastIndex()
	if err != nil {
		return nil, err
	}
	commit := max(hs.GetCommit(), min(applied, last))
	members := make(map[uint64]bool)
	for _, id := range slices.Concat(cs.GetVoters(), cs.GetLearners()) {
		members[id] = true
	}
	if commit >= first {
		ents, err := l.Entries(first, commit+1, math.MaxUint64)
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			if e.GetType() != raftpb.EntryConfChange {
				continue
			}
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				return nil, fmt.Errorf("raftnode: conf change at index %d: %w", e.GetIndex(), err)
			}
			switch cc.GetType() {
			case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
				members[cc.GetNodeId()] = true
			case raftpb.ConfChangeRemoveNode:
				delete(members, cc.GetNodeId())
			}
		}
	}
	var removed []uint64
	for id := range members {
		if id != self {
			removed = append(removed, id)
		}
	}
	slices.Sort(removed)
	var changes []*raftpb.ConfChange
	for _, id := range removed {
		changes = append(changes, confChange(raftpb.ConfChangeRemoveNode, id, nil))
	}
	if !members[self] {
		changes = append(changes, confChange(raftpb.ConfChangeAddNode, self, selfContext))
	}
	if len(changes) == 0 {
		return nil, nil
	}
	term := hs.GetTerm()
	ents := make([]*raftpb.Entry, 0, len(changes))
	for i, cc := range changes {
		data, err := proto.Marshal(cc)
		if err != nil {
			return nil, err
		}
		typ := raftpb.EntryConfChange
		ents = append(ents, &raftpb.Entry{
			Term: proto.Uint64(term), Index: proto.Uint64(commit + 1 + uint64(i)),
			Type: &typ, Data: data,
		})
	}
	// The new entries overwrite everything past the commit index, and the
	// commit index covers them: a lone member commits them by itself.
	st := &raftpb.HardState{Term: proto.Uint64(term), Vote: proto.Uint64(hs.GetVote()),
		Commit: proto.Uint64(commit + uint64(len(ents)))}
	if err := l.Save(st, ents, nil); err != nil {
		return nil, err
	}
	return removed, nil
}

func confChange(typ raftpb.ConfChangeType, id uint64, context []byte) *raftpb.ConfChange {
	return &raftpb.ConfChange{Type: &typ, NodeId: proto.Uint64(id), Context: context}
}
