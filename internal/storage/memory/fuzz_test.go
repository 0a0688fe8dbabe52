package memory_test

import (
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/storagetest"
)

// FuzzRestore restores arbitrary bytes into an engine holding a few keys,
// the raft bucket included. Restore must not panic; it fails with
// ErrCorruptSnapshot and leaves the engine as it was, or it succeeds
// exactly when ReadSnapshot accepts the bytes and the engine then holds
// the snapshot's records (the last of a repeated key winning) and its
// raft bucket as before.
func FuzzRestore(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		e := open(t, "")
		defer e.Close()
		b := e.NewBatch()
		b.Put(storage.KV, []byte("k"), []byte("old"))
		b.Put(storage.Meta, []byte("m"), []byte("old"))
		b.Put(storage.Raft, []byte("r"), []byte("raft"))
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		storagetest.CheckRestore(t, e, data)
	})
}
