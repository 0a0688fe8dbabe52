package mvcc

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// opCounters reads the store's operation counters.
type opCounters struct{ ranges, puts, deletes, txns, putBytes, keys float64 }

func readOpCounters(kv *KV) opCounters {
	m := kv.metrics
	return opCounters{
		ranges: testutil.ToFloat64(m.ranges), puts: testutil.ToFloat64(m.puts),
		deletes: testutil.ToFloat64(m.deletes), txns: testutil.ToFloat64(m.txns),
		putBytes: testutil.ToFloat64(m.putBytes), keys: testutil.ToFloat64(m.keys),
	}
}

func (c opCounters) minus(o opCounters) opCounters {
	return opCounters{c.ranges - o.ranges, c.puts - o.puts, c.deletes - o.deletes, c.txns - o.txns, c.putBytes - o.putBytes, c.keys - o.keys}
}

// TestOperationCountersAsEtcd checks what each kind of request adds to
// etcd's operation counters. etcd counts per MVCC transaction: a range
// request is one with one range; a put or delete request one, with a
// range more when it reads the previous value (prev_kv, ignore_value,
// ignore_lease); a txn that writes two, its compares (as far as they are
// evaluated) and checks (a read per put that uses the previous value, up
// to the first check that fails), then its operations; a read-only txn
// one; a lease revoke one deleting each of its keys. Its txn counter counts
// the transactions of more than one operation.
func TestOperationCountersAsEtcd(t *testing.T) {
	nested := txn(cmps(cmpVersion("b", pb.Compare_GREATER, 0)), ops(opPut(put("n", "1")), opRange(get("a"))), nil)
	cases := []struct {
		name string
		do   func(f *fixture) error
		want opCounters // keys: the change in live keys
	}{
		{"range", func(f *fixture) error { _, err := f.kv.Range(get("a")); return err },
			opCounters{ranges: 1}},
		{"put", func(f *fixture) error { _, _, err := f.applyEntry(put("p", "xyz")); return err },
			opCounters{puts: 1, putBytes: 4, keys: 1}},
		{"put over a key", func(f *fixture) error { _, _, err := f.applyEntry(put("a", "xyz")); return err },
			opCounters{puts: 1, putBytes: 4}},
		{"put with prev_kv", func(f *fixture) error {
			_, _, err := f.applyEntry(&pb.PutRequest{Key: []byte("a"), Value: []byte("v"), PrevKv: true})
			return err
		}, opCounters{ranges: 1, puts: 1, txns: 1, putBytes: 2}},
		{"put with ignore_value of a missing key", func(f *fixture) error {
			_, _, err := f.applyEntry(&pb.PutRequest{Key: []byte("zz"), IgnoreValue: true})
			return expect(err, ErrKeyNotFound)
		}, opCounters{ranges: 1}},
		{"put with a missing lease", func(f *fixture) error {
			_, _, err := f.applyEntry(&pb.PutRequest{Key: []byte("zz"), Lease: 99})
			return expect(err, ErrLeaseNotFound)
		}, opCounters{}},
		{"delete", func(f *fixture) error { _, _, err := f.applyEntry(del("a")); return err },
			opCounters{deletes: 1, keys: -1}},
		{"delete with prev_kv", func(f *fixture) error {
			_, _, err := f.applyEntry(&pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), PrevKv: true})
			return err
		}, opCounters{ranges: 1, deletes: 1, txns: 1, keys: -2}},
		{"txn that writes, compares hold", func(f *fixture) error {
			_, _, err := f.applyEntry(txn(cmps(cmpValue("a", pb.Compare_EQUAL, "1"), cmpVersion("b", pb.Compare_GREATER, 0)),
				ops(opPut(put("d", "4")), opRange(get("b"))), ops(opDel(del("b")))))
			return err
		}, opCounters{ranges: 3, puts: 1, txns: 2, putBytes: 2, keys: 1}},
		{"txn that writes, first compare fails", func(f *fixture) error {
			_, _, err := f.applyEntry(txn(cmps(cmpValue("a", pb.Compare_EQUAL, "no"), cmpVersion("b", pb.Compare_GREATER, 0)),
				ops(opPut(put("d", "4"))), ops(opPut(put("e", "5")))))
			return err
		}, opCounters{ranges: 1, puts: 1, putBytes: 2, keys: 1}},
		{"txn with ignore_value and a nested txn", func(f *fixture) error {
			_, _, err := f.applyEntry(txn(cmps(cmpVersion("a", pb.Compare_GREATER, 0)),
				ops(opPut(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true}), opTxn(nested)), nil))
			return err
		}, opCounters{ranges: 5, puts: 2, txns: 2, putBytes: 4, keys: 1}},
		{"txn whose ignore_value fails", func(f *fixture) error {
			_, _, err := f.applyEntry(txn(nil, ops(opPut(put("d", "4")), opPut(&pb.PutRequest{Key: []byte("zz"), IgnoreValue: true}),
				opPut(&pb.PutRequest{Key: []byte("a"), PrevKv: true})), nil))
			return expect(err, ErrKeyNotFound)
		}, opCounters{ranges: 1}},
		{"txn with prev_kv", func(f *fixture) error {
			_, _, err := f.applyEntry(txn(nil, ops(opPut(&pb.PutRequest{Key: []byte("a"), PrevKv: true}), opDel(&pb.DeleteRangeRequest{Key: []byte("b"), PrevKv: true})), nil))
			return err
		}, opCounters{ranges: 3, puts: 1, deletes: 1, txns: 1, putBytes: 1, keys: -1}},
		{"read-only txn", func(f *fixture) error {
			_, err := f.kv.TxnRead(txn(cmps(cmpCreate("b", pb.Compare_GREATER, 0)), ops(opRange(get("a")), opRange(get("b"))), ops(opRange(get("c")))))
			return err
		}, opCounters{ranges: 3, txns: 1}},
		{"lease revoke", func(f *fixture) error {
			next := func() uint64 { f.index++; return f.index }
			ap := f.kv.BeginApply()
			if err := ap.LeaseGrant(next(), 7, 60); err != nil {
				return err
			}
			ap.Put(next(), &pb.PutRequest{Key: []byte("l1"), Lease: 7})
			ap.Put(next(), &pb.PutRequest{Key: []byte("l2"), Lease: 7})
			if err := ap.Commit(); err != nil {
				return err
			}
			ap = f.kv.BeginApply()
			if _, err := ap.LeaseRevoke(next(), 7); err != nil {
				return err
			}
			return ap.Commit()
		}, opCounters{puts: 2, deletes: 2, txns: 1, putBytes: 4}},
	}
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				f := newFixture(t, ec, Options{})
				f.mustPut("a", "1")
				f.mustPut("b", "22")
				before := readOpCounters(f.kv)
				if err := c.do(f); err != nil {
					t.Fatal(err)
				}
				if got := readOpCounters(f.kv).minus(before); got != c.want {
					t.Errorf("counted %+v, want %+v", got, c.want)
				}
			})
		}
	})
}

// TestKeysGaugeFollowsLiveKeys checks etcd_debugging_mvcc_keys_total
// through creations, overwrites, deletions, a re-creation and a reopen.
func TestKeysGaugeFollowsLiveKeys(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		keys := func() float64 { return testutil.ToFloat64(f.kv.metrics.keys) }
		f.mustPut("a", "1")
		f.mustPut("b", "1")
		f.mustPut("a", "2")
		if got := keys(); got != 2 {
			t.Fatalf("keys after two keys written: %v", got)
		}
		if _, _, err := f.applyEntry(del("a")); err != nil {
			t.Fatal(err)
		}
		f.mustPut("c", "1")
		f.mustPut("a", "3")
		if _, _, err := f.applyEntry(del("zz")); err != nil {
			t.Fatal(err)
		}
		if got := keys(); got != 3 {
			t.Fatalf("keys after a delete and two puts: %v", got)
		}
		f.mustCompact(f.kv.Rev())
		f.reopen()
		if got := keys(); got != 3 {
			t.Fatalf("keys after reopening: %v", got)
		}
	})
}

// TestCompactionAndHashMetrics: a compaction counts the records it removes
// from the engine, and each hash computed is timed, as etcd's
// etcd_debugging_mvcc_db_compaction_keys_total and hash histograms do; a
// hash kept from a compaction is returned untimed.
func TestCompactionAndHashMetrics(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{})
		m := f.kv.metrics
		f.mustPut("a", "1")
		f.mustPut("a", "2")
		f.mustPut("a", "3")
		f.mustPut("b", "1")
		if _, _, err := f.applyEntry(del("b")); err != nil {
			t.Fatal(err)
		}
		// At the current revision a keeps its newest record and b its
		// tombstone, which is at that revision; a's two older records and
		// b's put go.
		before := time.Now().Unix()
		f.mustCompact(f.kv.Rev())
		if got := testutil.ToFloat64(m.compacted); got != 3 {
			t.Errorf("compacted records counted: %v, want 3", got)
		}
		// One pause of the index and, for so few records, one engine
		// batch, each compaction timed once as a whole.
		for name, h := range map[string]prometheus.Histogram{"index pauses": m.indexPause, "engine batches": m.dbPause, "compactions": m.dbTotal} {
			if got := histogramCount(t, h); got != 1 {
				t.Errorf("%s timed: %d, want 1", name, got)
			}
		}
		if last := testutil.ToFloat64(m.lastCompaction); last < float64(before) || last > float64(time.Now().Unix()) {
			t.Errorf("last compaction at %v, want between %d and now", last, before)
		}
		if _, _, err := f.kv.Hash(); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.kv.HashKV(0); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.kv.HashKV(f.kv.CompactRev()); err != nil {
			t.Fatal(err)
		}
		if got := histogramCount(t, m.hash); got != 1 {
			t.Errorf("hashes timed: %d, want 1", got)
		}
		if got := histogramCount(t, m.hashRev); got != 1 {
			t.Errorf("hashes by revision timed: %d, want 1 (the compaction's is kept)", got)
		}
	})
}

// histogramCount is the number of observations of h.
func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestTxnWithoutRanges: a txn applied for nobody (etcd 3.7's
// SkipRangeExecution) writes what Txn writes and makes the same events;
// its range responses carry only the header, at the revision the range
// would have reported, and its ranges are neither run nor counted. A range
// at a future revision still fails it.
func TestTxnWithoutRanges(t *testing.T) {
	req := txn(cmps(cmpValue("a", pb.Compare_EQUAL, "1")), ops(opRange(get("a")), opPut(put("c", "3")), opRange(get("b"))), nil)
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		run := func(skip bool) (*pb.TxnResponse, int, opCounters) {
			f := newFixture(t, ec, Options{})
			f.mustPut("a", "1")
			f.mustPut("b", "2")
			before := readOpCounters(f.kv)
			ap := f.kv.BeginApply()
			f.index++
			stage := ap.Txn
			if skip {
				stage = ap.TxnWithoutRanges
			}
			resp, evs, err := stage(f.index, req)
			if err != nil {
				t.Fatal(err)
			}
			if err := ap.Commit(); err != nil {
				t.Fatal(err)
			}
			if _, err := f.kv.Range(get("c")); err != nil {
				t.Fatal(err)
			}
			return resp, len(evs), readOpCounters(f.kv).minus(before)
		}
		full, fullEvs, fullCount := run(false)
		bare, bareEvs, bareCount := run(true)
		if fullEvs != 1 || bareEvs != 1 {
			t.Fatalf("events %d and %d, want one put each", fullEvs, bareEvs)
		}
		for i, want := range []int64{3, 4, 4} {
			got := bare.Responses[i]
			if r := got.GetResponseRange(); r != nil {
				if r.Header.GetRevision() != want || len(r.Kvs) != 0 || r.Count != 0 {
					t.Errorf("response %d: %v, want a header at %d alone", i, r, want)
				}
				if full.Responses[i].GetResponseRange().Header.GetRevision() != want {
					t.Errorf("response %d of the full txn at %d, want %d", i, full.Responses[i].GetResponseRange().Header.GetRevision(), want)
				}
			} else if got.GetResponsePut().Header.GetRevision() != want {
				t.Errorf("put response at %d, want %d", got.GetResponsePut().Header.GetRevision(), want)
			}
		}
		// Both count the compare and the put (and one range request
		// each after); only the full txn counts its two ranges.
		if want := (opCounters{ranges: 4, puts: 1, txns: 1, putBytes: 2, keys: 1}); fullCount != want {
			t.Errorf("full txn counted %+v, want %+v", fullCount, want)
		}
		if want := (opCounters{ranges: 2, puts: 1, putBytes: 2, keys: 1}); bareCount != want {
			t.Errorf("txn without ranges counted %+v, want %+v", bareCount, want)
		}

		f := newFixture(t, ec, Options{})
		f.mustPut("a", "1")
		ap := f.kv.BeginApply()
		future := txn(nil, ops(opPut(put("d", "4")), opRange(getAt("a", 99))), nil)
		if _, _, err := ap.TxnWithoutRanges(f.index+1, future); err != ErrFutureRev {
			t.Errorf("range at a future revision: %v, want %v", err, ErrFutureRev)
		}
		ap.Abort()
	})
}
