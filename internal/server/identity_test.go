package server

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

func openMemory(t *testing.T, dir string) storage.Engine {
	t.Helper()
	e, err := memory.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestIdentityIsKeptAndNotInSnapshots: the IDs recorded at the first start
// come back at every later one, whatever is asked, and an engine snapshot
// (what a follower restores from its leader) does not carry them.
func TestIdentityIsKeptAndNotInSnapshots(t *testing.T) {
	dir := t.TempDir()
	e := openMemory(t, dir)
	m, c, err := loadIdentity(dir, e, 0x1111, 0x2222)
	if err != nil || m != 0x1111 || c != 0x2222 {
		t.Fatalf("first start: %x %x %v", m, c, err)
	}
	m, c, err = loadIdentity(dir, e, 0x3333, 0x4444)
	if err != nil || m != 0x1111 || c != 0x2222 {
		t.Fatalf("restart: %x %x %v, want the first IDs", m, c, err)
	}
	var snap bytes.Buffer
	if err := e.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	err = storage.ReadSnapshot(bytes.NewReader(snap.Bytes()), func(b storage.Bucket, k, v []byte) error {
		if bytes.Contains(k, []byte("member")) {
			t.Errorf("snapshot holds %s/%q", b, k)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A follower restoring another member's snapshot keeps its own IDs.
	other := t.TempDir()
	oe := openMemory(t, other)
	if _, _, err := loadIdentity(other, oe, 0x5555, 0x2222); err != nil {
		t.Fatal(err)
	}
	if err := oe.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	if m, _, err := loadIdentity(other, oe, 0x9999, 0x2222); err != nil || m != 0x5555 {
		t.Fatalf("after restoring another member's snapshot: member %x (%v), want 5555", m, err)
	}
}

// TestIdentityMovesOutOfMeta: a member whose identity an earlier version
// kept in the Meta bucket keeps it, now in its file, and Meta loses it.
func TestIdentityMovesOutOfMeta(t *testing.T) {
	dir := t.TempDir()
	e := openMemory(t, dir)
	b := e.NewBatch()
	b.Put(storage.Meta, legacyMemberIDKey, binary.BigEndian.AppendUint64(nil, 0xabc))
	b.Put(storage.Meta, legacyClusterIDKey, binary.BigEndian.AppendUint64(nil, 0xdef))
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	m, c, err := loadIdentity(dir, e, 1, 2)
	if err != nil || m != 0xabc || c != 0xdef {
		t.Fatalf("got %x %x %v, want abc def", m, c, err)
	}
	if v, _ := e.Get(storage.Meta, legacyMemberIDKey); v != nil {
		t.Error("identity still in Meta")
	}
	if b, _ := os.ReadFile(filepath.Join(dir, identityFile)); !bytes.Contains(b, []byte(`"member_id":"abc"`)) {
		t.Errorf("identity file: %s", b)
	}
}

// TestCorruptIdentityIsAnError: a damaged file stops the member instead
// of giving it a new identity.
func TestCorruptIdentityIsAnError(t *testing.T) {
	dir := t.TempDir()
	e := openMemory(t, dir)
	for _, body := range []string{"", "{", `{"member_id":"zz","cluster_id":"1"}`, `{"member_id":"0","cluster_id":"1"}`} {
		if err := os.WriteFile(filepath.Join(dir, identityFile), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := loadIdentity(dir, e, 1, 2); err == nil {
			t.Errorf("identity file %q accepted", body)
		}
	}
}
