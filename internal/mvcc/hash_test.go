package mvcc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/pkg/v3/traceutil"
	"go.etcd.io/etcd/server/v3/lease"
	"go.etcd.io/etcd/server/v3/storage/backend"
	etcdmvcc "go.etcd.io/etcd/server/v3/storage/mvcc"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// The HashKV tests replay the same history on Cairn and on etcd's own mvcc
// store, and require the same answer from both at every revision.

// hashOp is one step of a hash scenario. A txn's ops share one revision.
type hashOp struct {
	put     string // key to put, with value val and lease
	val     string
	lease   int64
	del     string // key (or, with end, range) to delete
	end     string
	txn     []hashOp
	compact int64
	reopen  bool // Cairn only: reopen the KV, forgetting compaction hashes
}

func hPut(k, v string) hashOp            { return hashOp{put: k, val: v} }
func hPutLease(k string, l int64) hashOp { return hashOp{put: k, val: "leased", lease: l} }
func hDel(k string) hashOp               { return hashOp{del: k} }
func hDelRange(k, end string) hashOp     { return hashOp{del: k, end: end} }
func hTxn(ops ...hashOp) hashOp          { return hashOp{txn: ops} }
func hCompact(rev int64) hashOp          { return hashOp{compact: rev} }

var hashScenarios = []struct {
	name string
	ops  []hashOp
}{
	{"empty store", nil},
	{"puts", []hashOp{hPut("a", "1"), hPut("b", "2"), hPut("a", "3")}},
	{"deletes and recreation", []hashOp{
		hPut("a", "1"), hPut("b", "2"), hDel("a"), hPut("a", "4"), hDelRange("a", "c"), hPut("b", "7"),
	}},
	{"txn with several revisions", []hashOp{
		hPut("a", "1"), hTxn(hPut("b", "2"), hPut("c", "3"), hDel("a")), hPut("c", "5"),
	}},
	{"lease-attached key", []hashOp{hPutLease("l", 7), hPut("a", "1"), hPutLease("l", 8), hDel("l")}},
	{"compaction keeps the latest revisions", []hashOp{
		hPut("a", "1"), hPut("a", "2"), hPut("b", "3"), hPut("a", "4"), hCompact(3), hPut("b", "6"),
	}},
	{"compaction at a tombstone", []hashOp{
		hPut("a", "1"), hPut("b", "2"), hDel("a"), hCompact(4), hPut("c", "5"),
	}},
	{"compaction of everything deleted", []hashOp{
		hPut("a", "1"), hPut("b", "2"), hCompact(3), hDel("a"), hDel("b"), hPut("c", "6"),
	}},
	{"compaction after a tombstone", []hashOp{
		hPut("a", "1"), hDel("a"), hPut("b", "3"), hCompact(4), hPut("a", "5"),
	}},
	{"two compactions", []hashOp{
		hPut("a", "1"), hPut("b", "2"), hPut("a", "3"), hCompact(3), hDel("b"), hPut("a", "6"),
		hCompact(5), hPut("b", "8"), hCompact(7),
	}},
	{"compaction at the current revision", []hashOp{
		hPut("a", "1"), hPut("a", "2"), hTxn(hPut("b", "3"), hDel("a")), hCompact(4),
	}},
	{"reopen after compaction", []hashOp{
		hPut("a", "1"), hPut("a", "2"), hDel("a"), hPut("b", "5"), hCompact(4), hPut("b", "7"), {reopen: true},
	}},
}

func TestHashKVMatchesEtcd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		for _, sc := range hashScenarios {
			t.Run(sc.name, func(t *testing.T) {
				d := newHashDiff(t, ec)
				for _, op := range sc.ops {
					d.apply(op)
					d.compareAll()
				}
			})
		}
	})
}

// TestHashKVMatchesEtcdRandom replays random histories with compactions.
func TestHashKVMatchesEtcdRandom(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		for seed := range uint64(4) {
			t.Run(fmt.Sprint(seed), func(t *testing.T) {
				rnd := rand.New(rand.NewPCG(seed, 1))
				d := newHashDiff(t, ec)
				key := func() string { return string(rune('a' + rnd.IntN(5))) }
				for range 60 {
					switch n := rnd.IntN(10); {
					case n < 5:
						d.apply(hPut(key(), fmt.Sprint(rnd.IntN(100))))
					case n < 7:
						d.apply(hDel(key()))
					case n < 8:
						d.apply(hTxn(hPut("x"+key(), "t"), hDel(key())))
					default:
						if rev := d.f.kv.Rev() - int64(rnd.IntN(4)); rev > d.f.kv.CompactRev() {
							d.apply(hCompact(rev))
						}
					}
					d.compareAll()
				}
			})
		}
	})
}

// hashDiff holds the same history in a Cairn KV and in etcd's mvcc store.
type hashDiff struct {
	t  *testing.T
	f  *fixture
	es etcdStore
	// reopened: Cairn has forgotten its compaction hashes, etcd has not.
	reopened bool
}

// etcdStore is what the tests use of etcd's mvcc store, whose type is not
// exported.
type etcdStore interface {
	etcdmvcc.KV
	HashStorage() etcdmvcc.HashStorage
}

func newHashDiff(t *testing.T, ec engineCase) *hashDiff {
	f := newFixture(t, ec, Options{LeaseExists: func(int64) bool { return true }})
	b := backend.NewDefaultBackend(zap.NewNop(), filepath.Join(t.TempDir(), "etcd.db"))
	es := etcdmvcc.NewStore(zap.NewNop(), b, &lease.FakeLessor{}, etcdmvcc.StoreConfig{})
	t.Cleanup(func() {
		es.Close()
		b.Close()
	})
	return &hashDiff{t: t, f: f, es: es}
}

func (d *hashDiff) apply(op hashOp) {
	d.t.Helper()
	switch {
	case op.reopen:
		d.f.reopen()
		d.reopened = true
	case op.compact != 0:
		d.f.mustCompact(op.compact)
		done, err := d.es.Compact(traceutil.TODO(), op.compact)
		if err != nil {
			d.t.Fatalf("etcd compact %d: %v", op.compact, err)
		}
		waitDone(d.t, done)
	case op.txn != nil:
		var reqs []*pb.RequestOp
		w := d.es.Write(traceutil.TODO())
		for _, o := range op.txn {
			if o.put != "" {
				reqs = append(reqs, opPut(&pb.PutRequest{Key: []byte(o.put), Value: []byte(o.val), Lease: o.lease}))
			} else {
				reqs = append(reqs, opDel(delRange(o.del, o.end)))
			}
			etcdWrite(w, o)
		}
		w.End()
		if _, _, err := d.f.applyEntry(txn(nil, reqs, nil)); err != nil {
			d.t.Fatalf("txn: %v", err)
		}
	default:
		var req any = delRange(op.del, op.end)
		if op.put != "" {
			req = &pb.PutRequest{Key: []byte(op.put), Value: []byte(op.val), Lease: op.lease}
		}
		w := d.es.Write(traceutil.TODO())
		etcdWrite(w, op)
		w.End()
		if _, _, err := d.f.applyEntry(req); err != nil {
			d.t.Fatalf("%v: %v", req, err)
		}
	}
	if got, want := d.f.kv.Rev(), d.es.Rev(); got != want {
		d.t.Fatalf("revision %d, etcd's %d", got, want)
	}
}

func etcdWrite(w etcdmvcc.TxnWrite, op hashOp) {
	if op.put != "" {
		w.Put([]byte(op.put), []byte(op.val), lease.LeaseID(op.lease))
		return
	}
	var end []byte
	if op.end != "" {
		end = []byte(op.end)
	}
	w.DeleteRange([]byte(op.del), end)
}

// compareAll compares HashKV at every revision from below the first to
// above the current one.
func (d *hashDiff) compareAll() {
	d.t.Helper()
	for rev := int64(-1); rev <= d.es.Rev()+2; rev++ {
		if d.reopened && d.etcdRemembers(rev) {
			continue
		}
		want, wantCur, wantErr := d.es.HashStorage().HashByRev(rev)
		got, gotCur, err := d.f.kv.HashKV(rev)
		switch {
		case wantErr != nil:
			if !sameMVCCError(err, wantErr) || gotCur != wantCur {
				d.t.Fatalf("HashKV(%d) = %v, %d, %v; etcd: %v, %d", rev, got, gotCur, err, wantCur, wantErr)
			}
		case err != nil:
			d.t.Fatalf("HashKV(%d): %v; etcd: %+v", rev, err, want)
		case got != KeyValueHash(want) || gotCur != wantCur:
			d.t.Fatalf("HashKV(%d) = %+v at %d; etcd: %+v at %d", rev, got, gotCur, want, wantCur)
		}
	}
}

func (d *hashDiff) etcdRemembers(rev int64) bool {
	for _, h := range d.es.HashStorage().Hashes() {
		if h.Revision == rev {
			return true
		}
	}
	return false
}

func sameMVCCError(got, etcd error) bool {
	switch {
	case errors.Is(etcd, etcdmvcc.ErrCompacted):
		return errors.Is(got, ErrCompacted)
	case errors.Is(etcd, etcdmvcc.ErrFutureRev):
		return errors.Is(got, ErrFutureRev)
	}
	return false
}

// TestStoredPutIsEtcds checks what HashKV relies on: a put is stored as
// etcd stores it, so its bytes can be hashed as they are.
func TestStoredPutIsEtcds(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{LeaseExists: func(int64) bool { return true }})
		f.mustPut("a", "1")
		f.applyEntry(&pb.PutRequest{Key: []byte("a"), Value: []byte("22"), Lease: 5})
		f.applyEntry(&pb.PutRequest{Key: []byte("e")})
		err := f.e.Iterate(storage.KV, nil, nil, false, func(k, v []byte) bool {
			var m mvccpb.KeyValue
			if err := proto.Unmarshal(v, &m); err != nil {
				t.Fatal(err)
			}
			etcds, err := proto.Marshal(&mvccpb.KeyValue{
				Key: m.Key, Value: m.Value, CreateRevision: m.CreateRevision,
				ModRevision: m.ModRevision, Version: m.Version, Lease: m.Lease,
			})
			if err != nil {
				t.Fatal(err)
			}
			if string(v) != string(etcds) {
				t.Errorf("record %x: stored %x, etcd stores %x", k, v, etcds)
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestHashEqualForEqualState checks Maintenance.Hash: two stores given the
// same history hash alike, whatever their applied index; a different
// history hashes differently.
func TestHashEqualForEqualState(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		history := func(f *fixture, last string) {
			f.mustPut("a", "1")
			f.applyEntry(del("a"))
			f.mustPut("b", last)
			f.mustCompact(2)
		}
		a, b, c := newFixture(t, ec, Options{}), newFixture(t, ec, Options{}), newFixture(t, ec, Options{})
		history(a, "2")
		b.applyEntry(nil) // an entry that changes only the applied index
		history(b, "2")
		history(c, "3")
		ha, ra, err := a.kv.Hash()
		if err != nil {
			t.Fatal(err)
		}
		hb, rb, _ := b.kv.Hash()
		hc, _, _ := c.kv.Hash()
		if ha != hb || ra != rb || ra != 4 {
			t.Errorf("equal states: hashes %x at %d and %x at %d", ha, ra, hb, rb)
		}
		if ha == hc {
			t.Errorf("different states hash alike: %x", ha)
		}
	})
}

// TestHashKVConcurrentWrites hashes while writes and a compaction go on:
// the race detector watches, and the hash at a fixed past revision does
// not change.
func TestHashKVConcurrentWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		for i := range 20 {
			f.mustPut(fmt.Sprint("k", i%5), fmt.Sprint(i))
		}
		want, _, err := f.kv.HashKV(15)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 200 {
				f.index++
				if _, _, err := f.kv.Put(f.index, put(fmt.Sprint("k", i%7), fmt.Sprint(i))); err != nil {
					t.Error(err)
					return
				}
			}
			f.index++
			if d, err := f.kv.Compact(f.index, 10); err == nil {
				<-d
			}
		}()
		for {
			select {
			case <-done:
				return
			default:
			}
			got, _, err := f.kv.HashKV(15)
			if err != nil {
				t.Error(err)
				<-done
				return
			}
			if got != want {
				// A compaction below 15 changes the hash's compaction
				// revision, and with it what the hash covers.
				if got.CompactRevision != 10 {
					t.Errorf("HashKV(15) = %+v, want %+v", got, want)
				}
			}
			if _, _, err := f.kv.Hash(); err != nil {
				t.Error(err)
			}
		}
	})
}
