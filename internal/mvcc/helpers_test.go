package mvcc

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
	"github.com/cairn-kv/cairn/internal/storage/rocksdb"
)

// engineCase opens an engine of one kind in dir. Reopening dir after
// Checkpoint and Close yields the state at the checkpoint.
type engineCase struct {
	name string
	open func(dir string) (storage.Engine, error)
}

// engines lists the engines every behaviour test runs on.
var engines = []engineCase{
	{"memory", func(dir string) (storage.Engine, error) { return memory.Open(dir) }},
	{"rocksdb", func(dir string) (storage.Engine, error) { return rocksdb.Open(dir, rocksdb.Options{}) }},
}

// forEachEngine runs fn as a subtest per engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, ec engineCase)) {
	for _, ec := range engines {
		t.Run(ec.name, func(t *testing.T) { fn(t, ec) })
	}
}

// fixture is a KV over a reopenable engine, with a raft index counter.
type fixture struct {
	t     testing.TB
	ec    engineCase
	dir   string
	opts  Options
	e     storage.Engine
	kv    *KV
	index uint64

	// In batched mode, run stages consecutive writes in one Applier, ap,
	// and commits it before anything else; committed is the index of the
	// last committed entry.
	batched   bool
	ap        *Applier
	committed uint64
}

// entryApplier applies or stages raft entries: *KV one by one, *Applier in
// a batch.
type entryApplier interface {
	Put(index uint64, req *pb.PutRequest) (*pb.PutResponse, []*mvccpb.Event, error)
	DeleteRange(index uint64, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, []*mvccpb.Event, error)
	Txn(index uint64, req *pb.TxnRequest) (*pb.TxnResponse, []*mvccpb.Event, error)
}

// writer returns what the next write entry goes through.
func (f *fixture) writer() entryApplier {
	if !f.batched {
		return f.kv
	}
	if f.ap == nil {
		f.ap = f.kv.BeginApply()
	}
	return f.ap
}

// applyEntry applies, or in batched mode stages, the next raft entry,
// which carries req: a put, delete or txn request, or nil for an entry
// that does not touch the KV.
func (f *fixture) applyEntry(req any) (resp proto.Message, evs []*mvccpb.Event, err error) {
	f.index++
	switch r := req.(type) {
	case *pb.PutRequest:
		resp, evs, err = f.writer().Put(f.index, r)
	case *pb.DeleteRangeRequest:
		resp, evs, err = f.writer().DeleteRange(f.index, r)
	case *pb.TxnRequest:
		resp, evs, err = f.writer().Txn(f.index, r)
	case nil:
		err = f.setApplied(f.index)
	default:
		f.t.Fatalf("unknown entry %T", req)
	}
	if f.ap == nil {
		f.committed = f.index
	}
	return resp, evs, err
}

// setApplied applies or stages an entry that does not touch the KV.
func (f *fixture) setApplied(index uint64) error {
	if f.batched {
		if f.ap == nil {
			f.ap = f.kv.BeginApply()
		}
		f.ap.SetApplied(index)
		return nil
	}
	return f.kv.SetApplied(index)
}

// flush commits the open Applier, if any.
func (f *fixture) flush() {
	f.t.Helper()
	if f.ap == nil {
		return
	}
	// Nothing staged is visible before the commit.
	if got := f.kv.AppliedIndex(); got != f.committed {
		f.t.Fatalf("applied index %d before commit, want %d", got, f.committed)
	}
	if err := f.ap.Commit(); err != nil {
		f.t.Fatalf("commit: %v", err)
	}
	f.ap = nil
	f.committed = f.index
}

// newFixture opens a store for scenario tests, whose expected events carry
// PrevKv as etcd's watch reports it; TestPutEventsWithoutPrevKV covers the
// default.
func newFixture(t testing.TB, ec engineCase, opts Options) *fixture {
	t.Helper()
	opts.EventsWithPrevKV = true
	f := &fixture{t: t, ec: ec, dir: t.TempDir(), opts: opts}
	f.open()
	t.Cleanup(f.close)
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	e, err := f.ec.open(f.dir)
	if err != nil {
		f.t.Fatalf("open engine: %v", err)
	}
	kv, err := Open(e, f.opts)
	if err != nil {
		f.t.Fatalf("open kv: %v", err)
	}
	f.e, f.kv = e, kv
}

func (f *fixture) close() {
	if f.kv == nil {
		return
	}
	if f.ap != nil {
		f.ap.Abort()
		f.ap = nil
	}
	if err := f.kv.Close(); err != nil {
		f.t.Errorf("close kv: %v", err)
	}
	if err := f.e.Close(); err != nil {
		f.t.Errorf("close engine: %v", err)
	}
	f.kv, f.e = nil, nil
}

// reopen closes the KV and its engine as a clean shutdown would and opens
// them again from the directory.
func (f *fixture) reopen() {
	f.t.Helper()
	f.flush()
	if err := f.kv.Close(); err != nil {
		f.t.Fatalf("close kv: %v", err)
	}
	if err := f.e.Checkpoint(); err != nil {
		f.t.Fatalf("checkpoint: %v", err)
	}
	if err := f.e.Close(); err != nil {
		f.t.Fatalf("close engine: %v", err)
	}
	f.open()
}

func (f *fixture) mustPut(key, value string) *pb.PutResponse {
	f.t.Helper()
	f.index++
	resp, _, err := f.kv.Put(f.index, &pb.PutRequest{Key: []byte(key), Value: []byte(value)})
	if err != nil {
		f.t.Fatalf("put %q: %v", key, err)
	}
	return resp
}

func (f *fixture) mustCompact(rev int64) {
	f.t.Helper()
	f.index++
	done, err := f.kv.Compact(f.index, rev)
	if err != nil {
		f.t.Fatalf("compact %d: %v", rev, err)
	}
	waitDone(f.t, done)
}

func waitDone(t testing.TB, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("compaction did not finish")
	}
}

// step is one request of a scenario and what it must produce. A step whose
// want and err are both nil only sets the scene: its result is not checked
// beyond succeeding.
type step struct {
	do   any // a request, readTxn, compact or reopen
	want proto.Message
	err  error
	evs  []*mvccpb.Event // for writes with want set: the events expected
}

// readTxn marks a txn served by TxnRead rather than applied.
type readTxn struct{ req *pb.TxnRequest }

// compact is a compaction request; the step waits until it has finished.
type compact struct{ rev int64 }

// reopen closes and reopens KV and engine in the middle of a scenario.
type reopen struct{}

type scenario struct {
	name  string
	opts  Options
	steps []step
}

var diffOpts = []cmp.Option{protocmp.Transform(), cmpopts.EquateEmpty()}

func (f *fixture) run(i int, st step) {
	f.t.Helper()
	var (
		got proto.Message
		evs []*mvccpb.Event
		err error
	)
	switch st.do.(type) {
	case *pb.PutRequest, *pb.DeleteRangeRequest, *pb.TxnRequest:
	default:
		f.flush()
	}
	switch req := st.do.(type) {
	case *pb.RangeRequest:
		got, err = f.kv.Range(req)
	case readTxn:
		got, err = f.kv.TxnRead(req.req)
	case *pb.PutRequest, *pb.DeleteRangeRequest, *pb.TxnRequest:
		got, evs, err = f.applyEntry(req)
	case compact:
		f.index++
		var done <-chan struct{}
		done, err = f.kv.Compact(f.index, req.rev)
		if done != nil {
			waitDone(f.t, done)
		}
	case reopen:
		f.reopen()
	default:
		f.t.Fatalf("step %d: unknown request %T", i, st.do)
	}
	if !errors.Is(err, st.err) {
		f.t.Fatalf("step %d (%T): error %v, want %v", i, st.do, err, st.err)
	}
	wantApplied := f.index
	if f.ap != nil {
		wantApplied = f.committed
	} else {
		f.committed = f.index
	}
	if got := f.kv.AppliedIndex(); got != wantApplied {
		f.t.Fatalf("step %d: applied index %d, want %d", i, got, wantApplied)
	}
	if st.want == nil {
		return
	}
	if d := cmp.Diff(st.want, got, diffOpts...); d != "" {
		f.t.Fatalf("step %d (%T): response mismatch (-want +got):\n%s", i, st.do, d)
	}
	if d := cmp.Diff(st.evs, evs, diffOpts...); d != "" {
		f.t.Fatalf("step %d (%T): events mismatch (-want +got):\n%s", i, st.do, d)
	}
}

// runScenarios runs every scenario on every engine twice: applying each
// write on its own, and staging each run of consecutive writes in one
// Applier, committed before the next read, compaction or reopen. Both must
// give the same answers.
func runScenarios(t *testing.T, scs []scenario) {
	forEachEngine(t, func(t *testing.T, ec engineCase) {
		for _, sc := range scs {
			t.Run(sc.name, func(t *testing.T) {
				t.Run("one-by-one", func(t *testing.T) { runScenario(t, ec, sc, false) })
				t.Run("batched", func(t *testing.T) { runScenario(t, ec, sc, true) })
			})
		}
	})
}

func runScenario(t *testing.T, ec engineCase, sc scenario, batched bool) {
	f := newFixture(t, ec, sc.opts)
	f.batched = batched
	for i, st := range sc.steps {
		f.run(i, st)
	}
	f.flush()
	// Whatever the scenario did, a reopened store must hold exactly the
	// same history.
	before := f.dump()
	f.reopen()
	if d := cmp.Diff(before, f.dump(), diffOpts...); d != "" {
		t.Fatalf("state differs after reopen (-before +after):\n%s", d)
	}
}

// stateDump is everything observable about a store: its revisions and the
// whole key space at every revision that can still be read.
type stateDump struct {
	Rev, CompactRev int64
	Applied         uint64
	ByRev           map[int64]*pb.RangeResponse
}

func (f *fixture) dump() stateDump {
	f.t.Helper()
	d := stateDump{Rev: f.kv.Rev(), CompactRev: f.kv.CompactRev(), Applied: f.kv.AppliedIndex(), ByRev: map[int64]*pb.RangeResponse{}}
	for r := max(1, d.CompactRev); r <= d.Rev; r++ {
		resp, err := f.kv.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: r})
		if err != nil {
			f.t.Fatalf("dump at %d: %v", r, err)
		}
		d.ByRev[r] = resp
	}
	return d
}

// dumpCurrent is dump with the key space at the current revision only.
func (f *fixture) dumpCurrent() stateDump {
	f.t.Helper()
	d := stateDump{Rev: f.kv.Rev(), CompactRev: f.kv.CompactRev(), Applied: f.kv.AppliedIndex()}
	resp, err := f.kv.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		f.t.Fatalf("dump: %v", err)
	}
	d.ByRev = map[int64]*pb.RangeResponse{d.Rev: resp}
	return d
}

// Builders that keep the scenario tables short.

func kv(key, value string, create, mod, ver int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), CreateRevision: create, ModRevision: mod, Version: ver}
}

func kvLease(key, value string, create, mod, ver, lease int64) *mvccpb.KeyValue {
	k := kv(key, value, create, mod, ver)
	k.Lease = lease
	return k
}

func hdr(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} }

func put(key, value string) *pb.PutRequest {
	return &pb.PutRequest{Key: []byte(key), Value: []byte(value)}
}

func get(key string) *pb.RangeRequest { return &pb.RangeRequest{Key: []byte(key)} }

func getRange(key, end string) *pb.RangeRequest {
	return &pb.RangeRequest{Key: []byte(key), RangeEnd: []byte(end)}
}

func getAt(key string, rev int64) *pb.RangeRequest {
	return &pb.RangeRequest{Key: []byte(key), Revision: rev}
}

func del(key string) *pb.DeleteRangeRequest { return &pb.DeleteRangeRequest{Key: []byte(key)} }

func delRange(key, end string) *pb.DeleteRangeRequest {
	return &pb.DeleteRangeRequest{Key: []byte(key), RangeEnd: []byte(end)}
}

func rangeResp(rev, count int64, more bool, kvs ...*mvccpb.KeyValue) *pb.RangeResponse {
	return &pb.RangeResponse{Header: hdr(rev), Count: count, More: more, Kvs: kvs}
}

func putResp(rev int64, prev *mvccpb.KeyValue) *pb.PutResponse {
	return &pb.PutResponse{Header: hdr(rev), PrevKv: prev}
}

func delResp(rev, deleted int64, prev ...*mvccpb.KeyValue) *pb.DeleteRangeResponse {
	return &pb.DeleteRangeResponse{Header: hdr(rev), Deleted: deleted, PrevKvs: prev}
}

func putEv(kv, prev *mvccpb.KeyValue) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: kv, PrevKv: prev}
}

func delEv(key string, rev int64, prev *mvccpb.KeyValue) *mvccpb.Event {
	return &mvccpb.Event{Type: mvccpb.Event_DELETE, Kv: &mvccpb.KeyValue{Key: []byte(key), ModRevision: rev}, PrevKv: prev}
}

func evs(e ...*mvccpb.Event) []*mvccpb.Event { return e }

func opRange(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opPut(r *pb.PutRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r}}
}

func opDel(r *pb.DeleteRangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func opTxn(r *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
}

func respRange(r *pb.RangeResponse) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: r}}
}

func respPut(r *pb.PutResponse) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: r}}
}

func respDel(r *pb.DeleteRangeResponse) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: r}}
}

func respTxn(r *pb.TxnResponse) *pb.ResponseOp {
	return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: r}}
}

func txn(cmps []*pb.Compare, success, failure []*pb.RequestOp) *pb.TxnRequest {
	return &pb.TxnRequest{Compare: cmps, Success: success, Failure: failure}
}

func ops(o ...*pb.RequestOp) []*pb.RequestOp { return o }

func cmps(c ...*pb.Compare) []*pb.Compare { return c }

// txnResp is a top-level txn response; nested txn responses have an empty
// header (see nestedResp).
func txnResp(rev int64, succeeded bool, resps ...*pb.ResponseOp) *pb.TxnResponse {
	return &pb.TxnResponse{Header: hdr(rev), Succeeded: succeeded, Responses: resps}
}

func nestedResp(succeeded bool, resps ...*pb.ResponseOp) *pb.TxnResponse {
	return &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: succeeded, Responses: resps}
}

func cmpValue(key string, r pb.Compare_CompareResult, v string) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_VALUE, Result: r, TargetUnion: &pb.Compare_Value{Value: []byte(v)}}
}

func cmpVersion(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_VERSION, Result: r, TargetUnion: &pb.Compare_Version{Version: v}}
}

func cmpCreate(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_CREATE, Result: r, TargetUnion: &pb.Compare_CreateRevision{CreateRevision: v}}
}

func cmpMod(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_MOD, Result: r, TargetUnion: &pb.Compare_ModRevision{ModRevision: v}}
}

func cmpLease(key string, r pb.Compare_CompareResult, v int64) *pb.Compare {
	return &pb.Compare{Key: []byte(key), Target: pb.Compare_LEASE, Result: r, TargetUnion: &pb.Compare_Lease{Lease: v}}
}

// withEnd makes a compare ranged.
func withEnd(c *pb.Compare, end string) *pb.Compare {
	c.RangeEnd = []byte(end)
	return c
}
