package server

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog/enginelog"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/rocksdb"
)

// TestRaftLogMovesOutOfRocksDB: a member whose log is in the raft bucket
// (as earlier versions kept it) finds it in dir/raft after its next start,
// with the same hard state, snapshot and entries, and the bucket empty; a
// fresh member starts an empty file log.
func TestRaftLogMovesOutOfRocksDB(t *testing.T) {
	dir := t.TempDir()
	e, err := rocksdb.Open(dir, rocksdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	old, err := enginelog.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 30; i++ {
		ents = append(ents, &raftpb.Entry{Term: proto.Uint64(2), Index: proto.Uint64(i), Data: fmt.Appendf(nil, "e%d", i)})
	}
	if err := old.Save(&raftpb.HardState{Term: proto.Uint64(2), Vote: proto.Uint64(1), Commit: proto.Uint64(28)}, ents, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := old.CreateSnapshot(20, &raftpb.ConfState{Voters: []uint64{1}}, nil, 15); err != nil {
		t.Fatal(err)
	}
	old.Close()

	l, err := openRocksDBRaftLog(e, dir, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	hs, cs, _ := l.InitialState()
	first, _ := l.FirstIndex()
	last, _ := l.LastIndex()
	snap, _ := l.Snapshot()
	got, err := l.Entries(first, last+1, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if hs.GetCommit() != 28 || hs.GetVote() != 1 || fmt.Sprint(cs.GetVoters()) != "[1]" || snap.GetMetadata().GetIndex() != 20 ||
		first != 16 || last != 30 || len(got) != 15 || string(got[0].Data) != "e16" {
		t.Fatalf("moved log: hard state %v, voters %v, snapshot %d, entries %d..%d (%d)", hs, cs.GetVoters(), snap.GetMetadata().GetIndex(), first, last, len(got))
	}
	l.Close()
	if _, err := os.Stat(filepath.Join(dir, "raft", "raft.wal")); err != nil {
		t.Fatalf("no file log after the move: %v", err)
	}
	n := 0
	if err := e.Iterate(storage.Raft, nil, nil, false, func(_, _ []byte) bool { n++; return true }); err != nil || n != 0 {
		t.Fatalf("raft bucket holds %d keys after the move (%v)", n, err)
	}
	// The next start opens the file log as it is.
	if l, err = openRocksDBRaftLog(e, dir, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if last, _ := l.LastIndex(); last != 30 {
		t.Fatalf("reopened log ends at %d, want 30", last)
	}
	l.Close()
	e.Close()

	fresh := t.TempDir()
	e, err = rocksdb.Open(fresh, rocksdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if l, err = openRocksDBRaftLog(e, fresh, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if last, _ := l.LastIndex(); last != 0 {
		t.Fatalf("a fresh member's log ends at %d", last)
	}
}
