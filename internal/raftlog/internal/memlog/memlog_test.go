package memlog

import (
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/internal/raftlog"
)

func ents(lo, hi, term uint64) []*raftpb.Entry {
	var es []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		es = append(es, &raftpb.Entry{Index: new(i), Term: new(term)})
	}
	return es
}

func snap(index, term uint64) *raftpb.Snapshot {
	return &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(term)}}
}

// Load accepts every consistent state and refuses the others as corrupt.
func TestLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   State
		ok   bool
	}{
		{"empty", State{}, true},
		{"entries", State{Entries: ents(1, 5, 1), HardState: &raftpb.HardState{Commit: new(uint64(5))}}, true},
		{"snapshot at start", State{Snapshot: snap(5, 2), StartIndex: 5, StartTerm: 2, Entries: ents(6, 7, 2)}, true},
		{"snapshot after start", State{Snapshot: snap(7, 2), StartIndex: 5, StartTerm: 1, Entries: ents(6, 7, 2)}, true},
		{"entries with a gap", State{Entries: append(ents(1, 2, 1), ents(4, 4, 1)...)}, false},
		{"entries not after start", State{Snapshot: snap(5, 1), StartIndex: 5, StartTerm: 1, Entries: ents(5, 6, 1)}, false},
		{"commit past the log", State{Entries: ents(1, 2, 1), HardState: &raftpb.HardState{Commit: new(uint64(3))}}, false},
		{"snapshot before start", State{Snapshot: snap(4, 1), StartIndex: 5, StartTerm: 1}, false},
		{"no snapshot but compacted", State{StartIndex: 5, StartTerm: 1}, false},
		{"snapshot past the log", State{Snapshot: snap(9, 1), StartIndex: 5, StartTerm: 1, Entries: ents(6, 7, 1)}, false},
		{"snapshot term differs at start", State{Snapshot: snap(5, 2), StartIndex: 5, StartTerm: 1}, false},
		{"snapshot term differs in log", State{Snapshot: snap(7, 3), StartIndex: 5, StartTerm: 1, Entries: ents(6, 7, 2)}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms, err := Load(tc.st)
			if !tc.ok {
				if !errors.Is(err, raftlog.ErrCorrupt) {
					t.Fatalf("Load = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			first, last := bounds(ms)
			if want := tc.st.StartIndex + 1; first != want {
				t.Fatalf("first index %d, want %d", first, want)
			}
			if want := tc.st.StartIndex + uint64(len(tc.st.Entries)); last != want {
				t.Fatalf("last index %d, want %d", last, want)
			}
			if term, err := ms.Term(tc.st.StartIndex); err != nil || term != tc.st.StartTerm {
				t.Fatalf("Term(start) = %d, %v, want %d", term, err, tc.st.StartTerm)
			}
			s, _ := ms.Snapshot()
			if s.GetMetadata().GetIndex() != tc.st.Snapshot.GetMetadata().GetIndex() {
				t.Fatalf("snapshot index %d, want %d", s.GetMetadata().GetIndex(), tc.st.Snapshot.GetMetadata().GetIndex())
			}
		})
	}
}
