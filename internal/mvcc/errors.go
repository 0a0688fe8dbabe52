package mvcc

import "errors"

// Sentinel errors of the MVCC layer. Front ends map them to protocol errors
// (pkg/etcdcompat to etcd's rpctypes, pkg/httpapi to HTTP statuses); this
// package knows nothing of either.
var (
	// ErrCompacted: the requested revision is at or below the compacted
	// revision, so its history is gone.
	ErrCompacted = errors.New("mvcc: required revision has been compacted")
	// ErrFutureRev: the requested revision is above the current revision.
	ErrFutureRev = errors.New("mvcc: required revision is a future revision")
	// ErrEmptyKey: a request names no key.
	ErrEmptyKey = errors.New("mvcc: key is not provided")
	// ErrTooManyOps: a txn has more operations in one branch than allowed.
	ErrTooManyOps = errors.New("mvcc: too many operations in txn request")
	// ErrDuplicateKey: a txn writes the same key twice in one branch.
	ErrDuplicateKey = errors.New("mvcc: duplicate key given in txn request")
	// ErrLeaseNotFound: a put names a lease that does not exist.
	ErrLeaseNotFound = errors.New("mvcc: requested lease not found")
	// ErrLeaseExist: a lease grant names a lease that exists.
	ErrLeaseExist = errors.New("mvcc: lease already exists")
	// ErrKeyNotFound: a put with ignore_value or ignore_lease targets a key
	// that does not exist.
	ErrKeyNotFound = errors.New("mvcc: key not found")
	// ErrValueProvided: a put sets ignore_value and also carries a value.
	ErrValueProvided = errors.New("mvcc: value is provided")
	// ErrLeaseProvided: a put sets ignore_lease and also names a lease.
	ErrLeaseProvided = errors.New("mvcc: lease is provided")
)

// ErrInvalidSortOption: a range asks for a sort order or target that does
// not exist.
var ErrInvalidSortOption = errors.New("mvcc: invalid sort option")

// ErrTxnNotReadOnly: TxnRead was given a txn that IsTxnReadOnly rejects;
// such a txn must go through raft and Txn.
var ErrTxnNotReadOnly = errors.New("mvcc: txn is not read-only")

// isRequestError reports whether err is one of the sentinels above: the
// request failed, not the store. Any other error from the apply path is an
// engine failure.
func isRequestError(err error) bool {
	for _, s := range requestErrors {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

var requestErrors = []error{
	ErrCompacted, ErrFutureRev, ErrEmptyKey, ErrTooManyOps, ErrDuplicateKey,
	ErrLeaseNotFound, ErrLeaseExist, ErrKeyNotFound, ErrValueProvided, ErrLeaseProvided,
	ErrInvalidSortOption, ErrTxnNotReadOnly,
}
