package memory_test

import (
	"encoding/binary"
	"runtime"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
	"github.com/cairn-kv/cairn/internal/storage/storagetest"
)

func open(tb testing.TB, dir string) storage.Engine {
	tb.Helper()
	e, err := memory.Open(dir)
	if err != nil {
		tb.Fatalf("memory.Open(%q): %v", dir, err)
	}
	return e
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T, dir string) storage.Engine { return open(t, dir) })
}

// A volatile engine, opened without a directory, checkpoints to nowhere.
func TestVolatileCheckpoint(t *testing.T) {
	e := open(t, "")
	defer e.Close()
	b := e.NewBatch()
	b.Put(storage.KV, []byte("k"), []byte("v"))
	if err := b.Commit(true); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
}

func BenchmarkBatchCommit(b *testing.B) { storagetest.BenchBatchCommit(b, open) }

func BenchmarkGet(b *testing.B) { storagetest.BenchGet(b, open) }

func BenchmarkIterate(b *testing.B) { storagetest.BenchIterate(b, open) }

// BenchmarkHeapPerRecord reports the Go heap a record costs once stored
// (heap-B/record): 100 000 revision-keyed records of the store's typical
// small value, committed in batches as applied raft entries are. The
// engine's bookkeeping is what the figure shows above the 264 bytes of key
// and value.
func BenchmarkHeapPerRecord(b *testing.B) {
	const records = 100000
	value := make([]byte, 256)
	var perRecord float64
	for b.Loop() {
		b.StopTimer()
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		b.StartTimer()
		e := open(b, "")
		var key []byte
		for rev := 0; rev < records; rev += 8 {
			bt := e.NewBatch()
			for i := rev; i < rev+8; i++ {
				key = binary.BigEndian.AppendUint64(key[:0], uint64(i))
				bt.Put(storage.KV, key, value)
			}
			if err := bt.Commit(false); err != nil {
				b.Fatalf("Commit: %v", err)
			}
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		perRecord = float64(after.HeapAlloc-before.HeapAlloc) / records
		runtime.KeepAlive(e)
		e.Close()
		b.StartTimer()
	}
	b.ReportMetric(perRecord, "heap-B/record")
}
