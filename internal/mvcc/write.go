package mvcc

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// writeTxn stages the changes of one raft entry in an Applier, on top of
// the entries staged before it. Its view reads the Applier's overlay; a
// request that fails part way is discarded whole (see Applier.end).
type writeTxn struct {
	view
	a     *Applier
	start int // position in a.changes of the entry's first change
	// tally counts the entry's operations; the view's ops points to it.
	tally opTally
	// skipRanges leaves a txn's range operations unrun (see
	// Applier.TxnWithoutRanges).
	skipRanges bool
}

// change is one write of an entry. The writes of one entry are numbered by
// sub revision in the order they are made, which is also the order of their
// events.
type change struct {
	rev revision
	// kv is the new key-value; for a deletion it holds the key and the
	// mod revision only, as etcd's delete events do.
	kv      *mvccpb.KeyValue
	deleted bool
	// before is the key's value before the entry began (nil if it did not
	// exist): the PrevKv of the change's event. It is the value before the
	// entry, not before this change, because that is what etcd's watch
	// reports, looking the key up at the revision before the event's.
	before *mvccpb.KeyValue
}

// Put applies the raft entry at index, a put, as a one-entry Applier (see
// Applier.Put). On error the store is unchanged but for the applied index;
// an error that is none of this package's sentinels is an engine failure,
// after which the applied index has not moved either and the caller should
// stop applying.
func (kv *KV) Put(index uint64, req *pb.PutRequest) (*pb.PutResponse, []*mvccpb.Event, error) {
	return applyOne(kv, func(a *Applier) (*pb.PutResponse, []*mvccpb.Event, error) { return a.Put(index, req) })
}

// DeleteRange applies the raft entry at index, a delete, as a one-entry
// Applier (see Applier.DeleteRange). Errors are as for Put.
func (kv *KV) DeleteRange(index uint64, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, []*mvccpb.Event, error) {
	return applyOne(kv, func(a *Applier) (*pb.DeleteRangeResponse, []*mvccpb.Event, error) { return a.DeleteRange(index, req) })
}

func (w *writeTxn) put(p *pb.PutRequest) (*pb.PutResponse, error) {
	if p.Lease != 0 && !w.a.leaseExists(p.Lease) {
		return nil, ErrLeaseNotFound
	}
	if p.PrevKv || p.IgnoreValue || p.IgnoreLease {
		w.countRange() // etcd reads the previous value through its txn
	}
	// The previous value is read only when something uses it: the request
	// (prev_kv, ignore_value, ignore_lease) or events that must carry it.
	// Otherwise the index alone gives the create revision and version, as
	// etcd's put does, and the engine read is saved.
	needValue := p.PrevKv || p.IgnoreValue || p.IgnoreLease || w.kv.opts.EventsWithPrevKV
	var cur, before *mvccpb.KeyValue
	if needValue {
		var err error
		if cur, err = w.current(p.Key); err != nil {
			return nil, err
		}
		before = cur
	} else if ents, _ := w.collect(keySpan{key: p.Key, single: true}, w.rev, true, 1); len(ents) > 0 {
		cur = indexOnly(ents)[0]
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
	w.stage(kv, false, before)
	w.ops.puts++
	w.ops.putBytes += int64(len(kv.Key) + len(kv.Value))
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: rev}}
	if p.PrevKv {
		resp.PrevKv = cur
	}
	return resp, nil
}

func (w *writeTxn) deleteRange(d *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if d.PrevKv {
		w.countRange()
	}
	w.ops.deletes++
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

// existedBefore reports whether key existed before the entry.
func (w *writeTxn) existedBefore(key []byte) bool {
	_, n := w.collect(keySpan{key: key, single: true}, w.rev, false, 0)
	return n > 0
}

// stage adds a change at the entry's revision; prior is the key's value in
// the entry's current state just before it.
func (w *writeTxn) stage(kv *mvccpb.KeyValue, deleted bool, prior *mvccpb.KeyValue) {
	sub := int64(len(w.a.changes) - w.start)
	w.a.stage(w.start, change{rev: revision{main: w.rev + 1, sub: sub}, kv: kv, deleted: deleted, before: prior})
}

// changed reports whether the entry has changed anything so far.
func (w *writeTxn) changed() bool {
	return len(w.a.changes) > w.start
}

// events returns the events of the entry's changes.
func (w *writeTxn) events() []*mvccpb.Event {
	own := w.a.changes[w.start:]
	evs := make([]*mvccpb.Event, len(own))
	for i, c := range own {
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
