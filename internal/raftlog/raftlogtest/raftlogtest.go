// Package raftlogtest holds the behaviour every raftlog.Log implementation
// must show, as named scenarios that each implementation's tests run with
// Run, and a benchmark of Save.
package raftlogtest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"slices"
	"testing"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
)

// Opener opens the log kept in dir. Called again with the same dir after the
// previous log was closed, it must load the same log, as after a restart.
// Failures are reported through t.
type Opener func(t testing.TB, dir string) raftlog.Log

// scenarios are the behaviours Run checks, one subtest each.
var scenarios = []struct {
	name string
	run  func(h *harness)
}{
	{"Empty", empty},
	{"AppendAndReopen", appendAndReopen},
	{"OverwriteSuffix", overwriteSuffix},
	{"SaveSnapshotResetsLog", saveSnapshot},
	{"CreateSnapshotCompacts", createSnapshot},
	{"StorageErrors", storageErrors},
	{"Closed", closed},
	{"RawNode", rawNode},
}

// Run checks open's logs against every scenario.
func Run(t *testing.T, open Opener) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			h := &harness{t: t, open: open, dir: t.TempDir()}
			h.log = open(t, h.dir)
			t.Cleanup(func() { h.log.Close() })
			sc.run(h)
		})
	}
}

// harness is one scenario's log, with the model of what it should hold.
type harness struct {
	t    *testing.T
	open Opener
	dir  string
	log  raftlog.Log

	hs        *raftpb.HardState
	snap      *raftpb.Snapshot
	start     uint64          // index of the entry before the first
	startTerm uint64          // and its term
	ents      []*raftpb.Entry // the entries after start
	// closed says the log is closed: Entries may fail with ErrClosed.
	closed bool
}

// reopen closes the log and opens it again, as a restart would.
func (h *harness) reopen() {
	h.t.Helper()
	if err := h.log.Close(); err != nil {
		h.t.Fatalf("Close: %v", err)
	}
	h.log, h.closed = h.open(h.t, h.dir), false
}

// save calls Save, which must succeed, and updates the model like the
// contract says.
func (h *harness) save(hs *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) {
	h.t.Helper()
	if err := h.log.Save(hs, ents, snap); err != nil {
		h.t.Fatalf("Save: %v", err)
	}
	if !raft.IsEmptySnap(snap) {
		md := snap.GetMetadata()
		h.snap, h.start, h.startTerm, h.ents = snap, md.GetIndex(), md.GetTerm(), nil
	}
	for _, e := range ents {
		if e.GetIndex() <= h.start {
			continue
		}
		h.ents = append(h.ents[:e.GetIndex()-h.start-1], e)
	}
	if !raft.IsEmptyHardState(hs) {
		h.hs = hs
	}
}

// snapshot calls CreateSnapshot, which must succeed and return the snapshot
// the contract describes, and updates the model.
func (h *harness) snapshot(index uint64, cs *raftpb.ConfState, data []byte, compactTo uint64) {
	h.t.Helper()
	snap, err := h.log.CreateSnapshot(index, cs, data, compactTo)
	if err != nil {
		h.t.Fatalf("CreateSnapshot(%d, %d): %v", index, compactTo, err)
	}
	if index > h.snap.GetMetadata().GetIndex() {
		if cs == nil {
			cs = h.snap.GetMetadata().GetConfState()
		}
		h.snap = &raftpb.Snapshot{
			Data: data,
			Metadata: &raftpb.SnapshotMetadata{
				Index:     new(index),
				Term:      new(h.term(index)),
				ConfState: proto.CloneOf(cs),
			},
		}
	}
	if want := raftpb.EnsureSnapshot(proto.CloneOf(h.snap)); !proto.Equal(snap, want) {
		h.t.Fatalf("CreateSnapshot(%d) = %v, want %v", index, snap, want)
	}
	if compactTo > h.start {
		h.startTerm = h.term(compactTo)
		h.ents = h.ents[compactTo-h.start:]
		h.start = compactTo
	}
}

// term is the model's term of index, which must be in [start, last].
func (h *harness) term(index uint64) uint64 {
	if index == h.start {
		return h.startTerm
	}
	return h.ents[index-h.start-1].GetTerm()
}

// check compares everything the log serves with the model, then reopens the
// log and compares again.
func (h *harness) check() {
	h.t.Helper()
	h.compare("before reopen")
	h.reopen()
	h.compare("after reopen")
}

func (h *harness) compare(when string) {
	t, l := h.t, h.log
	t.Helper()
	hs, cs, err := l.InitialState()
	if err != nil {
		t.Fatalf("%s: InitialState: %v", when, err)
	}
	if !sameHardState(hs, h.hs) {
		t.Fatalf("%s: hard state %v, want %v", when, hs, h.hs)
	}
	if want := raftpb.EnsureConfState(proto.CloneOf(h.snap.GetMetadata().GetConfState())); cs == nil || !proto.Equal(cs, want) {
		t.Fatalf("%s: conf state %v, want %v", when, cs, want)
	}
	snap, err := l.Snapshot()
	if err != nil {
		t.Fatalf("%s: Snapshot: %v", when, err)
	}
	if want := raftpb.EnsureSnapshot(proto.CloneOf(h.snap)); !proto.Equal(snap, want) {
		t.Fatalf("%s: snapshot %v, want %v", when, snap, want)
	}
	last := h.start + uint64(len(h.ents))
	if got, _ := l.FirstIndex(); got != h.start+1 {
		t.Fatalf("%s: FirstIndex %d, want %d", when, got, h.start+1)
	}
	if got, _ := l.LastIndex(); got != last {
		t.Fatalf("%s: LastIndex %d, want %d", when, got, last)
	}
	for i := h.start; i <= last; i++ {
		if got, err := l.Term(i); err != nil || got != h.term(i) {
			t.Fatalf("%s: Term(%d) = %d, %v, want %d", when, i, got, err, h.term(i))
		}
	}
	if h.start > 0 {
		if _, err := l.Term(h.start - 1); !errors.Is(err, raft.ErrCompacted) {
			t.Fatalf("%s: Term(%d) below the log: %v, want ErrCompacted", when, h.start-1, err)
		}
	}
	if _, err := l.Term(last + 1); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("%s: Term(%d) past the log: %v, want ErrUnavailable", when, last+1, err)
	}
	if _, err := l.Entries(h.start, last+1, math.MaxUint64); !errors.Is(err, raft.ErrCompacted) {
		t.Fatalf("%s: Entries from %d: %v, want ErrCompacted", when, h.start, err)
	}
	if len(h.ents) == 0 {
		return
	}
	for i := h.start + 1; i <= last; i++ {
		if got, err := l.EntrySize(i); err != nil || got != proto.Size(h.ents[i-h.start-1]) {
			t.Fatalf("%s: EntrySize(%d) = %d, %v, want %d", when, i, got, err, proto.Size(h.ents[i-h.start-1]))
		}
	}
	if _, err := l.EntrySize(last + 1); !errors.Is(err, raft.ErrUnavailable) {
		t.Fatalf("%s: EntrySize(%d) past the log: %v, want ErrUnavailable", when, last+1, err)
	}
	ents, err := l.Entries(h.start+1, last+1, math.MaxUint64)
	if h.closed && errors.Is(err, raftlog.ErrClosed) {
		return
	}
	if err != nil {
		t.Fatalf("%s: Entries(%d, %d): %v", when, h.start+1, last+1, err)
	}
	if !slices.EqualFunc(ents, h.ents, func(a, b *raftpb.Entry) bool { return proto.Equal(a, b) }) {
		t.Fatalf("%s: Entries(%d, %d) = %v, want %v", when, h.start+1, last+1, ents, h.ents)
	}
	// maxSize keeps the first entry and then as many as fit, as
	// MemoryStorage does.
	for lo := h.start + 1; lo <= last; lo++ {
		one := uint64(proto.Size(h.ents[lo-h.start-1]))
		for _, tc := range []struct {
			max  uint64
			want int
		}{{0, 1}, {one, 1}, {one + uint64(proto.Size(h.ents[min(lo, last-1)-h.start])), min(2, int(last-lo+1))}} {
			ents, err := l.Entries(lo, last+1, tc.max)
			if err != nil || len(ents) != tc.want || !proto.Equal(ents[0], h.ents[lo-h.start-1]) {
				t.Fatalf("%s: Entries(%d, %d, max %d) = %d entries, %v, want %d", when, lo, last+1, tc.max, len(ents), err, tc.want)
			}
		}
	}
}

// sameHardState compares hard states by value, nil being the empty one.
func sameHardState(a, b *raftpb.HardState) bool {
	return a.GetTerm() == b.GetTerm() && a.GetVote() == b.GetVote() && a.GetCommit() == b.GetCommit()
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

// entries returns entries lo..hi (inclusive) of the given term.
func entries(lo, hi, term uint64) []*raftpb.Entry {
	var ents []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		ents = append(ents, &raftpb.Entry{
			Index: new(i),
			Term:  new(term),
			Type:  raftpb.EntryNormal.Enum(),
			Data:  fmt.Appendf(nil, "entry %d of term %d", i, term),
		})
	}
	return ents
}

func snapshotAt(index, term uint64, voters []uint64, data string) *raftpb.Snapshot {
	return &raftpb.Snapshot{
		Data: []byte(data),
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(index),
			Term:      new(term),
			ConfState: &raftpb.ConfState{Voters: voters},
		},
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

// empty: a new log has no state and starts at index 1.
func empty(h *harness) {
	h.check()
	if _, err := h.log.Entries(1, 1, math.MaxUint64); !errors.Is(err, raft.ErrUnavailable) {
		h.t.Fatalf("Entries on an empty log: %v, want ErrUnavailable", err)
	}
	h.save(nil, nil, nil) // nothing to persist
	h.save(&raftpb.HardState{}, []*raftpb.Entry{}, &raftpb.Snapshot{})
	h.check()
}

// appendAndReopen: entries and hard state survive a restart.
func appendAndReopen(h *harness) {
	h.save(hardState(1, 1, 3), entries(1, 5, 1), nil)
	h.save(nil, entries(6, 8, 1), nil)
	h.save(hardState(2, 1, 8), entries(9, 10, 2), nil)
	h.check()
	h.save(hardState(2, 1, 10), nil, nil)
	h.check()
}

// overwriteSuffix: entries saved at an index already in the log replace it
// and everything after it.
func overwriteSuffix(h *harness) {
	h.save(hardState(1, 1, 5), entries(1, 10, 1), nil)
	h.save(hardState(2, 2, 5), entries(6, 8, 2), nil)
	h.check()
	h.save(nil, entries(9, 9, 2), nil)
	h.check()
	h.save(hardState(3, 3, 5), entries(6, 6, 3), nil)
	h.check()
	// A replacement starting at the first index replaces the whole log.
	h.save(hardState(4, 1, 0), entries(1, 3, 4), nil)
	h.check()
	// Entries saved twice, the second time appending more, are idempotent.
	h.save(nil, entries(2, 5, 4), nil)
	h.check()
}

// saveSnapshot: a snapshot saved from a leader restarts the log after it.
func saveSnapshot(h *harness) {
	h.save(hardState(1, 1, 10), entries(1, 10, 1), nil)
	h.save(hardState(3, 0, 20), entries(21, 22, 3), snapshotAt(20, 3, []uint64{1, 2, 3}, "at 20"))
	h.check()
	for _, i := range []uint64{15, 20} {
		wantErr(h.t, fmt.Sprintf("Save of a snapshot at %d", i), h.log.Save(nil, nil, snapshotAt(i, 3, nil, "")), raft.ErrSnapOutOfDate)
	}
	h.save(hardState(3, 0, 22), entries(23, 24, 3), nil)
	h.check()
	// A snapshot inside the log still drops all of it.
	h.save(hardState(4, 0, 23), nil, snapshotAt(23, 3, []uint64{1, 2}, "at 23"))
	h.check()
	h.save(nil, entries(24, 25, 4), nil)
	h.check()
}

// createSnapshot: CreateSnapshot records a snapshot and compacts; Term stays
// answerable at the compaction point.
func createSnapshot(h *harness) {
	h.save(hardState(1, 1, 10), entries(1, 10, 1), nil)
	h.save(hardState(2, 1, 20), entries(11, 20, 2), nil)
	h.snapshot(15, &raftpb.ConfState{Voters: []uint64{1}}, []byte("at 15"), 10)
	h.check()

	wantErr(h.t, "snapshot below the current one", snapshotErr(h, 12, 12), raft.ErrSnapOutOfDate)
	wantErr(h.t, "snapshot past the last index", snapshotErr(h, 21, 10), raft.ErrUnavailable)
	if err := snapshotErr(h, 18, 19); err == nil {
		h.t.Fatal("CreateSnapshot compacting past its index succeeded")
	}
	h.compare("after refused snapshots")

	// The current index again only compacts; cs and data are ignored.
	h.snapshot(15, &raftpb.ConfState{Voters: []uint64{7}}, []byte("ignored"), 15)
	h.check()
	// A compaction point below the current one compacts nothing; a nil cs
	// keeps the conf state.
	h.snapshot(18, nil, []byte("at 18"), 3)
	h.check()

	h.save(hardState(3, 1, 20), entries(21, 25, 3), nil)
	h.check()
	h.save(hardState(4, 1, 20), entries(21, 21, 4), nil)
	h.snapshot(21, nil, nil, 21)
	h.check()
	h.save(hardState(4, 1, 22), entries(22, 22, 4), nil)
	h.check()
}

func snapshotErr(h *harness, index, compactTo uint64) error {
	_, err := h.log.CreateSnapshot(index, nil, nil, compactTo)
	return err
}

// storageErrors: reads follow raft.Storage's contract, and malformed Saves
// fail without changing the log.
func storageErrors(h *harness) {
	h.save(hardState(1, 1, 10), entries(1, 10, 1), nil)
	if ents, err := h.log.Entries(2, 10, 1); err != nil || len(ents) != 1 || ents[0].GetIndex() != 2 {
		h.t.Fatalf("Entries with a tiny maxSize = %v, %v, want entry 2 alone", ents, err)
	}
	wantErr(h.t, "Entries from 0", errOf(h.log.Entries(0, 5, math.MaxUint64)), raft.ErrCompacted)
	if err := h.log.Save(nil, entries(12, 12, 1), nil); err == nil {
		h.t.Fatal("Save leaving a gap succeeded")
	}
	if err := h.log.Save(nil, append(entries(11, 11, 1), entries(13, 13, 1)...), nil); err == nil {
		h.t.Fatal("Save of non-contiguous entries succeeded")
	}
	h.check()
	h.snapshot(8, nil, nil, 8)
	// Entries at or below the compaction point are ignored.
	h.save(nil, entries(5, 11, 1), nil)
	h.save(nil, entries(3, 7, 1), nil)
	h.check()
	// An entry the snapshot covers but compaction kept is committed: Save
	// refuses to replace it.
	h.snapshot(10, nil, nil, 8)
	if err := h.log.Save(nil, entries(10, 11, 2), nil); err == nil {
		h.t.Fatal("Save replacing an entry the snapshot covers succeeded")
	}
	h.check()
}

func errOf[T any](_ T, err error) error { return err }

// closed: after Close, writes fail with ErrClosed and reads still work,
// except that Entries may fail with ErrClosed.
func closed(h *harness) {
	h.save(hardState(1, 1, 3), entries(1, 3, 1), nil)
	if err := h.log.Close(); err != nil {
		h.t.Fatal(err)
	}
	wantErr(h.t, "Save after Close", h.log.Save(nil, entries(4, 4, 1), nil), raftlog.ErrClosed)
	wantErr(h.t, "CreateSnapshot after Close", snapshotErr(h, 2, 2), raftlog.ErrClosed)
	h.closed = true
	h.compare("after Close")
	h.check() // closes again, which must be harmless
}

// rawNode drives a real single-member raft through bootstrap, proposals,
// restarts and a compaction.
func rawNode(h *harness) {
	n := startNode(h, 0)
	if err := n.rn.Bootstrap([]raft.Peer{{ID: 1}}); err != nil {
		h.t.Fatal(err)
	}
	n.elect()
	n.propose("a", "b", "c")

	h.check()

	// Without a snapshot, a restart re-applies the whole log, the member's
	// own addition included.
	h.reopen()
	n = startNode(h, 0)
	n.elect()
	n.propose("d")
	if want := []string{"a", "b", "c", "d"}; !slices.Equal(n.committed, want) {
		h.t.Fatalf("committed %q after a restart, want %q", n.committed, want)
	}

	// With one, the restart starts from it.
	h.snapshot(n.applied, n.cs, []byte("state"), n.applied-1)
	h.reopen()
	n = startNode(h, n.applied)
	n.elect()
	n.propose("e")
	if want := []string{"e"}; !slices.Equal(n.committed, want) {
		h.t.Fatalf("committed %q after a restart from a snapshot, want %q", n.committed, want)
	}
	h.check()
	hs, _, _ := h.log.InitialState()
	if last, _ := h.log.LastIndex(); hs.GetCommit() != last || n.applied != last {
		h.t.Fatalf("commit %d, applied %d, last index %d: want all equal", hs.GetCommit(), n.applied, last)
	}
}

// node is a single raft member persisting through a harness's log.
type node struct {
	h         *harness
	rn        *raft.RawNode
	applied   uint64
	cs        *raftpb.ConfState
	committed []string // data of the normal entries applied, in order
}

func startNode(h *harness, applied uint64) *node {
	h.t.Helper()
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              1,
		ElectionTick:    10,
		HeartbeatTick:   1,
		Storage:         h.log,
		Applied:         applied,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 256,
		Logger:          &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return &node{h: h, rn: rn, applied: applied}
}

// elect applies what is committed (which may make the member a voter) and
// campaigns; a single voter wins at once.
func (n *node) elect() {
	n.h.t.Helper()
	n.drain()
	if err := n.rn.Campaign(); err != nil {
		n.h.t.Fatal(err)
	}
	n.drain()
	if st := n.rn.BasicStatus(); st.RaftState != raft.StateLeader {
		n.h.t.Fatalf("single member is %v after campaigning", st.RaftState)
	}
}

func (n *node) propose(data ...string) {
	n.h.t.Helper()
	for _, d := range data {
		if err := n.rn.Propose([]byte(d)); err != nil {
			n.h.t.Fatal(err)
		}
	}
	n.drain()
}

// drain handles Ready until raft has nothing left to do: persist, apply,
// advance, as the raft node's loop does.
func (n *node) drain() {
	t := n.h.t
	t.Helper()
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		n.h.save(rd.HardState, rd.Entries, rd.Snapshot)
		for _, e := range rd.CommittedEntries {
			switch e.GetType() {
			case raftpb.EntryConfChange:
				var cc raftpb.ConfChange
				if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
					t.Fatal(err)
				}
				n.cs = n.rn.ApplyConfChange(&cc)
			case raftpb.EntryNormal:
				if len(e.GetData()) > 0 {
					n.committed = append(n.committed, string(e.GetData()))
				}
			}
			n.applied = e.GetIndex()
		}
		n.rn.Advance(rd)
	}
}

// BenchmarkSave measures Save of 1 and of 64 small entries per call, each
// with a hard state, as a busy leader's Ready carries. The log is compacted
// outside the timer every 1000 calls to bound its memory.
func BenchmarkSave(b *testing.B, open Opener) {
	data := make([]byte, 128)
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			l := open(b, b.TempDir())
			defer l.Close()
			b.ReportAllocs()
			b.SetBytes(int64(n * len(data)))
			next := uint64(1)
			for i := range b.N {
				b.StopTimer()
				if i%1000 == 999 {
					if _, err := l.CreateSnapshot(next-1, nil, nil, next-1); err != nil {
						b.Fatal(err)
					}
				}
				ents := make([]*raftpb.Entry, n)
				for j := range ents {
					ents[j] = &raftpb.Entry{Index: new(next), Term: new(uint64(1)), Type: raftpb.EntryNormal.Enum(), Data: data}
					next++
				}
				hs := hardState(1, 1, next-1)
				b.StartTimer()
				if err := l.Save(hs, ents, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
