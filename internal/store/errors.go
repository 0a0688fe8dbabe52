package store

import "errors"

// Sentinel errors of the store and its raft pipeline. Front ends map them
// to protocol errors; MVCC-level errors come from package mvcc unchanged.
var (
	// ErrStopped: the member is shutting down or has stopped.
	ErrStopped = errors.New("store: server stopped")
	// ErrTimeout: a proposal was not applied within the request timeout.
	ErrTimeout = errors.New("store: request timed out")
	// ErrTimeoutDueToLeaderFail: a proposal timed out shortly before this
	// member became leader; the previous leader probably failed with it.
	ErrTimeoutDueToLeaderFail = errors.New("store: request timed out, possibly due to previous leader failure")
	// ErrTimeoutDueToConnectionLost: a proposal timed out while this
	// member was not connected to its leader (or, leading, to a quorum)
	// for the whole request.
	ErrTimeoutDueToConnectionLost = errors.New("store: request timed out, possibly due to connection lost")
	// ErrLeaderChanged: a linearizable read was asked of a leader that
	// another has replaced since; retry.
	ErrLeaderChanged = errors.New("store: leader changed")
	// ErrUnhealthy: with --strict-reconfig-check, a membership change
	// would leave fewer voters connected to this member in the last five
	// seconds than a quorum.
	ErrUnhealthy = errors.New("store: unhealthy cluster")
	// ErrNoLeader: the raft group has no leader, so nothing can commit.
	ErrNoLeader = errors.New("store: no leader")
	// ErrRequestTooLarge: the encoded request exceeds --max-request-bytes.
	ErrRequestTooLarge = errors.New("store: request is too large")
	// ErrTooManyRequests: the state machine trails the raft log by more
	// than etcd allows (5000 entries); retry later.
	ErrTooManyRequests = errors.New("store: too many requests")
	// ErrNoSpace: the backend quota (--quota-backend-bytes) is exhausted,
	// or a NOSPACE alarm is active (see alarm.go).
	ErrNoSpace = errors.New("store: database space exceeded")
	// ErrCorrupt: a CORRUPT alarm is active; writes, compactions and lease
	// changes are refused until it is cleared.
	ErrCorrupt = errors.New("store: corrupt cluster")
	// ErrLeaseTTLTooLarge: a lease grant asks for more than MaxLeaseTTL.
	ErrLeaseTTLTooLarge = errors.New("store: too large lease TTL")

	// Membership changes (see members.go).

	// ErrMemberExists: a member with the ID asked for exists.
	ErrMemberExists = errors.New("store: member ID already exists")
	// ErrPeerURLExists: another member uses one of the peer URLs.
	ErrPeerURLExists = errors.New("store: peer URLs already exist")
	// ErrMemberNotFound: no member has the ID.
	ErrMemberNotFound = errors.New("store: member not found")
	// ErrMemberNotLearner: only a learner can be promoted.
	ErrMemberNotLearner = errors.New("store: can only promote a learner member")
	// ErrLearnerNotReady: the learner's log trails the leader's too far.
	ErrLearnerNotReady = errors.New("store: can only promote a learner member which is in sync with leader")
	// ErrTooManyLearners: the cluster has --max-learners learners already.
	ErrTooManyLearners = errors.New("store: too many learner members in cluster")
	// ErrNotEnoughStarted: with --strict-reconfig-check, the change would
	// leave fewer started voters than a quorum.
	ErrNotEnoughStarted = errors.New("store: re-configuration failed due to not enough started members")
	// ErrNotSupportedForLearner: a learner serves no writes nor
	// linearizable reads.
	ErrNotSupportedForLearner = errors.New("store: rpc not supported for learner")
	// ErrBadLeaderTransferee: MoveLeader names no member, or a learner.
	ErrBadLeaderTransferee = errors.New("store: bad leader transferee")
	// ErrLeaderTransferTimeout: leadership did not move within the
	// request's time.
	ErrLeaderTransferTimeout = errors.New("store: request timed out, leader transfer took too long")
	// ErrTimeoutWaitAppliedIndex: the leader had not applied what it had
	// committed within a second (see WaitCommitted).
	ErrTimeoutWaitAppliedIndex = errors.New("store: request timed out, waiting for the applied index took too long")
	// ErrNotLeader: the request must be served by the leader.
	ErrNotLeader = errors.New("store: not leader")

	// Downgrades (see downgrade.go).

	// ErrWrongDowngradeVersionFormat: a downgrade target is neither
	// "major.minor" nor a full semantic version.
	ErrWrongDowngradeVersionFormat = errors.New("store: wrong downgrade target version format")
	// ErrInvalidDowngradeTargetVersion: a downgrade target is not one minor
	// version below the cluster version.
	ErrInvalidDowngradeTargetVersion = errors.New("store: invalid downgrade target version")
	// ErrDowngradeInProcess: a downgrade is enabled already.
	ErrDowngradeInProcess = errors.New("store: cluster has a downgrade job in progress")
	// ErrUnknownDowngradeAction: a downgrade request's action is none of
	// VALIDATE, ENABLE and CANCEL.
	ErrUnknownDowngradeAction = errors.New("store: unknown method")
)

// errNoInflightDowngrade: a downgrade cancelled while none is enabled;
// only logged, as etcd does.
var errNoInflightDowngrade = errors.New("store: no inflight downgrade job")

// errUnknownRequest fails a request whose raft entry this version cannot
// apply.
var errUnknownRequest = errors.New("store: unknown request kind")

// ErrStreamSortOrder: RangeStream was asked for an order other than
// ascending keys.
var ErrStreamSortOrder = errors.New("store: RangeStream does not support custom sort orders")

// ErrStreamRevisionFilter: RangeStream was given min/max revision filters.
var ErrStreamRevisionFilter = errors.New("store: RangeStream does not support revision filters")
