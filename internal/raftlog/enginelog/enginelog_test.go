package enginelog

import (
	"encoding/binary"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/raftlogtest"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

// memoryOpener opens logs on volatile memory engines, one per directory, so
// that a reopen finds the engine the previous log wrote to.
func memoryOpener() raftlogtest.Opener {
	engines := map[string]*memory.Engine{}
	return func(t testing.TB, dir string) raftlog.Log {
		t.Helper()
		e, ok := engines[dir]
		if !ok {
			var err error
			if e, err = memory.Open(""); err != nil {
				t.Fatal(err)
			}
			engines[dir] = e
		}
		l, err := Open(e)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
}

func TestConformance(t *testing.T) { raftlogtest.Run(t, memoryOpener()) }

func BenchmarkSave(b *testing.B) { raftlogtest.BenchmarkSave(b, memoryOpener()) }

func entries(lo, hi, term uint64) []*raftpb.Entry {
	var ents []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		ents = append(ents, &raftpb.Entry{Index: new(i), Term: new(term), Data: []byte("data")})
	}
	return ents
}

// entryKeys returns the indexes of the entries stored in e.
func entryKeys(t *testing.T, e storage.Engine) []uint64 {
	t.Helper()
	var idx []uint64
	err := e.Iterate(storage.Raft, []byte{entryPrefix}, entriesEnd, false, func(k, _ []byte) bool {
		idx = append(idx, binary.BigEndian.Uint64(k[1:]))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

func wantKeys(t *testing.T, e storage.Engine, lo, hi uint64) {
	t.Helper()
	got := entryKeys(t, e)
	if len(got) != int(hi-lo+1) || got[0] != lo || got[len(got)-1] != hi {
		t.Fatalf("entry keys %v, want %d..%d", got, lo, hi)
	}
}

// Overwritten, compacted and snapshotted-over entries leave no keys behind.
func TestStaleEntriesDeleted(t *testing.T) {
	e, err := memory.Open("")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(e)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Save(nil, entries(1, 10, 1), nil); err != nil {
		t.Fatal(err)
	}
	if err := l.Save(nil, entries(6, 7, 2), nil); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, e, 1, 7)
	if _, err := l.CreateSnapshot(7, nil, nil, 4); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, e, 5, 7)
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(20)), Term: new(uint64(3))}}
	if err := l.Save(nil, entries(21, 22, 3), snap); err != nil {
		t.Fatal(err)
	}
	wantKeys(t, e, 21, 22)
}

// A log whose stored records do not decode or do not fit together fails
// Open with ErrCorrupt.
func TestCorruptionFailsOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b storage.Batch)
	}{
		{"entry missing", func(b storage.Batch) { b.Delete(storage.Raft, entryKey(3)) }},
		{"entry undecodable", func(b storage.Batch) { b.Put(storage.Raft, entryKey(3), []byte{0xff, 0xff}) }},
		{"hard state undecodable", func(b storage.Batch) { b.Put(storage.Raft, hardStateKey, []byte{0xff}) }},
		{"compaction point short", func(b storage.Batch) { b.Put(storage.Raft, startKey, []byte{1}) }},
		{"snapshot past the log", func(b storage.Batch) { b.DeleteRange(storage.Raft, entryKey(4), entriesEnd) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := memory.Open("")
			if err != nil {
				t.Fatal(err)
			}
			l, err := Open(e)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Save(nil, entries(1, 5, 1), nil); err != nil {
				t.Fatal(err)
			}
			if _, err := l.CreateSnapshot(4, nil, nil, 1); err != nil {
				t.Fatal(err)
			}
			l.Close()
			b := e.NewBatch()
			tc.damage(b)
			if err := b.Commit(true); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(e); !errors.Is(err, raftlog.ErrCorrupt) {
				t.Fatalf("Open of a damaged log: %v, want ErrCorrupt", err)
			}
		})
	}
}

// failingEngine fails every batch commit.
type failingEngine struct{ storage.Engine }

func (e failingEngine) NewBatch() storage.Batch { return failingBatch{e.Engine.NewBatch()} }

type failingBatch struct{ storage.Batch }

func (failingBatch) Commit(bool) error { return errors.New("disk on fire") }

// A failed Save fails every later one; a failed CreateSnapshot applied
// nothing and leaves the log usable.
func TestCommitFailure(t *testing.T) {
	e, err := memory.Open("")
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(e)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Save(nil, entries(1, 3, 1), nil); err != nil {
		t.Fatal(err)
	}
	l.e = failingEngine{e}
	if _, err := l.CreateSnapshot(2, nil, nil, 1); err == nil {
		t.Fatal("CreateSnapshot with a failing commit succeeded")
	}
	if first, _ := l.FirstIndex(); first != 1 {
		t.Fatalf("failed CreateSnapshot compacted: first index %d", first)
	}
	first := l.Save(nil, entries(4, 4, 1), nil)
	if first == nil {
		t.Fatal("Save with a failing commit succeeded")
	}
	l.e = e
	if err := l.Save(nil, entries(4, 4, 1), nil); err != first {
		t.Fatalf("Save after a failure: %v, want the first failure %v", err, first)
	}
	if last, _ := l.LastIndex(); last != 3 {
		t.Fatalf("failed Save is visible: last index %d", last)
	}
}
