package mvcc

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestConcurrentReads runs readers against a writer that rewrites ten keys
// in every txn and compacts as it goes. Since every write changes every
// key, a read at any revision must find the ten keys with one value and
// that revision as mod revision: anything else is a torn read.
func TestConcurrentReads(t *testing.T) {
	const keys = 10
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		f := newFixture(t, ec, Options{CompactionBatchLimit: 7, CompactionSleepInterval: time.Microsecond})
		writeAll := func(i int) {
			var ops []*pb.RequestOp
			for k := range keys {
				ops = append(ops, opPut(put(fmt.Sprintf("k%d", k), fmt.Sprint(i))))
			}
			f.index++
			if _, _, err := f.kv.Txn(f.index, txn(nil, ops, nil)); err != nil {
				t.Error(err)
			}
		}
		writeAll(0)

		var stop atomic.Bool
		var wg sync.WaitGroup
		check := func(what string, header, at int64, kvs []*mvccpb.KeyValue) {
			if len(kvs) != keys {
				t.Errorf("%s: %d keys at %d", what, len(kvs), at)
				return
			}
			for _, kv := range kvs {
				if kv.ModRevision != at || string(kv.Value) != string(kvs[0].Value) || header < at {
					t.Errorf("%s: torn read at %d (header %d): %v", what, at, header, kvs)
					return
				}
			}
		}
		for r := range 3 {
			wg.Go(func() {
				for n := 0; !stop.Load(); n++ {
					resp, err := f.kv.Range(getRange("k", "l"))
					if err != nil {
						t.Error(err)
						return
					}
					check("range", resp.Header.Revision, resp.Header.Revision, resp.Kvs)

					// A little into the past, which compaction may take away;
					// revision 2 is the first with the keys.
					past := max(2, resp.Header.Revision-int64(n%4))
					resp, err = f.kv.Range(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: past})
					switch {
					case errors.Is(err, ErrCompacted):
					case err != nil:
						t.Error(err)
						return
					default:
						check("past range", resp.Header.Revision, past, resp.Kvs)
					}

					tr, err := f.kv.TxnRead(txn(cmps(cmpVersion("k0", pb.Compare_GREATER, 0)),
						ops(opRange(getRange("k", "l")), opRange(get(fmt.Sprintf("k%d", r)))), nil))
					if err != nil {
						t.Error(err)
						return
					}
					whole := tr.Responses[0].GetResponseRange()
					check("txn range", tr.Header.Revision, tr.Header.Revision, whole.Kvs)
					check("txn get", tr.Header.Revision, tr.Header.Revision,
						append(tr.Responses[1].GetResponseRange().Kvs, whole.Kvs[1:]...))
				}
			})
		}
		for i := 1; i <= 300 && !t.Failed(); i++ {
			writeAll(i)
			if i%25 == 0 {
				f.index++
				if _, err := f.kv.Compact(f.index, f.kv.Rev()-2); err != nil {
					t.Error(err)
				}
			}
		}
		stop.Store(true)
		wg.Wait()
	})
}
