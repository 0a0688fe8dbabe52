package raftlog_test

import (
	"fmt"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/enginelog"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

func ent(term, index uint64) *raftpb.Entry {
	return &raftpb.Entry{Term: proto.Uint64(term), Index: proto.Uint64(index), Data: fmt.Appendf(nil, "e%d", index)}
}

// describe is everything a raft node reads from l at start.
func describe(t *testing.T, l raftlog.Log) string {
	t.Helper()
	hs, cs, err := l.InitialState()
	if err != nil {
		t.Fatal(err)
	}
	snap, err := l.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	var ents []*raftpb.Entry
	if last >= first {
		if ents, err = l.Entries(first, last+1, 1<<30); err != nil {
			t.Fatal(err)
		}
	}
	term, err := l.Term(first - 1)
	if err != nil {
		t.Fatal(err)
	}
	var es []string
	for _, e := range ents {
		es = append(es, fmt.Sprintf("%d/%d:%s", e.GetIndex(), e.GetTerm(), e.Data))
	}
	return fmt.Sprintf("hs=%v cs=%v snap=%d/%d data=%q first=%d (term %d) last=%d ents=%v",
		hs.GetCommit(), cs.GetVoters(), snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm(), snap.GetData(), first, term, last, es)
}

// TestCopyFromEngineToFile moves a compacted log with a snapshot, entries
// and a hard state from the engine-backed log to the file log, and an
// empty one too: a raft node reads the same from both, before and after a
// reopen of the copy.
func TestCopyFromEngineToFile(t *testing.T) {
	for _, filled := range []bool{false, true} {
		t.Run(fmt.Sprintf("filled=%v", filled), func(t *testing.T) {
			e, err := memory.Open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			src, err := enginelog.Open(e)
			if err != nil {
				t.Fatal(err)
			}
			if filled {
				var ents []*raftpb.Entry
				for i := uint64(1); i <= 20; i++ {
					ents = append(ents, ent(1+i/10, i))
				}
				if err := src.Save(nil, ents, nil); err != nil {
					t.Fatal(err)
				}
				if _, err := src.CreateSnapshot(12, &raftpb.ConfState{Voters: []uint64{7}}, []byte("state"), 8); err != nil {
					t.Fatal(err)
				}
				if err := src.Save(&raftpb.HardState{Term: proto.Uint64(2), Vote: proto.Uint64(7), Commit: proto.Uint64(19)}, nil, nil); err != nil {
					t.Fatal(err)
				}
			}
			dir := t.TempDir()
			dst, err := filelog.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := raftlog.Copy(dst, src); err != nil {
				t.Fatal(err)
			}
			want := describe(t, src)
			if got := describe(t, dst); got != want {
				t.Errorf("copy reads\n%s\nwant\n%s", got, want)
			}
			dst.Close()
			if dst, err = filelog.Open(dir, nil); err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			if got := describe(t, dst); got != want {
				t.Errorf("reopened copy reads\n%s\nwant\n%s", got, want)
			}
		})
	}
}
