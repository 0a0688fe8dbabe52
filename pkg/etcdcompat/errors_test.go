package etcdcompat

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
)

// etcdErrors is what etcd sends for each of the core packages' sentinel
// errors, written out independently of the table under test. The last two
// are etcd's own RangeStream checks (etcdserver/api/v3rpc/key.go), which
// are plain status errors rather than rpctypes values.
var etcdErrors = []struct {
	err  error
	want error
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
	{store.ErrCorrupt, status.Error(codes.DataLoss, "etcdserver: corrupt cluster")},
	{store.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{store.ErrTooManyRequests, rpctypes.ErrGRPCRequestTooManyRequests},
	{store.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{store.ErrStopped, rpctypes.ErrGRPCStopped},
	{lease.ErrStopped, rpctypes.ErrGRPCStopped},
	{lease.ErrNotPrimary, status.Error(codes.Unknown, "not a primary lessor")},
	{store.ErrTimeout, rpctypes.ErrGRPCTimeout},
	{store.ErrTimeoutDueToLeaderFail, status.Error(codes.Unavailable, "etcdserver: request timed out, possibly due to previous leader failure")},
	{store.ErrTimeoutDueToConnectionLost, status.Error(codes.Unavailable, "etcdserver: request timed out, possibly due to connection lost")},
	{store.ErrLeaderChanged, status.Error(codes.Unavailable, "etcdserver: leader changed")},
	{store.ErrUnhealthy, status.Error(codes.Unavailable, "etcdserver: unhealthy cluster")},
	{store.ErrMemberExists, rpctypes.ErrGRPCMemberExist},
	{store.ErrPeerURLExists, rpctypes.ErrGRPCPeerURLExist},
	{store.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{store.ErrMemberNotLearner, rpctypes.ErrGRPCMemberNotLearner},
	{store.ErrLearnerNotReady, rpctypes.ErrGRPCLearnerNotReady},
	{store.ErrTooManyLearners, rpctypes.ErrGRPCTooManyLearners},
	// etcd sends this one's text with code Unknown: rpctypes has no entry.
	{store.ErrNotEnoughStarted, status.Error(codes.Unknown, "etcdserver: re-configuration failed due to not enough started members")},
	{store.ErrNotLeader, rpctypes.ErrGRPCNotLeader},
	// etcd's leader before a lease lookup (waitAppliedIndex).
	{store.ErrTimeoutWaitAppliedIndex, status.Error(codes.Unavailable, "etcdserver: request timed out, waiting for the applied index took too long")},
	{store.ErrBadLeaderTransferee, rpctypes.ErrGRPCBadLeaderTransferee},
	// etcd sends this one's text with code Unknown: rpctypes has no entry.
	{store.ErrLeaderTransferTimeout, status.Error(codes.Unknown, "etcdserver: request timed out, leader transfer took too long")},
	{store.ErrNotSupportedForLearner, rpctypes.ErrGRPCNotSupportedForLearner},
	{store.ErrWrongDowngradeVersionFormat, status.Error(codes.InvalidArgument, "etcdserver: wrong downgrade target version format")},
	{store.ErrInvalidDowngradeTargetVersion, status.Error(codes.InvalidArgument, "etcdserver: invalid downgrade target version")},
	{store.ErrDowngradeInProcess, status.Error(codes.FailedPrecondition, "etcdserver: cluster has a downgrade job in progress")},
	// etcd's errors.ErrUnknownMethod, absent from its table: code Unknown.
	{store.ErrUnknownDowngradeAction, status.Error(codes.Unknown, "etcdserver: unknown method")},
	{errBadURLs, rpctypes.ErrGRPCMemberBadURLs},
	{auth.ErrRootUserNotExist, status.Error(codes.FailedPrecondition, "etcdserver: root user does not exist")},
	{auth.ErrRootRoleNotExist, status.Error(codes.FailedPrecondition, "etcdserver: root user does not have root role")},
	{auth.ErrUserAlreadyExist, status.Error(codes.FailedPrecondition, "etcdserver: user name already exists")},
	{auth.ErrUserEmpty, status.Error(codes.InvalidArgument, "etcdserver: user name is empty")},
	{auth.ErrUserNotFound, status.Error(codes.FailedPrecondition, "etcdserver: user name not found")},
	{auth.ErrRoleAlreadyExist, status.Error(codes.FailedPrecondition, "etcdserver: role name already exists")},
	{auth.ErrRoleNotFound, status.Error(codes.FailedPrecondition, "etcdserver: role name not found")},
	{auth.ErrRoleEmpty, status.Error(codes.InvalidArgument, "etcdserver: role name is empty")},
	{auth.ErrAuthFailed, status.Error(codes.InvalidArgument, "etcdserver: authentication failed, invalid user ID or password")},
	{auth.ErrPermissionNotGiven, status.Error(codes.InvalidArgument, "etcdserver: permission not given")},
	{auth.ErrPermissionDenied, status.Error(codes.PermissionDenied, "etcdserver: permission denied")},
	{auth.ErrRoleNotGranted, status.Error(codes.FailedPrecondition, "etcdserver: role is not granted to the user")},
	{auth.ErrPermissionNotGranted, status.Error(codes.FailedPrecondition, "etcdserver: permission is not granted to the role")},
	{auth.ErrAuthNotEnabled, status.Error(codes.FailedPrecondition, "etcdserver: authentication is not enabled")},
	{auth.ErrInvalidAuthToken, status.Error(codes.Unauthenticated, "etcdserver: invalid auth token")},
	{auth.ErrInvalidAuthMgmt, status.Error(codes.InvalidArgument, "etcdserver: invalid auth management")},
	{auth.ErrAuthOldRevision, status.Error(codes.InvalidArgument, "etcdserver: revision of auth store is old")},
	// etcd maps no status for it: auth's own text with code Unknown.
	{auth.ErrNoPasswordUser, status.Error(codes.Unknown, "auth: authentication failed, password was given for no password user")},
	{store.ErrStreamSortOrder, status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders")},
	{store.ErrStreamRevisionFilter, status.Error(codes.Unimplemented, "RangeStream does not support revision filters")},
}

func assertSameStatus(t *testing.T, got, want error) {
	t.Helper()
	gs, ok := status.FromError(got)
	if !ok {
		t.Fatalf("got %T %v, want a gRPC status", got, got)
	}
	ws, _ := status.FromError(want)
	if gs.Code() != ws.Code() || gs.Message() != ws.Message() {
		t.Errorf("got status %v %q, want %v %q", gs.Code(), gs.Message(), ws.Code(), ws.Message())
	}
}

// TestToGRPCErrorSentinels checks every sentinel, bare and wrapped, against
// etcd's exact code and message.
func TestToGRPCErrorSentinels(t *testing.T) {
	for _, tt := range etcdErrors {
		t.Run(tt.err.Error(), func(t *testing.T) {
			assertSameStatus(t, toGRPCError(tt.err), tt.want)
			assertSameStatus(t, toGRPCError(fmt.Errorf("applying entry 7: %w", tt.err)), tt.want)
			assertSameStatus(t, toGRPCError(fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", tt.err))), tt.want)
		})
	}
}

// TestGRPCErrorsTableCovered fails when a row is added to grpcErrors
// without saying here what etcd sends for it.
func TestGRPCErrorsTableCovered(t *testing.T) {
	for _, row := range grpcErrors {
		found := false
		for _, tt := range etcdErrors {
			if tt.err == row.err {
				found = true
				assertSameStatus(t, row.grpc, tt.want)
			}
		}
		if !found {
			t.Errorf("grpcErrors maps %q, which etcdErrors does not list", row.err)
		}
	}
}

func TestToGRPCErrorOthers(t *testing.T) {
	already := status.Error(codes.PermissionDenied, "etcdserver: permission denied")
	tests := []struct {
		name     string
		err      error
		wantSame bool // the very error comes back
		wantCode codes.Code
		wantMsg  string
	}{
		{name: "nil", err: nil, wantSame: true},
		{name: "canceled", err: context.Canceled, wantSame: true},
		{name: "deadline", err: context.DeadlineExceeded, wantSame: true},
		{name: "wrapped canceled", err: fmt.Errorf("waiting for apply: %w", context.Canceled), wantSame: true},
		{name: "gRPC status", err: already, wantSame: true},
		{name: "rpctypes status", err: rpctypes.ErrGRPCCorrupt, wantSame: true},
		{name: "unknown", err: errors.New("disk on fire"), wantCode: codes.Unknown, wantMsg: "disk on fire"},
		{name: "unknown wrapping nothing known", err: fmt.Errorf("a: %w", errors.New("b")), wantCode: codes.Unknown, wantMsg: "a: b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toGRPCError(tt.err)
			if tt.wantSame {
				if got != tt.err {
					t.Errorf("toGRPCError(%v) = %v, want it unchanged", tt.err, got)
				}
				return
			}
			s, ok := status.FromError(got)
			if !ok || s.Code() != tt.wantCode || s.Message() != tt.wantMsg {
				t.Errorf("toGRPCError(%v) = %v, want %v %q", tt.err, got, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// TestFromGRPCErrorInvertsTheTable: every status etcd sends for a sentinel,
// as a forwarding member receives it (bare or wrapped), turns back into
// that sentinel, or into the first listed with the same status (the lease
// service's "lessor stopped" comes back as the store's "server stopped");
// other errors come back unchanged.
func TestFromGRPCErrorInvertsTheTable(t *testing.T) {
	for _, tt := range etcdErrors {
		t.Run(tt.err.Error(), func(t *testing.T) {
			// What a gRPC client sees: a fresh status with the code and
			// message that came over the wire.
			s := status.Convert(tt.want)
			received := status.Error(s.Code(), s.Message())
			want := tt.err
			if tt.err == lease.ErrStopped {
				want = store.ErrStopped
			}
			for _, err := range []error{received, fmt.Errorf("forwarding to the leader: %w", received)} {
				if got := FromGRPCError(err); got != want {
					t.Errorf("FromGRPCError(%v) = %v, want %v", err, got, want)
				}
			}
		})
	}
	unreachable := status.Error(codes.Unavailable, "connection error: desc = \"transport: Error while dialing: dial tcp 127.0.0.1:1: connect: connection refused\"")
	for _, err := range []error{
		nil,
		errors.New("disk on fire"),
		context.Canceled,
		unreachable,
		status.Error(codes.Unavailable, "etcdserver: no leader, said nobody"),
		status.Error(codes.NotFound, "etcdserver: no leader"),
	} {
		if got := FromGRPCError(err); got != err {
			t.Errorf("FromGRPCError(%v) = %v, want it unchanged", err, got)
		}
	}
}
