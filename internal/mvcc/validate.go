package mvcc

import (
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
	if _, _, err := checkWriteOverlaps(req.GetSuccess()); err != nil {
		return err
	}
	_, _, err := checkWriteOverlaps(req.GetFailure())
	return err
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

func (d deletedSpan) contains(k string) bool {
	return d.start <= k && k < d.end
}

func anyContains(dels []deletedSpan, k string) bool {
	for _, d := range dels {
		if d.contains(k) {
			return true
		}
	}
	return false
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
func checkWriteOverlaps(ops []*pb.RequestOp) (puts map[string]struct{}, dels []deletedSpan, err error) {
	for _, op := range ops {
		d := op.GetRequestDeleteRange()
		if d == nil {
			continue
		}
		end := string(d.RangeEnd)
		if len(d.RangeEnd) == 0 {
			end = string(d.Key) + "\x00"
		}
		dels = append(dels, deletedSpan{start: string(d.Key), end: end})
	}

	puts = make(map[string]struct{})
	for _, op := range ops {
		nested, ok := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		thenPuts, thenDels, err := checkWriteOverlaps(nested.RequestTxn.GetSuccess())
		if err != nil {
			return nil, nil, err
		}
		elsePuts, elseDels, err := checkWriteOverlaps(nested.RequestTxn.GetFailure())
		if err != nil {
			return nil, nil, err
		}
		for k := range thenPuts {
			if _, dup := puts[k]; dup || anyContains(dels, k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range elsePuts {
			_, dup := puts[k]
			_, inThen := thenPuts[k]
			if (dup && !inThen) || anyContains(dels, k) {
				return nil, nil, ErrDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels = append(dels, thenDels...)
		dels = append(dels, elseDels...)
	}

	for _, op := range ops {
		p := op.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.Key)
		if _, dup := puts[k]; dup || anyContains(dels, k) {
			return nil, nil, ErrDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}
