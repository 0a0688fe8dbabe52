package httpapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/store"
)

// forwardingLeases is a follower's lease service whose forwarded requests
// (keep-alive and TimeToLive, which the leader answers) fail with err.
type forwardingLeases struct {
	keyLeases
	err error
}

func (l *forwardingLeases) Renew(context.Context, int64) (int64, error) { return 0, l.err }

func (l *forwardingLeases) TimeToLive(context.Context, *etcdserverpb.LeaseTimeToLiveRequest) (*etcdserverpb.LeaseTimeToLiveResponse, error) {
	return nil, l.err
}

// received is err as a gRPC client receives it: a status with the code and
// message that came over the wire.
func received(err error) error {
	s := status.Convert(err)
	return status.Error(s.Code(), s.Message())
}

// unreachable is what the gRPC client answers for a leader that is gone.
var unreachable = status.Error(codes.Unavailable,
	`connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:23801: connect: connection refused"`)

// TestForwardedErrorsMapToStatuses: what a request forwarded to the leader
// brings back is a gRPC status, from the leader's etcd API or from the gRPC
// client itself. It was answered 500 internal; it is answered like the
// same failure on this member, and the status text, which may name the
// leader's address, is not passed on.
func TestForwardedErrorsMapToStatuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
		msg    string // the message, which must not be the status text
	}{
		{"leader has no leader", received(rpctypes.ErrGRPCNoLeader), 503, "no_leader", store.ErrNoLeader.Error()},
		{"leader timed out", received(rpctypes.ErrGRPCTimeout), 503, "timeout", store.ErrTimeout.Error()},
		{"leader stopping", received(rpctypes.ErrGRPCStopped), 503, "stopped", store.ErrStopped.Error()},
		{"asked a learner", received(rpctypes.ErrGRPCNotSupportedForLearner), 503, "learner", store.ErrNotSupportedForLearner.Error()},
		{"asked a former leader", received(rpctypes.ErrGRPCNotLeader), 503, "no_leader", store.ErrNotLeader.Error()},
		{"leader overloaded", received(rpctypes.ErrGRPCRequestTooManyRequests), 429, "too_many_requests", store.ErrTooManyRequests.Error()},
		{"leader out of space", received(rpctypes.ErrGRPCNoSpace), 507, "no_space", store.ErrNoSpace.Error()},
		{"lease unknown to the leader", received(rpctypes.ErrGRPCLeaseNotFound), 404, "lease_not_found", lease.ErrLeaseNotFound.Error()},
		{"leader unreachable", unreachable, 503, "unavailable", errLeaderUnavailable.Error()},
		{"unknown Unavailable", status.Error(codes.Unavailable, "etcdserver: member is unreachable"), 503, "unavailable", errLeaderUnavailable.Error()},
		{"leader changed", received(rpctypes.ErrGRPCLeaderChanged), 503, "leader_changed", store.ErrLeaderChanged.Error()},
		{"forwarded request out of time", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), 503, "timeout", store.ErrTimeout.Error()},
		{"forwarded request canceled", status.Error(codes.Canceled, "context canceled"), 503, "canceled", context.Canceled.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, err := range []error{tc.err, fmt.Errorf("forwarding to the leader: %w", tc.err)} {
				h := newHarness(t, Options{Leases: &forwardingLeases{err: err}})
				for _, target := range []struct{ method, path string }{
					{"POST", "/v1/leases/42/keepalive"},
					{"GET", "/v1/leases/42?keys=true"},
				} {
					rec := h.do(target.method, target.path, "")
					expectError(t, rec, tc.status, tc.code)
					if !strings.Contains(rec.Body.String(), `"message":"`+tc.msg+`"`) {
						t.Errorf("%s %s failing with %v: body %s, want message %q", target.method, target.path, err, rec.Body, tc.msg)
					}
				}
				if n := h.logs.Len(); n != 0 {
					t.Errorf("known error logged %d times, want 0: %v", n, h.logs.All())
				}
			}
		})
	}
}

// TestUnknownForwardedErrorIsAnOpaque500: a status that is neither etcd's
// nor one of the gRPC client's own is a bug somewhere; it is logged and
// answered like any unknown error.
func TestUnknownForwardedErrorIsAnOpaque500(t *testing.T) {
	err := status.Error(codes.Unknown, "lease: lessor stopped at 10.0.0.7")
	h := newHarness(t, Options{Leases: &forwardingLeases{err: err}})
	expectJSON(t, h.do("POST", "/v1/leases/42/keepalive", ""), 500, `{"error":{"code":"internal","message":"internal server error"}}`)
	if logs := h.logs.FilterMessage("httpapi: unexpected error").All(); len(logs) != 1 {
		t.Errorf("want the error logged once, got %v", h.logs.All())
	}
}

// TestLocalClusterErrorsMapToStatuses: errors of this member's own in a
// cluster were 500 internal.
func TestLocalClusterErrorsMapToStatuses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		// A learner refuses linearizable reads and writes.
		{store.ErrNotSupportedForLearner, 503, "learner"},
		// The lessor is stopping with the member.
		{lease.ErrStopped, 503, "stopped"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			h := newHarness(t, Options{Leases: &forwardingLeases{err: tc.err}})
			h.f.setErr(tc.err)
			for _, target := range []struct{ method, path, body string }{
				{"GET", "/v1/kv/a", ""},
				{"PUT", "/v1/kv/a", "v"},
				{"POST", "/v1/leases/42/keepalive", ""},
			} {
				rec := h.do(target.method, target.path, target.body)
				expectError(t, rec, tc.status, tc.code)
				if !strings.Contains(rec.Body.String(), tc.err.Error()) {
					t.Errorf("%s %s: message does not carry %q: %s", target.method, target.path, tc.err, rec.Body)
				}
			}
		})
	}
}
