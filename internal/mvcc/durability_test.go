package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/storage"
)

// recordingEngine remembers the writes of every committed batch.
type recordingEngine struct {
	storage.Engine
	mu      sync.Mutex
	commits [][]recordedWrite
}

type recordedWrite struct {
	bucket storage.Bucket
	key    string
	del    bool
}

func (e *recordingEngine) NewBatch() storage.Batch {
	return &recordingBatch{Batch: e.Engine.NewBatch(), e: e}
}

// take returns the batches committed since the last call.
func (e *recordingEngine) take() [][]recordedWrite {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.commits
	e.commits = nil
	return c
}

type recordingBatch struct {
	storage.Batch
	e      *recordingEngine
	writes []recordedWrite
}

func (b *recordingBatch) Put(bk storage.Bucket, k, v []byte) {
	b.writes = append(b.writes, recordedWrite{bucket: bk, key: string(k)})
	b.Batch.Put(bk, k, v)
}

func (b *recordingBatch) Delete(bk storage.Bucket, k []byte) {
	b.writes = append(b.writes, recordedWrite{bucket: bk, key: string(k), del: true})
	b.Batch.Delete(bk, k)
}

func (b *recordingBatch) Commit(sync bool) error {
	if err := b.Batch.Commit(sync); err != nil {
		return err
	}
	b.e.mu.Lock()
	b.e.commits = append(b.e.commits, b.writes)
	b.e.mu.Unlock()
	return nil
}

// TestAppliedIndexCommitsWithChanges checks that every applied entry is one
// engine batch holding both its changes and the applied index, so that no
// crash can separate them.
func TestAppliedIndexCommitsWithChanges(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		inner, err := ec.open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer inner.Close()
		e := &recordingEngine{Engine: inner}
		kv, err := Open(e, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Close()

		applies := []struct {
			name  string
			apply func(index uint64) error
			kvs   int // KV bucket writes expected in the batch
		}{
			{"put", func(i uint64) error { _, _, err := kv.Put(i, put("a", "1")); return err }, 1},
			{"failed put", func(i uint64) error {
				_, _, err := kv.Put(i, &pb.PutRequest{Key: []byte("a"), Lease: 3})
				return expect(err, ErrLeaseNotFound)
			}, 0},
			{"txn", func(i uint64) error {
				_, _, err := kv.Txn(i, txn(nil, ops(opPut(put("b", "1")), opPut(put("c", "1"))), nil))
				return err
			}, 2},
			{"delete nothing", func(i uint64) error { _, _, err := kv.DeleteRange(i, del("zz")); return err }, 0},
			{"delete", func(i uint64) error { _, _, err := kv.DeleteRange(i, delRange("a", "c")); return err }, 2},
			{"set applied", kv.SetApplied, 0},
			{"compact in the future", func(i uint64) error { _, err := kv.Compact(i, 99); return expect(err, ErrFutureRev) }, 0},
		}
		for n, a := range applies {
			index := uint64(n + 1)
			if err := a.apply(index); err != nil {
				t.Fatalf("%s: %v", a.name, err)
			}
			commits := e.take()
			if len(commits) != 1 {
				t.Fatalf("%s: %d commits, want 1", a.name, len(commits))
			}
			var kvWrites, applied int
			for _, w := range commits[0] {
				switch {
				case w.bucket == storage.KV:
					kvWrites++
				case w.bucket == storage.Meta && w.key == string(appliedIndexKey):
					applied++
				}
			}
			if kvWrites != a.kvs || applied != 1 {
				t.Errorf("%s: batch has %d KV writes and %d applied index writes, want %d and 1", a.name, kvWrites, applied, a.kvs)
			}
			if kv.AppliedIndex() != index {
				t.Errorf("%s: applied index %d, want %d", a.name, kv.AppliedIndex(), index)
			}
		}
	})
}

func expect(err, want error) error {
	if errors.Is(err, want) {
		return nil
	}
	return errors.Join(errors.New("unexpected result"), err)
}

func TestAppliedIndexPersists(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		f.mustPut("a", "1")
		if err := f.kv.SetApplied(7); err != nil {
			t.Fatal(err)
		}
		f.reopen()
		if got := f.kv.AppliedIndex(); got != 7 {
			t.Fatalf("applied index after reopen = %d, want 7", got)
		}
	})
}

// revKeys lists the KV bucket as main.sub[t] strings.
func revKeys(t *testing.T, e storage.Engine) []string {
	t.Helper()
	var out []string
	err := e.Iterate(storage.KV, nil, nil, false, func(k, _ []byte) bool {
		r, tomb, err := parseRevKey(k)
		if err != nil {
			t.Fatal(err)
		}
		s := fmt.Sprintf("%d.%d", r.main, r.sub)
		if tomb {
			s += "t"
		}
		out = append(out, s)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compactionHistory writes put a(2) put a(3) put b(4) del b(5) put c(6)
// put a(7).
func compactionHistory(f *fixture) {
	f.mustPut("a", "1")
	f.mustPut("a", "2")
	f.mustPut("b", "1")
	f.index++
	if _, _, err := f.kv.DeleteRange(f.index, del("b")); err != nil {
		f.t.Fatal(err)
	}
	f.mustPut("c", "1")
	f.mustPut("a", "3")
}

func TestCompactionRemovesHistory(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		// Tiny batches, so that index and bucket are done in many steps.
		f := newFixture(t, ec, Options{CompactionBatchLimit: 2, CompactionSleepInterval: time.Nanosecond})
		compactionHistory(f)

		f.mustCompact(5)
		// a@3 is a's value at 5; b's tombstone at 5 still ends b there.
		if d := cmp.Diff([]string{"3.0", "5.0t", "6.0", "7.0"}, revKeys(t, f.e)); d != "" {
			t.Fatalf("after compacting at 5 (-want +got):\n%s", d)
		}
		f.mustCompact(7)
		if d := cmp.Diff([]string{"6.0", "7.0"}, revKeys(t, f.e)); d != "" {
			t.Fatalf("after compacting at 7 (-want +got):\n%s", d)
		}
		if f.kv.idx.lookup([]byte("b")) != nil {
			t.Error("deleted key still indexed after compaction past its deletion")
		}
		if v, found, err := readMeta(f.e, finishedCompactKey); err != nil || !found || v != 7 {
			t.Errorf("finished compaction = %d %v %v, want 7", v, found, err)
		}
	})
}

// An unfinished compaction (the entry applied, the process gone before the
// background work ended) is resumed by Open.
func TestCompactionResumesAtOpen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		compactionHistory(f)
		b := f.e.NewBatch()
		b.Put(storage.Meta, scheduledCompactKey, metaValue(5))
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		f.reopen()
		if got := f.kv.CompactRev(); got != 5 {
			t.Fatalf("compact revision after reopen = %d, want 5", got)
		}
		if _, err := f.kv.Range(getAt("a", 4)); !errors.Is(err, ErrCompacted) {
			t.Fatalf("range below the resumed compaction: %v, want %v", err, ErrCompacted)
		}
		waitDone(t, f.kv.compactor.barrier())
		if d := cmp.Diff([]string{"3.0", "5.0t", "6.0", "7.0"}, revKeys(t, f.e)); d != "" {
			t.Fatalf("after resumed compaction (-want +got):\n%s", d)
		}
	})
}

func TestCloseInterruptsCompaction(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		// One revision per batch and a pause of an hour between batches:
		// the compaction is certain to be unfinished at Close.
		f := newFixture(t, ec, Options{CompactionBatchLimit: 1, CompactionSleepInterval: time.Hour})
		compactionHistory(f)
		f.index++
		done, err := f.kv.Compact(f.index, 7)
		if err != nil {
			t.Fatal(err)
		}
		f.opts = Options{}
		f.reopen() // Close must return though the compaction is paused
		waitDone(t, done)
		waitDone(t, f.kv.compactor.barrier())
		if d := cmp.Diff([]string{"6.0", "7.0"}, revKeys(t, f.e)); d != "" {
			t.Fatalf("after resumed compaction (-want +got):\n%s", d)
		}
	})
}

// The revision never goes back, even when the newest records are gone.
func TestRevisionBoundedByCompaction(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		f.mustPut("a", "1")
		b := f.e.NewBatch()
		b.Put(storage.Meta, finishedCompactKey, metaValue(10))
		b.Put(storage.Meta, scheduledCompactKey, metaValue(10))
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		f.reopen()
		if rev, crev := f.kv.Rev(), f.kv.CompactRev(); rev != 10 || crev != 10 {
			t.Fatalf("revision %d, compact revision %d; want 10 and 10", rev, crev)
		}
		if resp := f.mustPut("b", "1"); resp.Header.Revision != 11 {
			t.Fatalf("next put at %d, want 11", resp.Header.Revision)
		}
	})
}

func TestOpenRejectsCorruptBucket(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		e, err := ec.open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		b := e.NewBatch()
		b.Put(storage.KV, bytes.Repeat([]byte{1}, 5), []byte("x"))
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(e, Options{}); err == nil {
			t.Fatal("Open accepted a malformed revision key")
		}
	})
}

// The writes of one entry share its main revision and are numbered by sub
// revision in the order made; deletions carry the tombstone mark.
func TestStorageLayout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		f.mustPut("z", "1")
		f.index++
		req := txn(nil, ops(opPut(put("x", "1")), opDel(del("z")), opPut(put("y", "1"))), nil)
		if _, _, err := f.kv.Txn(f.index, req); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"2.0", "3.0", "3.1t", "3.2"}, revKeys(t, f.e)); d != "" {
			t.Fatalf("KV bucket (-want +got):\n%s", d)
		}
	})
}
