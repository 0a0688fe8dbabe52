package test

// The machinery of the differential tests: a scenario is a list of raw etcd
// v3 requests, run once against a real etcd to learn the expected answers
// and then against Cairn on each engine; every response is compared field
// by field and every error by gRPC status code and message.

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
)

// rawSendLimit is the client-side send limit of rawKV connections: far
// above the server's receive limit (--max-request-bytes plus 512 KiB), so
// that an oversized request reaches the server and the server's answer is
// what the test sees, not the client library's own refusal.
const rawSendLimit = 64 << 20

// rawKV dials endpoint (host:port) with plain gRPC and returns etcd's KV
// service on it. Going around clientv3 matters for differential tests:
// clientv3 rewrites errors it recognises by message, taking the status code
// from its own table, so a wrong code with the right message would pass.
func rawKV(t *testing.T, endpoint string) pb.KVClient {
	t.Helper()
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(rawSendLimit), grpc.MaxCallRecvMsgSize(rawSendLimit)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewKVClient(conn)
}

// etcdEndpoint is the host:port of the embedded etcd behind cli.
func etcdEndpoint(cli *clientv3.Client) string { return cli.Endpoints()[0] }

// outcome is what one request got back: a response, or an error reduced to
// the two things a client can observe, its gRPC code and message.
type outcome struct {
	Resp proto.Message
	Code codes.Code
	Msg  string
}

func outcomeOf(resp proto.Message, err error) outcome {
	if err != nil {
		s, _ := status.FromError(err)
		return outcome{Code: s.Code(), Msg: s.Message()}
	}
	return outcome{Resp: resp}
}

func (o outcome) String() string {
	if o.Resp == nil {
		return fmt.Sprintf("error %s: %q", o.Code, o.Msg)
	}
	return brief(o.Resp)
}

// brief renders a message as compact JSON, cut short so that a 2 MiB value
// does not flood the test log.
func brief(m proto.Message) string {
	s := protojson.MarshalOptions{UseProtoNames: true}.Format(m)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return fmt.Sprintf("%T %s", m, s)
}

// send issues one request, chosen by its type, on kv.
func send(ctx context.Context, kv pb.KVClient, req proto.Message) outcome {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return outcomeOf(kv.Range(ctx, r))
	case *pb.PutRequest:
		return outcomeOf(kv.Put(ctx, r))
	case *pb.DeleteRangeRequest:
		return outcomeOf(kv.DeleteRange(ctx, r))
	case *pb.TxnRequest:
		return outcomeOf(kv.Txn(ctx, r))
	case *pb.CompactionRequest:
		return outcomeOf(kv.Compact(ctx, r))
	}
	panic(fmt.Sprintf("send: unsupported request %T", req))
}

// revisionFields are the int64 fields, in requests and responses, that
// hold a store revision.
var revisionFields = map[protoreflect.Name]bool{
	"revision": true, "create_revision": true, "mod_revision": true,
	"min_mod_revision": true, "max_mod_revision": true,
	"min_create_revision": true, "max_create_revision": true,
	"compact_revision": true,
}

// shiftRevisions adds delta to every positive revision field of m, in
// place, through nested messages, lists and oneofs. Zero and negative
// revisions keep their special meanings (absent, current) and stay.
func shiftRevisions(m protoreflect.Message, delta int64) {
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				shiftRevisions(l.Get(i).Message(), delta)
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			shiftRevisions(v.Message(), delta)
		case fd.Kind() == protoreflect.Int64Kind && revisionFields[fd.Name()] && v.Int() > 0:
			m.Set(fd, protoreflect.ValueOfInt64(v.Int()+delta))
		}
		return true
	})
}

// clearMemberIdentity zeroes the header fields that name the cluster,
// member and raft term, which legitimately differ between two servers, in
// m and every message nested in it. Revisions are kept.
func clearMemberIdentity(m protoreflect.Message) {
	if h, ok := m.Interface().(*pb.ResponseHeader); ok {
		h.ClusterId, h.MemberId, h.RaftTerm = 0, 0, 0
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				clearMemberIdentity(l.Get(i).Message())
			}
		case fd.Kind() == protoreflect.MessageKind && !fd.IsMap():
			clearMemberIdentity(v.Message())
		}
		return true
	})
}

// scenario is a named sequence of requests written as if sent to a fresh
// store: revision 1 is the empty store and the first write makes revision
// 2. Scenarios share one server, so the runner empties the store first and
// translates revisions between the scenario's numbering and the server's.
type scenario struct {
	name  string
	steps []proto.Message
}

// scenarioRun is a scenario's outcomes on one server, in scenario
// revisions, and base, the server revision that scenario revision 1 stood
// for.
type scenarioRun struct {
	base     int64
	outcomes []outcome
}

// wipeAll deletes every key, leaving the store as a fresh one except for
// its revision.
var wipeAll = &pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}

// wipe empties the store behind kv (wipeAll) and returns the revision it
// is at afterwards.
func wipe(t *testing.T, ctx context.Context, kv pb.KVClient) int64 {
	t.Helper()
	wiped := send(ctx, kv, wipeAll)
	if wiped.Resp == nil {
		t.Fatalf("emptying the store: %v", wiped)
	}
	return wiped.Resp.(*pb.DeleteRangeResponse).Header.Revision
}

// run empties the store behind kv, then sends the scenario's requests in
// order with their revisions shifted to the server's numbering, and
// returns the normalised outcomes. Every step runs whatever the earlier
// ones returned, so that etcd and Cairn see the same sequence.
func (sc scenario) run(t *testing.T, kv pb.KVClient) scenarioRun {
	t.Helper()
	ctx := ctx(t)
	base := wipe(t, ctx, kv)
	delta := base - 1
	run := scenarioRun{base: base}
	for _, step := range sc.steps {
		req := proto.Clone(step)
		shiftRevisions(req.ProtoReflect(), delta)
		o := send(ctx, kv, req)
		if o.Resp != nil {
			clearMemberIdentity(o.Resp.ProtoReflect())
			shiftRevisions(o.Resp.ProtoReflect(), -delta)
		}
		run.outcomes = append(run.outcomes, o)
	}
	return run
}

// compareRuns reports every step whose outcome on Cairn (got) differs from
// etcd's (want), and a revision drift if an earlier scenario left the two
// servers at different revisions.
func (sc scenario) compareRuns(t *testing.T, want, got scenarioRun) {
	t.Helper()
	if got.base != want.base {
		t.Errorf("revision drift from earlier scenarios: scenario starts at server revision %d on Cairn, %d on etcd", got.base, want.base)
	}
	for i, step := range sc.steps {
		w, g := want.outcomes[i], got.outcomes[i]
		if w.Resp == nil || g.Resp == nil {
			if w.Code != g.Code || w.Msg != g.Msg || (w.Resp == nil) != (g.Resp == nil) {
				t.Errorf("step %d %s\n  etcd:  %v\n  cairn: %v", i+1, brief(step), w, g)
			}
			continue
		}
		// proto.Equal first: cmp walks bytes one reflected element at a
		// time, which takes seconds on a 1 MiB value.
		if proto.Equal(w.Resp, g.Resp) {
			continue
		}
		if d := cmp.Diff(w.Resp, g.Resp, protocmp.Transform()); d != "" {
			t.Errorf("step %d %s\nresponse differs from etcd (-etcd +cairn):\n%s", i+1, brief(step), d)
		}
	}
}

// runDifferential runs each scenario on a real etcd to learn the expected
// outcomes, then, per engine, on a Cairn member and compares. One etcd and
// one member per engine serve all scenarios in the same order.
func runDifferential(t *testing.T, scenarios []scenario) {
	t.Helper()
	names := map[string]bool{}
	for _, sc := range scenarios {
		if names[sc.name] {
			t.Fatalf("duplicate scenario name %q", sc.name)
		}
		names[sc.name] = true
	}
	etcdKV := rawKV(t, etcdEndpoint(startEtcd(t)))
	want := make([]scenarioRun, len(scenarios))
	for i, sc := range scenarios {
		want[i] = sc.run(t, etcdKV)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		kv := rawKV(t, m.clientEP)
		for i, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				sc.compareRuns(t, want[i], sc.run(t, kv))
			})
		}
	})
}

// Request builders for scenario tables: the common shapes, each a plain
// etcdserverpb request. Anything unusual is written as a literal.

func b(s string) []byte { return []byte(s) }

func put(key, value string) *pb.PutRequest {
	return &pb.PutRequest{Key: b(key), Value: b(value)}
}

func get(key string) *pb.RangeRequest { return &pb.RangeRequest{Key: b(key)} }

func getRange(key, end string) *pb.RangeRequest {
	return &pb.RangeRequest{Key: b(key), RangeEnd: b(end)}
}

func getPrefix(prefix string) *pb.RangeRequest {
	return &pb.RangeRequest{Key: b(prefix), RangeEnd: b(clientv3.GetPrefixRangeEnd(prefix))}
}

func getAt(key string, rev int64) *pb.RangeRequest {
	return &pb.RangeRequest{Key: b(key), Revision: rev}
}

func del(key string) *pb.DeleteRangeRequest { return &pb.DeleteRangeRequest{Key: b(key)} }

func delRange(key, end string) *pb.DeleteRangeRequest {
	return &pb.DeleteRangeRequest{Key: b(key), RangeEnd: b(end)}
}

func compact(rev int64) *pb.CompactionRequest { return &pb.CompactionRequest{Revision: rev} }

func opPut(key, value string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: put(key, value)}}
}

func opGet(r *pb.RangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
}

func opDel(r *pb.DeleteRangeRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func opTxn(r *pb.TxnRequest) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r}}
}

func ops(o ...*pb.RequestOp) []*pb.RequestOp { return o }

func cmps(c ...*pb.Compare) []*pb.Compare { return c }

// Compares, one per target. result is "=", "!=", "<" or ">".

func cmpResult(result string) pb.Compare_CompareResult {
	switch result {
	case "=":
		return pb.Compare_EQUAL
	case "!=":
		return pb.Compare_NOT_EQUAL
	case "<":
		return pb.Compare_LESS
	case ">":
		return pb.Compare_GREATER
	}
	panic("compare result " + result)
}

func cmpValue(key, result, value string) *pb.Compare {
	return &pb.Compare{Key: b(key), Target: pb.Compare_VALUE, Result: cmpResult(result), TargetUnion: &pb.Compare_Value{Value: b(value)}}
}

func cmpVersion(key, result string, version int64) *pb.Compare {
	return &pb.Compare{Key: b(key), Target: pb.Compare_VERSION, Result: cmpResult(result), TargetUnion: &pb.Compare_Version{Version: version}}
}

func cmpCreate(key, result string, rev int64) *pb.Compare {
	return &pb.Compare{Key: b(key), Target: pb.Compare_CREATE, Result: cmpResult(result), TargetUnion: &pb.Compare_CreateRevision{CreateRevision: rev}}
}

func cmpMod(key, result string, rev int64) *pb.Compare {
	return &pb.Compare{Key: b(key), Target: pb.Compare_MOD, Result: cmpResult(result), TargetUnion: &pb.Compare_ModRevision{ModRevision: rev}}
}

func cmpLease(key, result string, lease int64) *pb.Compare {
	return &pb.Compare{Key: b(key), Target: pb.Compare_LEASE, Result: cmpResult(result), TargetUnion: &pb.Compare_Lease{Lease: lease}}
}

// ranged returns c applied to every key in [c.Key, end).
func ranged(c *pb.Compare, end string) *pb.Compare {
	c.RangeEnd = b(end)
	return c
}
