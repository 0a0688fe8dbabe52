package mvcc

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// model is the obviously correct MVCC store: a full copy of the key space
// after every revision.
type model struct {
	rev        int64
	compactRev int64
	states     map[int64]map[string]*mvccpb.KeyValue
}

func newModel() *model {
	return &model{rev: 1, compactRev: -1, states: map[int64]map[string]*mvccpb.KeyValue{1: {}}}
}

// apply applies the puts and deletes of one entry; they share a revision.
func (m *model) apply(ops []*pb.RequestOp) {
	next := maps.Clone(m.states[m.rev])
	rev, changed := m.rev+1, false
	for _, op := range ops {
		if p := op.GetRequestPut(); p != nil {
			kv := &mvccpb.KeyValue{Key: p.Key, Value: p.Value, CreateRevision: rev, ModRevision: rev, Version: 1}
			if old := next[string(p.Key)]; old != nil {
				kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
			}
			next[string(p.Key)] = kv
			changed = true
			continue
		}
		d := op.GetRequestDeleteRange()
		s := spanOf(d.Key, d.RangeEnd)
		for k := range next {
			if s.contains([]byte(k)) {
				delete(next, k)
				changed = true
			}
		}
	}
	if changed {
		m.rev = rev
		m.states[rev] = next
	}
}

func (m *model) rangeAt(rev int64) []*mvccpb.KeyValue {
	st := m.states[rev]
	keys := slices.Sorted(maps.Keys(st))
	out := make([]*mvccpb.KeyValue, len(keys))
	for i, k := range keys {
		out[i] = st[k]
	}
	return out
}

// TestAgainstModel applies random puts, deletes, txns, compactions and
// reopens, and after each checks every readable revision against the model.
// Batched, it stages the writes in Appliers committed at random points, and
// checks that until a commit the store shows the model as of the last one.
func TestAgainstModel(t *testing.T) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		t.Run("one-by-one", func(t *testing.T) { testAgainstModel(t, ec, false) })
		t.Run("batched", func(t *testing.T) { testAgainstModel(t, ec, true) })
	})
}

func testAgainstModel(t *testing.T, ec engineCase, batched bool) {
	rng := rand.New(rand.NewPCG(1, 2))
	f := newFixture(t, ec, Options{CompactionBatchLimit: 3, CompactionSleepInterval: 1})
	f.batched = batched
	m := newModel()
	committedRev := m.rev
	key := func() string { return fmt.Sprintf("k%d", rng.IntN(8)) }
	writeOp := func() *pb.RequestOp {
		switch rng.IntN(4) {
		case 0:
			return opDel(del(key()))
		case 1:
			return opDel(delRange(key(), key()))
		}
		return opPut(put(key(), fmt.Sprint(rng.IntN(1000))))
	}
	for i := range 300 {
		f.index++
		var err error
		switch n := rng.IntN(10); {
		case n < 7:
			var ops []*pb.RequestOp
			for range 1 + rng.IntN(3) {
				ops = append(ops, writeOp())
			}
			req := txn(nil, ops, nil)
			if ValidateTxn(req, DefaultMaxTxnOps) != nil {
				err = f.setApplied(f.index)
				break
			}
			_, _, err = f.writer().Txn(f.index, req)
			m.apply(ops)
		case n < 9:
			f.flush()
			rev := m.compactRev + 1 + rng.Int64N(3)
			var done <-chan struct{}
			done, err = f.kv.Compact(f.index, rev)
			f.committed = f.index
			if rev > m.rev {
				err = expect(err, ErrFutureRev)
				break
			}
			waitDone(t, done)
			m.compactRev = rev
		default:
			err = f.setApplied(f.index)
			if rng.IntN(2) == 0 {
				f.reopen()
			}
		}
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if f.ap != nil && rng.IntN(4) == 0 {
			f.flush()
		}
		if f.ap == nil {
			committedRev = m.rev
		}
		visible := *m
		visible.rev = committedRev
		checkModel(t, i, f.kv, &visible)
	}
}

func checkModel(t *testing.T, step int, kv *KV, m *model) {
	t.Helper()
	if kv.Rev() != m.rev || kv.CompactRev() != m.compactRev {
		t.Fatalf("step %d: revisions %d/%d, model %d/%d", step, kv.Rev(), kv.CompactRev(), m.rev, m.compactRev)
	}
	if _, err := kv.Range(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: m.compactRev - 1}); m.compactRev > 1 && !errors.Is(err, ErrCompacted) {
		t.Fatalf("step %d: range below compaction: %v", step, err)
	}
	for rev := max(1, m.compactRev); rev <= m.rev; rev++ {
		want := m.rangeAt(rev)
		resp, err := kv.Range(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Revision: rev})
		if err != nil {
			t.Fatalf("step %d: range at %d: %v", step, rev, err)
		}
		// proto.Equal first: cmp is too slow for thousands of ranges.
		same := len(want) == len(resp.Kvs) && resp.Count == int64(len(want))
		for i := 0; same && i < len(want); i++ {
			same = proto.Equal(want[i], resp.Kvs[i])
		}
		if !same {
			t.Fatalf("step %d: range at %d, count %d (-model +kv):\n%s", step, rev, resp.Count, cmp.Diff(want, resp.Kvs, diffOpts...))
		}
	}
}
