package mvcc

import (
	"errors"
	"testing"

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
