package enginelog

import (
	"testing"

	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/raftlogtest"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/rocksdb"
)

// withEngine is a log that owns its engine, so that a reopen in the
// conformance tests closes RocksDB and loads the log back from disk.
type withEngine struct {
	*Log
	e storage.Engine
}

func (w withEngine) Close() error {
	w.Log.Close()
	return w.e.Close()
}

func openRocksDB(t testing.TB, dir string) raftlog.Log {
	t.Helper()
	e, err := rocksdb.Open(dir, rocksdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Open(e)
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	return withEngine{Log: l, e: e}
}

func TestConformanceRocksDB(t *testing.T) { raftlogtest.Run(t, openRocksDB) }

func BenchmarkSaveRocksDB(b *testing.B) { raftlogtest.BenchmarkSave(b, openRocksDB) }
