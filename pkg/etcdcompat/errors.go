package etcdcompat

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
)

// grpcErrors maps the core packages' sentinel errors to etcd's exact gRPC
// status (code and message). clientv3 recognises errors by their message,
// so these must match etcd byte for byte; rpctypes is etcd's own table.
var grpcErrors = []struct {
	err  error
	grpc error
}{
	{mvcc.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{mvcc.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{mvcc.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{mvcc.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{mvcc.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{mvcc.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{mvcc.ErrInvalidSortOption, rpctypes.ErrGRPCInvalidSortOption},
	{mvcc.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{mvcc.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{mvcc.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{mvcc.ErrLeaseExist, rpctypes.ErrGRPCLeaseExist},
	{store.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{store.ErrNoSpace, rpctypes.ErrGRPCNoSpace},
	{store.ErrCorrupt, rpctypes.ErrGRPCCorrupt},
	{store.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{store.ErrTooManyRequests, rpctypes.ErrGRPCRequestTooManyRequests},
	{store.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{store.ErrStopped, rpctypes.ErrGRPCStopped},
	// etcd's lessor has no error of its own for stopping: a member that
	// stops answers "server stopped" whichever part of it notices.
	{lease.ErrStopped, rpctypes.ErrGRPCStopped},
	// etcd's table lacks this one: its lessor's text goes out with code
	// Unknown, and clientv3's keep-alive loop opens a new stream.
	{lease.ErrNotPrimary, status.Error(codes.Unknown, "not a primary lessor")},
	{store.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{store.ErrTimeoutDueToLeaderFail, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
	{store.ErrTimeoutDueToConnectionLost, rpctypes.ErrGRPCTimeoutDueToConnectionLost},
	{store.ErrLeaderChanged, rpctypes.ErrGRPCLeaderChanged},
	{store.ErrUnhealthy, rpctypes.ErrGRPCUnhealthy},
	{store.ErrMemberExists, rpctypes.ErrGRPCMemberExist},
	{store.ErrPeerURLExists, rpctypes.ErrGRPCPeerURLExist},
	{store.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{store.ErrMemberNotLearner, rpctypes.ErrGRPCMemberNotLearner},
	{store.ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady},
	{store.ErrTooManyLearners, rpctypes.ErrGRPCTooManyLearners},
	// etcd sends this one's text with code Unknown: rpctypes has no entry.
	{store.ErrNotEnoughStarted, status.Error(codes.Unknown, "etcdserver: re-configuration failed due to not enough started members")},
	{store.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	{store.ErrTimeoutWaitAppliedIndex, rpctypes.ErrGRPCTimeoutWaitAppliedIndex},
	{store.ErrBadLeaderTransferee, rpctypes.ErrGRPCBadLeaderTransferee},
	// etcd sends this one's text with code Unknown: rpctypes has no entry.
	{store.ErrLeaderTransferTimeout, status.Error(codes.Unknown, "etcdserver: request timed out, leader transfer took too long")},
	{store.ErrNotSupportedForLearner, rpctypes.ErrGRPCNotSupportedForLearner},
	{store.ErrWrongDowngradeVersionFormat, rpctypes.ErrGRPCWrongDowngradeVersionFormat},
	{store.ErrInvalidDowngradeTargetVersion, rpctypes.ErrGRPCInvalidDowngradeTargetVersion},
	{store.ErrDowngradeInProcess, rpctypes.ErrGRPCDowngradeInProcess},
	// etcd sends this one's text with code Unknown: rpctypes has no entry.
	{store.ErrUnknownDowngradeAction, status.Error(codes.Unknown, "etcdserver: unknown method")},
	{errBadURLs, rpctypes.ErrGRPCMemberBadURLs},
	{auth.ErrRootUserNotExist, rpctypes.ErrGRPCRootUserNotExist},
	{auth.ErrRootRoleNotExist, rpctypes.ErrGRPCRootRoleNotExist},
	{auth.ErrUserAlreadyExist, rpctypes.ErrGRPCUserAlreadyExist},
	{auth.ErrUserEmpty, rpctypes.ErrGRPCUserEmpty},
	{auth.ErrUserNotFound, rpctypes.ErrGRPCUserNotFound},
	{auth.ErrRoleAlreadyExist, rpctypes.ErrGRPCRoleAlreadyExist},
	{auth.ErrRoleNotFound, rpctypes.ErrGRPCRoleNotFound},
	{auth.ErrRoleEmpty, rpctypes.ErrGRPCRoleEmpty},
	{auth.ErrAuthFailed, rpctypes.ErrGRPCAuthFailed},
	{auth.ErrPermissionNotGiven, rpctypes.ErrGRPCPermissionNotGiven},
	{auth.ErrPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
	{auth.ErrRoleNotGranted, rpctypes.ErrGRPCRoleNotGranted},
	{auth.ErrPermissionNotGranted, rpctypes.ErrGRPCPermissionNotGranted},
	{auth.ErrAuthNotEnabled, rpctypes.ErrGRPCAuthNotEnabled},
	{auth.ErrInvalidAuthToken, rpctypes.ErrGRPCInvalidAuthToken},
	{auth.ErrInvalidAuthMgmt, rpctypes.ErrGRPCInvalidAuthMgmt},
	{auth.ErrAuthOldRevision, rpctypes.ErrGRPCAuthOldRevision},
	// etcd's table lacks this one: its own text goes out with code Unknown.
	{auth.ErrNoPasswordUser, status.Error(codes.Unknown, "auth: authentication failed, password was given for no password user")},
	// etcd's RangeStream checks answer plain statuses, not rpctypes values
	// (etcdserver/api/v3rpc/key.go, checkRangeStreamRequest).
	{store.ErrStreamSortOrder, status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")},
	{store.ErrStreamRevisionFilter, status.Error(codes.Unimplemented, "RangeStream does not support revision filters")},
}

// toGRPCError converts an error from the store into what etcd would send.
// Context errors pass through so gRPC reports Canceled/DeadlineExceeded, as
// etcd does; anything unknown becomes codes.Unknown with its text.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, m := range grpcErrors {
		if errors.Is(err, m.err) {
			return m.grpc
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// ErrorText is the text etcd's API gives err, a core package's sentinel
// error or a gRPC status: the message of the status toGRPCError makes.
func ErrorText(err error) string { return rpctypes.ErrorDesc(toGRPCError(err)) }

// FromGRPCError is toGRPCError the other way round, for a member that
// forwards a request to another member's etcd API (a follower sends lease
// keep-alives and TimeToLive to the leader): a status that the table above
// produces becomes the sentinel error it was made from, so the forwarding
// member's front ends map it as if the error were their own. The status
// may be wrapped. Any other error, including a status the table does not
// produce (such as the gRPC client's own Unavailable for a member it
// cannot reach), is returned unchanged. Where several sentinels share a
// status (store.ErrStopped and lease.ErrStopped), the first in the table
// is returned.
func FromGRPCError(err error) error {
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return err
	}
	st := se.GRPCStatus()
	for _, m := range grpcErrors {
		if ms := status.Convert(m.grpc); ms.Code() == st.Code() && ms.Message() == st.Message() {
			return m.err
		}
	}
	return err
}
