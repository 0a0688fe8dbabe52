package store_test

import (
	"bytes"
	"testing"
	"time"
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
