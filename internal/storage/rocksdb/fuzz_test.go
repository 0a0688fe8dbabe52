package rocksdb_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/storagetest"
)

// FuzzRestore restores arbitrary bytes into an engine holding a few keys,
// the raft bucket included. Restore must not panic; it fails with
// ErrCorruptSnapshot and leaves the engine as it was, or it succeeds
// exactly when ReadSnapshot accepts the bytes and the engine then holds
// the snapshot's records (the last of a repeated key winning) and its
// raft bucket as before. One engine serves every input of a fuzzing
// process: each input starts by restoring the same small snapshot.
func FuzzRestore(f *testing.F) {
	e := open(f, f.TempDir())
	f.Cleanup(func() { e.Close() })
	b := e.NewBatch()
	b.Put(storage.Raft, []byte("r"), []byte("raft"))
	if err := b.Commit(false); err != nil {
		f.Fatal(err)
	}
	var base bytes.Buffer
	sw := storage.NewSnapshotWriter(&base)
	if err := errors.Join(sw.Add(storage.Meta, []byte("m"), []byte("old")), sw.Add(storage.KV, []byte("k"), []byte("old")), sw.Close()); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := e.Restore(bytes.NewReader(base.Bytes())); err != nil {
			t.Fatal(err)
		}
		storagetest.CheckRestore(t, e, data)
	})
}
