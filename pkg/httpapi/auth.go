package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/auth"
)

// Auth is the member's auth service as the REST API needs it;
// *store.Client implements it. Handlers call it from their request
// goroutines, concurrently. Errors are package auth's sentinels.
type Auth interface {
	// AuthState returns the published auth state: whether auth is
	// enabled, and the permission checks the REST API does itself. One
	// atomic load.
	AuthState() *auth.State
	// Authenticate checks a password and returns a new token, as etcd's
	// Authenticate RPC does (one raft entry; a simple token or a JWT, as
	// --auth-token says).
	Authenticate(ctx context.Context, r *etcdserverpb.AuthenticateRequest) (*etcdserverpb.AuthenticateResponse, error)
	// PasswordToken checks a user's password, with bcrypt at most once per
	// auth.PasswordTokenTTL for the same credentials, and returns a
	// member-local token standing for them.
	PasswordToken(ctx context.Context, user, password string) (string, error)
	// Identify resolves the token ctx carries (auth.WithToken) as the
	// store's checks will: the zero Identity while auth is disabled,
	// auth.ErrInvalidAuthToken for a token that is not (or no longer)
	// valid.
	Identify(ctx context.Context) (auth.Identity, error)
}

// basicChallenge answers every 401: clients may send HTTP Basic
// credentials (or a Bearer token from POST /v1/auth/token).
const basicChallenge = `Basic realm="cairn"`

// identityKey keys the identity of an authenticated request in its
// context, for the checks the REST API does itself.
type identityKey struct{}

// authenticated wraps f, a route that needs an identity while auth is
// enabled. The request's credentials are resolved before f runs, so that
// missing or bad ones are a 401 on every route, whether or not the store
// checks the request; the token goes on in the context (auth.WithToken),
// where the store finds it for its own checks, exactly as for a gRPC
// request. While auth is disabled credentials are ignored, as etcd
// ignores tokens.
func (h *handler) authenticated(f func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		if h.auth == nil || !h.auth.AuthState().Enabled() {
			return f(w, r)
		}
		ctx, err := h.identify(r)
		if err != nil {
			return err
		}
		return f(w, r.WithContext(ctx))
	}
}

// identify resolves the Authorization header: HTTP Basic credentials of
// an etcd user, or "Bearer <token>" with a token from POST /v1/auth/token
// (or etcd's Authenticate). It returns the request's context with the
// token and the identity.
func (h *handler) identify(r *http.Request) (context.Context, error) {
	ctx := r.Context()
	var token string
	if user, password, ok := r.BasicAuth(); ok {
		t, err := h.auth.PasswordToken(ctx, user, password)
		if err != nil {
			return nil, err
		}
		token = t
	} else if scheme, t, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") && t != "" {
		token = t
	} else {
		return nil, fmt.Errorf("%w: auth is enabled; send HTTP Basic credentials or a Bearer token", auth.ErrUserEmpty)
	}
	ctx = auth.WithToken(ctx, token)
	id, err := h.auth.Identify(ctx)
	if err != nil {
		return nil, err
	}
	return context.WithValue(ctx, identityKey{}, id), nil
}

// checkRange checks that the request's sender may read [key, end), for
// what the REST API serves without the store's range checks (watches).
// Without auth, or with auth disabled, anyone may.
func (h *handler) checkRange(ctx context.Context, key, end []byte) error {
	if h.auth == nil {
		return nil
	}
	id, _ := ctx.Value(identityKey{}).(auth.Identity)
	return h.auth.AuthState().CheckRange(id, key, end)
}

// tokenRequest is the body of POST /v1/auth/token.
type tokenRequest struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// issueToken serves POST /v1/auth/token: {"user", "password"} →
// {"token"}, the token etcd's Authenticate would give, for
// "Authorization: Bearer" on later requests (and usable on the etcd API
// too).
func (h *handler) issueToken(w http.ResponseWriter, r *http.Request) error {
	if err := onlyEncoding(r); err != nil {
		return err
	}
	var body tokenRequest
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	resp, err := h.auth.Authenticate(r.Context(), &etcdserverpb.AuthenticateRequest{Name: body.User, Password: body.Password})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": resp.Token})
	return nil
}
