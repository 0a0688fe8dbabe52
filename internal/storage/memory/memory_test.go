package memory_test

import (
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
