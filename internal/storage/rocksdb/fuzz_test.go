package rocksdb_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
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
		checkRestore(t, e, data)
	})
}

// checkRestore restores data into e and checks the result against what
// storage.ReadSnapshot decodes from data.
func checkRestore(t *testing.T, e storage.Engine, data []byte) {
	t.Helper()
	before := engineContent(t, e)
	want := map[string]string{}
	for _, line := range before {
		if line[0] == byte('0'+storage.Raft) {
			want[line] = line
		}
	}
	readErr := storage.ReadSnapshot(bytes.NewReader(data), func(b storage.Bucket, k, v []byte) error {
		if b != storage.Raft {
			want[fmt.Sprintf("%d %q", b, k)] = fmt.Sprintf("%d %q=%q", b, k, v)
		}
		return nil
	})
	err := e.Restore(bytes.NewReader(data))
	after := engineContent(t, e)
	if err != nil {
		if !errors.Is(err, storage.ErrCorruptSnapshot) || readErr == nil {
			t.Fatalf("Restore: %v; ReadSnapshot: %v", err, readErr)
		}
		if !slices.Equal(after, before) {
			t.Fatalf("failed Restore (%v) changed the engine:\n%q\nbecame\n%q", err, before, after)
		}
		return
	}
	if readErr != nil {
		t.Fatalf("Restore accepted what ReadSnapshot refuses (%v)", readErr)
	}
	var wantLines []string
	for _, line := range want {
		wantLines = append(wantLines, line)
	}
	slices.Sort(wantLines)
	if !slices.Equal(after, wantLines) {
		t.Fatalf("restored engine holds\n%q\nwant\n%q", after, wantLines)
	}
}

// engineContent lists every key of every bucket as `bucket "key"="value"`,
// sorted.
func engineContent(t *testing.T, e storage.Reader) []string {
	t.Helper()
	var out []string
	for b := range storage.NumBuckets {
		err := e.Iterate(b, nil, nil, false, func(k, v []byte) bool {
			out = append(out, fmt.Sprintf("%d %q=%q", b, k, v))
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}
