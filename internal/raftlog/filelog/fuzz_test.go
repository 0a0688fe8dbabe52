package filelog

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
)

// logState is what a log serves: snapshot, hard state and entries.
type logState struct {
	snap *raftpb.Snapshot
	hs   *raftpb.HardState
	ents []*raftpb.Entry
}

func readState(t *testing.T, l *Log) logState {
	t.Helper()
	hs, _, err := l.InitialState()
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
		if ents, err = l.Entries(first, last+1, math.MaxUint64); err != nil {
			t.Fatal(err)
		}
	}
	ents = slices.Clone(ents) // not to append to the storage's own array
	for i, e := range ents {
		if e.GetIndex() != first+uint64(i) {
			t.Fatalf("entry %d found where %d belongs", e.GetIndex(), first+uint64(i))
		}
	}
	return logState{snap: proto.CloneOf(snap), hs: proto.CloneOf(hs), ents: ents}
}

func (s logState) equal(o logState) bool {
	if !proto.Equal(s.snap, o.snap) || !proto.Equal(s.hs, o.hs) || len(s.ents) != len(o.ents) {
		return false
	}
	for i := range s.ents {
		if !proto.Equal(s.ents[i], o.ents[i]) {
			return false
		}
	}
	return true
}

// FuzzOpenLog opens arbitrary bytes as a log file. Open must not panic; it
// fails with raftlog.ErrCorrupt, or the log it opens serves consecutive
// entries and, after one more Save and a reopen, serves what it served
// before plus the saved entry: recovery cut the file where the valid
// frames end, so that appending after it yields a readable log.
func FuzzOpenLog(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, walFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir, nil)
		if err != nil {
			if !errors.Is(err, raftlog.ErrCorrupt) {
				t.Fatalf("Open: %v, want an error wrapping raftlog.ErrCorrupt", err)
			}
			return
		}
		before := readState(t, l)
		last, _ := l.LastIndex()
		term, err := l.Term(last)
		if err != nil {
			t.Fatalf("Term(%d) of the last index: %v", last, err)
		}
		next := &raftpb.Entry{Index: new(last + 1), Term: new(term), Data: []byte("appended")}
		if err := l.Save(nil, []*raftpb.Entry{next}, nil); err != nil {
			t.Fatalf("Save after Open: %v", err)
		}
		l.Close()
		l, err = Open(dir, nil)
		if err != nil {
			t.Fatalf("reopen after one Save: %v", err)
		}
		defer l.Close()
		l.setCacheBytes(len(data) % 64) // some entries read back from the file
		want := before
		want.ents = append(want.ents, next)
		if got := readState(t, l); !got.equal(want) {
			t.Fatalf("reopened log serves %v, want %v", got, want)
		}
	})
}

// FuzzDamagedLog writes a log with the real writer, as plan says (see
// writePlan), then damages the file at pos (mode 0: xor a byte with a
// non-zero mask; 1: cut the file there) and opens it again. The result
// must be what the file format promises, and never an entry that was not
// written:
//   - damage in the base frame (or the magic) fails with ErrCorrupt;
//   - a cut inside or after frame j yields the log as the last Save
//     wholly before the cut left it;
//   - a flipped byte in the last frame is a torn tail, giving the log as it
//     was before that Save; in an earlier frame it fails with ErrCorrupt;
//   - damage in the zeros after the last frame loses nothing.
func FuzzDamagedLog(f *testing.F) {
	f.Fuzz(func(t *testing.T, plan []byte, mode byte, pos uint32, mask byte) {
		dir := t.TempDir()
		l, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A cache of mask*8 bytes: entries of about 20 bytes are some
		// cached, some read back from the file.
		l.setCacheBytes(int(mask) * 8)
		l.setHandedBytes(int(mask) * 4)
		states, ends := writePlan(t, l, plan)
		l.Close()

		path := filepath.Join(dir, walFile)
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		size := min(info.Size(), ends[len(ends)-1]+64)
		at := int64(pos) % size
		flip := mode%2 == 0
		if flip {
			fh, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			b := make([]byte, 1)
			if _, err := fh.ReadAt(b, at); err != nil {
				t.Fatal(err)
			}
			b[0] ^= mask | 1
			if _, err := fh.WriteAt(b, at); err != nil {
				t.Fatal(err)
			}
			fh.Close()
		} else if err := os.Truncate(path, at); err != nil {
			t.Fatal(err)
		}

		// j is the frame holding the damage: ends[j-1] <= at < ends[j].
		j := 0
		for j < len(ends) && ends[j] <= at {
			j++
		}
		var want *logState
		switch {
		case j == 0: // the magic or the base frame
		case j == len(ends): // the zeros after the last frame
			want = &states[len(states)-1]
		case !flip || j == len(ends)-1:
			want = &states[j-1]
		}
		l, err = Open(dir, nil)
		if want == nil {
			if err == nil {
				l.Close()
			}
			if !errors.Is(err, raftlog.ErrCorrupt) {
				t.Fatalf("damage at %d (flip %v) of frame %d of %d: Open = %v, want ErrCorrupt", at, flip, j, len(ends), err)
			}
			return
		}
		if err != nil {
			t.Fatalf("damage at %d (flip %v) of frame %d of %d: Open: %v", at, flip, j, len(ends), err)
		}
		defer l.Close()
		l.setCacheBytes(int(mask) * 8)
		if got := readState(t, l); !got.equal(*want) {
			t.Fatalf("damage at %d (flip %v) of frame %d of %d: log serves\n%v\nwant\n%v", at, flip, j, len(ends), got, *want)
		}
	})
}

// maxPlanSteps bounds the Saves of writePlan; each costs an fsync.
const maxPlanSteps = 6

// writePlan runs one step per plan byte p on l. A step saves p%4 entries
// after the last one, or, with p&0x20, from the last index on (overwriting
// it, at a new term); with p&0x10 it also saves a hard state committing
// what the log holds. With p&0x80 the step is a CreateSnapshot at the last
// index instead, keeping one entry before it, which appends a frame; with
// p&0x40 too, the rewrite that follows replaces the file, else it is
// stopped.
//
// It returns the state the log serves after the base frame of the current
// file and after each frame appended since, and the file offset where each
// of those frames ends.
func writePlan(t *testing.T, l *Log, plan []byte) (states []logState, ends []int64) {
	t.Helper()
	states, ends = []logState{readState(t, l)}, []int64{l.end}
	term := uint64(1)
	for i, p := range plan {
		if i == maxPlanSteps {
			break
		}
		last, _ := l.LastIndex()
		if p&0x80 != 0 {
			if last == 0 {
				continue
			}
			if _, err := l.CreateSnapshot(last, &raftpb.ConfState{Voters: []uint64{1}}, []byte{p}, last-1); err != nil {
				t.Fatalf("CreateSnapshot(%d, compactTo %d): %v", last, last-1, err)
			}
			if p&0x40 != 0 {
				// The rewrite swapped in: a new file, with only a base frame.
				if err := l.settleRewrite(true); err != nil {
					t.Fatal(err)
				}
				states, ends = []logState{readState(t, l)}, []int64{l.end}
			} else {
				// No rewrite: the compaction is one more frame.
				l.stopRewrite()
				states, ends = append(states, readState(t, l)), append(ends, l.end)
			}
			continue
		}
		start := last + 1
		// raft never replaces an entry the snapshot covers (Save refuses).
		snap, _ := l.Snapshot()
		if first, _ := l.FirstIndex(); p&0x20 != 0 && last >= first && last > snap.GetMetadata().GetIndex() {
			start, term = last, term+1
		}
		var ents []*raftpb.Entry
		for k := range uint64(p % 4) {
			ents = append(ents, &raftpb.Entry{Index: new(start + k), Term: new(term), Data: []byte{p, byte(i)}})
		}
		var hs *raftpb.HardState
		if p&0x10 != 0 {
			commit := start - 1 + uint64(len(ents))
			hs = &raftpb.HardState{Term: new(term), Vote: new(uint64(1)), Commit: new(commit)}
		}
		if err := l.Save(hs, ents, nil); err != nil {
			t.Fatalf("Save(%v, %v): %v", hs, ents, err)
		}
		if hs != nil {
			// As raft hands committed entries out: they may leave the
			// cache, and must still read back from the file.
			l.Handed(hs.GetCommit())
		}
		if l.end != ends[len(ends)-1] {
			states, ends = append(states, readState(t, l)), append(ends, l.end)
		}
	}
	return states, ends
}
