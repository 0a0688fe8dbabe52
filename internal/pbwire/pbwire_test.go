package pbwire

import (
	"bytes"
	"math"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// check fails unless r's encoding and size are proto.Marshal's.
func check(t *testing.T, r *pb.WatchResponse) {
	t.Helper()
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := SizeWatchResponse(r); got != len(want) {
		t.Errorf("SizeWatchResponse = %d, proto.Size = %d", got, len(want))
	}
	got := make([]byte, len(want))
	MarshalWatchResponse(got, r)
	if !bytes.Equal(got, want) {
		t.Errorf("MarshalWatchResponse:\n got %x\nwant %x", got, want)
	}
	var back pb.WatchResponse
	if err := proto.Unmarshal(got, &back); err != nil || !proto.Equal(&back, r) {
		t.Errorf("decoded back: %v, %v; want %v", err, &back, r)
	}
}

func kv(key, value string, create, mod, version, lease int64) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), CreateRevision: create, ModRevision: mod, Version: version, Lease: lease}
}

func TestMatchesProtoMarshal(t *testing.T) {
	full := &pb.ResponseHeader{ClusterId: math.MaxUint64, MemberId: 1 << 63, Revision: 1 << 40, RaftTerm: 7}
	withUnknown := func(m proto.Message, num protowire.Number) {
		b := protowire.AppendTag(nil, num, protowire.VarintType)
		m.ProtoReflect().SetUnknown(protowire.AppendVarint(b, 300))
	}
	unknownKV := kv("k", "v", 1, 2, 1, 0)
	withUnknown(unknownKV, 99)
	unknownEv := &mvccpb.Event{Kv: kv("k", "", 0, 0, 0, 0)}
	withUnknown(unknownEv, 20)
	unknownHeader := &pb.ResponseHeader{Revision: 3}
	withUnknown(unknownHeader, 17)
	unknownResp := &pb.WatchResponse{WatchId: 4}
	withUnknown(unknownResp, 1000)
	unknownResp.Header = unknownHeader
	unknownResp.Events = []*mvccpb.Event{unknownEv, {Kv: unknownKV}}

	for name, r := range map[string]*pb.WatchResponse{
		"empty":           {},
		"header only":     {Header: &pb.ResponseHeader{}},
		"created":         {Header: full, WatchId: 0, Created: true},
		"stream progress": {Header: full, WatchId: -1},
		"refused": {Header: &pb.ResponseHeader{Revision: 9}, WatchId: -1, Created: true, Canceled: true,
			CancelReason: "etcdserver: permission denied"},
		"compacted": {Header: &pb.ResponseHeader{}, WatchId: 3, Canceled: true, CompactRevision: 1 << 35},
		"events": {Header: full, WatchId: 12, Fragment: true, Events: []*mvccpb.Event{
			{Type: mvccpb.Event_PUT, Kv: kv("foo", "bar", 2, 5, 3, 0x694d71ddf5eb5a2b)},
			{Type: mvccpb.Event_DELETE, Kv: kv("foo", "", 0, 6, 0, 0), PrevKv: kv("foo", "bar", 2, 5, 3, 1)},
			{Type: mvccpb.Event_PUT, Kv: kv("", "", 0, 0, 0, 0), PrevKv: &mvccpb.KeyValue{}},
			{Type: mvccpb.Event_PUT},
		}},
		"large value":     {Header: full, WatchId: 1, Events: []*mvccpb.Event{{Kv: kv("big", string(make([]byte, 1<<20)), 1, 1, 1, 0)}}},
		"unknown fields":  unknownResp,
		"negative fields": {WatchId: math.MinInt64, CompactRevision: -1, Events: []*mvccpb.Event{{Type: -1, Kv: kv("k", "v", -1, -2, -3, -4)}}},
	} {
		t.Run(name, func(t *testing.T) { check(t, r) })
	}
}

// A nil event in the list is written as an empty message, as the protobuf
// runtime writes it.
func TestNilEvent(t *testing.T) {
	r := &pb.WatchResponse{WatchId: 1, Events: []*mvccpb.Event{nil, {Kv: kv("a", "b", 1, 1, 1, 0)}}}
	want, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, SizeWatchResponse(r))
	if MarshalWatchResponse(got, r); !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}

func FuzzMatchesProtoMarshal(f *testing.F) {
	f.Add(uint64(1), uint64(2), int64(3), uint64(4), int64(5), true, false, int64(0), "", false, []byte("k"), []byte("v"), int64(1), int64(2), int64(1), int64(0), uint8(2))
	f.Add(uint64(0), uint64(0), int64(0), uint64(0), int64(-1), true, true, int64(-5), "reason", true, []byte{}, []byte(nil), int64(0), int64(0), int64(0), int64(-1), uint8(0))
	f.Fuzz(func(t *testing.T, cluster, member uint64, rev int64, term uint64, id int64, created, canceled bool,
		compact int64, reason string, fragment bool, key, value []byte, create, mod, version, lease int64, shape uint8) {
		if !utf8Valid(reason) {
			return // proto.Marshal refuses invalid UTF-8 in a string; the server writes none
		}
		r := &pb.WatchResponse{WatchId: id, Created: created, Canceled: canceled, CompactRevision: compact,
			CancelReason: reason, Fragment: fragment}
		if shape&1 != 0 {
			r.Header = &pb.ResponseHeader{ClusterId: cluster, MemberId: member, Revision: rev, RaftTerm: term}
		}
		for i := range int(shape>>1) % 5 {
			ev := &mvccpb.Event{Type: mvccpb.Event_EventType(i % 2),
				Kv: &mvccpb.KeyValue{Key: key, Value: value, CreateRevision: create, ModRevision: mod + int64(i), Version: version, Lease: lease}}
			if shape&0x40 != 0 {
				ev.PrevKv = &mvccpb.KeyValue{Key: key, Value: value[:len(value)/2], ModRevision: mod}
			}
			r.Events = append(r.Events, ev)
		}
		check(t, r)
	})
}

func utf8Valid(s string) bool {
	_, err := proto.Marshal(&pb.WatchResponse{CancelReason: s})
	return err == nil
}

// watchEvent is the response the 100-key watch benchmark sends: one small
// event for one watcher.
func watchEvent() *pb.WatchResponse {
	return &pb.WatchResponse{
		Header:  &pb.ResponseHeader{ClusterId: 0x1c6ab4b3a8f1c2d3, MemberId: 0x8e9e05c52164694d, Revision: 123456, RaftTerm: 2},
		WatchId: 57,
		Events:  []*mvccpb.Event{{Kv: kv("00000042", "abcd", 1002, 123456, 1230, 0)}},
	}
}

func BenchmarkWatchResponse(b *testing.B) {
	r := watchEvent()
	b.Run("pbwire", func(b *testing.B) {
		for b.Loop() {
			MarshalWatchResponse(make([]byte, SizeWatchResponse(r)), r)
		}
	})
	b.Run("proto", func(b *testing.B) {
		opts := proto.MarshalOptions{UseCachedSize: true}
		for b.Loop() {
			_, _ = opts.MarshalAppend(make([]byte, 0, proto.Size(r)), r)
		}
	})
}
