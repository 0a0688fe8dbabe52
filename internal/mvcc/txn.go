package mvcc

import (
	"bytes"
	"cmp"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Txn applies the raft entry at index, a txn, as a one-entry Applier (see
// Applier.Txn). Errors are as for Put.
func (kv *KV) Txn(index uint64, req *pb.TxnRequest) (*pb.TxnResponse, []*mvccpb.Event, error) {
	return applyOne(kv, func(a *Applier) (*pb.TxnResponse, []*mvccpb.Event, error) { return a.Txn(index, req) })
}

// TxnRead serves a txn that IsTxnReadOnly accepts, without raft, at one
// consistent revision; any other txn fails with ErrTxnNotReadOnly.
func (kv *KV) TxnRead(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if !IsTxnReadOnly(req) {
		return nil, ErrTxnNotReadOnly
	}
	var ops opTally
	defer kv.metrics.recordOne(&ops)
	kv.readers.RLock()
	defer kv.readers.RUnlock()
	v := kv.readView()
	v.ops = &ops
	return v.txn(req)
}

// IsTxnReadOnly reports whether every operation of both branches is a
// range. Like etcd it does not look into nested txns: a txn holding one is
// never read-only, whatever it contains.
func IsTxnReadOnly(req *pb.TxnRequest) bool {
	for _, op := range req.GetSuccess() {
		if op.GetRequestRange() == nil {
			return false
		}
	}
	for _, op := range req.GetFailure() {
		if op.GetRequestRange() == nil {
			return false
		}
	}
	return true
}

// txnPlan is the branch a txn takes, decided before any of its operations
// runs.
type txnPlan struct {
	succeeded bool
	ops       []*pb.RequestOp
	nested    []*txnPlan // by position in ops; set for nested txns only
}

func (v *view) txn(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	p, err := v.plan(req)
	if err != nil {
		return nil, err
	}
	resp, err := v.execute(p)
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = v.headerRev()
	return resp, nil
}

// plan evaluates the compares of the txn and, recursively, of the nested
// txns of the branch it takes. etcd evaluates them all against the state
// before the txn, so a nested txn's compares do not see the writes that
// precede it.
func (v *view) plan(req *pb.TxnRequest) (*txnPlan, error) {
	ok, err := v.compareAll(req.GetCompare())
	if err != nil {
		return nil, err
	}
	p := &txnPlan{succeeded: ok, ops: req.GetSuccess()}
	if !ok {
		p.ops = req.GetFailure()
	}
	for i, op := range p.ops {
		nested, isTxn := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !isTxn {
			continue
		}
		if p.nested == nil {
			p.nested = make([]*txnPlan, len(p.ops))
		}
		if p.nested[i], err = v.plan(nested.RequestTxn); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// execute runs the operations of a planned branch in order. Responses nest
// as in etcd: each range, put and delete response has a header with the
// revision at that point; a nested txn's response has an empty header.
func (v *view) execute(p *txnPlan) (*pb.TxnResponse, error) {
	resp := &pb.TxnResponse{
		Header:    &pb.ResponseHeader{},
		Succeeded: p.succeeded,
		Responses: make([]*pb.ResponseOp, len(p.ops)),
	}
	for i, op := range p.ops {
		out := &pb.ResponseOp{}
		switch req := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			if v.w != nil && v.w.skipRanges {
				if _, _, err := v.readRev(req.RequestRange.Revision); err != nil {
					return nil, err
				}
				out.Response = &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: v.headerRev()}}}
				break
			}
			v.countRange()
			r, err := v.rangeReq(req.RequestRange)
			if err != nil {
				return nil, err
			}
			out.Response = &pb.ResponseOp_ResponseRange{ResponseRange: r}
		case *pb.RequestOp_RequestPut:
			if v.w == nil {
				return nil, ErrTxnNotReadOnly
			}
			r, err := v.w.put(req.RequestPut)
			if err != nil {
				return nil, err
			}
			out.Response = &pb.ResponseOp_ResponsePut{ResponsePut: r}
		case *pb.RequestOp_RequestDeleteRange:
			if v.w == nil {
				return nil, ErrTxnNotReadOnly
			}
			r, err := v.w.deleteRange(req.RequestDeleteRange)
			if err != nil {
				return nil, err
			}
			out.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: r}
		case *pb.RequestOp_RequestTxn:
			r, err := v.execute(p.nested[i])
			if err != nil {
				return nil, err
			}
			out.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: r}
		}
		resp.Responses[i] = out
	}
	return resp, nil
}

// countRange counts one range, or compare, of the view's transaction.
func (v *view) countRange() {
	if v.ops != nil {
		v.ops.ranges++
	}
}

// txn applies a txn entry. One that writes counts as two of etcd's MVCC
// transactions, as etcd runs it: the compares and the checks of the branch
// it takes, then its operations. If an operation fails, the txn applies
// nothing and, as etcd would have refused it in its check, its operations
// count for nothing.
func (w *writeTxn) txn(req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if IsTxnReadOnly(req) {
		return w.view.txn(req)
	}
	p, err := w.plan(req)
	if err != nil {
		w.a.totals.add(w.ops)
		return nil, err
	}
	check := *w.ops // the compares
	*w.ops = opTally{}
	resp, err := w.execute(p)
	if err != nil {
		*w.ops = opTally{}
	}
	check.ranges += w.checkReads(p, err != nil)
	w.a.totals.add(&check)
	if err != nil {
		return nil, err
	}
	resp.Header.Revision = w.headerRev()
	return resp, nil
}

// checkReads counts the reads etcd's check of a planned branch makes
// before the txn runs, nested txns included: it reads the key's previous
// value for each put that uses it (prev_kv, ignore_value, ignore_lease).
// etcd's check stops at the first put whose lease or key is missing, or
// range whose revision is out of reach; only for a txn that failed
// (failed) are those looked up, since one that ran met none.
func (w *writeTxn) checkReads(p *txnPlan, failed bool) int64 {
	n, _ := w.checkBranch(p, failed)
	return n
}

func (w *writeTxn) checkBranch(p *txnPlan, verify bool) (reads int64, ok bool) {
	for i, op := range p.ops {
		switch req := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			if r := req.RequestRange.Revision; verify && r != 0 {
				if _, _, err := w.readRev(r); err != nil {
					return reads, false
				}
			}
		case *pb.RequestOp_RequestPut:
			put := req.RequestPut
			if verify && put.Lease != 0 && !w.a.leaseExists(put.Lease) {
				return reads, false
			}
			if put.PrevKv || put.IgnoreValue || put.IgnoreLease {
				reads++
			}
			if verify && (put.IgnoreValue || put.IgnoreLease) && !w.existedBefore(put.Key) {
				return reads, false
			}
		case *pb.RequestOp_RequestTxn:
			n, ok := w.checkBranch(p.nested[i], verify)
			if reads += n; !ok {
				return reads, false
			}
		}
	}
	return reads, true
}

func (v *view) compareAll(cs []*pb.Compare) (bool, error) {
	for _, c := range cs {
		if ok, err := v.compare(c); err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// compare evaluates one compare the way etcd does: over a range, every key
// must satisfy it; with no key at all, the compare sees a key-value of
// zeros (version, create, mod and lease 0), except that a value compare
// then fails, as there is no value to compare.
func (v *view) compare(c *pb.Compare) (bool, error) {
	v.countRange()
	ents, _ := v.collect(spanOf(c.GetKey(), c.GetRangeEnd()), v.rev, true, all)
	var kvs []*mvccpb.KeyValue
	switch c.GetTarget() {
	case pb.Compare_VALUE, pb.Compare_LEASE:
		var err error
		if kvs, err = v.fetch(ents); err != nil {
			return false, err
		}
	default:
		kvs = indexOnly(ents)
	}
	if len(kvs) == 0 {
		return c.GetTarget() != pb.Compare_VALUE && compareKV(c, &mvccpb.KeyValue{}), nil
	}
	for _, kv := range kvs {
		if !compareKV(c, kv) {
			return false, nil
		}
	}
	return true, nil
}

// compareKV compares one key-value. A target_union that does not match the
// target compares against zero (or an empty value); an unknown result
// passes, both as in etcd.
func compareKV(c *pb.Compare, kv *mvccpb.KeyValue) bool {
	var r int
	switch c.GetTarget() {
	case pb.Compare_VALUE:
		r = bytes.Compare(kv.Value, c.GetValue())
	case pb.Compare_CREATE:
		r = cmp.Compare(kv.CreateRevision, c.GetCreateRevision())
	case pb.Compare_MOD:
		r = cmp.Compare(kv.ModRevision, c.GetModRevision())
	case pb.Compare_VERSION:
		r = cmp.Compare(kv.Version, c.GetVersion())
	case pb.Compare_LEASE:
		r = cmp.Compare(kv.Lease, c.GetLease())
	}
	switch c.GetResult() {
	case pb.Compare_EQUAL:
		return r == 0
	case pb.Compare_NOT_EQUAL:
		return r != 0
	case pb.Compare_GREATER:
		return r > 0
	case pb.Compare_LESS:
		return r < 0
	}
	return true
}
