package httpapi

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
)

// Errors the REST layer detects itself. Handlers wrap them with %w to say
// what exactly was wrong; the wrapped text becomes the response message.
var (
	// errInvalidArgument: a query parameter, path or JSON field has a value
	// the API does not accept.
	errInvalidArgument = errors.New("invalid argument")
	// errMalformedBody: the body is not one JSON value of the expected
	// shape (syntax, unknown field, wrong type, trailing data, empty).
	errMalformedBody = errors.New("malformed request body")
	// errBodyTooLarge: the body exceeds Options.MaxRequestBytes.
	errBodyTooLarge = errors.New("request body too large")
	// errBodyTimeout: the body did not arrive within Options.BodyTimeout.
	errBodyTimeout = errors.New("request body timeout")
	// errCompareFailed: a txn with "require_success" did not succeed.
	errCompareFailed = errors.New("txn compare failed")
	// errNoRoute: no endpoint has this path.
	errNoRoute = errors.New("no such endpoint")
	// errMethodNotAllowed: the endpoint exists but not with this method.
	errMethodNotAllowed = errors.New("method not allowed")
	// errLeaderUnavailable: a request forwarded to the leader failed with
	// gRPC's Unavailable but not with one of etcd's errors: the leader
	// could not be reached (connection refused or lost), as while a dead
	// leader is not yet replaced.
	errLeaderUnavailable = errors.New("leader unavailable")
)

// errorTable is the one place errors become HTTP statuses and the stable
// codes clients switch on. The first entry that errors.Is matches wins.
// Codes are part of the API (see api/openapi/httpapi.yaml): add, never
// rename.
var errorTable = []struct {
	err    error
	status int
	code   string
}{
	// The request itself is wrong: do not retry unchanged.
	{errInvalidArgument, http.StatusBadRequest, "invalid_argument"},
	{errMalformedBody, http.StatusBadRequest, "malformed_body"},
	{mvcc.ErrEmptyKey, http.StatusBadRequest, "empty_key"},
	{mvcc.ErrTooManyOps, http.StatusBadRequest, "too_many_ops"},
	{mvcc.ErrDuplicateKey, http.StatusBadRequest, "duplicate_key"},
	{mvcc.ErrInvalidSortOption, http.StatusBadRequest, "invalid_sort_option"},
	{mvcc.ErrValueProvided, http.StatusBadRequest, "value_provided"},
	{mvcc.ErrLeaseProvided, http.StatusBadRequest, "lease_provided"},
	{mvcc.ErrFutureRev, http.StatusBadRequest, "future_revision"},
	{store.ErrLeaseTTLTooLarge, http.StatusBadRequest, "lease_ttl_too_large"},
	{errBodyTooLarge, http.StatusRequestEntityTooLarge, "request_too_large"},
	{errBodyTimeout, http.StatusRequestTimeout, "request_timeout"},
	{store.ErrRequestTooLarge, http.StatusRequestEntityTooLarge, "request_too_large"},
	{errNoRoute, http.StatusNotFound, "not_found"},
	{errMethodNotAllowed, http.StatusMethodNotAllowed, "method_not_allowed"},

	// Auth is enabled: credentials are missing or not accepted (401, with
	// a Basic challenge), or do not allow the request (403). An old auth
	// revision means the permissions changed since the identity was
	// resolved: retry, after getting a new token if it was a JWT.
	{auth.ErrUserEmpty, http.StatusUnauthorized, "auth_required"},
	{auth.ErrAuthFailed, http.StatusUnauthorized, "auth_failed"},
	{auth.ErrNoPasswordUser, http.StatusUnauthorized, "auth_failed"},
	{auth.ErrInvalidAuthToken, http.StatusUnauthorized, "invalid_token"},
	{auth.ErrAuthOldRevision, http.StatusUnauthorized, "auth_revision_old"},
	{auth.ErrPermissionDenied, http.StatusForbidden, "permission_denied"},

	// The request is well formed but the data does not fit it.
	{auth.ErrAuthNotEnabled, http.StatusConflict, "auth_not_enabled"},
	{mvcc.ErrKeyNotFound, http.StatusNotFound, "key_not_found"},
	{mvcc.ErrLeaseNotFound, http.StatusNotFound, "lease_not_found"},
	{mvcc.ErrLeaseExist, http.StatusConflict, "lease_exists"},
	{mvcc.ErrCompacted, http.StatusGone, "compacted"},
	{errCompareFailed, http.StatusPreconditionFailed, "compare_failed"},

	// The member cannot serve now: retry later or elsewhere.
	{store.ErrTooManyRequests, http.StatusTooManyRequests, "too_many_requests"},
	{store.ErrNoLeader, http.StatusServiceUnavailable, "no_leader"},
	// Only a forwarded request can meet it: the member asked to serve it
	// no longer leads.
	{store.ErrNotLeader, http.StatusServiceUnavailable, "no_leader"},
	// A leader whose raft clock stalled could not confirm that it still
	// leads, so it renews no lease.
	{lease.ErrNotPrimary, http.StatusServiceUnavailable, "no_leader"},
	{errLeaderUnavailable, http.StatusServiceUnavailable, "unavailable"},
	// A member given only a JWT public key verifies tokens but cannot
	// issue them: ask another member.
	{auth.ErrVerifyOnly, http.StatusServiceUnavailable, "verify_only"},
	// A learner serves serializable reads only; a voter can serve the rest.
	{store.ErrNotSupportedForLearner, http.StatusServiceUnavailable, "learner"},
	{store.ErrStopped, http.StatusServiceUnavailable, "stopped"},
	{lease.ErrStopped, http.StatusServiceUnavailable, "stopped"},
	{store.ErrTimeout, http.StatusServiceUnavailable, "timeout"},
	{store.ErrTimeoutDueToLeaderFail, http.StatusServiceUnavailable, "timeout"},
	{store.ErrTimeoutDueToConnectionLost, http.StatusServiceUnavailable, "timeout"},
	{store.ErrTimeoutWaitAppliedIndex, http.StatusServiceUnavailable, "timeout"},
	// A linearizable read met a change of leader: retry.
	{store.ErrLeaderChanged, http.StatusServiceUnavailable, "leader_changed"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "timeout"},
	{context.Canceled, http.StatusServiceUnavailable, "canceled"},
	{store.ErrNoSpace, http.StatusInsufficientStorage, "no_space"},
	// A CORRUPT alarm is active: writes wait for an operator to clear it.
	// TODO: a code of its own once api/openapi/httpapi.yaml lists one.
	{store.ErrCorrupt, http.StatusServiceUnavailable, "unavailable"},
}

// errorDetail is the body of every error response, under "error".
type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// errorResponse is the JSON body of every non-2xx response.
type errorResponse struct {
	Error errorDetail `json:"error"`
}

// internalError answers errors the table does not know. Their text may
// carry internals, so it goes to the log and not to the client.
var internalError = errorDetail{Code: "internal", Message: "internal server error"}

// classify looks err up in errorTable and returns the status and body to
// answer it with; an unknown error is logged and becomes a 500.
func (h *handler) classify(r *http.Request, err error) (int, errorDetail) {
	err = fromForwarded(err)
	for _, e := range errorTable {
		if errors.Is(err, e.err) {
			return e.status, errorDetail{Code: e.code, Message: err.Error()}
		}
	}
	h.log.Error("httpapi: unexpected error",
		zap.Error(err),
		zap.String("method", r.Method),
		zap.String("path", r.URL.EscapedPath()))
	return http.StatusInternalServerError, internalError
}

// writeError answers the request with err as a JSON error response.
func (h *handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := h.classify(r, err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", basicChallenge)
	}
	writeJSON(w, status, errorResponse{Error: detail})
}

// fromForwarded turns the failure of a request forwarded to the leader
// (the lessor sends a follower's keep-alives and TimeToLive there) into an
// error errorTable knows, for a Leases that passes such a failure on; the
// member's own lessor returns sentinels already. Such a failure is a gRPC
// status: one of etcd's, which the leader's etcd API made from a sentinel
// error and etcdcompat turns back into it, or the gRPC client's own, by
// its code alone. Its text may name the leader's address, so it is not
// passed on. Any other error is returned unchanged.
func fromForwarded(err error) error {
	err = etcdcompat.FromGRPCError(err)
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return err
	}
	switch se.GRPCStatus().Code() {
	case codes.Unavailable:
		return errLeaderUnavailable
	case codes.DeadlineExceeded:
		return store.ErrTimeout
	case codes.Canceled:
		return context.Canceled
	}
	return err
}
