package mvcc

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/storage"
)

// snapshotOf returns the engine snapshot of f's state.
func snapshotOf(t *testing.T, f *fixture) []byte {
	t.Helper()
	f.flush()
	var b bytes.Buffer
	if err := f.e.WriteSnapshot(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestRestoreReplacesTheWholeState: a store restored from another's engine
// snapshot answers exactly as that store does, at every readable revision,
// with its applied index, compaction revision and leases, whatever the
// restored store held before. A snapshot from either engine restores into
// either.
func TestRestoreReplacesTheWholeState(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		src := newFixture(t, ec, Options{})
		ap := src.kv.BeginApply()
		src.index++
		if err := ap.LeaseGrant(src.index, 7, 60); err != nil {
			t.Fatal(err)
		}
		if err := ap.Commit(); err != nil {
			t.Fatal(err)
		}
		for i, k := range []string{"a", "b", "c", "a", "d"} {
			src.mustPut(k, string(rune('0'+i)))
		}
		src.index++
		if _, _, err := src.kv.Put(src.index, &pb.PutRequest{Key: []byte("leased"), Value: []byte("v"), Lease: 7}); err != nil {
			t.Fatal(err)
		}
		src.applyEntry(del("b"))
		src.mustCompact(3)
		src.mustPut("e", "after compaction")
		want := src.dump()
		snap := snapshotOf(t, src)

		for _, into := range engines {
			t.Run("into "+into.name, func(t *testing.T) {
				dst := newFixture(t, into, Options{})
				for i := 0; i < 20; i++ {
					dst.mustPut("old", "state")
				}
				if err := dst.kv.Restore(bytes.NewReader(snap)); err != nil {
					t.Fatal(err)
				}
				if got := dst.dump(); !reflect.DeepEqual(got, want) {
					t.Errorf("restored state:\n got %+v\nwant %+v", got, want)
				}
				if got, wantL := dst.kv.Leases(), src.kv.Leases(); !reflect.DeepEqual(got, wantL) {
					t.Errorf("leases: got %+v, want %+v", got, wantL)
				}
				// It goes on from there, and survives a reopen.
				dst.index = dst.kv.AppliedIndex()
				dst.mustPut("f", "next")
				after := dst.dump()
				dst.reopen()
				if got := dst.dump(); !reflect.DeepEqual(got, after) {
					t.Errorf("after reopen:\n got %+v\nwant %+v", got, after)
				}
			})
		}
	})
}

// TestRestoreRefusesACorruptSnapshot: a damaged snapshot changes nothing.
func TestRestoreRefusesACorruptSnapshot(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		src := newFixture(t, ec, Options{})
		src.mustPut("x", "1")
		snap := snapshotOf(t, src)
		snap[len(snap)/2] ^= 0xff

		dst := newFixture(t, ec, Options{})
		dst.mustPut("mine", "1")
		dst.mustPut("mine", "2")
		before := dst.dump()
		if err := dst.kv.Restore(bytes.NewReader(snap)); !errors.Is(err, storage.ErrCorruptSnapshot) {
			t.Fatalf("Restore = %v, want ErrCorruptSnapshot", err)
		}
		if got := dst.dump(); !reflect.DeepEqual(got, before) {
			t.Errorf("state changed:\n got %+v\nwant %+v", got, before)
		}
		dst.mustPut("mine", "3") // still writable
	})
}
