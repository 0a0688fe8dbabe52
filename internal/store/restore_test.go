package store_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/store"
)

// TestRestoreServesTheSnapshotDurably: a member restoring another's engine
// snapshot serves that state at once, tells Config.Restored, keeps it
// across a restart (the memory engine is durable only through its
// checkpoint), and goes on applying entries after it.
func TestRestoreServesTheSnapshotDurably(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		src := start(t, open, t.TempDir(), 0)
		put(t, src.c, "a", "from the leader")
		put(t, src.c, "b", "from the leader")
		var snap bytes.Buffer
		if err := src.engine.WriteSnapshot(&snap); err != nil {
			t.Fatal(err)
		}
		srcApplied := src.kv.AppliedIndex()
		src.stop()

		dir := t.TempDir()
		restored := make(chan struct{}, 1)
		dst := startAs(t, 2, open, dir, 0, func() { restored <- struct{}{} })
		c, kv := dst.c, dst.kv
		// Its own log runs past the snapshot's applied index, as a
		// follower's does when it restores its leader's state.
		for int(kv.AppliedIndex()) <= int(srcApplied)+2 {
			put(t, c, "mine", "overwritten by the restore")
		}
		if err := c.Restore(bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatal(err)
		}
		select {
		case <-restored:
		case <-time.After(5 * time.Second):
			t.Fatal("Restored was not called")
		}
		if r := get(t, c, "a", true); len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "from the leader" {
			t.Fatalf("after restore: %v", r.Kvs)
		}
		if r := get(t, c, "mine", true); len(r.Kvs) != 0 {
			t.Fatalf("own key survived the restore: %v", r.Kvs)
		}
		put(t, c, "c", "after")
		dst.stop()

		again := startAs(t, 2, open, dir, 0, nil)
		defer again.stop()
		for k, want := range map[string]string{"a": "from the leader", "b": "from the leader", "c": "after"} {
			if r := get(t, again.c, k, false); len(r.Kvs) != 1 || string(r.Kvs[0].Value) != want {
				t.Errorf("after restart, %s = %v, want %q", k, r.Kvs, want)
			}
		}
	})
}

// TestRecordMembershipOfAnOlderMember: a member whose log holds no
// membership (bootstrapped before the members table existed, as every
// member of an earlier version was) records itself once, so that a later
// MemberAdd does not leave it out of the membership.
func TestRecordMembershipOfAnOlderMember(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		// The test's raft bootstraps with a conf change that carries no
		// member record; once applied it leaves a record without URLs. A
		// member of an earlier version applied it before the table
		// existed: take the record out again to be one.
		put(t, m.c, "applied", "after the bootstrap")
		b := m.engine.NewBatch()
		b.DeleteRange(storage.Meta, []byte("members/ids/"), []byte("members/ids/\xff"))
		if err := b.Commit(true); err != nil {
			t.Fatal(err)
		}
		if got := m.c.Members(); len(got) != 0 {
			t.Fatalf("members before recording: %v", got)
		}
		urls := []string{"http://127.0.0.1:2380"}
		if err := m.c.RecordMembership(context.Background(), 1, urls); err != nil {
			t.Fatal(err)
		}
		if err := m.c.RecordMembership(context.Background(), 1, []string{"http://other:1"}); err != nil {
			t.Fatal(err) // a second call changes nothing
		}
		got := m.c.Members()
		if len(got) != 1 || got[0].ID != 1 || !slices.Equal(got[0].PeerURLs, urls) || got[0].IsLearner {
			t.Fatalf("members after recording: %v", got)
		}
		// An update of a member that does not exist, once the table has
		// members, records nothing.
		if err := m.c.UpdateMember(context.Background(), 7, urls); !errors.Is(err, store.ErrMemberNotFound) {
			t.Fatalf("update of an unknown member: %v", err)
		}
		if got := m.c.Members(); len(got) != 1 {
			t.Fatalf("members after updating an unknown one: %v", got)
		}
	})
}
