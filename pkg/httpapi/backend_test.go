package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"maps"
	"slices"
	"sync"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
)

// fakeBackend is a Backend with etcd's semantics where the REST layer can
// see them: a map of keys, one revision counter shared by all writes of a
// txn, versions, leases that must exist, prev_kv, limit, count_only,
// keys_only, compares over ranges, nested txns, and the future / compacted
// revision checks. It keeps no history: a read at an old revision sees the
// latest values. It records a copy of every request, and when err is set
// every call records its request and then fails with err.
type fakeBackend struct {
	mu        sync.Mutex
	rev       int64
	compacted int64
	kvs       map[string]*mvccpb.KeyValue
	leases    map[int64]bool
	status    *etcdserverpb.StatusResponse
	err       error
	reqs      []proto.Message
	wrote     bool
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{rev: 1, kvs: map[string]*mvccpb.KeyValue{}, leases: map[int64]bool{}}
}

// setErr makes every following call fail with err.
func (f *fakeBackend) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// requests returns copies of the requests received so far.
func (f *fakeBackend) requests() []proto.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

// record keeps a copy of m and returns the injected error, if any.
func (f *fakeBackend) record(m proto.Message) error {
	f.reqs = append(f.reqs, proto.Clone(m))
	return f.err
}

func (f *fakeBackend) header() *etcdserverpb.ResponseHeader {
	return &etcdserverpb.ResponseHeader{ClusterId: 11, MemberId: 22, Revision: f.rev, RaftTerm: 3}
}

// write runs apply at the next revision and commits that revision if
// apply changed anything. On error every change is rolled back, as the
// store rolls back a failed txn.
func (f *fakeBackend) write(apply func(rev int64) error) error {
	saved := maps.Clone(f.kvs)
	f.wrote = false
	if err := apply(f.rev + 1); err != nil {
		f.kvs = saved
		return err
	}
	if f.wrote {
		f.rev++
	}
	return nil
}

func (f *fakeBackend) Range(_ context.Context, r *etcdserverpb.RangeRequest) (*etcdserverpb.RangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(r); err != nil {
		return nil, err
	}
	resp, err := f.rangeLocked(r)
	if err != nil {
		return nil, err
	}
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeBackend) Put(_ context.Context, r *etcdserverpb.PutRequest) (*etcdserverpb.PutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(r); err != nil {
		return nil, err
	}
	var resp *etcdserverpb.PutResponse
	err := f.write(func(rev int64) (err error) {
		resp, err = f.putLocked(r, rev)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeBackend) DeleteRange(_ context.Context, r *etcdserverpb.DeleteRangeRequest) (*etcdserverpb.DeleteRangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(r); err != nil {
		return nil, err
	}
	var resp *etcdserverpb.DeleteRangeResponse
	_ = f.write(func(int64) error {
		resp = f.deleteLocked(r)
		return nil
	})
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeBackend) Txn(_ context.Context, r *etcdserverpb.TxnRequest) (*etcdserverpb.TxnResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.record(r); err != nil {
		return nil, err
	}
	var resp *etcdserverpb.TxnResponse
	err := f.write(func(rev int64) (err error) {
		resp, err = f.txnLocked(r, rev)
		return err
	})
	if err != nil {
		return nil, err
	}
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeBackend) Status(context.Context) (*etcdserverpb.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	resp := proto.Clone(f.status).(*etcdserverpb.StatusResponse)
	resp.Header = f.header()
	return resp, nil
}

// match returns the keys selected by key and end, in order: key alone when
// end is empty, every key ≥ key when end is "\x00", else [key, end).
func (f *fakeBackend) match(key, end []byte) []string {
	var out []string
	for k := range f.kvs {
		b := []byte(k)
		switch {
		case len(end) == 0:
			if bytes.Equal(b, key) {
				out = append(out, k)
			}
		case bytes.Equal(end, []byte{0}):
			if bytes.Compare(b, key) >= 0 {
				out = append(out, k)
			}
		default:
			if bytes.Compare(b, key) >= 0 && bytes.Compare(b, end) < 0 {
				out = append(out, k)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (f *fakeBackend) rangeLocked(r *etcdserverpb.RangeRequest) (*etcdserverpb.RangeResponse, error) {
	if r.Revision > f.rev {
		return nil, mvcc.ErrFutureRev
	}
	if r.Revision > 0 && r.Revision <= f.compacted {
		return nil, mvcc.ErrCompacted
	}
	keys := f.match(r.Key, r.RangeEnd)
	resp := &etcdserverpb.RangeResponse{Count: int64(len(keys))}
	if r.CountOnly {
		return resp, nil
	}
	if r.Limit > 0 && int64(len(keys)) > r.Limit {
		keys, resp.More = keys[:r.Limit], true
	}
	for _, k := range keys {
		kv := proto.Clone(f.kvs[k]).(*mvccpb.KeyValue)
		if r.KeysOnly {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return resp, nil
}

func (f *fakeBackend) putLocked(r *etcdserverpb.PutRequest, rev int64) (*etcdserverpb.PutResponse, error) {
	prev := f.kvs[string(r.Key)]
	switch {
	case len(r.Key) == 0:
		return nil, mvcc.ErrEmptyKey
	case r.IgnoreValue && len(r.Value) != 0:
		return nil, mvcc.ErrValueProvided
	case r.IgnoreLease && r.Lease != 0:
		return nil, mvcc.ErrLeaseProvided
	case (r.IgnoreValue || r.IgnoreLease) && prev == nil:
		return nil, mvcc.ErrKeyNotFound
	case r.Lease != 0 && !f.leases[r.Lease]:
		return nil, mvcc.ErrLeaseNotFound
	}
	kv := &mvccpb.KeyValue{Key: r.Key, Value: r.Value, Lease: r.Lease, CreateRevision: rev, ModRevision: rev, Version: 1}
	resp := &etcdserverpb.PutResponse{}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
		if r.IgnoreValue {
			kv.Value = prev.Value
		}
		if r.IgnoreLease {
			kv.Lease = prev.Lease
		}
		if r.PrevKv {
			resp.PrevKv = prev
		}
	}
	f.kvs[string(r.Key)] = kv
	f.wrote = true
	return resp, nil
}

func (f *fakeBackend) deleteLocked(r *etcdserverpb.DeleteRangeRequest) *etcdserverpb.DeleteRangeResponse {
	resp := &etcdserverpb.DeleteRangeResponse{}
	for _, k := range f.match(r.Key, r.RangeEnd) {
		if r.PrevKv {
			resp.PrevKvs = append(resp.PrevKvs, f.kvs[k])
		}
		delete(f.kvs, k)
		resp.Deleted++
		f.wrote = true
	}
	return resp
}

func (f *fakeBackend) txnLocked(r *etcdserverpb.TxnRequest, rev int64) (*etcdserverpb.TxnResponse, error) {
	resp := &etcdserverpb.TxnResponse{Succeeded: true}
	for _, c := range r.Compare {
		if !f.compare(c) {
			resp.Succeeded = false
			break
		}
	}
	ops := r.Success
	if !resp.Succeeded {
		ops = r.Failure
	}
	for _, op := range ops {
		var out etcdserverpb.ResponseOp
		switch op := op.Request.(type) {
		case *etcdserverpb.RequestOp_RequestRange:
			rr, err := f.rangeLocked(op.RequestRange)
			if err != nil {
				return nil, err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *etcdserverpb.RequestOp_RequestPut:
			pr, err := f.putLocked(op.RequestPut, rev)
			if err != nil {
				return nil, err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponsePut{ResponsePut: pr}
		case *etcdserverpb.RequestOp_RequestDeleteRange:
			out.Response = &etcdserverpb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: f.deleteLocked(op.RequestDeleteRange)}
		case *etcdserverpb.RequestOp_RequestTxn:
			tr, err := f.txnLocked(op.RequestTxn, rev)
			if err != nil {
				return nil, err
			}
			out.Response = &etcdserverpb.ResponseOp_ResponseTxn{ResponseTxn: tr}
		}
		resp.Responses = append(resp.Responses, &out)
	}
	return resp, nil
}

// compare holds when every key in the compare's range satisfies it; as in
// etcd, a range with no keys compares the zero KeyValue, except that a
// value compare on a missing key is false.
func (f *fakeBackend) compare(c *etcdserverpb.Compare) bool {
	keys := f.match(c.Key, c.RangeEnd)
	if len(keys) == 0 {
		return c.Target != etcdserverpb.Compare_VALUE && compareKV(c, &mvccpb.KeyValue{})
	}
	for _, k := range keys {
		if !compareKV(c, f.kvs[k]) {
			return false
		}
	}
	return true
}

func compareKV(c *etcdserverpb.Compare, kv *mvccpb.KeyValue) bool {
	var n int
	switch u := c.TargetUnion.(type) {
	case *etcdserverpb.Compare_Value:
		n = bytes.Compare(kv.Value, u.Value)
	case *etcdserverpb.Compare_Version:
		n = cmp.Compare(kv.Version, u.Version)
	case *etcdserverpb.Compare_CreateRevision:
		n = cmp.Compare(kv.CreateRevision, u.CreateRevision)
	case *etcdserverpb.Compare_ModRevision:
		n = cmp.Compare(kv.ModRevision, u.ModRevision)
	case *etcdserverpb.Compare_Lease:
		n = cmp.Compare(kv.Lease, u.Lease)
	}
	switch c.Result {
	case etcdserverpb.Compare_EQUAL:
		return n == 0
	case etcdserverpb.Compare_NOT_EQUAL:
		return n != 0
	case etcdserverpb.Compare_LESS:
		return n < 0
	default:
		return n > 0
	}
}
