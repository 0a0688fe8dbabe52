package raftlog_test

import (
	"errors"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/enginelog"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

var errInjected = errors.New("injected failure")

// faultyLog is a raftlog.Log whose method named fail (with, for Save, the
// kind of record it is given: "Save(snapshot)", "Save(entries)" or
// "Save(hardstate)") returns errInjected instead of running.
type faultyLog struct {
	raftlog.Log
	fail string
}

func (l *faultyLog) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	if l.fail == "InitialState" {
		return nil, nil, errInjected
	}
	return l.Log.InitialState()
}

func (l *faultyLog) Snapshot() (*raftpb.Snapshot, error) {
	if l.fail == "Snapshot" {
		return nil, errInjected
	}
	return l.Log.Snapshot()
}

func (l *faultyLog) FirstIndex() (uint64, error) {
	if l.fail == "FirstIndex" {
		return 0, errInjected
	}
	return l.Log.FirstIndex()
}

func (l *faultyLog) LastIndex() (uint64, error) {
	if l.fail == "LastIndex" {
		return 0, errInjected
	}
	return l.Log.LastIndex()
}

func (l *faultyLog) Term(i uint64) (uint64, error) {
	if l.fail == "Term" {
		return 0, errInjected
	}
	return l.Log.Term(i)
}

func (l *faultyLog) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	if l.fail == "Entries" {
		return nil, errInjected
	}
	return l.Log.Entries(lo, hi, maxSize)
}

func (l *faultyLog) Save(st *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	kind := "Save(hardstate)"
	switch {
	case snap != nil:
		kind = "Save(snapshot)"
	case len(ents) > 0:
		kind = "Save(entries)"
	}
	if l.fail == kind {
		return errInjected
	}
	return l.Log.Save(st, ents, snap)
}

func (l *faultyLog) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte, compactTo uint64) (*raftpb.Snapshot, error) {
	if l.fail == "CreateSnapshot" {
		return nil, errInjected
	}
	return l.Log.CreateSnapshot(index, cs, data, compactTo)
}

// openEngineLog opens an empty engine-backed log on a fresh memory engine.
func openEngineLog(t *testing.T) raftlog.Log {
	t.Helper()
	e, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	l, err := enginelog.Open(e)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestCopyReportsFailures makes each read of the source and each write of
// the destination fail in turn: Copy stops there and returns the failure,
// wrapped with the step it was at, instead of leaving a partial copy that
// looks complete.
func TestCopyReportsFailures(t *testing.T) {
	src := openEngineLog(t)
	var ents []*raftpb.Entry
	for i := uint64(1); i <= 20; i++ {
		ents = append(ents, ent(1, i))
	}
	if err := src.Save(nil, ents, nil); err != nil {
		t.Fatal(err)
	}
	// A snapshot at 15 that keeps the entries from 9 on.
	if _, err := src.CreateSnapshot(15, &raftpb.ConfState{Voters: []uint64{1}}, []byte("state"), 8); err != nil {
		t.Fatal(err)
	}
	if err := src.Save(&raftpb.HardState{Term: proto.Uint64(1), Vote: proto.Uint64(1), Commit: proto.Uint64(20)}, nil, nil); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		srcFail, dstFail string
		step             string // in the error's message
	}{
		{srcFail: "InitialState", step: "raftlog: copy: "},
		{srcFail: "Snapshot", step: "raftlog: copy: "},
		{srcFail: "FirstIndex", step: "raftlog: copy: "},
		{srcFail: "LastIndex", step: "raftlog: copy: "},
		{srcFail: "Term", step: "raftlog: copy: "},
		{srcFail: "Entries", step: "raftlog: copy entries from 9: "},
		{dstFail: "Save(snapshot)", step: "raftlog: copy snapshot: "},
		{dstFail: "Save(entries)", step: "raftlog: copy entries from 9: "},
		{dstFail: "CreateSnapshot", step: "raftlog: copy snapshot: "},
		{dstFail: "Save(hardstate)", step: "raftlog: copy hard state: "},
	} {
		t.Run(tc.srcFail+tc.dstFail, func(t *testing.T) {
			dst := &faultyLog{Log: openEngineLog(t), fail: tc.dstFail}
			err := raftlog.Copy(dst, &faultyLog{Log: src, fail: tc.srcFail})
			if !errors.Is(err, errInjected) {
				t.Fatalf("Copy = %v, want the injected failure", err)
			}
			if !strings.HasPrefix(err.Error(), tc.step) {
				t.Errorf("Copy = %q, want it to start with %q", err, tc.step)
			}
		})
	}

	// Without a failure the same source copies whole.
	dst := openEngineLog(t)
	if err := raftlog.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if got, want := describe(t, dst), describe(t, src); got != want {
		t.Errorf("copy reads\n%s\nwant\n%s", got, want)
	}
}
