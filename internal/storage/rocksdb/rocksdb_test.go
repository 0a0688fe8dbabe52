package rocksdb_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
	"github.com/cairn-kv/cairn/internal/storage/rocksdb"
	"github.com/cairn-kv/cairn/internal/storage/storagetest"
)

func open(tb testing.TB, dir string) storage.Engine {
	tb.Helper()
	e, err := rocksdb.Open(dir, rocksdb.Options{BlockCacheBytes: 8 << 20})
	if err != nil {
		tb.Fatalf("rocksdb.Open(%q): %v", dir, err)
	}
	return e
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, dir string) storage.Engine { return open(t, dir) })
}

func commit(t *testing.T, e storage.Engine, b storage.Bucket, pairs ...string) {
	t.Helper()
	bt := e.NewBatch()
	for i := 0; i < len(pairs); i += 2 {
		bt.Put(b, []byte(pairs[i]), []byte(pairs[i+1]))
	}
	if err := bt.Commit(false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

// content lists every bucket's entries, the Raft bucket included.
func content(t *testing.T, r storage.Reader) []string {
	t.Helper()
	var out []string
	for b := range storage.NumBuckets {
		err := r.Iterate(b, nil, nil, false, func(k, v []byte) bool {
			out = append(out, b.String()+":"+string(k)+"="+string(v))
			return true
		})
		if err != nil {
			t.Fatalf("Iterate: %v", err)
		}
	}
	return out
}

func TestCrossEngineSnapshots(t *testing.T) {
	mem, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatalf("memory.Open: %v", err)
	}
	defer mem.Close()
	rdb := open(t, t.TempDir())
	defer rdb.Close()

	commit(t, mem, storage.KV, "\x00rev1", "from memory", "\xffrev2", "")
	commit(t, mem, storage.Meta, "applied", "7")
	commit(t, mem, storage.Raft, "entry", "memory's own log")
	commit(t, rdb, storage.Auth, "user", "from rocksdb")
	commit(t, rdb, storage.Raft, "entry", "rocksdb's own log")

	var fromMem bytes.Buffer
	if err := mem.WriteSnapshot(&fromMem); err != nil {
		t.Fatalf("memory WriteSnapshot: %v", err)
	}
	if err := rdb.Restore(bytes.NewReader(fromMem.Bytes())); err != nil {
		t.Fatalf("rocksdb Restore: %v", err)
	}
	want := []string{"meta:applied=7", "kv:\x00rev1=from memory", "kv:\xffrev2=", "raft:entry=rocksdb's own log"}
	if got := content(t, rdb); !slices.Equal(got, want) {
		t.Errorf("rocksdb after restoring memory's snapshot:\n got %q\nwant %q", got, want)
	}

	// And back: rocksdb's snapshot is byte for byte memory's.
	commit(t, rdb, storage.Lease, "lease", "from rocksdb")
	var fromRocks bytes.Buffer
	if err := rdb.WriteSnapshot(&fromRocks); err != nil {
		t.Fatalf("rocksdb WriteSnapshot: %v", err)
	}
	if err := mem.Restore(bytes.NewReader(fromRocks.Bytes())); err != nil {
		t.Fatalf("memory Restore: %v", err)
	}
	want = []string{"meta:applied=7", "kv:\x00rev1=from memory", "kv:\xffrev2=", "lease:lease=from rocksdb", "raft:entry=memory's own log"}
	if got := content(t, mem); !slices.Equal(got, want) {
		t.Errorf("memory after restoring rocksdb's snapshot:\n got %q\nwant %q", got, want)
	}
	var again bytes.Buffer
	if err := mem.WriteSnapshot(&again); err != nil {
		t.Fatalf("memory WriteSnapshot: %v", err)
	}
	if !bytes.Equal(again.Bytes(), fromRocks.Bytes()) {
		t.Errorf("memory and rocksdb write different snapshots of the same state")
	}
}

// Unlike memory, RocksDB keeps the Raft bucket across a reopen.
func TestReopenKeepsRaft(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	commit(t, e, storage.Raft, "entry", "1")
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e = open(t, dir)
	defer e.Close()
	if v, err := e.Get(storage.Raft, []byte("entry")); err != nil || string(v) != "1" {
		t.Errorf("Get after reopen = %q, %v; want 1", v, err)
	}
}

// A corrupt snapshot is detected before anything is deleted.
func TestCorruptRestoreLeavesContent(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	defer e.Close()
	commit(t, e, storage.KV, "a", "1", "b", "2")
	var snap bytes.Buffer
	if err := e.WriteSnapshot(&snap); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	before := content(t, e)
	err := e.Restore(bytes.NewReader(snap.Bytes()[:snap.Len()-2]))
	if !errors.Is(err, storage.ErrCorruptSnapshot) {
		t.Fatalf("Restore of a truncated snapshot = %v; want ErrCorruptSnapshot", err)
	}
	if got := content(t, e); !slices.Equal(got, before) {
		t.Errorf("content after a failed Restore = %q; want %q", got, before)
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "restore-*"))
	if len(leftovers) != 0 {
		t.Errorf("Restore left temporary files: %v", leftovers)
	}
}

// Restore works in bounded batches; a snapshot larger than one batch must
// still arrive whole.
func TestRestoreLargeSnapshot(t *testing.T) {
	src, dst := open(t, t.TempDir()), open(t, t.TempDir())
	defer src.Close()
	defer dst.Close()
	value := bytes.Repeat([]byte{'v'}, 64<<10)
	const n = 200 // 12.5 MiB: several restore batches
	bt := src.NewBatch()
	for i := range n {
		bt.Put(storage.KV, []byte{byte(i >> 8), byte(i)}, value)
	}
	if err := bt.Commit(false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	commit(t, dst, storage.KV, "\xff\xff\xff", "stale")
	var snap bytes.Buffer
	if err := src.WriteSnapshot(&snap); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	if err := dst.Restore(&snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	count := 0
	err := dst.Iterate(storage.KV, nil, nil, false, func(k, v []byte) bool {
		if !bytes.Equal(v, value) {
			t.Errorf("key %x: wrong value", k)
		}
		count++
		return true
	})
	if err != nil || count != n {
		t.Errorf("restored %d keys, %v; want %d", count, err, n)
	}
}

// A view left open does not keep RocksDB from closing; it reports
// ErrClosed afterwards instead of reading freed memory.
func TestCloseWithOpenView(t *testing.T) {
	e := open(t, t.TempDir())
	commit(t, e, storage.KV, "k", "v")
	v, err := e.NewView()
	if err != nil {
		t.Fatalf("NewView: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := v.Get(storage.KV, []byte("k")); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("view Get after engine Close: err = %v; want ErrClosed", err)
	}
	v.Close()
}

// RocksDB's own log stays in the engine's directory.
func TestLogInsideDir(t *testing.T) {
	dir := t.TempDir()
	e := open(t, dir)
	defer e.Close()
	if _, err := os.Stat(filepath.Join(dir, "LOG")); err != nil {
		t.Errorf("no LOG file in the engine directory: %v", err)
	}
}

func BenchmarkBatchCommit(b *testing.B) { storagetest.BenchBatchCommit(b, open) }

func BenchmarkGet(b *testing.B) { storagetest.BenchGet(b, open) }

func BenchmarkIterate(b *testing.B) { storagetest.BenchIterate(b, open) }
