package fsutil

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

func TestSyncDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(dir); err != nil {
		t.Errorf("SyncDir(%q) = %v", dir, err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("SyncDir of a missing directory succeeded")
	}
}

// Writeback writes what it is given, whatever the sizes of the writes
// against its chunk, and hands every complete chunk to the kernel.
func TestWriteback(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const chunk = 4096
	w := NewWriteback(f, chunk)
	var want []byte
	for i := range 40 {
		p := bytes.Repeat([]byte{byte(i)}, i*331)
		if _, err := w.Write(p); err != nil {
			t.Fatal(err)
		}
		want = append(want, p...)
	}
	if got, err := os.ReadFile(f.Name()); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file holds %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	if w.started != int64(len(want))/chunk*chunk {
		t.Fatalf("chunks up to %d handed to the kernel, want %d", w.started, int64(len(want))/chunk*chunk)
	}
	f.Close()
	if _, err := w.Write(make([]byte, chunk)); err == nil {
		t.Fatal("Write to a closed file succeeded")
	}
}
