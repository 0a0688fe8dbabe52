package mvcc

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The scenarios below are sequences of requests with the responses and
// events etcd v3.7 gives for them. Each runs on every engine and ends by
// checking that a reopened store holds the same history.

func TestRevisions(t *testing.T) {
	runScenarios(t, []scenario{{
		name: "versions and revisions",
		steps: []step{
			{do: get("a"), want: rangeResp(1, 0, false)},
			{do: put("a", "1"), want: putResp(2, nil), evs: evs(putEv(kv("a", "1", 2, 2, 1), nil))},
			{do: put("a", "2"), want: putResp(3, nil), evs: evs(putEv(kv("a", "2", 2, 3, 2), kv("a", "1", 2, 2, 1)))},
			{do: put("b", "1"), want: putResp(4, nil), evs: evs(putEv(kv("b", "1", 4, 4, 1), nil))},
			// Writing the same value again is still a new revision.
			{do: put("a", "2"), want: putResp(5, nil), evs: evs(putEv(kv("a", "2", 2, 5, 3), kv("a", "2", 2, 3, 2)))},
			{do: get("a"), want: rangeResp(5, 1, false, kv("a", "2", 2, 5, 3))},
			// Past reads report the current revision in the header.
			{do: getAt("a", 2), want: rangeResp(5, 1, false, kv("a", "1", 2, 2, 1))},
			{do: getAt("a", 1), want: rangeResp(5, 0, false)},
			{do: getAt("b", 3), want: rangeResp(5, 0, false)},
			{do: getAt("a", 6), err: ErrFutureRev},
			{do: &pb.RangeRequest{Key: []byte("a"), Revision: -3}, want: rangeResp(5, 1, false, kv("a", "2", 2, 5, 3))},
			{do: getRange("a", "\x00"), want: rangeResp(5, 2, false, kv("a", "2", 2, 5, 3), kv("b", "1", 4, 4, 1))},
			{do: reopen{}},
			{do: put("c", "1"), want: putResp(6, nil), evs: evs(putEv(kv("c", "1", 6, 6, 1), nil))},
			{do: getAt("a", 3), want: rangeResp(6, 1, false, kv("a", "2", 2, 3, 2))},
		},
	}})
}

func TestDeleteRange(t *testing.T) {
	runScenarios(t, []scenario{{
		name: "generations",
		steps: []step{
			{do: put("a", "1")},
			{do: put("a", "2")},
			{do: put("b", "1")},
			{do: put("c", "1")},
			{do: put("d", "1")},
			{do: del("a"), want: delResp(7, 1), evs: evs(delEv("a", 7, kv("a", "2", 2, 3, 2)))},
			// Deleting nothing creates no revision and no event.
			{do: del("a"), want: delResp(7, 0)},
			{do: get("a"), want: rangeResp(7, 0, false)},
			{do: getAt("a", 6), want: rangeResp(7, 1, false, kv("a", "2", 2, 3, 2))},
			// A new generation starts at version 1 with a new create revision.
			{do: put("a", "3"), want: putResp(8, nil), evs: evs(putEv(kv("a", "3", 8, 8, 1), nil))},
			{do: getAt("a", 7), want: rangeResp(8, 0, false)},
			{
				do:   &pb.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("d"), PrevKv: true},
				want: delResp(9, 2, kv("b", "1", 4, 4, 1), kv("c", "1", 5, 5, 1)),
				evs:  evs(delEv("b", 9, kv("b", "1", 4, 4, 1)), delEv("c", 9, kv("c", "1", 5, 5, 1))),
			},
			{do: delRange("e", "\x00"), want: delResp(9, 0)},
			{do: delRange("z", "a"), want: delResp(9, 0)},
			{
				do:   &pb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, PrevKv: true},
				want: delResp(10, 2, kv("a", "3", 8, 8, 1), kv("d", "1", 6, 6, 1)),
				evs:  evs(delEv("a", 10, kv("a", "3", 8, 8, 1)), delEv("d", 10, kv("d", "1", 6, 6, 1))),
			},
			{do: getRange("a", "\x00"), want: rangeResp(10, 0, false)},
			{do: getRange("a", "\x00"), want: rangeResp(10, 0, false)},
			{do: &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: 9}, want: rangeResp(10, 2, false, kv("a", "3", 8, 8, 1), kv("d", "1", 6, 6, 1))},
		},
	}, {
		name: "prefix",
		steps: []step{
			{do: put("foo", "0")},
			{do: put("foo/1", "1")},
			{do: put("foo/2", "2")},
			{do: put("fop", "3")},
			{do: getRange("foo/", "foo0"), want: rangeResp(5, 2, false, kv("foo/1", "1", 3, 3, 1), kv("foo/2", "2", 4, 4, 1))},
			{
				do:   delRange("foo/", "foo0"),
				want: delResp(6, 2),
				evs:  evs(delEv("foo/1", 6, kv("foo/1", "1", 3, 3, 1)), delEv("foo/2", 6, kv("foo/2", "2", 4, 4, 1))),
			},
			{do: getRange("f", "g"), want: rangeResp(6, 2, false, kv("foo", "0", 2, 2, 1), kv("fop", "3", 5, 5, 1))},
		},
	}})
}

func TestPut(t *testing.T) {
	leases := func(id int64) bool { return id == 100 || id == 200 }
	runScenarios(t, []scenario{{
		name: "options",
		opts: Options{LeaseExists: leases},
		steps: []step{
			// A failed put moves the applied index (checked by every step)
			// but not the revision.
			{do: &pb.PutRequest{Key: []byte("a"), Value: []byte("1"), Lease: 7}, err: ErrLeaseNotFound},
			{do: get("a"), want: rangeResp(1, 0, false)},
			{
				do:   &pb.PutRequest{Key: []byte("a"), Value: []byte("1"), Lease: 100},
				want: putResp(2, nil),
				evs:  evs(putEv(kvLease("a", "1", 2, 2, 1, 100), nil)),
			},
			{
				do:   &pb.PutRequest{Key: []byte("a"), Value: []byte("2"), IgnoreLease: true, PrevKv: true},
				want: putResp(3, kvLease("a", "1", 2, 2, 1, 100)),
				evs:  evs(putEv(kvLease("a", "2", 2, 3, 2, 100), kvLease("a", "1", 2, 2, 1, 100))),
			},
			{
				do:   &pb.PutRequest{Key: []byte("a"), IgnoreValue: true, Lease: 200},
				want: putResp(4, nil),
				evs:  evs(putEv(kvLease("a", "2", 2, 4, 3, 200), kvLease("a", "2", 2, 3, 2, 100))),
			},
			// Without ignore_lease a put detaches the lease.
			{
				do:   &pb.PutRequest{Key: []byte("a"), IgnoreValue: true},
				want: putResp(5, nil),
				evs:  evs(putEv(kv("a", "2", 2, 5, 4), kvLease("a", "2", 2, 4, 3, 200))),
			},
			{do: &pb.PutRequest{Key: []byte("b"), IgnoreValue: true}, err: ErrKeyNotFound},
			{do: &pb.PutRequest{Key: []byte("b"), IgnoreLease: true}, err: ErrKeyNotFound},
			// The lease is checked before the key.
			{do: &pb.PutRequest{Key: []byte("b"), IgnoreValue: true, Lease: 7}, err: ErrLeaseNotFound},
			{
				do:   &pb.PutRequest{Key: []byte("b"), Value: []byte("x"), PrevKv: true},
				want: putResp(6, nil),
				evs:  evs(putEv(kv("b", "x", 6, 6, 1), nil)),
			},
			{do: get("a"), want: rangeResp(6, 1, false, kv("a", "2", 2, 5, 4))},
		},
	}, {
		name: "no lease function",
		steps: []step{
			{do: &pb.PutRequest{Key: []byte("a"), Lease: 1}, err: ErrLeaseNotFound},
			{do: put("a", ""), want: putResp(2, nil), evs: evs(putEv(kv("a", "", 2, 2, 1), nil))},
		},
	}})
}

func TestRange(t *testing.T) {
	all := func(mod func(r *pb.RangeRequest)) *pb.RangeRequest {
		r := &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}
		mod(r)
		return r
	}
	var (
		a = kv("a", "5", 3, 7, 2)
		b = kv("b", "2", 5, 5, 1)
		c = kv("c", "3", 2, 2, 1)
		d = kvLease("d", "4", 6, 6, 1, 100)
		e = kv("e", "1", 4, 4, 1)
		// keys_only answers from the index carry neither value nor lease.
		aK = kv("a", "", 3, 7, 2)
		bK = kv("b", "", 5, 5, 1)
		cK = kv("c", "", 2, 2, 1)
		dK = kv("d", "", 6, 6, 1)
		eK = kv("e", "", 4, 4, 1)
	)
	runScenarios(t, []scenario{{
		name: "options",
		opts: Options{LeaseExists: func(int64) bool { return true }},
		steps: []step{
			{do: put("c", "3")},
			{do: put("a", "5")},
			{do: put("e", "1")},
			{do: put("b", "2")},
			{do: &pb.PutRequest{Key: []byte("d"), Value: []byte("4"), Lease: 100}},
			{do: put("a", "5")},

			{do: all(func(r *pb.RangeRequest) { r.Limit = 2 }), want: rangeResp(7, 5, true, a, b)},
			{do: all(func(r *pb.RangeRequest) { r.Limit = 5 }), want: rangeResp(7, 5, false, a, b, c, d, e)},
			{do: all(func(r *pb.RangeRequest) { r.Limit = 6 }), want: rangeResp(7, 5, false, a, b, c, d, e)},
			{do: all(func(r *pb.RangeRequest) { r.Limit = -1 }), want: rangeResp(7, 5, false, a, b, c, d, e)},
			{do: getRange("a", "c"), want: rangeResp(7, 2, false, a, b)},
			{do: getRange("d", "b"), want: rangeResp(7, 0, false)},

			// Sorting; order NONE with a target other than KEY means ascending.
			{do: all(func(r *pb.RangeRequest) { r.SortTarget = pb.RangeRequest_VALUE }), want: rangeResp(7, 5, false, e, b, c, d, a)},
			{do: all(func(r *pb.RangeRequest) {
				r.SortTarget, r.SortOrder = pb.RangeRequest_MOD, pb.RangeRequest_DESCEND
			}), want: rangeResp(7, 5, false, a, d, b, e, c)},
			{do: all(func(r *pb.RangeRequest) { r.SortTarget = pb.RangeRequest_CREATE }), want: rangeResp(7, 5, false, c, a, e, b, d)},
			{do: all(func(r *pb.RangeRequest) { r.SortOrder = pb.RangeRequest_DESCEND }), want: rangeResp(7, 5, false, e, d, c, b, a)},
			{do: all(func(r *pb.RangeRequest) {
				r.SortTarget, r.SortOrder = pb.RangeRequest_KEY, pb.RangeRequest_ASCEND
			}), want: rangeResp(7, 5, false, a, b, c, d, e)},
			// Equal versions keep key order (etcd's sort.Sort does for so
			// few elements).
			{do: all(func(r *pb.RangeRequest) {
				r.SortTarget, r.SortOrder = pb.RangeRequest_VERSION, pb.RangeRequest_ASCEND
			}), want: rangeResp(7, 5, false, b, c, d, e, a)},
			// A sorted range is limited after sorting.
			{do: all(func(r *pb.RangeRequest) {
				r.SortTarget, r.SortOrder, r.Limit = pb.RangeRequest_VALUE, pb.RangeRequest_DESCEND, 2
			}), want: rangeResp(7, 5, true, a, d)},

			{do: all(func(r *pb.RangeRequest) { r.KeysOnly = true }), want: rangeResp(7, 5, false, aK, bK, cK, dK, eK)},
			{do: all(func(r *pb.RangeRequest) { r.KeysOnly, r.Limit = true, 1 }), want: rangeResp(7, 5, true, aK)},
			// Sorting by value needs the values, so the lease comes along.
			{do: all(func(r *pb.RangeRequest) {
				r.KeysOnly, r.SortTarget = true, pb.RangeRequest_VALUE
			}), want: rangeResp(7, 5, false, eK, bK, cK, kvLease("d", "", 6, 6, 1, 100), aK)},
			{do: all(func(r *pb.RangeRequest) { r.CountOnly = true }), want: rangeResp(7, 5, false)},
			{do: all(func(r *pb.RangeRequest) { r.CountOnly, r.Limit = true, 1 }), want: rangeResp(7, 5, false)},

			// Revision filters prune the fetched keys but not the count.
			{do: all(func(r *pb.RangeRequest) { r.MinModRevision = 5 }), want: rangeResp(7, 5, false, a, b, d)},
			{do: all(func(r *pb.RangeRequest) { r.MaxCreateRevision, r.Limit = 3, 1 }), want: rangeResp(7, 5, true, a)},
			{do: all(func(r *pb.RangeRequest) {
				r.MinCreateRevision, r.MaxModRevision = 3, 6
			}), want: rangeResp(7, 5, false, b, d, e)},
			{do: all(func(r *pb.RangeRequest) { r.MaxModRevision, r.CountOnly = 2, true }), want: rangeResp(7, 5, false)},

			{do: all(func(r *pb.RangeRequest) { r.Revision = 4 }), want: rangeResp(7, 3, false, kv("a", "5", 3, 3, 1), c, e)},
			{do: all(func(r *pb.RangeRequest) { r.Revision, r.Limit = 4, 1 }), want: rangeResp(7, 3, true, kv("a", "5", 3, 3, 1))},
			{do: all(func(r *pb.RangeRequest) { r.SortOrder = 7 }), err: ErrInvalidSortOption},
			{do: all(func(r *pb.RangeRequest) { r.SortTarget = 9 }), err: ErrInvalidSortOption},
		},
	}})
}

func TestTxn(t *testing.T) {
	var (
		a1 = kv("a", "1", 2, 2, 1)
		b2 = kv("b", "2", 3, 3, 1)
		c3 = kv("c", "3", 4, 4, 1)
	)
	setup := []step{{do: put("a", "1")}, {do: put("b", "2")}, {do: put("c", "3")}}
	scenarios := []scenario{{
		name: "read-only",
		steps: []step{
			{
				do:   readTxn{txn(cmps(cmpValue("a", pb.Compare_EQUAL, "1")), ops(opRange(get("a"))), ops(opRange(get("b"))))},
				want: txnResp(4, true, respRange(rangeResp(4, 1, false, a1))),
			},
			{
				do:   readTxn{txn(cmps(cmpValue("a", pb.Compare_EQUAL, "2")), ops(opRange(get("a"))), ops(opRange(get("b"))))},
				want: txnResp(4, false, respRange(rangeResp(4, 1, false, b2))),
			},
			// No operations at all is read-only too.
			{do: readTxn{txn(nil, nil, nil)}, want: txnResp(4, true)},
			{do: readTxn{txn(nil, ops(opPut(put("x", "1"))), nil)}, err: ErrTxnNotReadOnly},
			{do: readTxn{txn(nil, ops(opRange(getAt("a", 5))), nil)}, err: ErrFutureRev},
			// Through raft it behaves the same and changes nothing.
			{
				do:   txn(cmps(cmpValue("a", pb.Compare_EQUAL, "2")), ops(opPut(put("a", "9"))), ops(opRange(get("a")))),
				want: txnResp(4, false, respRange(rangeResp(4, 1, false, a1))),
			},
		},
	}, {
		name: "compares",
		steps: []step{
			// A missing key has version, create, mod and lease 0...
			{do: readTxn{txn(cmps(
				cmpVersion("nope", pb.Compare_EQUAL, 0),
				cmpCreate("nope", pb.Compare_EQUAL, 0),
				cmpMod("nope", pb.Compare_LESS, 1),
				cmpLease("nope", pb.Compare_EQUAL, 0),
			), nil, nil)}, want: txnResp(4, true)},
			// ...but no value: every value compare on it fails.
			{do: readTxn{txn(cmps(cmpValue("nope", pb.Compare_NOT_EQUAL, "zz")), nil, nil)}, want: txnResp(4, false)},
			{do: readTxn{txn(cmps(cmpValue("nope", pb.Compare_EQUAL, "")), nil, nil)}, want: txnResp(4, false)},
			{do: readTxn{txn(cmps(
				cmpValue("a", pb.Compare_LESS, "2"),
				cmpValue("b", pb.Compare_GREATER, "1"),
				cmpMod("c", pb.Compare_EQUAL, 4),
				cmpCreate("b", pb.Compare_NOT_EQUAL, 2),
				cmpVersion("a", pb.Compare_GREATER, 0),
				cmpLease("a", pb.Compare_EQUAL, 0),
			), nil, nil)}, want: txnResp(4, true)},
			// Ranged compares need every key to match.
			{do: readTxn{txn(cmps(withEnd(cmpVersion("a", pb.Compare_GREATER, 0), "c")), nil, nil)}, want: txnResp(4, true)},
			{do: readTxn{txn(cmps(withEnd(cmpValue("a", pb.Compare_LESS, "2"), "c")), nil, nil)}, want: txnResp(4, false)},
			{do: readTxn{txn(cmps(withEnd(cmpMod("a", pb.Compare_LESS, 10), "\x00")), nil, nil)}, want: txnResp(4, true)},
			// An empty range compares like a missing key.
			{do: readTxn{txn(cmps(withEnd(cmpVersion("m", pb.Compare_EQUAL, 0), "p")), nil, nil)}, want: txnResp(4, true)},
			{do: readTxn{txn(cmps(withEnd(cmpValue("m", pb.Compare_EQUAL, ""), "p")), nil, nil)}, want: txnResp(4, false)},
			// A target_union that does not match the target counts as 0.
			{do: readTxn{txn(cmps(&pb.Compare{
				Key: []byte("a"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER,
				TargetUnion: &pb.Compare_Value{Value: []byte("7")},
			}), nil, nil)}, want: txnResp(4, true)},
			// Every compare must hold.
			{do: readTxn{txn(cmps(cmpVersion("a", pb.Compare_EQUAL, 1), cmpVersion("b", pb.Compare_EQUAL, 2)), nil, nil)}, want: txnResp(4, false)},
		},
	}, {
		name: "writes",
		steps: []step{
			{
				do: txn(cmps(cmpVersion("x", pb.Compare_EQUAL, 0)), ops(
					opPut(put("x", "1")),
					opPut(&pb.PutRequest{Key: []byte("b"), Value: []byte("22"), PrevKv: true}),
					opDel(&pb.DeleteRangeRequest{Key: []byte("c"), PrevKv: true}),
					// Reads see the txn's own writes.
					opRange(getRange("a", "\x00")),
					opRange(getAt("b", 4)),
				), nil),
				want: txnResp(5, true,
					respPut(putResp(5, nil)),
					respPut(putResp(5, b2)),
					respDel(delResp(5, 1, c3)),
					respRange(rangeResp(5, 3, false, a1, kv("b", "22", 3, 5, 2), kv("x", "1", 5, 5, 1))),
					respRange(rangeResp(5, 1, false, b2)),
				),
				evs: evs(
					putEv(kv("x", "1", 5, 5, 1), nil),
					putEv(kv("b", "22", 3, 5, 2), b2),
					delEv("c", 5, c3),
				),
			},
			// A delete that deletes nothing in a txn that wrote nothing
			// keeps the revision.
			{
				do:   txn(nil, ops(opDel(del("zz")), opRange(get("zz"))), nil),
				want: txnResp(5, true, respDel(delResp(5, 0)), respRange(rangeResp(5, 0, false))),
			},
			// Nested txns: compares are all evaluated before the txn runs,
			// so the nested compare does not see the put of n before it.
			{
				do: txn(nil, ops(
					opPut(put("n", "1")),
					opTxn(txn(cmps(cmpVersion("n", pb.Compare_EQUAL, 0)),
						ops(opRange(get("n")), opPut(put("m", "1"))),
						ops(opPut(put("o", "1"))))),
				), nil),
				want: txnResp(6, true,
					respPut(putResp(6, nil)),
					respTxn(nestedResp(true,
						respRange(rangeResp(6, 1, false, kv("n", "1", 6, 6, 1))),
						respPut(putResp(6, nil)),
					)),
				),
				evs: evs(putEv(kv("n", "1", 6, 6, 1), nil), putEv(kv("m", "1", 6, 6, 1), nil)),
			},
			// The failure branch runs when a compare fails.
			{
				do: txn(cmps(cmpValue("a", pb.Compare_EQUAL, "no")),
					ops(opPut(put("a", "yes"))),
					ops(opTxn(txn(nil, ops(opDel(delRange("m", "o"))), nil)))),
				want: txnResp(7, false, respTxn(nestedResp(true, respDel(delResp(7, 2))))),
				evs:  evs(delEv("m", 7, kv("m", "1", 6, 6, 1)), delEv("n", 7, kv("n", "1", 6, 6, 1))),
			},
			// A put and a delete of one key in sibling nested txns pass
			// etcd's overlap check; both happen, in order.
			{
				do: txn(nil, ops(
					opTxn(txn(nil, ops(opPut(put("s", "1"))), nil)),
					opTxn(txn(nil, ops(opDel(del("s"))), nil)),
				), nil),
				want: txnResp(8, true,
					respTxn(nestedResp(true, respPut(putResp(8, nil)))),
					respTxn(nestedResp(true, respDel(delResp(8, 1)))),
				),
				evs: evs(putEv(kv("s", "1", 8, 8, 1), nil), delEv("s", 8, nil)),
			},
			{do: get("s"), want: rangeResp(8, 0, false)},
		},
	}, {
		name: "failures change nothing",
		opts: Options{LeaseExists: func(id int64) bool { return id == 1 }},
		steps: []step{
			// A range above the revision before the txn is a future
			// revision, even after the txn wrote.
			{do: txn(nil, ops(opPut(put("f", "1")), opRange(getAt("f", 5))), nil), err: ErrFutureRev},
			// ignore_value needs the key to exist before the txn.
			{do: txn(nil, ops(opPut(put("g", "1")), opPut(&pb.PutRequest{Key: []byte("g"), IgnoreValue: true})), nil), err: ErrKeyNotFound},
			{do: txn(nil, ops(opPut(put("h", "1")), opPut(&pb.PutRequest{Key: []byte("i"), Lease: 2})), nil), err: ErrLeaseNotFound},
			// Only the branch taken is checked.
			{
				do:   txn(cmps(cmpValue("a", pb.Compare_EQUAL, "1")), ops(opRange(get("h"))), ops(opPut(&pb.PutRequest{Key: []byte("i"), Lease: 2}))),
				want: txnResp(4, true, respRange(rangeResp(4, 0, false))),
			},
			{
				do:  txn(nil, ops(opTxn(txn(cmps(cmpVersion("a", pb.Compare_EQUAL, 5)), nil, ops(opPut(&pb.PutRequest{Key: []byte("i"), Lease: 2}))))), nil),
				err: ErrLeaseNotFound,
			},
			{do: getRange("a", "\x00"), want: rangeResp(4, 3, false, a1, b2, c3)},
			{
				do:   txn(nil, ops(opPut(&pb.PutRequest{Key: []byte("i"), Lease: 1, PrevKv: true})), nil),
				want: txnResp(5, true, respPut(putResp(5, nil))),
				evs:  evs(putEv(kvLease("i", "", 5, 5, 1, 1), nil)),
			},
		},
	}}
	for i := range scenarios {
		scenarios[i].steps = append(append([]step{}, setup...), scenarios[i].steps...)
	}
	runScenarios(t, scenarios)
}

func TestCompaction(t *testing.T) {
	runScenarios(t, []scenario{{
		name: "history",
		steps: []step{
			{do: put("a", "1")},
			{do: put("a", "2")},
			{do: put("b", "1")},
			{do: del("b")},
			{do: put("c", "1")},
			{do: put("a", "3")},
			{do: compact{8}, err: ErrFutureRev},
			{do: compact{5}},
			{do: getAt("a", 4), err: ErrCompacted},
			// The compaction revision itself is still readable.
			{do: getAt("a", 5), want: rangeResp(7, 1, false, kv("a", "2", 2, 3, 2))},
			{do: &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: 5}, want: rangeResp(7, 1, false, kv("a", "2", 2, 3, 2))},
			{do: compact{5}, err: ErrCompacted},
			{do: compact{3}, err: ErrCompacted},
			{do: readTxn{txn(nil, ops(opRange(getAt("a", 4))), nil)}, err: ErrCompacted},
			{do: txn(nil, ops(opPut(put("x", "1")), opRange(getAt("a", 4))), nil), err: ErrCompacted},
			// Compacting at the current revision is allowed.
			{do: compact{7}},
			{do: getAt("a", 7), want: rangeResp(7, 1, false, kv("a", "3", 2, 7, 3))},
			{do: getRange("a", "\x00"), want: rangeResp(7, 2, false, kv("a", "3", 2, 7, 3), kv("c", "1", 6, 6, 1))},
			// Versions and create revisions survive compaction.
			{do: put("a", "4"), want: putResp(8, nil), evs: evs(putEv(kv("a", "4", 2, 8, 4), kv("a", "3", 2, 7, 3)))},
			{do: reopen{}},
			{do: getAt("a", 6), err: ErrCompacted},
			{do: put("a", "5"), want: putResp(9, nil), evs: evs(putEv(kv("a", "5", 2, 9, 5), kv("a", "4", 2, 8, 4)))},
			{do: put("b", "2"), want: putResp(10, nil), evs: evs(putEv(kv("b", "2", 10, 10, 1), nil))},
		},
	}, {
		name: "empty store",
		steps: []step{
			// Never compacted is -1, so even revision 0 can be compacted,
			// once.
			{do: compact{0}},
			{do: compact{0}, err: ErrCompacted},
			{do: compact{1}},
			{do: compact{2}, err: ErrFutureRev},
			{do: get("a"), want: rangeResp(1, 0, false)},
		},
	}})
}

// TestPutEventsWithoutPrevKV checks the default: a put event carries PrevKv
// only when the put asked for prev_kv, while versions and create revisions
// (which come from the index) are exact either way.
func TestPutEventsWithoutPrevKV(t *testing.T) {
	for _, ec := range engines {
		t.Run(ec.name, func(t *testing.T) {
			e, err := ec.open(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			kv, err := Open(e, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer kv.Close()
			if _, _, err := kv.Put(1, &pb.PutRequest{Key: []byte("a"), Value: []byte("1")}); err != nil {
				t.Fatal(err)
			}
			resp, evs, err := kv.Put(2, &pb.PutRequest{Key: []byte("a"), Value: []byte("2")})
			if err != nil {
				t.Fatal(err)
			}
			if resp.PrevKv != nil || len(evs) != 1 || evs[0].PrevKv != nil {
				t.Fatalf("unrequested prev kv: resp %v events %v", resp.PrevKv, evs)
			}
			if got := evs[0].Kv; got.Version != 2 || got.CreateRevision != 2 || got.ModRevision != 3 {
				t.Fatalf("event kv %v, want version 2, create 2, mod 3", got)
			}
			resp, evs, err = kv.Put(3, &pb.PutRequest{Key: []byte("a"), Value: []byte("3"), PrevKv: true})
			if err != nil {
				t.Fatal(err)
			}
			if string(resp.PrevKv.GetValue()) != "2" || string(evs[0].PrevKv.GetValue()) != "2" {
				t.Fatalf("requested prev kv: resp %v event %v", resp.PrevKv, evs[0].PrevKv)
			}
		})
	}
}
