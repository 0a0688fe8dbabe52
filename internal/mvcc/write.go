package mvcc

import (
	"bytes"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// writeTxn stages the changes of one raft entry. Nothing is visible to
// readers, nor written to the engine, until finish commits them all at once;
// a request that fails part way is discarded whole.
type writeTxn struct {
	view
	changes []change
	latest  map[string]int // key -> position in changes of its last change
}

// change is one write of a txn. Writes are numbered by sub revision in the
// order they are made, which is also the order of their events.
type change struct {
	rev revision
	// kv is the new key-value; for a deletion it holds the key and the
	// mod revision only, as etcd's delete events do.
	kv      *mvccpb.KeyValue
	deleted bool
	// before is the key's value before the txn began (nil if it did not
	// exist): the PrevKv of the change's event. It is the value before the
	// txn, not before this change, because that is what etcd's watch
	// reports, looking the key up at the revision before the event's.
	before *mvccpb.KeyValue
}

// beginWrite starts a write on top of the current revision. Only the writer
// goroutine calls it, so the revision cannot move under the txn.
func (kv *KV) beginWrite() *writeTxn {
	kv.mu.RLock()
	w := &writeTxn{view: view{kv: kv, rev: kv.rev, compactRev: kv.compactRev}}
	kv.mu.RUnlock()
	w.view.w = w
	return w
}

// Put applies the raft entry at index, a put. Besides the response it
// returns the one event the put causes. On error the store is unchanged but
// for the applied index. An error that is none of this package's sentinels
// is an engine failure, after which the caller should stop applying.
func (kv *KV) Put(index uint64, req *pb.PutRequest) (*pb.PutResponse, []*mvccpb.Event, error) {
	w := kv.beginWrite()
	resp, err := w.put(req)
	evs, err := w.finish(index, err)
	if err != nil {
		return nil, nil, err
	}
	return resp, evs, nil
}

// DeleteRange applies the raft entry at index, a delete, and returns one
// event per deleted key, in key order. Deleting nothing leaves the revision
// as it is. Errors are as for Put.
func (kv *KV) DeleteRange(index uint64, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, []*mvccpb.Event, error) {
	w := kv.beginWrite()
	resp, err := w.deleteRange(req)
	evs, err := w.finish(index, err)
	if err != nil {
		return nil, nil, err
	}
	return resp, evs, nil
}

func (w *writeTxn) put(p *pb.PutRequest) (*pb.PutResponse, error) {
	if p.Lease != 0 && (w.kv.opts.LeaseExists == nil || !w.kv.opts.LeaseExists(p.Lease)) {
		return nil, ErrLeaseNotFound
	}
	cur, err := w.current(p.Key)
	if err != nil {
		return nil, err
	}
	if p.IgnoreValue || p.IgnoreLease {
		// etcd requires the key to exist before the txn starts (it checks
		// every op first) and then reads value and lease from the txn's
		// current state, so both must hold.
		if cur == nil || !w.existedBefore(p.Key) {
			return nil, ErrKeyNotFound
		}
	}
	rev := w.rev + 1
	kv := &mvccpb.KeyValue{Key: p.Key, Value: p.Value, CreateRevision: rev, ModRevision: rev, Version: 1, Lease: p.Lease}
	if cur != nil {
		kv.CreateRevision = cur.CreateRevision
		kv.Version = cur.Version + 1
		if p.IgnoreValue {
			kv.Value = cur.Value
		}
		if p.IgnoreLease {
			kv.Lease = cur.Lease
		}
	}
	w.stage(kv, false, cur)
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: rev}}
	if p.PrevKv {
		resp.PrevKv = cur
	}
	return resp, nil
}

func (w *writeTxn) deleteRange(d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	ents, _ := w.collect(spanOf(d.Key, d.RangeEnd), w.rev, true, all)
	// The values are needed even without prev_kv: they are the PrevKv of
	// the delete events.
	kvs, err := w.fetch(ents)
	if err != nil {
		return nil, err
	}
	for _, kv := range kvs {
		w.stage(&mvccpb.KeyValue{Key: kv.Key, ModRevision: w.rev + 1}, true, kv)
	}
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{Revision: w.headerRev()}, Deleted: int64(len(kvs))}
	if d.PrevKv {
		resp.PrevKvs = kvs
	}
	return resp, nil
}

// existedBefore reports whether key existed before the txn.
func (w *writeTxn) existedBefore(key []byte) bool {
	_, n := w.collect(keySpan{key: key, single: true}, w.rev, false, 0)
	return n > 0
}

// stage adds a change; prior is the key's value in the txn's current state
// just before it.
func (w *writeTxn) stage(kv *mvccpb.KeyValue, deleted bool, prior *mvccpb.KeyValue) {
	c := change{rev: revision{main: w.rev + 1, sub: int64(len(w.changes))}, kv: kv, deleted: deleted, before: prior}
	if w.latest == nil {
		w.latest = make(map[string]int)
	}
	k := string(kv.Key)
	if i, ok := w.latest[k]; ok {
		c.before = w.changes[i].before
	}
	w.latest[k] = len(w.changes)
	w.changes = append(w.changes, c)
}

// changesIn returns the last change of each key of span s the txn has
// changed, in key order.
func (w *writeTxn) changesIn(s keySpan) []change {
	if len(w.changes) == 0 {
		return nil
	}
	if s.single {
		if i, ok := w.latest[string(s.key)]; ok {
			return []change{w.changes[i]}
		}
		return nil
	}
	var out []change
	for _, i := range w.latest {
		if s.contains(w.changes[i].kv.Key) {
			out = append(out, w.changes[i])
		}
	}
	slices.SortFunc(out, func(a, b change) int { return bytes.Compare(a.kv.Key, b.kv.Key) })
	return out
}

// finish ends the write of the raft entry at index. If failed is nil the
// changes, the new revision and the applied index commit in one engine
// batch and are then published to readers; otherwise only the applied index
// moves, and failed is returned. It returns the events of the changes.
func (w *writeTxn) finish(index uint64, failed error) ([]*mvccpb.Event, error) {
	kv := w.kv
	b := kv.e.NewBatch()
	defer b.Close()
	if failed == nil {
		for _, c := range w.changes {
			val, err := proto.MarshalOptions{}.MarshalAppend(kv.valBuf[:0], c.kv)
			if err != nil {
				return nil, fmt.Errorf("mvcc: encode key-value: %w", err)
			}
			kv.valBuf = val
			kv.keyBuf = appendRevKey(kv.keyBuf[:0], c.rev, c.deleted)
			b.Put(storage.KV, kv.keyBuf, val)
		}
	}
	kv.putApplied(b, index)
	if err := b.Commit(false); err != nil {
		return nil, fmt.Errorf("mvcc: commit entry %d: %w", index, err)
	}
	if failed != nil || len(w.changes) == 0 {
		kv.applied.Store(index)
		return nil, failed
	}

	kv.mu.Lock()
	for _, c := range w.changes {
		if !c.deleted {
			kv.idx.put(c.kv.Key, c.rev)
		} else if !kv.idx.tombstone(c.kv.Key, c.rev) {
			kv.lg.Error("deleted key missing from the index", zap.ByteString("key", c.kv.Key))
		}
	}
	kv.rev = w.rev + 1
	kv.mu.Unlock()
	// Published after the revision, so that whoever waits for an applied
	// index to read its effects finds them.
	kv.applied.Store(index)
	return w.events(), nil
}

func (w *writeTxn) events() []*mvccpb.Event {
	evs := make([]*mvccpb.Event, len(w.changes))
	for i, c := range w.changes {
		ev := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: c.kv}
		if c.deleted {
			ev.Type = mvccpb.Event_DELETE
		}
		if !ev.IsCreate() {
			ev.PrevKv = c.before
		}
		evs[i] = ev
	}
	return evs
}
