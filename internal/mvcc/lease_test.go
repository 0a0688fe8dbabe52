package mvcc

import (
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// leaseKeys returns lease id's keys, or "absent".
func leaseKeys(kv *KV, id int64) string {
	ttl, keys, ok := kv.Lease(id, true)
	if !ok {
		return "absent"
	}
	return fmt.Sprintf("ttl=%d keys=%q", ttl, keys)
}

func evKeys(evs []*mvccpb.Event) string {
	var s []string
	for _, ev := range evs {
		s = append(s, fmt.Sprintf("%s %s@%d", ev.Type, ev.Kv.Key, ev.Kv.ModRevision))
	}
	return fmt.Sprint(s)
}

// TestLeaseAttachRevoke grants, attaches, moves, detaches and revokes, one
// entry per Applier and all in one Applier, and checks the table after a
// reopen too.
func TestLeaseAttachRevoke(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		for _, batched := range []bool{false, true} {
			t.Run(fmt.Sprintf("batched=%v", batched), func(t *testing.T) {
				f := newFixture(t, ec, Options{})
				var ap *Applier
				begin := func() {
					if ap == nil {
						ap = f.kv.BeginApply()
					}
				}
				end := func() {
					if !batched {
						if err := ap.Commit(); err != nil {
							t.Fatal(err)
						}
						ap = nil
					}
				}
				next := func() uint64 { f.index++; return f.index }
				grant := func(id, ttl int64) error {
					begin()
					defer end()
					return ap.LeaseGrant(next(), id, ttl)
				}
				putL := func(key string, lease int64) error {
					begin()
					defer end()
					_, _, err := ap.Put(next(), &pb.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: lease})
					return err
				}
				revoke := func(id int64) ([]*mvccpb.Event, error) {
					begin()
					defer end()
					return ap.LeaseRevoke(next(), id)
				}
				must := func(err error) {
					t.Helper()
					if err != nil {
						t.Fatal(err)
					}
				}
				must(grant(1, 10))
				must(grant(2, 20))
				if err := grant(1, 5); !errors.Is(err, ErrLeaseExist) {
					t.Fatalf("duplicate grant: %v", err)
				}
				must(putL("a", 1))
				must(putL("b", 1))
				must(putL("c", 1))
				must(putL("c", 0)) // detach
				must(putL("d", 2))
				must(putL("d", 1)) // move
				if err := putL("x", 9); !errors.Is(err, ErrLeaseNotFound) {
					t.Fatalf("put with unknown lease: %v", err)
				}
				begin()
				if _, _, err := ap.DeleteRange(next(), del("b")); err != nil {
					t.Fatal(err)
				}
				end()
				evs, err := revoke(1)
				must(err)
				// a, d deleted at one revision: the 7 puts and the delete so far
				// made revisions 2..8, the revoke makes 9.
				if got, want := evKeys(evs), "[DELETE a@9 DELETE d@9]"; got != want {
					t.Fatalf("revoke events %s, want %s", got, want)
				}
				if _, err := revoke(1); !errors.Is(err, ErrLeaseNotFound) {
					t.Fatalf("second revoke: %v", err)
				}
				must(grant(3, 30))
				must(putL("e", 3))
				if ap != nil {
					must(ap.Commit())
					ap = nil
				}
				check := func() {
					t.Helper()
					for id, want := range map[int64]string{1: "absent", 2: `ttl=20 keys=[]`, 3: `ttl=30 keys=["e"]`} {
						if got := leaseKeys(f.kv, id); got != want {
							t.Errorf("lease %d: %s, want %s", id, got, want)
						}
					}
					if got := len(f.kv.Leases()); got != 2 {
						t.Errorf("%d leases, want 2", got)
					}
				}
				check()
				f.reopen()
				check()
				// After the reopen, attachments were rebuilt from the KV.
				evs, err = revoke(3)
				must(err)
				if ap != nil {
					must(ap.Commit())
					ap = nil
				}
				if got := evKeys(evs); got != "[DELETE e@11]" {
					t.Fatalf("revoke after reopen: %s", got)
				}
			})
		}
	})
}

// TestLeaseRevokeSeesStagedPuts: a revoke in the same Applier as the puts
// that attached keys deletes them, and a put after the revoke fails.
func TestLeaseRevokeSeesStagedPuts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		ap := f.kv.BeginApply()
		if err := ap.LeaseGrant(1, 7, 5); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ap.Put(2, &pb.PutRequest{Key: []byte("k"), Value: []byte("v"), Lease: 7}); err != nil {
			t.Fatal(err)
		}
		evs, err := ap.LeaseRevoke(3, 7)
		if err != nil {
			t.Fatal(err)
		}
		if got := evKeys(evs); got != "[DELETE k@3]" {
			t.Fatalf("events %s", got)
		}
		if _, _, err := ap.Put(4, &pb.PutRequest{Key: []byte("k"), Lease: 7}); !errors.Is(err, ErrLeaseNotFound) {
			t.Fatalf("put after revoke: %v", err)
		}
		if err := ap.LeaseGrant(5, 7, 9); err != nil { // the ID is free again
			t.Fatal(err)
		}
		if err := ap.Commit(); err != nil {
			t.Fatal(err)
		}
		if got := leaseKeys(f.kv, 7); got != "ttl=9 keys=[]" {
			t.Fatalf("lease 7: %s", got)
		}
		if f.kv.AppliedIndex() != 5 {
			t.Fatalf("applied %d", f.kv.AppliedIndex())
		}
	})
}

// TestLeaseCheckpoint records remaining TTLs, clears one, skips an unknown
// lease, and finds the checkpoints again after a reopen; a revoke removes
// the checkpointed lease.
func TestLeaseCheckpoint(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		apply := func(fn func(ap *Applier, index uint64) error) {
			t.Helper()
			ap := f.kv.BeginApply()
			f.index++
			if err := fn(ap, f.index); err != nil {
				t.Fatal(err)
			}
			if err := ap.Commit(); err != nil {
				t.Fatal(err)
			}
		}
		apply(func(ap *Applier, i uint64) error { return ap.LeaseGrant(i, 1, 100) })
		apply(func(ap *Applier, i uint64) error { return ap.LeaseGrant(i, 2, 200) })
		apply(func(ap *Applier, i uint64) error {
			return ap.LeaseCheckpoint(i, []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 40}, {ID: 2, Remaining_TTL: 150}, {ID: 9, Remaining_TTL: 5}})
		})
		apply(func(ap *Applier, i uint64) error {
			return ap.LeaseCheckpoint(i, []*pb.LeaseCheckpoint{{ID: 2, Remaining_TTL: 0}})
		})
		check := func(when string) {
			t.Helper()
			got := fmt.Sprint(f.kv.Leases())
			if want := "[{1 100 40} {2 200 0}]"; got != want {
				t.Errorf("%s: Leases() = %s, want %s", when, got, want)
			}
			if r := f.kv.LeaseCheckpointed(1); r != 40 {
				t.Errorf("%s: LeaseCheckpointed(1) = %d, want 40", when, r)
			}
			if n := f.kv.leases.checkpointed.Load(); n != 1 {
				t.Errorf("%s: %d leases counted as checkpointed, want 1", when, n)
			}
		}
		check("after apply")
		f.reopen()
		check("after reopen")
		if f.kv.AppliedIndex() != f.index {
			t.Errorf("applied index %d, want %d", f.kv.AppliedIndex(), f.index)
		}
		apply(func(ap *Applier, i uint64) error {
			if err := ap.LeaseCheckpoint(i, []*pb.LeaseCheckpoint{{ID: 1, Remaining_TTL: 30}}); err != nil {
				return err
			}
			_, err := ap.LeaseRevoke(i, 1)
			return err
		})
		f.reopen()
		if got, want := fmt.Sprint(f.kv.Leases()), "[{2 200 0}]"; got != want {
			t.Errorf("after checkpoint and revoke: Leases() = %s, want %s", got, want)
		}
		if n := f.kv.leases.checkpointed.Load(); n != 0 || f.kv.LeaseCheckpointed(1) != 0 {
			t.Errorf("after the revoke %d leases counted as checkpointed, want 0", n)
		}
	})
}
