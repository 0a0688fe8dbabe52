// Package pbwire writes the etcd messages a member sends most often, watch
// responses, in protobuf's wire format without going through the protobuf
// runtime.
//
// A watch response fans out: one commit becomes a response on every
// stream that watches its keys, and each is marshalled on its own. The
// protobuf runtime spends most of that work walking its message tables
// (a size pass, then an encoding pass); the watch response, its header and
// its events are flat messages of a few scalar and bytes fields, whose
// encoding this package writes directly, in two passes: one for the size,
// one that fills a buffer of that size from its end, so that each nested
// message's length is known when its prefix is written. The bytes are the
// ones proto.Marshal produces: fields in field-number order, proto3 zero
// values left out, unknown fields kept at the end of their message.
package pbwire

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/encoding/protowire"
)

// SizeWatchResponse is the length of r's encoding.
func SizeWatchResponse(r *pb.WatchResponse) int {
	n := 0
	if r.Header != nil {
		n += sizeMessage(1, sizeHeader(r.Header))
	}
	n += sizeInt(2, r.WatchId) + sizeBool(3, r.Created) + sizeBool(4, r.Canceled) +
		sizeInt(5, r.CompactRevision) + sizeString(6, r.CancelReason) + sizeBool(7, r.Fragment)
	for _, ev := range r.Events {
		n += sizeMessage(11, sizeEvent(ev))
	}
	return n + len(r.ProtoReflect().GetUnknown())
}

// MarshalWatchResponse writes r's encoding to buf, whose length must be
// SizeWatchResponse(r). It panics if buf is shorter, and leaves buf's head
// unwritten if it is longer.
func MarshalWatchResponse(buf []byte, r *pb.WatchResponse) {
	w := writer{b: buf, i: len(buf)}
	w.raw(r.ProtoReflect().GetUnknown())
	for i := len(r.Events) - 1; i >= 0; i-- {
		w.event(11, r.Events[i])
	}
	w.bool(7, r.Fragment)
	w.string(6, r.CancelReason)
	w.int(5, r.CompactRevision)
	w.bool(4, r.Canceled)
	w.bool(3, r.Created)
	w.int(2, r.WatchId)
	if r.Header != nil {
		w.header(1, r.Header)
	}
}

func sizeHeader(h *pb.ResponseHeader) int {
	return sizeUint(1, h.ClusterId) + sizeUint(2, h.MemberId) + sizeInt(3, h.Revision) +
		sizeUint(4, h.RaftTerm) + len(h.ProtoReflect().GetUnknown())
}

// sizeEvent is the length of ev's encoding; a nil event is encoded as an
// empty message, as the protobuf runtime encodes a nil element of a
// repeated field.
func sizeEvent(ev *mvccpb.Event) int {
	if ev == nil {
		return 0
	}
	n := sizeInt(1, int64(ev.Type))
	if ev.Kv != nil {
		n += sizeMessage(2, sizeKV(ev.Kv))
	}
	if ev.PrevKv != nil {
		n += sizeMessage(3, sizeKV(ev.PrevKv))
	}
	return n + len(ev.ProtoReflect().GetUnknown())
}

func sizeKV(kv *mvccpb.KeyValue) int {
	return sizeBytes(1, kv.Key) + sizeInt(2, kv.CreateRevision) + sizeInt(3, kv.ModRevision) +
		sizeInt(4, kv.Version) + sizeBytes(5, kv.Value) + sizeInt(6, kv.Lease) +
		len(kv.ProtoReflect().GetUnknown())
}

// The size helpers follow proto3's implicit presence: a zero scalar, an
// empty string and empty bytes are not written.

func sizeUint(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func sizeInt(num protowire.Number, v int64) int { return sizeUint(num, uint64(v)) }

func sizeBool(num protowire.Number, v bool) int {
	if !v {
		return 0
	}
	return protowire.SizeTag(num) + 1
}

func sizeBytes(num protowire.Number, v []byte) int {
	if len(v) == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(v))
}

func sizeString(num protowire.Number, v string) int {
	if v == "" {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(v))
}

func sizeMessage(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// writer fills b[:i] from its end: each call writes a field just before
// what was written so far, so a message is written last field first.
type writer struct {
	b []byte
	i int
}

func (w *writer) event(num protowire.Number, ev *mvccpb.Event) {
	end := w.i
	if ev != nil {
		w.raw(ev.ProtoReflect().GetUnknown())
		if ev.PrevKv != nil {
			w.kv(3, ev.PrevKv)
		}
		if ev.Kv != nil {
			w.kv(2, ev.Kv)
		}
		w.int(1, int64(ev.Type))
	}
	w.prefix(num, end)
}

func (w *writer) header(num protowire.Number, h *pb.ResponseHeader) {
	end := w.i
	w.raw(h.ProtoReflect().GetUnknown())
	w.uint(4, h.RaftTerm)
	w.int(3, h.Revision)
	w.uint(2, h.MemberId)
	w.uint(1, h.ClusterId)
	w.prefix(num, end)
}

func (w *writer) kv(num protowire.Number, kv *mvccpb.KeyValue) {
	end := w.i
	w.raw(kv.ProtoReflect().GetUnknown())
	w.int(6, kv.Lease)
	w.bytes(5, kv.Value)
	w.int(4, kv.Version)
	w.int(3, kv.ModRevision)
	w.int(2, kv.CreateRevision)
	w.bytes(1, kv.Key)
	w.prefix(num, end)
}

// prefix writes the tag and length of a message field num whose encoding
// was written from w.i up to end.
func (w *writer) prefix(num protowire.Number, end int) {
	w.varint(uint64(end - w.i))
	w.tag(num, protowire.BytesType)
}

func (w *writer) raw(p []byte) {
	w.i -= len(p)
	copy(w.b[w.i:], p)
}

func (w *writer) varint(v uint64) {
	w.i -= protowire.SizeVarint(v)
	j := w.i
	for ; v >= 0x80; v >>= 7 {
		w.b[j] = byte(v) | 0x80
		j++
	}
	w.b[j] = byte(v)
}

// tag writes a field's key; the field numbers here are below 16, so it is
// one byte.
func (w *writer) tag(num protowire.Number, typ protowire.Type) {
	w.i--
	w.b[w.i] = byte(num)<<3 | byte(typ)
}

func (w *writer) uint(num protowire.Number, v uint64) {
	if v != 0 {
		w.varint(v)
		w.tag(num, protowire.VarintType)
	}
}

func (w *writer) int(num protowire.Number, v int64) { w.uint(num, uint64(v)) }

func (w *writer) bool(num protowire.Number, v bool) {
	if v {
		w.i--
		w.b[w.i] = 1
		w.tag(num, protowire.VarintType)
	}
}

func (w *writer) bytes(num protowire.Number, p []byte) {
	if len(p) > 0 {
		w.raw(p)
		w.varint(uint64(len(p)))
		w.tag(num, protowire.BytesType)
	}
}

func (w *writer) string(num protowire.Number, s string) {
	if s != "" {
		w.i -= len(s)
		copy(w.b[w.i:], s)
		w.varint(uint64(len(s)))
		w.tag(num, protowire.BytesType)
	}
}
