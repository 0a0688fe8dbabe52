package mvcc

import (
	"bytes"

	"github.com/google/btree"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The Validate functions are the stateless checks etcd's gRPC layer makes
// before a request reaches raft. Front ends call them before proposing; the
// apply path trusts their result.

// ValidateRange checks a range request: it must name a key and use known
// sort options.
func ValidateRange(req *pb.RangeRequest) error {
	if len(req.GetKey()) == 0 {
		return ErrEmptyKey
	}
	if !validSort(req) {
		return ErrInvalidSortOption
	}
	return nil
}

// ValidatePut checks a put request: it must name a key and must not carry a
// value or lease it also asks to keep.
func ValidatePut(req *pb.PutRequest) error {
	switch {
	case len(req.GetKey()) == 0:
		return ErrEmptyKey
	case req.GetIgnoreValue() && len(req.GetValue()) != 0:
		return ErrValueProvided
	case req.GetIgnoreLease() && req.GetLease() != 0:
		return ErrLeaseProvided
	}
	return nil
}

// ValidateDeleteRange checks a delete request: it must name a key.
func ValidateDeleteRange(req *pb.DeleteRangeRequest) error {
	if len(req.GetKey()) == 0 {
		return ErrEmptyKey
	}
	return nil
}

// ValidateTxn checks a txn request against maxTxnOps (normally
// KV.MaxTxnOps). Neither the compares nor either branch may exceed it; a
// nested txn may use only what its parent left, maxTxnOps minus the
// parent's largest of those three counts. Every operation must be valid on
// its own, and an operation that is empty fails with ErrKeyNotFound, as in
// etcd. Finally no key may be written twice in a way etcd rejects, which
// gives ErrDuplicateKey (see checkWriteOverlaps).
func ValidateTxn(req *pb.TxnRequest, maxTxnOps int) error {
	if err := validateTxnOps(req, maxTxnOps); err != nil {
		return err
	}
	if err := checkBranch(req.GetSuccess()); err != nil {
		return err
	}
	return checkBranch(req.GetFailure())
}

// plainPutsChecked is how many operations a branch of puts alone may have
// for checkBranch to compare their keys pairwise.
const plainPutsChecked = 8

// checkBranch is checkWriteOverlaps for a txn's top-level branch, whose
// sets of keys nobody reads afterwards. A short branch of puts alone (the
// usual txn: a compare and a put or two) only has to put distinct keys,
// which comparing them pairwise tells without building those sets.
func checkBranch(ops []*pb.RequestOp) error {
	if len(ops) <= plainPutsChecked && onlyPuts(ops) {
		for i, op := range ops {
			for _, prev := range ops[:i] {
				if bytes.Equal(op.GetRequestPut().GetKey(), prev.GetRequestPut().GetKey()) {
					return ErrDuplicateKey
				}
			}
		}
		return nil
	}
	_, _, err := checkWriteOverlaps(ops)
	return err
}

// onlyPuts reports whether every operation of ops is a put.
func onlyPuts(ops []*pb.RequestOp) bool {
	for _, op := range ops {
		if op.GetRequestPut() == nil {
			return false
		}
	}
	return true
}

func validateTxnOps(req *pb.TxnRequest, maxTxnOps int) error {
	n := max(len(req.GetCompare()), len(req.GetSuccess()), len(req.GetFailure()))
	if n > maxTxnOps {
		return ErrTooManyOps
	}
	for _, c := range req.GetCompare() {
		if len(c.GetKey()) == 0 {
			return ErrEmptyKey
		}
	}
	for _, ops := range [][]*pb.RequestOp{req.GetSuccess(), req.GetFailure()} {
		for _, op := range ops {
			if err := validateOp(op, maxTxnOps-n); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateOp(op *pb.RequestOp, maxTxnOps int) error {
	switch r := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return ValidateRange(r.RequestRange)
	case *pb.RequestOp_RequestPut:
		return ValidatePut(r.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return ValidateDeleteRange(r.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return validateTxnOps(r.RequestTxn, maxTxnOps)
	}
	return ErrKeyNotFound
}

// deletedSpan is the key interval of one delete as etcd's overlap check
// sees it: [start, end). A single-key delete is [key, key+"\x00"), the
// interval holding just key. The range_end of a ranged delete is taken
// literally, so the "\x00" of a from-key delete makes an interval that
// contains no key at all: etcd lets a txn put a key that the same txn
// deletes with a from-key delete, and so does Cairn.
type deletedSpan struct {
	start, end string
}

// deletedSpanOf returns the span a delete request covers, literally as etcd
// takes it (unlike keySpan, which reads "\x00" as "every key from here").
func deletedSpanOf(d *pb.DeleteRangeRequest) deletedSpan {
	if len(d.RangeEnd) == 0 {
		return deletedSpan{start: string(d.Key), end: string(d.Key) + "\x00"}
	}
	return deletedSpan{start: string(d.Key), end: string(d.RangeEnd)}
}

// spanSet is the union of the spans a branch deletes. It holds disjoint,
// non-touching spans ordered by start, so whether a key is deleted is one
// ordered lookup and adding a span costs O(log n) plus the spans it
// absorbs: a txn of n deletes and n puts is checked in O(n log n), where
// comparing every put with every delete took minutes of CPU for a legal
// 1.5 MiB txn. The zero value is the empty union; its tree is made by the
// first span added, so that the common branch, which deletes nothing,
// costs nothing.
type spanSet struct {
	spans *btree.BTreeG[deletedSpan]
}

// add puts sp into the union, merging it with every span it overlaps or
// touches. An empty or inverted span holds no key and changes nothing.
func (s *spanSet) add(sp deletedSpan) {
	if sp.start >= sp.end {
		return
	}
	if s.spans == nil {
		s.spans = btree.NewG(16, func(a, b deletedSpan) bool { return a.start < b.start })
	}
	var absorbed []deletedSpan
	s.spans.DescendLessOrEqual(sp, func(x deletedSpan) bool {
		if x.end >= sp.start {
			absorbed = append(absorbed, x)
		}
		return false
	})
	s.spans.AscendGreaterOrEqual(sp, func(x deletedSpan) bool {
		if x.start > sp.end {
			return false
		}
		absorbed = append(absorbed, x)
		return true
	})
	for _, x := range absorbed {
		s.spans.Delete(x)
		sp.start, sp.end = min(sp.start, x.start), max(sp.end, x.end)
	}
	s.spans.ReplaceOrInsert(sp)
}

// addAll puts every span of o into s.
func (s *spanSet) addAll(o spanSet) {
	if o.spans == nil {
		return
	}
	o.spans.Ascend(func(x deletedSpan) bool {
		s.add(x)
		return true
	})
}

// contains reports whether some span holds k.
func (s spanSet) contains(k string) bool {
	if s.spans == nil {
		return false
	}
	found := false
	s.spans.DescendLessOrEqual(deletedSpan{start: k}, func(x deletedSpan) bool {
		found = k < x.end
		return false
	})
	return found
}

// checkWriteOverlaps returns ErrDuplicateKey if the operations of one txn
// branch, nested txns included, write a key twice in a way etcd forbids. It
// also returns the keys the branch puts and the spans it deletes, for the
// check of the enclosing branch.
//
// The rules, and their order-dependence, are etcd's (checkIntervals in
// v3rpc/key.go): at one level, a put may not hit a key another put of the
// level or of a nested txn writes, nor a span deleted at the level or in a
// nested txn. A nested txn's puts are checked against the deletes of the
// level and of the nested txns before it, not after it; the two branches of
// one nested txn may put the same key, as only one of them runs. Deletes
// never conflict with each other.
func checkWriteOverlaps(ops []*pb.RequestOp) (puts map[string]struct{}, dels spanSet, err error) {
	for _, op := range ops {
		if d := op.GetRequestDeleteRange(); d != nil {
			dels.add(deletedSpanOf(d))
		}
	}

	puts = make(map[string]struct{}, len(ops))
	for _, op := range ops {
		nested, ok := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		thenPuts, thenDels, err := checkWriteOverlaps(nested.RequestTxn.GetSuccess())
		if err != nil {
			return nil, spanSet{}, err
		}
		elsePuts, elseDels, err := checkWriteOverlaps(nested.RequestTxn.GetFailure())
		if err != nil {
			return nil, spanSet{}, err
		}
		for k := range thenPuts {
			if _, dup := puts[k]; dup || dels.contains(k) {
				return nil, spanSet{}, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range elsePuts {
			_, dup := puts[k]
			_, inThen := thenPuts[k]
			if (dup && !inThen) || dels.contains(k) {
				return nil, spanSet{}, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels.addAll(thenDels)
		dels.addAll(elseDels)
	}

	for _, op := range ops {
		p := op.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.Key)
		if _, dup := puts[k]; dup || dels.contains(k) {
			return nil, spanSet{}, ErrDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
