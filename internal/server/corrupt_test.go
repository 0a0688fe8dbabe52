package server

import (
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/corruptcheck"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// TestPeerHashError: the statuses a peer's HashKV fails with come back as
// the errors the corruption checks tell apart.
func TestPeerHashError(t *testing.T) {
	other := status.Error(codes.Unavailable, "connection refused")
	for _, tt := range []struct {
		in, want error
	}{
		{rpctypes.ErrGRPCCompacted, mvcc.ErrCompacted},
		{rpctypes.ErrGRPCFutureRev, mvcc.ErrFutureRev},
		{status.Error(codes.FailedPrecondition, "cluster ID mismatch: local 1, remote 2"), corruptcheck.ErrClusterIDMismatch},
		{other, other},
	} {
		if got := peerHashError(tt.in); !errors.Is(got, tt.want) {
			t.Errorf("peerHashError(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
