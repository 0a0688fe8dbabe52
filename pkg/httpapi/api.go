// Package httpapi is Cairn's own REST API: JSON over HTTP, routed by
// gorilla/mux, in front of the same store the etcd gRPC layer uses.
//
// Every handler does three things: translate the HTTP request into the
// etcdserverpb request the store understands, call the Backend, and render
// the answer as JSON. The package holds no state and no storage code.
// Errors from the store are mapped to HTTP statuses in one table
// (errors.go). The contract for clients is api/openapi/httpapi.yaml.
package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/store"
)

// Backend is the store as the REST API needs it; *store.Client implements it.
//
// Handlers call it from their request goroutines, concurrently, with the
// request's context, so a client that goes away cancels its call. Errors are
// the store's sentinel errors (packages mvcc and store), bare or wrapped
// with %w; any other error is reported to the client as a 500.
type Backend interface {
	// Range reads Key alone when RangeEnd is empty, else the keys in
	// [Key, RangeEnd); RangeEnd "\x00" means every key ≥ Key.
	Range(ctx context.Context, r *etcdserverpb.RangeRequest) (*etcdserverpb.RangeResponse, error)
	// Put writes one key and returns the revision it was written at.
	Put(ctx context.Context, r *etcdserverpb.PutRequest) (*etcdserverpb.PutResponse, error)
	// DeleteRange deletes Key, or the keys in [Key, RangeEnd) as for Range.
	// Deleting nothing is not an error: Deleted is then 0.
	DeleteRange(ctx context.Context, r *etcdserverpb.DeleteRangeRequest) (*etcdserverpb.DeleteRangeResponse, error)
	// Txn evaluates the compares and applies one branch atomically. A false
	// compare is not an error: Succeeded is then false and the failure
	// branch has run.
	Txn(ctx context.Context, r *etcdserverpb.TxnRequest) (*etcdserverpb.TxnResponse, error)
	// Status reports this member's view of itself and of the cluster.
	Status(ctx context.Context) (*etcdserverpb.StatusResponse, error)
}

// DefaultMaxRequestBytes is the body limit when Options.MaxRequestBytes is
// not set: 1.5 MiB, etcd's default --max-request-bytes.
const DefaultMaxRequestBytes = 3 << 19

// DefaultMaxTxnOps is the txn size limit when Options.MaxTxnOps is not set:
// 128, etcd's default --max-txn-ops.
const DefaultMaxTxnOps = 128

// Options tune the handler returned by New. The zero value is usable.
type Options struct {
	// Logger receives recovered panics and errors the API does not know;
	// nil discards them.
	Logger *zap.Logger
	// MaxRequestBytes caps a request body; a larger body is answered 413.
	// Zero or less means DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// MaxTxnOps caps the compares, and the ops of each branch, of a txn and
	// of every txn nested in it, as etcd's --max-txn-ops does; a larger txn
	// is answered 400 too_many_ops before it reaches the store. Zero or less
	// means DefaultMaxTxnOps.
	MaxTxnOps int
	// BodyTimeout is how long a client may take to send a request body; a
	// body still incomplete then is answered 408 and the connection is
	// closed. Zero or less means DefaultBodyTimeout.
	BodyTimeout time.Duration
	// Watch opens watch streams for GET /v1/watch/{key}; without it that
	// route answers 404.
	Watch OpenWatch
	// Leases serves the /v1/leases routes; without it they answer 404.
	Leases Leases
	// Auth serves POST /v1/auth/token and authenticates every other
	// request but GET /v1/status while auth is enabled: HTTP Basic
	// credentials or a Bearer token, 401 without valid ones. Without it
	// requests carry no identity (and fail the store's checks while auth
	// is enabled), and the token route answers 404.
	Auth Auth
	// Learner, if set, tells whether this member is a learner. A learner
	// serves GET /v1/status and serializable reads only, as etcd's
	// learners serve Status and serializable ranges only; every other
	// request is answered 503 learner. Without it every request is served
	// as on a voter.
	Learner Learner
}

// Learner tells whether this member is a raft learner; *store.Client
// implements it.
type Learner interface {
	// IsLearner reports whether this member is a learner now. It is called
	// for each request, from the request's goroutine, so it must be cheap.
	IsLearner() bool
}

// handler serves every endpoint; it is immutable after New.
type handler struct {
	backend     Backend
	openWatch   OpenWatch
	leases      Leases
	auth        Auth
	learner     Learner
	log         *zap.Logger
	maxBody     int64
	maxTxnOps   int
	bodyTimeout time.Duration
}

// New returns the REST API over b. The handler is safe for concurrent use
// and answers every request, including unknown paths, wrong methods and
// panics, with a JSON body.
func New(b Backend, opts Options) http.Handler {
	h := &handler{
		backend:     b,
		openWatch:   opts.Watch,
		leases:      opts.Leases,
		auth:        opts.Auth,
		learner:     opts.Learner,
		log:         opts.Logger,
		maxBody:     opts.MaxRequestBytes,
		maxTxnOps:   opts.MaxTxnOps,
		bodyTimeout: opts.BodyTimeout,
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxRequestBytes
	}
	if h.maxTxnOps <= 0 {
		h.maxTxnOps = DefaultMaxTxnOps
	}
	if h.bodyTimeout <= 0 {
		h.bodyTimeout = DefaultBodyTimeout
	}

	// Keys are taken from the path byte for byte: match on the escaped path
	// so that %2F stays inside the key, and never clean it, so that keys
	// such as "/a//b" or "../x" are neither redirected nor rewritten.
	r := mux.NewRouter().UseEncodedPath().SkipClean(true)
	// A learner serves the status and, in getKV, serializable reads; the
	// other routes are votersOnly. Every route but the status and the
	// token route is authenticated while auth is enabled.
	r.Handle("/v1/kv/{key:.*}", h.serve(h.authenticated(h.getKV))).Methods(http.MethodGet)
	r.Handle("/v1/kv/{key:.*}", h.serve(h.votersOnly(h.authenticated(h.putKV)))).Methods(http.MethodPut)
	r.Handle("/v1/kv/{key:.*}", h.serve(h.votersOnly(h.authenticated(h.deleteKV)))).Methods(http.MethodDelete)
	r.Handle("/v1/txn", h.serve(h.votersOnly(h.authenticated(h.txn)))).Methods(http.MethodPost)
	r.Handle("/v1/status", h.serve(h.status)).Methods(http.MethodGet)
	r.Handle("/v1/watch/{key:.*}", h.serve(h.votersOnly(h.authenticated(h.watch)))).Methods(http.MethodGet)
	if h.leases != nil {
		r.Handle("/v1/leases", h.serve(h.votersOnly(h.authenticated(h.grantLease)))).Methods(http.MethodPost)
		r.Handle("/v1/leases/{id}", h.serve(h.votersOnly(h.authenticated(h.getLease)))).Methods(http.MethodGet)
		r.Handle("/v1/leases/{id}", h.serve(h.votersOnly(h.authenticated(h.revokeLease)))).Methods(http.MethodDelete)
		r.Handle("/v1/leases/{id}/keepalive", h.serve(h.votersOnly(h.authenticated(h.keepAlive)))).Methods(http.MethodPost)
	}
	if h.auth != nil {
		r.Handle("/v1/auth/token", h.serve(h.votersOnly(h.issueToken))).Methods(http.MethodPost)
	}
	r.NotFoundHandler = h.serve(func(http.ResponseWriter, *http.Request) error { return errNoRoute })
	r.MethodNotAllowedHandler = h.serve(func(w http.ResponseWriter, req *http.Request) error {
		w.Header().Set("Allow", strings.Join(allowedMethods(r, req), ", "))
		return errMethodNotAllowed
	})
	return h.recoverPanics(r)
}

// allowedMethods lists the methods router serves req's path with, for the
// Allow header that RFC 9110 requires on a 405.
func allowedMethods(router *mux.Router, req *http.Request) []string {
	var allowed []string
	_ = router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		methods, err := route.GetMethods()
		if err != nil {
			return nil
		}
		probe := req.Clone(req.Context())
		probe.Method = methods[0]
		if route.Match(probe, &mux.RouteMatch{}) {
			allowed = append(allowed, methods...)
		}
		return nil
	})
	return allowed
}

// serve adapts a handler that returns its error to http.Handler; the error
// is answered through the table in errors.go.
func (h *handler) serve(f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			h.writeError(w, r, err)
		}
	})
}

// votersOnly wraps f, which serves a route a learner does not serve (see
// Options.Learner): on a learner it answers store.ErrNotSupportedForLearner
// before f reads anything of the request.
func (h *handler) votersOnly(f func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := h.refuseOnLearner(); err != nil {
			return err
		}
		return f(w, r)
	}
}

// refuseOnLearner returns store.ErrNotSupportedForLearner if this member is
// a learner, nil otherwise. The store refuses a learner's writes and
// linearizable reads too, but not watches nor lease lookups and
// keep-alives: the rule is applied here, where the routes are.
func (h *handler) refuseOnLearner() error {
	if h.learner != nil && h.learner.IsLearner() {
		return store.ErrNotSupportedForLearner
	}
	return nil
}

// recoverPanics turns a panic in a handler into a logged 500, so one bad
// request cannot take the member down. http.ErrAbortHandler is re-raised:
// it is net/http's own way to abort a response.
func (h *handler) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler {
				panic(v)
			}
			h.log.Error("httpapi: panic serving request",
				zap.Any("panic", v),
				zap.String("method", r.Method),
				zap.String("path", r.URL.EscapedPath()),
				zap.Stack("stack"))
			writeJSON(w, http.StatusInternalServerError, errorResponse{Error: internalError})
		}()
		next.ServeHTTP(w, r)
	})
}
