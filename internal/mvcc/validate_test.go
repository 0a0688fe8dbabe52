package mvcc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestValidateSingleRequests(t *testing.T) {
	tests := []struct {
		name string
		err  error
		got  error
	}{
		{"range", nil, ValidateRange(get("a"))},
		{"range without key", ErrEmptyKey, ValidateRange(&pb.RangeRequest{RangeEnd: []byte("b")})},
		{"range bad order", ErrInvalidSortOption, ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortOrder: 3})},
		{"range bad target", ErrInvalidSortOption, ValidateRange(&pb.RangeRequest{Key: []byte("a"), SortTarget: 5})},
		{"put", nil, ValidatePut(put("a", "1"))},
		{"put without key", ErrEmptyKey, ValidatePut(put("", "1"))},
		{"put keeping value", nil, ValidatePut(&pb.PutRequest{Key: []byte("a"), IgnoreValue: true, Lease: 5})},
		{"put keeping and giving value", ErrValueProvided, ValidatePut(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), IgnoreValue: true})},
		{"put keeping and giving lease", ErrLeaseProvided, ValidatePut(&pb.PutRequest{Key: []byte("a"), Lease: 1, IgnoreLease: true})},
		{"delete", nil, ValidateDeleteRange(delRange("a", "b"))},
		{"delete without key", ErrEmptyKey, ValidateDeleteRange(&pb.DeleteRangeRequest{RangeEnd: []byte{0}})},
	}
	for _, tt := range tests {
		if !errors.Is(tt.got, tt.err) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.got, tt.err)
		}
	}
}

func TestValidateTxn(t *testing.T) {
	var (
		putA   = opPut(put("a", "1"))
		putB   = opPut(put("b", "1"))
		putC   = opPut(put("c", "1"))
		delA   = opDel(del("a"))
		delAC  = opDel(delRange("a", "c"))
		rangeA = opRange(get("a"))
		cmpA   = cmpVersion("a", pb.Compare_EQUAL, 0)
	)
	nested := func(then ...*pb.RequestOp) *pb.RequestOp {
		return opTxn(txn(nil, then, nil))
	}
	tests := []struct {
		name string
		req  *pb.TxnRequest
		err  error
	}{
		{"empty", txn(nil, nil, nil), nil},
		{"at the limit", txn(cmps(cmpA, cmpA, cmpA), ops(rangeA, rangeA, rangeA), ops(putA, putB, putC)), nil},
		{"too many compares", txn(cmps(cmpA, cmpA, cmpA, cmpA), nil, nil), ErrTooManyOps},
		{"too many successes", txn(nil, ops(rangeA, rangeA, rangeA, rangeA), nil), ErrTooManyOps},
		{"too many failures", txn(nil, nil, ops(rangeA, rangeA, rangeA, rangeA)), ErrTooManyOps},
		// A nested txn gets what its parent leaves: 3 - 2 = 1 here.
		{"nested within the limit", txn(nil, ops(rangeA, nested(putB)), nil), nil},
		{"nested over the limit", txn(nil, ops(rangeA, nested(putB, putC)), nil), ErrTooManyOps},
		{"compare without key", txn(cmps(&pb.Compare{}), nil, nil), ErrEmptyKey},
		{"op without key", txn(nil, ops(opPut(put("", "1"))), nil), ErrEmptyKey},
		{"bad op in nested txn", txn(nil, ops(nested(opPut(&pb.PutRequest{Key: []byte("a"), Value: []byte("1"), IgnoreValue: true}))), nil), ErrValueProvided},
		{"empty op", txn(nil, ops(&pb.RequestOp{}), nil), ErrKeyNotFound},

		{"put twice", txn(nil, ops(putA, putA), nil), ErrDuplicateKey},
		{"put and delete", txn(nil, ops(putA, delA), nil), ErrDuplicateKey},
		{"delete and put", txn(nil, ops(delA, putA), nil), ErrDuplicateKey},
		{"put in deleted range", txn(nil, ops(putB, delAC), nil), ErrDuplicateKey},
		{"put at deleted range end", txn(nil, ops(putC, delAC), nil), nil},
		{"put in inverted range", txn(nil, ops(putB, opDel(delRange("c", "a"))), nil), nil},
		// etcd takes a from-key delete's "\x00" literally, as an empty
		// interval, so it conflicts with nothing.
		{"put in from-key delete", txn(nil, ops(putB, opDel(delRange("a", "\x00"))), nil), nil},
		{"delete twice", txn(nil, ops(delA, delAC), nil), nil},
		{"put in both branches", txn(nil, ops(putA), ops(putA)), nil},

		{"put here and nested", txn(nil, ops(putA, nested(putA)), nil), ErrDuplicateKey},
		{"different keys in sibling nested txns", txn(nil, ops(nested(putA), nested(putB)), nil), nil},
		{"nested then and else", txn(nil, ops(opTxn(txn(nil, ops(putA), ops(putA)))), nil), nil},
		{"put in sibling nested txns", txn(nil, ops(nested(putA), nested(putA)), nil), ErrDuplicateKey},
		{"delete nested, put here", txn(nil, ops(nested(delA), putA), nil), ErrDuplicateKey},
		{"delete here, put nested", txn(nil, ops(delA, nested(putA)), nil), ErrDuplicateKey},
		{"delete nested, put in later sibling", txn(nil, ops(nested(delAC), nested(putB)), nil), ErrDuplicateKey},
		// Only later siblings are checked against a nested delete.
		{"put nested, delete in later sibling", txn(nil, ops(nested(putB), nested(delAC)), nil), nil},
		{"failure branch checked", txn(nil, nil, ops(putA, putA)), ErrDuplicateKey},
	}
	for _, tt := range tests {
		if err := ValidateTxn(tt.req, 3); !errors.Is(err, tt.err) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.err)
		}
	}
	deep := txn(nil, ops(nested(nested(nested(putA))), putA), nil)
	if err := ValidateTxn(deep, DefaultMaxTxnOps); !errors.Is(err, ErrDuplicateKey) {
		t.Errorf("deep nesting: got %v, want %v", err, ErrDuplicateKey)
	}
	// Branches of puts alone, as long as checkBranch compares pairwise
	// and one longer: distinct keys pass, the last put repeating the
	// first does not.
	for _, n := range []int{2, plainPutsChecked, plainPutsChecked + 1} {
		puts := make([]*pb.RequestOp, n)
		for i := range puts {
			puts[i] = opPut(put(fmt.Sprintf("k%d", i), "1"))
		}
		if err := ValidateTxn(txn(nil, puts, nil), DefaultMaxTxnOps); err != nil {
			t.Errorf("%d distinct puts: got %v, want nil", n, err)
		}
		puts[n-1] = opPut(put("k0", "2"))
		if err := ValidateTxn(txn(nil, puts, nil), DefaultMaxTxnOps); !errors.Is(err, ErrDuplicateKey) {
			t.Errorf("%d puts, the last repeating the first: got %v, want %v", n, err, ErrDuplicateKey)
		}
	}
}

func TestIsTxnReadOnly(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.TxnRequest
		want bool
	}{
		{"empty", txn(nil, nil, nil), true},
		{"compares only", txn(cmps(cmpVersion("a", pb.Compare_EQUAL, 0)), nil, nil), true},
		{"ranges", txn(nil, ops(opRange(get("a"))), ops(opRange(get("b")))), true},
		{"put in failure", txn(nil, ops(opRange(get("a"))), ops(opPut(put("a", "1")))), false},
		{"delete", txn(nil, ops(opDel(del("a"))), nil), false},
		// Nested txns are not looked into.
		{"nested ranges", txn(nil, ops(opTxn(txn(nil, ops(opRange(get("a"))), nil))), nil), false},
		{"empty op", txn(nil, ops(&pb.RequestOp{}), nil), false},
	}
	for _, tt := range tests {
		if got := IsTxnReadOnly(tt.req); got != tt.want {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestSpanSetMatchesLinearScan checks the merged span set against the plain
// list of spans it stands for, on random spans over a small alphabet so that
// overlaps, touching ends, empty and inverted spans are frequent.
func TestSpanSetMatchesLinearScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"a", "a\x00", "ab", "b", "b\x00", "ba", "c", "\x00", "\x01"}
	pick := func() string { return keys[rng.IntN(len(keys))] }
	for round := 0; round < 2000; round++ {
		var set spanSet
		var list []deletedSpan
		for range rng.IntN(8) {
			sp := deletedSpan{start: pick(), end: pick()}
			if rng.IntN(3) == 0 {
				sp.end = sp.start + "\x00"
			}
			set.add(sp)
			list = append(list, sp)
			for _, k := range keys {
				want := false
				for _, d := range list {
					want = want || (d.start <= k && k < d.end)
				}
				if got := set.contains(k); got != want {
					t.Fatalf("after adding %q: contains(%q) = %v, want %v", list, k, got, want)
				}
			}
		}
	}
}

// TestValidateTxnGrowsNearLinearly guards against the overlap check going
// quadratic again: with every put compared to every delete, a legal txn of
// 74k deletes and 74k puts cost 44 s of CPU. It times validation of a txn
// of n deletes and n puts (half of them in nested txns) and of one eight
// times larger, in the same process, and fails if the cost grows by more
// than 30x: near-linear code grows about 8-12x, quadratic code 64x. A ratio
// of two sizes, not an absolute time, so a slow or busy machine does not
// make it fail.
func TestValidateTxnGrowsNearLinearly(t *testing.T) {
	if testing.Short() {
		t.Skip("times validation of large txns")
	}
	build := func(n int) *pb.TxnRequest {
		key := func(kind byte, i int) []byte { return []byte{kind, byte(i >> 16), byte(i >> 8), byte(i)} }
		branch := func(from, to int) []*pb.RequestOp {
			var ops []*pb.RequestOp
			for i := from; i < to; i++ {
				ops = append(ops,
					&pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key('d', i)}}},
					&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key('p', i)}}})
			}
			return ops
		}
		ops := branch(0, n/2)
		ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: branch(n/2, n)}}})
		return &pb.TxnRequest{Success: ops}
	}
	cost := func(n int) time.Duration {
		req := build(n)
		best := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			if err := ValidateTxn(req, 4*n); err != nil {
				t.Fatalf("n=%d: %v", n, err)
			}
			best = min(best, time.Since(start))
		}
		return best
	}
	const n = 2000
	small, large := cost(n), cost(8*n)
	if ratio := float64(large) / float64(small); ratio > 30 {
		t.Errorf("validating %d deletes and puts took %v, %d took %v: %.0fx for 8x the ops, want near-linear growth", n, small, 8*n, large, ratio)
	}
}
