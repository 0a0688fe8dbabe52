package store

import "errors"

// Sentinel errors of the store and its raft pipeline. Front ends map them
// to protocol errors; MVCC-level errors come from package mvcc unchanged.
var (
	// ErrStopped: the member is shutting down or has stopped.
	ErrStopped = errors.New("store: server stopped")
	// ErrTimeout: a proposal was not applied within the request timeout.
	ErrTimeout = errors.New("store: request timed out")
	// ErrNoLeader: the raft group has no leader, so nothing can commit.
	ErrNoLeader = errors.New("store: no leader")
	// ErrRequestTooLarge: the encoded request exceeds --max-request-bytes.
	ErrRequestTooLarge = errors.New("store: request is too large")
	// ErrTooManyRequests: the state machine trails the raft log by more
	// than etcd allows (5000 entries); retry later.
	ErrTooManyRequests = errors.New("store: too many requests")
	// ErrNoSpace: the backend quota (--quota-backend-bytes) is exhausted.
	ErrNoSpace = errors.New("store: database space exceeded")
	// ErrLeaseTTLTooLarge: a lease grant asks for more than MaxLeaseTTL.
	ErrLeaseTTLTooLarge = errors.New("store: too large lease TTL")
)

// errUnknownRequest fails a request whose raft entry this version cannot
// apply.
var errUnknownRequest = errors.New("store: unknown request kind")

// ErrStreamSortOrder: RangeStream was asked for an order other than
// ascending keys.
var ErrStreamSortOrder = errors.New("store: RangeStream does not support custom sort orders")

// ErrStreamRevisionFilter: RangeStream was given min/max revision filters.
var ErrStreamRevisionFilter = errors.New("store: RangeStream does not support revision filters")
