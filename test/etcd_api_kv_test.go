package test

// Differential tests of etcd's KV service: every scenario runs on a real
// etcd and on Cairn (both engines), and every response and error must be
// the same. Scenarios are written as if on a fresh store: revision 1 is
// the empty store, and each write that changes something takes the next
// revision. Comments give etcd's answer where it is not obvious.

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestKVPutMatchesEtcd(t *testing.T) {
	runDifferential(t, []scenario{
		{"put creates a key at the next revision", []proto.Message{
			put("foo", "bar"),
			get("foo"),
		}},
		{"put over a key bumps version and mod revision, keeps create revision", []proto.Message{
			put("foo", "bar"),
			put("foo", "baz"),
			put("foo", "baz"), // same value: still a new version
			get("foo"),
		}},
		{"put with prev_kv returns the pair it replaced", []proto.Message{
			&pb.PutRequest{Key: b("foo"), Value: b("bar"), PrevKv: true}, // nothing replaced
			&pb.PutRequest{Key: b("foo"), Value: b("baz"), PrevKv: true},
		}},
		{"put with an empty value stores an empty value", []proto.Message{
			put("foo", ""),
			get("foo"),
		}},
		{"keys and values are bytes", []proto.Message{
			put("\x00", "\xff\x00"),
			put("\xff\xfe", "\x00"),
			put("ключ", "значение"),
			&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}},
		}},
		{"put with ignore_value keeps the value", []proto.Message{
			put("foo", "bar"),
			&pb.PutRequest{Key: b("foo"), IgnoreValue: true, PrevKv: true},
			get("foo"),
		}},
		{"put with ignore_value on a missing key is key not found", []proto.Message{
			&pb.PutRequest{Key: b("nokey"), IgnoreValue: true},
			get("nokey"),
		}},
		{"put with ignore_value and a value is value provided", []proto.Message{
			put("foo", "bar"),
			&pb.PutRequest{Key: b("foo"), Value: b("x"), IgnoreValue: true},
		}},
		{"put with ignore_lease keeps the lease", []proto.Message{
			put("foo", "bar"),
			&pb.PutRequest{Key: b("foo"), Value: b("baz"), IgnoreLease: true},
			get("foo"),
		}},
		{"put with ignore_lease on a missing key is key not found", []proto.Message{
			&pb.PutRequest{Key: b("nokey"), Value: b("v"), IgnoreLease: true},
		}},
		{"put with ignore_lease and a lease is lease provided", []proto.Message{
			&pb.PutRequest{Key: b("foo"), Value: b("v"), Lease: 7587862369472446213, IgnoreLease: true},
		}},
		{"put with a lease that does not exist is lease not found", []proto.Message{
			&pb.PutRequest{Key: b("foo"), Value: b("v"), Lease: 7587862369472446213},
			get("foo"),
		}},
		{"put with an empty key is empty key", []proto.Message{
			put("", "v"),
		}},
	})
}

func TestKVRangeMatchesEtcd(t *testing.T) {
	abcde := []proto.Message{put("a", "1"), put("b", "2"), put("c", "3"), put("d", "4"), put("e", "5")}
	with := func(setup []proto.Message, steps ...proto.Message) []proto.Message {
		return append(append([]proto.Message{}, setup...), steps...)
	}
	runDifferential(t, []scenario{
		{"get of a missing key is empty, not an error", []proto.Message{
			get("nokey"),
		}},
		{"get of an empty store reads revision 1", []proto.Message{
			getRange("a", "z"),
		}},
		{"range [key, range_end) excludes range_end", with(abcde,
			getRange("b", "d"),
		)},
		{"range_end before key is empty", with(abcde,
			getRange("d", "b"),
		)},
		{"range_end equal to key is empty", with(abcde,
			getRange("c", "c"),
		)},
		{"prefix", []proto.Message{
			put("foo", "0"), put("foo/a", "1"), put("foo/b", "2"), put("fop", "3"), put("fo", "4"),
			getPrefix("foo"),
			getPrefix("foo/"),
		}},
		{"prefix of 0xff bytes reads to the end", []proto.Message{
			put("\xff", "0"), put("\xff\xff", "1"), put("\xfe", "2"),
			getPrefix("\xff"), // range_end "\x00"
		}},
		{"range_end \\x00 reads every key from key on", with(abcde,
			&pb.RangeRequest{Key: b("c"), RangeEnd: []byte{0}},
		)},
		{"key and range_end \\x00 read every key", with(abcde,
			&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}},
		)},
		{"limit cuts the list and sets more, count is the whole range", with(abcde,
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Limit: 2},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Limit: 5}, // exactly all: more is false
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Limit: 6},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Limit: -1}, // negative: no limit
			&pb.RangeRequest{Key: b("c"), Limit: 1},
		)},
		{"keys_only leaves values out", with(abcde,
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), KeysOnly: true},
			&pb.RangeRequest{Key: b("a"), KeysOnly: true},
		)},
		{"count_only returns the count and no keys", with(abcde,
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), CountOnly: true},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), CountOnly: true, Limit: 2},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), CountOnly: true, KeysOnly: true},
			&pb.RangeRequest{Key: b("x"), RangeEnd: b("z"), CountOnly: true},
		)},
		{"serializable reads the same data", with(abcde,
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Serializable: true},
			&pb.RangeRequest{Key: b("c"), Serializable: true},
		)},
		{"revision reads the past", []proto.Message{
			put("foo", "v1"), // 2
			put("foo", "v2"), // 3
			put("bar", "b1"), // 4
			del("foo"),       // 5
			put("foo", "v3"), // 6: a new incarnation, version 1 again
			getAt("foo", 1),  // before it existed
			getAt("foo", 2),  // v1
			getAt("foo", 3),  // v2
			getAt("foo", 5),  // deleted
			getAt("foo", 6),  // v3
			getAt("foo", 0),  // current
			getAt("foo", -1), // negative: current
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Revision: 3},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Revision: 5, CountOnly: true},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Revision: 4, Limit: 1},
		}},
		{"revision in the future is future revision", []proto.Message{
			put("foo", "bar"),
			getAt("foo", 3),
			getAt("foo", 100),
			&pb.RangeRequest{Key: b("foo"), Revision: 3, Serializable: true},
		}},
		{"min and max mod and create revision filter keys", []proto.Message{
			put("a", "1"), // 2
			put("b", "1"), // 3
			put("c", "1"), // 4
			put("a", "2"), // 5
			put("d", "1"), // 6
			put("b", "2"), // 7
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinModRevision: 5},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MaxModRevision: 5},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinCreateRevision: 3},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MaxCreateRevision: 3},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinModRevision: 5, MaxCreateRevision: 3},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinModRevision: 4, MaxModRevision: 6},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinModRevision: 5, Limit: 1},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinModRevision: 5, CountOnly: true},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinModRevision: 5, KeysOnly: true},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinCreateRevision: 100},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), MinModRevision: 3, Revision: 5},
		}},
		{"empty key is empty key", []proto.Message{
			get(""),
			&pb.RangeRequest{RangeEnd: b("z")},
		}},
		{"sort order out of range is invalid sort option", with(abcde,
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), SortOrder: 3},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), SortTarget: 5},
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), SortOrder: -1},
		)},
		{"sort by every target in every order", sortScenario(0)},
		{"sort by every target in every order with limit", sortScenario(2)},
	})
}

// sortScenario writes five keys whose order differs by each sort target
// (key a<b<c<d<e; create c,a,e,b,d; version d,b,e,a,c; mod d,c,a,e,b;
// value c,a,e,d,b, with no ties) and reads them sorted by every target in
// every order, limited to limit keys when limit is not 0.
func sortScenario(limit int64) []proto.Message {
	values := map[string]string{"a": "v2", "b": "v5", "c": "v1", "d": "v4", "e": "v3"}
	var steps []proto.Message
	for _, k := range strings.Split("c a e b d c c c c a a a e e b", " ") {
		steps = append(steps, put(k, values[k]))
	}
	for target := range int32(len(pb.RangeRequest_SortTarget_name)) {
		for order := range int32(len(pb.RangeRequest_SortOrder_name)) {
			steps = append(steps, &pb.RangeRequest{
				Key: b("a"), RangeEnd: b("z"), Limit: limit,
				SortTarget: pb.RangeRequest_SortTarget(target),
				SortOrder:  pb.RangeRequest_SortOrder(order),
			})
		}
	}
	return steps
}

func TestKVDeleteMatchesEtcd(t *testing.T) {
	abcde := []proto.Message{put("a", "1"), put("b", "2"), put("c", "3"), put("d", "4"), put("e", "5")}
	with := func(steps ...proto.Message) []proto.Message {
		return append(append([]proto.Message{}, abcde...), steps...)
	}
	runDifferential(t, []scenario{
		{"delete one key", with(
			del("c"),
			get("c"),
			getRange("a", "z"),
		)},
		{"delete of a missing key deletes nothing and keeps the revision", with(
			del("nokey"),
			&pb.DeleteRangeRequest{Key: b("nokey"), PrevKv: true},
			get("a"),
		)},
		{"delete with prev_kv returns the deleted pair", with(
			&pb.DeleteRangeRequest{Key: b("b"), PrevKv: true},
		)},
		{"delete a range with prev_kv", with(
			&pb.DeleteRangeRequest{Key: b("b"), RangeEnd: b("d"), PrevKv: true},
			getRange("a", "z"),
		)},
		{"delete a prefix", []proto.Message{
			put("foo", "0"), put("foo/a", "1"), put("foo/b", "2"), put("fop", "3"),
			&pb.DeleteRangeRequest{Key: b("foo/"), RangeEnd: b("foo0")},
			getRange("a", "z"),
		}},
		{"delete from key to the end", with(
			&pb.DeleteRangeRequest{Key: b("c"), RangeEnd: []byte{0}},
			getRange("a", "z"),
		)},
		{"delete everything", with(
			&pb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}},
			&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}},
		)},
		{"delete with range_end before key deletes nothing", with(
			delRange("d", "b"),
		)},
		{"a deleted key comes back at version 1", with(
			del("a"),
			put("a", "again"),
			get("a"),
		)},
		{"delete with an empty key is empty key", with(
			del(""),
			&pb.DeleteRangeRequest{RangeEnd: b("z")},
		)},
	})
}

// check is a txn that reads key k on success and nothing on failure, so
// that its response shows which branch ran.
func check(c ...*pb.Compare) *pb.TxnRequest {
	return &pb.TxnRequest{Compare: c, Success: ops(opGet(get("k")))}
}

func TestKVTxnMatchesEtcd(t *testing.T) {
	// k: value "m", version 2, create revision 2, mod revision 3, lease 0.
	k := []proto.Message{put("k", "m"), put("k", "m")}
	with := func(steps ...proto.Message) []proto.Message {
		return append(append([]proto.Message{}, k...), steps...)
	}
	runDifferential(t, []scenario{
		{"compare value", with(
			check(cmpValue("k", "=", "m")), check(cmpValue("k", "=", "n")),
			check(cmpValue("k", "!=", "m")), check(cmpValue("k", "!=", "n")),
			check(cmpValue("k", "<", "n")), check(cmpValue("k", "<", "m")), check(cmpValue("k", "<", "l")),
			check(cmpValue("k", ">", "l")), check(cmpValue("k", ">", "m")), check(cmpValue("k", ">", "mm")),
			check(cmpValue("k", ">", "")),
		)},
		{"compare value of a missing key is always false", with(
			check(cmpValue("nokey", "=", "")), check(cmpValue("nokey", "!=", "x")),
			check(cmpValue("nokey", "<", "x")), check(cmpValue("nokey", ">", "")),
		)},
		{"compare version", with(
			check(cmpVersion("k", "=", 2)), check(cmpVersion("k", "=", 1)),
			check(cmpVersion("k", "!=", 2)), check(cmpVersion("k", "!=", 1)),
			check(cmpVersion("k", "<", 3)), check(cmpVersion("k", "<", 2)),
			check(cmpVersion("k", ">", 1)), check(cmpVersion("k", ">", 2)),
			check(cmpVersion("nokey", "=", 0)), check(cmpVersion("nokey", ">", 0)),
		)},
		{"compare create revision", with(
			check(cmpCreate("k", "=", 2)), check(cmpCreate("k", "=", 3)),
			check(cmpCreate("k", "!=", 2)), check(cmpCreate("k", "!=", 3)),
			check(cmpCreate("k", "<", 3)), check(cmpCreate("k", "<", 2)),
			check(cmpCreate("k", ">", 1)), check(cmpCreate("k", ">", 2)),
			check(cmpCreate("nokey", "=", 0)), check(cmpCreate("nokey", "<", 2)),
		)},
		{"compare mod revision", with(
			check(cmpMod("k", "=", 3)), check(cmpMod("k", "=", 2)),
			check(cmpMod("k", "!=", 3)), check(cmpMod("k", "!=", 2)),
			check(cmpMod("k", "<", 4)), check(cmpMod("k", "<", 3)),
			check(cmpMod("k", ">", 2)), check(cmpMod("k", ">", 3)),
			check(cmpMod("nokey", "=", 0)), check(cmpMod("nokey", ">", 0)),
		)},
		{"compare lease", with(
			check(cmpLease("k", "=", 0)), check(cmpLease("k", "=", 1)),
			check(cmpLease("k", "!=", 0)), check(cmpLease("k", "!=", 1)),
			check(cmpLease("k", "<", 1)), check(cmpLease("k", "<", 0)),
			check(cmpLease("k", ">", 0)), check(cmpLease("k", ">", -1)),
			check(cmpLease("nokey", "=", 0)),
		)},
		{"every compare must hold", with(
			check(cmpValue("k", "=", "m"), cmpVersion("k", "=", 2)),
			check(cmpValue("k", "=", "m"), cmpVersion("k", "=", 3)),
			check(),
		)},
		{"ranged compare holds only if it holds for every key in the range", []proto.Message{
			put("p/1", "a"), put("p/2", "b"), put("p/3", "c"), put("p/3", "c"),
			check(ranged(cmpVersion("p/", ">", 0), "p0")),
			check(ranged(cmpVersion("p/", "=", 1), "p0")), // p/3 is at version 2
			check(ranged(cmpVersion("p/", "<", 3), "p0")),
			check(ranged(cmpValue("p/", "<", "d"), "p0")),
			check(ranged(cmpValue("p/", "=", "a"), "p0")),
			check(ranged(cmpMod("p/", "<", 5), "p0")),
			check(ranged(cmpCreate("p/1", "<", 4), "p/3")),
			check(ranged(cmpLease("p/", "=", 0), "p0")),
			check(ranged(cmpVersion("p/", ">", 0), "\x00")), // from p/ on
			check(ranged(cmpVersion("q/", "=", 0), "q0")),   // empty range: compared as a missing key
			check(ranged(cmpValue("q/", "!=", "x"), "q0")),  // values of an empty range: false
		}},
		{"success branch writes at one new revision", with(
			&pb.TxnRequest{
				Compare: cmps(cmpValue("k", "=", "m")),
				Success: ops(opPut("a", "1"), opPut("b", "2"), opDel(del("k")), opPut("c", "3")),
				Failure: ops(opPut("f", "failed")),
			},
			getRange("a", "z"),
		)},
		{"failure branch runs when a compare fails", with(
			&pb.TxnRequest{
				Compare: cmps(cmpValue("k", "=", "other")),
				Success: ops(opPut("s", "succeeded")),
				Failure: ops(opPut("f", "failed"), opGet(get("k")), opDel(&pb.DeleteRangeRequest{Key: b("k"), PrevKv: true})),
			},
			getRange("a", "z"),
		)},
		{"a txn that only reads keeps the revision", with(
			&pb.TxnRequest{Success: ops(opGet(get("k")), opGet(getRange("a", "z")))},
			&pb.TxnRequest{},
			&pb.TxnRequest{Success: ops(opDel(del("nokey")))},
			get("k"),
		)},
		{"reads in a txn see the txn's earlier writes", with(
			&pb.TxnRequest{Success: ops(
				opGet(get("k")),
				opPut("k", "new"),
				opGet(get("k")),
				opPut("x", "1"),
				opGet(getRange("a", "z")),
				opDel(&pb.DeleteRangeRequest{Key: b("x"), PrevKv: true}),
				opGet(getRange("a", "z")),
				opGet(&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), CountOnly: true}),
			)},
		)},
		{"put with prev_kv in a txn", with(
			&pb.TxnRequest{Success: ops(
				&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: b("k"), Value: b("n"), PrevKv: true}}},
				&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: b("new"), Value: b("v"), PrevKv: true}}},
			)},
		)},
		{"read at a past revision in a txn", with(
			put("k", "later"),
			&pb.TxnRequest{Success: ops(opGet(getAt("k", 2)), opGet(getAt("k", 3)), opGet(get("k")))},
			&pb.TxnRequest{Success: ops(opGet(getAt("k", 100)))},
		)},
		{"nested txns", with(
			&pb.TxnRequest{
				Compare: cmps(cmpVersion("k", "=", 2)),
				Success: ops(
					opPut("a", "1"),
					opTxn(&pb.TxnRequest{
						Compare: cmps(cmpValue("k", "=", "m")),
						Success: ops(opPut("b", "inner success"), opGet(get("a"))),
						Failure: ops(opPut("b", "inner failure")),
					}),
					opTxn(&pb.TxnRequest{
						Compare: cmps(cmpValue("k", "=", "zzz")),
						Success: ops(opPut("c", "inner success")),
						Failure: ops(opPut("c", "inner failure"), opTxn(&pb.TxnRequest{Success: ops(opPut("d", "innermost"))})),
					}),
					opGet(getRange("a", "z")),
				),
			},
		)},
		{"nested compares see the store before the txn, not its writes", with(
			&pb.TxnRequest{Success: ops(
				opPut("k", "new"),
				opTxn(&pb.TxnRequest{
					Compare: cmps(cmpValue("k", "=", "new")),
					Success: ops(opPut("saw", "new")),
					Failure: ops(opPut("saw", "old")),
				}),
			)},
			get("saw"),
		)},
		{"the same key in both branches is allowed", with(
			&pb.TxnRequest{
				Compare: cmps(cmpVersion("k", "=", 2)),
				Success: ops(opPut("x", "s")),
				Failure: ops(opPut("x", "f")),
			},
			&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{
				Compare: cmps(cmpVersion("k", "=", 2)),
				Success: ops(opPut("y", "s")),
				Failure: ops(opPut("y", "f")),
			}))},
			&pb.TxnRequest{Success: ops(opDel(del("x")), opDel(delRange("x", "z")))}, // deletes may overlap
		)},
		{"the same key put twice is duplicate key", with(
			&pb.TxnRequest{Success: ops(opPut("x", "1"), opPut("x", "2"))},
			&pb.TxnRequest{Failure: ops(opPut("x", "1"), opPut("y", "1"), opPut("x", "2"))},
			get("x"),
		)},
		{"a put inside a deleted range is duplicate key", with(
			&pb.TxnRequest{Success: ops(opPut("b", "1"), opDel(delRange("a", "c")))},
			&pb.TxnRequest{Success: ops(opDel(delRange("a", "c")), opPut("b", "1"))},
			&pb.TxnRequest{Success: ops(opDel(del("b")), opPut("b", "1"))},
			&pb.TxnRequest{Success: ops(opDel(delRange("a", "c")), opPut("c", "1"))}, // range_end is excluded: allowed
		)},
		{"a put in a nested txn clashing with the outer txn is duplicate key", with(
			&pb.TxnRequest{Success: ops(opPut("x", "outer"), opTxn(&pb.TxnRequest{Success: ops(opPut("x", "inner"))}))},
			&pb.TxnRequest{Success: ops(opDel(delRange("a", "z")), opTxn(&pb.TxnRequest{Failure: ops(opPut("x", "inner"))}))},
			&pb.TxnRequest{Success: ops(
				opTxn(&pb.TxnRequest{Success: ops(opPut("x", "1"))}),
				opTxn(&pb.TxnRequest{Success: ops(opPut("x", "2"))}),
			)},
			&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("x", "1"), opDel(del("x")))}))},
		)},
		{"more than 128 ops or compares is too many operations", with(
			&pb.TxnRequest{Success: putOps("s", 129)},
			&pb.TxnRequest{Failure: putOps("f", 129)},
			&pb.TxnRequest{Compare: versionCompares(129)},
			&pb.TxnRequest{Success: putOps("s", 128)},
			&pb.TxnRequest{Compare: versionCompares(128), Success: ops(opGet(get("k")))},
		)},
		{"a nested txn may use only the ops its parent left over", with(
			// The outer txn has 100 ops, so a nested one may have 28.
			&pb.TxnRequest{Success: append(putOps("o", 99), opTxn(&pb.TxnRequest{Success: putOps("n", 29)}))},
			&pb.TxnRequest{Success: append(putOps("o", 99), opTxn(&pb.TxnRequest{Success: putOps("n", 28)}))},
		)},
		{"an empty key anywhere in a txn is empty key", with(
			&pb.TxnRequest{Compare: cmps(cmpVersion("", "=", 0))},
			&pb.TxnRequest{Success: ops(opPut("", "v"))},
			&pb.TxnRequest{Failure: ops(opGet(get("")))},
			&pb.TxnRequest{Success: ops(opDel(del("")))},
			&pb.TxnRequest{Success: ops(opTxn(&pb.TxnRequest{Success: ops(opPut("", "v"))}))},
		)},
		{"an op with no request is key not found", with(
			&pb.TxnRequest{Success: ops(opPut("x", "1"), &pb.RequestOp{})},
			get("x"),
		)},
		{"invalid requests inside a txn fail the whole txn", with(
			&pb.TxnRequest{Success: ops(opPut("x", "1"), opGet(&pb.RangeRequest{Key: b("k"), SortOrder: 7}))},
			&pb.TxnRequest{Success: ops(opPut("x", "1"), &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: b("k"), Value: b("v"), IgnoreValue: true}}})},
			&pb.TxnRequest{Success: ops(opPut("x", "1"), &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: b("k"), Lease: 7587862369472446213}}})},
			&pb.TxnRequest{Success: ops(opPut("x", "1"), &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: b("nokey"), IgnoreValue: true}}})},
			get("x"),
		)},
	})
}

// putOps returns n puts of distinct keys prefix0, prefix1, ….
func putOps(prefix string, n int) []*pb.RequestOp {
	var out []*pb.RequestOp
	for i := range n {
		out = append(out, opPut(fmt.Sprintf("%s%03d", prefix, i), "v"))
	}
	return out
}

// versionCompares returns n compares that all hold for k at version 2.
func versionCompares(n int) []*pb.Compare {
	var out []*pb.Compare
	for range n {
		out = append(out, cmpVersion("k", "=", 2))
	}
	return out
}

func TestKVCompactMatchesEtcd(t *testing.T) {
	// foo at revisions 2, 3, 4, 5 with values v1..v4.
	history := []proto.Message{put("foo", "v1"), put("foo", "v2"), put("foo", "v3"), put("foo", "v4")}
	with := func(steps ...proto.Message) []proto.Message {
		return append(append([]proto.Message{}, history...), steps...)
	}
	runDifferential(t, []scenario{
		{"compact keeps the compacted revision and later ones readable", with(
			compact(3),
			getAt("foo", 2), // compacted
			getAt("foo", 3),
			getAt("foo", 4),
			get("foo"),
			&pb.RangeRequest{Key: b("a"), RangeEnd: b("z"), Revision: 2, CountOnly: true},
			&pb.RangeRequest{Key: b("foo"), Revision: 2, Serializable: true},
		)},
		{"physical compact", with(
			&pb.CompactionRequest{Revision: 4, Physical: true},
			getAt("foo", 3),
			getAt("foo", 4),
			get("foo"),
		)},
		{"compact at the current revision", with(
			compact(5),
			getAt("foo", 4),
			get("foo"),
			put("foo", "v5"),
			getAt("foo", 5),
		)},
		{"compact at an already compacted revision is compacted", with(
			compact(4),
			compact(4),
			compact(3),
			compact(5),
		)},
		{"compact at a future revision is future revision", with(
			compact(6),
			compact(100),
			getAt("foo", 2),
		)},
		{"a txn reading a compacted revision fails as a whole", with(
			compact(4),
			&pb.TxnRequest{Success: ops(opPut("x", "1"), opGet(getAt("foo", 3)))},
			&pb.TxnRequest{Success: ops(opPut("x", "1"), opGet(getAt("foo", 4)))},
		)},
		{"compaction keeps deleted keys' tombstones out of current reads", []proto.Message{
			put("a", "1"), put("b", "1"), del("a"), put("c", "1"),
			compact(4),
			getRange("a", "z"),
			getAt("a", 4),
			getAt("b", 4),
			put("a", "again"),
			get("a"),
		}},
		{"compares after compaction still see create and mod revisions", with(
			compact(5),
			check(cmpCreate("foo", "=", 2)),
			check(cmpMod("foo", "=", 5)),
			check(cmpVersion("foo", "=", 4)),
		)},
	})
}

func TestKVRequestLimitsMatchEtcd(t *testing.T) {
	const mib = 1 << 20
	big := func(n int) string { return strings.Repeat("x", n) }
	runDifferential(t, []scenario{
		{"a request over --max-request-bytes is request too large", []proto.Message{
			put("small", big(mib)),          // 1 MiB: fine
			put("big", big(mib+mib/2+1024)), // over 1.5 MiB
			put("big", big(2*mib-100*1024)), // still over, still under gRPC\'s limit
			get("big"),
			get("small"),
		}},
		{"a txn adds up its ops against --max-request-bytes", []proto.Message{
			&pb.TxnRequest{Success: ops(opPut("t1", big(800*1024)), opPut("t2", big(800*1024)))},
			&pb.TxnRequest{Success: ops(opPut("t1", big(700*1024)), opPut("t2", big(700*1024)))},
			getRange("t", "u"),
		}},
		{"a request over gRPC's receive limit is refused by the transport", []proto.Message{
			put("huge", big(2*mib)),
			put("huge", big(3*mib)),
			get("huge"),
		}},
	})
}

// TestKVRangeStreamMatchesEtcd checks the RangeStream RPC on a few thousand
// keys: chunks are disjoint, only the last carries header, more and count,
// the chunks merged are exactly what Range returns, and etcd sends the
// same chunks. Orders other than by key ascending and revision filters are
// not supported by etcd's RangeStream and must be refused the same way.
func TestKVRangeStreamMatchesEtcd(t *testing.T) {
	const n = 3000
	load := func(t *testing.T, kv pb.KVClient) {
		t.Helper()
		for start := 0; start < n; start += 100 {
			txn := &pb.TxnRequest{}
			for i := start; i < start+100; i++ {
				txn.Success = append(txn.Success, opPut(fmt.Sprintf("stream/%05d", i), strings.Repeat("v", 50+i%100)))
			}
			if _, err := kv.Txn(ctx(t), txn); err != nil {
				t.Fatal(err)
			}
		}
		// Overwrite some keys so versions and revisions vary.
		for i := 0; i < n; i += 97 {
			if _, err := kv.Put(ctx(t), put(fmt.Sprintf("stream/%05d", i), "again")); err != nil {
				t.Fatal(err)
			}
		}
	}
	requests := []struct {
		name string
		req  *pb.RangeRequest
	}{
		{"whole prefix", getPrefix("stream/")},
		{"from a key on", &pb.RangeRequest{Key: b("stream/01000"), RangeEnd: []byte{0}}},
		{"limit", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), Limit: 1500}},
		{"small limit", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), Limit: 15}},
		{"keys only", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), KeysOnly: true}},
		{"count only", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), CountOnly: true}},
		{"past revision", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), Revision: 20}},
		{"serializable", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), Serializable: true}},
		{"one key", get("stream/00042")},
		{"missing key", get("stream/x")},
		{"empty range", getRange("x", "y")},
		{"sort by key descending", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), SortOrder: pb.RangeRequest_DESCEND}},
		{"sort by value", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), SortTarget: pb.RangeRequest_VALUE, SortOrder: pb.RangeRequest_ASCEND}},
		{"sort by key ascending is the default order", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), SortOrder: pb.RangeRequest_ASCEND, Limit: 30}},
		{"min mod revision", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), MinModRevision: 5}},
		{"max create revision", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), MaxCreateRevision: 5}},
		{"future revision", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), Revision: 1000}},
		{"invalid sort order", &pb.RangeRequest{Key: b("stream/"), RangeEnd: b("stream0"), SortOrder: 9}},
		{"empty key", get("")},
	}

	etcdKV := rawKV(t, etcdEndpoint(startEtcd(t)))
	load(t, etcdKV)
	want := make([]streamResult, len(requests))
	for i, r := range requests {
		want[i] = rangeStream(t, etcdKV, r.req)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		kv := rawKV(t, m.clientEP)
		load(t, kv)
		for i, r := range requests {
			t.Run(r.name, func(t *testing.T) {
				got := rangeStream(t, kv, r.req)
				if got.err != want[i].err {
					t.Fatalf("RangeStream %s\n  etcd:  %s\n  cairn: %s", brief(r.req), want[i].err, got.err)
				}
				if got.err != "" {
					return
				}
				if d := diffChunks(want[i].chunks, got.chunks); d != "" {
					t.Errorf("RangeStream %s: chunks differ from etcd's (want etcd, got cairn):\n%s", brief(r.req), d)
				}
				checkChunks(t, got.chunks)
				// The merged stream is the answer Range gives at the same
				// revision.
				merged := &pb.RangeResponse{}
				for _, c := range got.chunks {
					proto.Merge(merged, c)
				}
				req := proto.Clone(r.req).(*pb.RangeRequest)
				if req.Revision == 0 {
					req.Revision = merged.GetHeader().GetRevision()
				}
				ranged, err := kv.Range(ctx(t), req)
				if err != nil {
					t.Fatalf("Range %s: %v", brief(req), err)
				}
				clearMemberIdentity(ranged.ProtoReflect())
				if d := diffChunks([]*pb.RangeResponse{ranged}, []*pb.RangeResponse{merged}); d != "" {
					t.Errorf("RangeStream %s: merged chunks differ from Range (want Range, got stream):\n%s", brief(r.req), d)
				}
			})
		}
	})
}

// streamResult is what a RangeStream call got: its chunks with member
// identity cleared, or the error that ended it as "code: message".
type streamResult struct {
	chunks []*pb.RangeResponse
	err    string
}

func rangeStream(t *testing.T, kv pb.KVClient, req *pb.RangeRequest) streamResult {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx(t))
	defer cancel()
	var res streamResult
	stream, err := kv.RangeStream(ctx, req)
	for err == nil {
		var resp *pb.RangeStreamResponse
		resp, err = stream.Recv()
		if err == nil {
			clearMemberIdentity(resp.RangeResponse.ProtoReflect())
			res.chunks = append(res.chunks, resp.RangeResponse)
		}
	}
	if err != io.EOF {
		o := outcomeOf(nil, err)
		res.err = fmt.Sprintf("%s: %s", o.Code, o.Msg)
		res.chunks = nil
	}
	return res
}

// checkChunks checks the documented shape of a stream: every chunk but the
// last has keys and no header, more or count; keys ascend across chunks.
func checkChunks(t *testing.T, chunks []*pb.RangeResponse) {
	t.Helper()
	if len(chunks) == 0 {
		t.Fatal("stream ended without a chunk")
	}
	var last []byte
	for i, c := range chunks {
		if i < len(chunks)-1 && (c.Header != nil || c.More || c.Count != 0 || len(c.Kvs) == 0) {
			t.Errorf("chunk %d of %d: header %v, more %v, count %d, %d keys; want keys only", i, len(chunks), c.Header, c.More, c.Count, len(c.Kvs))
		}
		for _, kv := range c.Kvs {
			if last != nil && string(kv.Key) <= string(last) {
				t.Errorf("chunk %d: key %q after %q", i, kv.Key, last)
			}
			last = kv.Key
		}
	}
	if chunks[len(chunks)-1].Header == nil {
		t.Error("last chunk has no header")
	}
}

// diffChunks describes how two lists of range responses differ: the
// first differing key of each, and a cmp.Diff of the rest. (cmp.Diff of
// thousands of keys takes seconds, and says no more.)
func diffChunks(want, got []*pb.RangeResponse) string {
	var out []string
	if len(want) != len(got) {
		out = append(out, fmt.Sprintf("%d chunks, want %d; keys per chunk %v, want %v", len(got), len(want), chunkSizes(got), chunkSizes(want)))
	}
	for i := range min(len(want), len(got)) {
		w, g := want[i].Kvs, got[i].Kvs
		for j := range max(len(w), len(g)) {
			switch {
			case j >= len(w):
				out = append(out, fmt.Sprintf("chunk %d: extra key %d: %v", i, j, g[j]))
			case j >= len(g):
				out = append(out, fmt.Sprintf("chunk %d: missing key %d: %v", i, j, w[j]))
			case !proto.Equal(w[j], g[j]):
				out = append(out, fmt.Sprintf("chunk %d: key %d is %v, want %v", i, j, g[j], w[j]))
			default:
				continue
			}
			break
		}
		wr, gr := proto.Clone(want[i]).(*pb.RangeResponse), proto.Clone(got[i]).(*pb.RangeResponse)
		wr.Kvs, gr.Kvs = nil, nil
		if d := cmp.Diff(wr, gr, protocmp.Transform()); d != "" {
			out = append(out, fmt.Sprintf("chunk %d apart from its keys (-want +got):\n%s", i, d))
		}
	}
	return strings.Join(out, "\n")
}

func chunkSizes(chunks []*pb.RangeResponse) []int {
	var out []int
	for _, c := range chunks {
		out = append(out, len(c.Kvs))
	}
	return out
}
