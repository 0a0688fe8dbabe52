package mvcc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/storage"
)

// The scenario tables (runScenarios) and TestAgainstModel also run every
// write through Appliers; the tests here cover what is particular to
// batches.

// pair is the same store twice: one applies every entry on its own, the
// other stages entries in Appliers until flushed.
type pair struct {
	t            *testing.T
	one, batched *fixture
}

func newPair(t *testing.T, ec engineCase, opts Options) *pair {
	p := &pair{t: t, one: newFixture(t, ec, opts), batched: newFixture(t, ec, opts)}
	p.batched.batched = true
	return p
}

// apply applies the entry carrying req (see fixture.applyEntry) to both
// stores and requires the same result from both.
func (p *pair) apply(step int, req any) (any, error) {
	p.t.Helper()
	want, wantEvs, wantErr := p.one.applyEntry(req)
	got, gotEvs, gotErr := p.batched.applyEntry(req)
	if (wantErr == nil) != (gotErr == nil) || !errors.Is(gotErr, wantErr) {
		p.t.Fatalf("step %d (%T): error %v staged, %v one by one", step, req, gotErr, wantErr)
	}
	if d := cmp.Diff(want, got, diffOpts...); d != "" {
		p.t.Fatalf("step %d (%T): response (-one by one +staged):\n%s", step, req, d)
	}
	if d := cmp.Diff(wantEvs, gotEvs, diffOpts...); d != "" {
		p.t.Fatalf("step %d (%T): events (-one by one +staged):\n%s", step, req, d)
	}
	return got, gotErr
}

// compact applies a compaction entry to both stores, committing the
// batched one first, and waits for both compactions to end.
func (p *pair) compact(rev int64) error {
	p.t.Helper()
	p.batched.flush()
	p.one.index++
	p.batched.index++
	done1, err1 := p.one.kv.Compact(p.one.index, rev)
	done2, err2 := p.batched.kv.Compact(p.batched.index, rev)
	p.batched.committed = p.batched.index
	if !errors.Is(err2, err1) || (err1 == nil) != (err2 == nil) {
		p.t.Fatalf("compact %d: error %v batched, %v one by one", rev, err2, err1)
	}
	for _, done := range []<-chan struct{}{done1, done2} {
		if done != nil {
			waitDone(p.t, done)
		}
	}
	return err1
}

// check commits the batched store and requires both stores to be the same,
// down to the records of their KV buckets: the whole history if full is
// set, otherwise the revisions and the current key space.
func (p *pair) check(step int, full bool) {
	p.t.Helper()
	p.batched.flush()
	var want, got stateDump
	if full {
		want, got = p.one.dump(), p.batched.dump()
	} else {
		want, got = p.one.dumpCurrent(), p.batched.dumpCurrent()
	}
	if d := cmp.Diff(want, got, diffOpts...); d != "" {
		p.t.Fatalf("step %d: state (-one by one +batched):\n%s", step, d)
	}
	if d := cmp.Diff(revKeys(p.t, p.one.e), revKeys(p.t, p.batched.e)); d != "" {
		p.t.Fatalf("step %d: KV bucket (-one by one +batched):\n%s", step, d)
	}
}

// entryGen generates random requests over a few keys. Ranges and compares
// read at revisions near the current one, which in a batch are those of
// the entries staged just before, or a future or compacted one.
type entryGen struct {
	rng *rand.Rand
	kv  *KV // the store whose revisions guide the choice
}

func (g *entryGen) coin() bool { return g.rng.IntN(2) == 0 }

func (g *entryGen) key() []byte { return fmt.Appendf(nil, "k%d", g.rng.IntN(6)) }

func (g *entryGen) put() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: fmt.Appendf(nil, "%d", g.rng.IntN(100)), PrevKv: g.coin()}
	switch g.rng.IntN(8) {
	case 0:
		p.Lease = 1 + g.rng.Int64N(2) // 2 does not exist
	case 1:
		p.IgnoreValue, p.Value = true, nil
	case 2:
		p.IgnoreLease = true
	}
	return p
}

func (g *entryGen) del() *pb.DeleteRangeRequest {
	d := &pb.DeleteRangeRequest{Key: g.key(), PrevKv: g.coin()}
	if g.coin() {
		d.RangeEnd = g.key() // empty when not above the key
	}
	return d
}

func (g *entryGen) rangeReq() *pb.RangeRequest {
	r := &pb.RangeRequest{Key: g.key(), KeysOnly: g.rng.IntN(4) == 0}
	if g.coin() {
		r.RangeEnd = []byte{0}
	}
	if g.coin() {
		r.Revision = g.kv.Rev() + 1 - g.rng.Int64N(5)
	}
	return r
}

func (g *entryGen) compare() *pb.Compare {
	c := &pb.Compare{Key: g.key(), Result: pb.Compare_CompareResult(g.rng.IntN(4))}
	n := g.rng.Int64N(4)
	switch g.rng.IntN(4) {
	case 0:
		c.Target, c.TargetUnion = pb.Compare_VERSION, &pb.Compare_Version{Version: n}
	case 1:
		c.Target, c.TargetUnion = pb.Compare_CREATE, &pb.Compare_CreateRevision{CreateRevision: g.kv.Rev() - n}
	case 2:
		c.Target, c.TargetUnion = pb.Compare_MOD, &pb.Compare_ModRevision{ModRevision: g.kv.Rev() - n}
	default:
		c.Target, c.TargetUnion = pb.Compare_VALUE, &pb.Compare_Value{Value: fmt.Appendf(nil, "%d", g.rng.IntN(100))}
	}
	if g.rng.IntN(4) == 0 {
		c.RangeEnd = []byte{0}
	}
	return c
}

func (g *entryGen) ops(nested bool) []*pb.RequestOp {
	var ops []*pb.RequestOp
	for range g.rng.IntN(4) {
		switch n := g.rng.IntN(10); {
		case n < 3:
			ops = append(ops, opPut(g.put()))
		case n < 5:
			ops = append(ops, opDel(g.del()))
		case n < 9 || nested:
			ops = append(ops, opRange(g.rangeReq()))
		default:
			ops = append(ops, opTxn(g.txnReq(true)))
		}
	}
	return ops
}

func (g *entryGen) txnReq(nested bool) *pb.TxnRequest {
	var cs []*pb.Compare
	for range g.rng.IntN(3) {
		cs = append(cs, g.compare())
	}
	return txn(cs, g.ops(nested), g.ops(nested))
}

// txn returns a random txn that passes ValidateTxn.
func (g *entryGen) txn() *pb.TxnRequest {
	for {
		if req := g.txnReq(false); ValidateTxn(req, DefaultMaxTxnOps) == nil {
			return req
		}
	}
}

// TestApplierMatchesOneByOne applies the same random entries to two
// stores, one by one to the first and in Appliers of random sizes to the
// second, and requires the same response, events and error for every
// entry, and the same state, revisions, applied index and KV bucket at
// every commit, across compactions and reopens.
func TestApplierMatchesOneByOne(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		p := newPair(t, ec, Options{
			LeaseExists:             func(id int64) bool { return id == 1 },
			CompactionBatchLimit:    3,
			CompactionSleepInterval: 1,
		})
		g := &entryGen{rng: rand.New(rand.NewPCG(3, 4)), kv: p.one.kv}
		var failed, batches, biggest, size int
		for i := range 600 {
			var err error
			switch n := g.rng.IntN(40); {
			case n < 12:
				_, err = p.apply(i, g.put())
			case n < 18:
				_, err = p.apply(i, g.del())
			case n < 33:
				_, err = p.apply(i, g.txn())
			case n < 35:
				_, err = p.apply(i, nil)
			case n < 37:
				// Mostly a few revisions back, which keeps the full checks
				// short.
				p.compact(max(p.one.kv.CompactRev()+1, p.one.kv.Rev()-20+g.rng.Int64N(22)))
			case n < 38:
				p.check(i, true)
				p.one.reopen()
				p.batched.reopen()
			default:
				p.check(i, false)
			}
			if err != nil {
				failed++
			}
			if p.batched.ap != nil {
				size++
				biggest = max(biggest, size)
			} else if size > 0 {
				batches, size = batches+1, 0
			}
		}
		p.check(-1, true)
		t.Logf("%d entries failed; %d batches, the biggest of %d entries; revision %d", failed, batches, biggest, p.one.kv.Rev())
	})
}

// TestApplierFailedEntries stages failing entries between good ones: each
// stages nothing but its index, and the entries after it see exactly the
// ones before it.
func TestApplierFailedEntries(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		p := newPair(t, ec, Options{LeaseExists: func(id int64) bool { return id == 1 }})
		steps := []struct {
			req  any
			err  error
			want any
		}{
			{req: put("a", "1"), want: putResp(2, nil)},
			{req: &pb.PutRequest{Key: []byte("b"), Value: []byte("1"), Lease: 5}, err: ErrLeaseNotFound},
			// A txn whose second write fails leaves nothing of its first.
			{req: txn(nil, ops(opPut(put("c", "1")), opPut(&pb.PutRequest{Key: []byte("d"), IgnoreValue: true})), nil), err: ErrKeyNotFound},
			{req: &pb.PutRequest{Key: []byte("a"), Value: []byte("2"), PrevKv: true}, want: putResp(3, kv("a", "1", 2, 2, 1))},
			{req: txn(nil, ops(opPut(put("c", "1")), opRange(getAt("a", 4))), nil), err: ErrFutureRev},
			{req: nil},
			// Reads at the revisions of staged entries.
			{req: txn(cmps(cmpVersion("c", pb.Compare_EQUAL, 0)), ops(opRange(getAt("a", 2)), opPut(put("c", "1")), opRange(get("c"))), nil),
				want: txnResp(4, true,
					respRange(rangeResp(3, 1, false, kv("a", "1", 2, 2, 1))),
					respPut(putResp(4, nil)),
					respRange(rangeResp(4, 1, false, kv("c", "1", 4, 4, 1))))},
			{req: &pb.PutRequest{Key: []byte("c"), IgnoreValue: true, Lease: 1}, want: putResp(5, nil)},
			{req: &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true},
				want: delResp(6, 2, kv("a", "2", 2, 3, 2), kvLease("c", "1", 4, 5, 2, 1))},
			{req: &pb.PutRequest{Key: []byte("c"), IgnoreLease: true}, err: ErrKeyNotFound},
			{req: put("c", "2"), want: putResp(7, nil)},
		}
		for i, st := range steps {
			got, err := p.apply(i, st.req)
			if !errors.Is(err, st.err) {
				t.Fatalf("step %d: error %v, want %v", i, err, st.err)
			}
			if st.want != nil {
				if d := cmp.Diff(st.want, got, diffOpts...); d != "" {
					t.Fatalf("step %d: response (-want +got):\n%s", i, d)
				}
			}
		}
		if p.batched.kv.AppliedIndex() != 0 || p.batched.kv.Rev() != 1 {
			t.Fatalf("before commit: applied index %d, revision %d", p.batched.kv.AppliedIndex(), p.batched.kv.Rev())
		}
		p.check(len(steps), true)
		if got := p.batched.kv.AppliedIndex(); got != uint64(len(steps)) {
			t.Fatalf("applied index %d, want %d", got, len(steps))
		}
		want := []string{"2.0", "3.0", "4.0", "5.0", "6.0t", "6.1t", "7.0"}
		if d := cmp.Diff(want, revKeys(t, p.batched.e)); d != "" {
			t.Fatalf("KV bucket (-want +got):\n%s", d)
		}
	})
}

// TestApplierInvisibleUntilCommit runs readers against a writer that
// stages five txns per Applier, each rewriting ten keys. A reader must only
// ever see the revision of a whole batch, with every key written at it.
func TestApplierInvisibleUntilCommit(t *testing.T) {
	const keys, perBatch = 10, 5
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		writeAll := func(w entryApplier, i int) {
			var ops []*pb.RequestOp
			for k := range keys {
				ops = append(ops, opPut(put(fmt.Sprintf("k%d", k), fmt.Sprint(i))))
			}
			f.index++
			if _, _, err := w.Txn(f.index, txn(nil, ops, nil)); err != nil {
				t.Error(err)
			}
		}
		writeAll(f.kv, 0) // revision 2; every batch then adds perBatch

		var stop atomic.Bool
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() {
				for !stop.Load() {
					applied := f.kv.AppliedIndex()
					resp, err := f.kv.Range(getRange("k", "l"))
					if err != nil {
						t.Error(err)
						return
					}
					rev := resp.Header.Revision
					// Entry i is revision i+1, and the applied index is
					// published after the revision.
					if (rev-2)%perBatch != 0 || rev < int64(applied)+1 {
						t.Errorf("revision %d with applied index %d: not that of a whole batch", rev, applied)
						return
					}
					for _, kv := range resp.Kvs {
						if kv.ModRevision != rev || len(resp.Kvs) != keys {
							t.Errorf("torn read at %d: %v", rev, resp.Kvs)
							return
						}
					}
				}
			})
		}
		for b := range 60 {
			a := f.kv.BeginApply()
			for i := range perBatch {
				writeAll(a, 1+b*perBatch+i)
			}
			if err := a.Commit(); err != nil {
				t.Error(err)
			}
		}
		stop.Store(true)
		wg.Wait()
		if got, want := f.kv.Rev(), int64(2+60*perBatch); got != want {
			t.Fatalf("revision %d, want %d", got, want)
		}
	})
}

// TestApplierCommitAndReopen checks that nothing staged reaches the engine
// before Commit, that a reopened store has everything committed, and that
// an aborted Applier leaves no trace.
func TestApplierCommitAndReopen(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		f.applyEntry(put("a", "0"))
		f.batched = true
		f.applyEntry(put("b", "1"))
		f.applyEntry(txn(nil, ops(opPut(put("a", "1")), opDel(del("b")), opPut(put("c", "1"))), nil))
		f.applyEntry(nil)
		f.applyEntry(delRange("a", "b"))
		if d := cmp.Diff([]string{"2.0"}, revKeys(t, f.e)); d != "" {
			t.Fatalf("KV bucket before commit (-want +got):\n%s", d)
		}
		if applied, _, _ := readMeta(f.e, appliedIndexKey); applied != 1 {
			t.Fatalf("stored applied index %d before commit, want 1", applied)
		}
		f.flush()
		if d := cmp.Diff([]string{"2.0", "3.0", "4.0", "4.1t", "4.2", "5.0t"}, revKeys(t, f.e)); d != "" {
			t.Fatalf("KV bucket after commit (-want +got):\n%s", d)
		}
		committed := f.dump()
		if committed.Rev != 5 || committed.Applied != 5 {
			t.Fatalf("revision %d, applied index %d after commit, want 5 and 5", committed.Rev, committed.Applied)
		}
		f.reopen()
		if d := cmp.Diff(committed, f.dump(), diffOpts...); d != "" {
			t.Fatalf("state after reopen (-committed +reopened):\n%s", d)
		}

		a := f.kv.BeginApply()
		if _, _, err := a.Put(6, put("d", "1")); err != nil {
			t.Fatal(err)
		}
		a.SetApplied(7)
		a.Abort()
		f.reopen()
		if d := cmp.Diff(committed, f.dump(), diffOpts...); d != "" {
			t.Fatalf("state after an aborted Applier (-committed +reopened):\n%s", d)
		}
	})
}

// TestApplierCommitsOnce checks that an Applier is one engine batch holding
// the changes of every successful entry and the index of the last entry,
// and that an Applier that staged nothing writes nothing.
func TestApplierCommitsOnce(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		inner, err := ec.open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer inner.Close()
		e := &recordingEngine{Engine: inner}
		kv, err := Open(e, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Close()

		a := kv.BeginApply()
		a.Put(1, put("a", "1"))
		a.Put(2, &pb.PutRequest{Key: []byte("b"), Lease: 9})
		a.Txn(3, txn(nil, ops(opPut(put("b", "1")), opPut(put("c", "1"))), nil))
		a.SetApplied(4)
		a.DeleteRange(5, del("a"))
		if err := a.Commit(); err != nil {
			t.Fatal(err)
		}
		commits := e.take()
		if len(commits) != 1 {
			t.Fatalf("%d commits, want 1", len(commits))
		}
		var kvWrites, applied int
		for _, w := range commits[0] {
			switch {
			case w.bucket == storage.KV:
				kvWrites++
			case w.bucket == storage.Meta && w.key == string(appliedIndexKey):
				applied++
			}
		}
		if kvWrites != 4 || applied != 1 {
			t.Errorf("batch has %d KV writes and %d applied index writes, want 4 and 1", kvWrites, applied)
		}
		if kv.AppliedIndex() != 5 || kv.Rev() != 4 {
			t.Errorf("applied index %d, revision %d; want 5 and 4", kv.AppliedIndex(), kv.Rev())
		}

		if err := kv.BeginApply().Commit(); err != nil {
			t.Fatal(err)
		}
		if n := len(e.take()); n != 0 {
			t.Errorf("an empty Applier made %d commits", n)
		}
	})
}

// failingEngine fails every Get while fail is set.
type failingEngine struct {
	storage.Engine
	fail atomic.Bool
}

var errInjected = errors.New("injected engine failure")

func (e *failingEngine) Get(b storage.Bucket, key []byte) ([]byte, error) {
	if e.fail.Load() {
		return nil, errInjected
	}
	return e.Engine.Get(b, key)
}

// TestApplierEngineFailure checks that an engine failure while staging
// poisons the Applier: nothing it staged, before or after, is committed,
// not even the applied index, so that the entries are applied again after a
// restart.
func TestApplierEngineFailure(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		inner, err := ec.open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer inner.Close()
		e := &failingEngine{Engine: inner}
		// With prev kv in events, putting an existing key reads its value.
		kv, err := Open(e, Options{EventsWithPrevKV: true})
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Close()
		if _, _, err := kv.Put(1, put("a", "1")); err != nil {
			t.Fatal(err)
		}

		a := kv.BeginApply()
		if _, _, err := a.Put(2, put("b", "1")); err != nil {
			t.Fatal(err)
		}
		e.fail.Store(true)
		if _, _, err := a.Put(3, put("a", "2")); !errors.Is(err, errInjected) {
			t.Fatalf("put: error %v, want the engine's", err)
		}
		e.fail.Store(false)
		if _, _, err := a.Put(4, put("c", "1")); !errors.Is(err, errInjected) {
			t.Fatalf("put after the failure: error %v, want the engine's", err)
		}
		a.SetApplied(5)
		if err := a.Commit(); !errors.Is(err, errInjected) {
			t.Fatalf("commit: error %v, want the engine's", err)
		}
		if kv.AppliedIndex() != 1 || kv.Rev() != 2 {
			t.Fatalf("applied index %d, revision %d; want 1 and 2", kv.AppliedIndex(), kv.Rev())
		}

		e.fail.Store(true)
		if _, _, err := kv.Put(2, put("a", "2")); !errors.Is(err, errInjected) {
			t.Fatalf("one-entry put: error %v, want the engine's", err)
		}
		e.fail.Store(false)
		if kv.AppliedIndex() != 1 {
			t.Fatalf("applied index %d after a failed one-entry put, want 1", kv.AppliedIndex())
		}
		if _, _, err := kv.Put(2, put("a", "2")); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"2.0", "3.0"}, revKeys(t, e)); d != "" {
			t.Fatalf("KV bucket (-want +got):\n%s", d)
		}
	})
}

func TestApplierMisuse(t *testing.T) {
	f := newFixture(t, engines[0], Options{})
	mustPanic := func(what string, fn func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", what)
			}
		}()
		fn()
	}
	a := f.kv.BeginApply()
	mustPanic("a second BeginApply", func() { f.kv.BeginApply() })
	mustPanic("Compact", func() { f.kv.Compact(1, 1) })
	mustPanic("Put", func() { f.kv.Put(1, put("a", "1")) })
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	mustPanic("staging after Commit", func() { a.SetApplied(1) })
	mustPanic("Commit after Commit", func() { a.Commit() })
	a.Abort() // harmless
	if _, _, err := f.kv.Put(1, put("a", "1")); err != nil {
		t.Fatal(err)
	}
}
