// Package auth is etcd's authentication and role-based access control:
// users with bcrypt password hashes and roles, roles with key-range
// permissions, the auth switch and revision, tokens (simple or JWT, as
// --auth-token says), and the permission checks of KV requests.
//
// The state is replicated: the store actor applies committed auth entries
// through an Applier into the engine's Auth bucket, in the same batch as
// the entries around them, and publishes an immutable State after each
// commit. Any goroutine reads the published State without locks (Current).
// Passwords are hashed and checked where requests arrive, never on the
// store actor: bcrypt takes tens of milliseconds by design.
package auth

import (
	"context"
	"encoding/base64"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Defaults of --bcrypt-cost and --auth-token-ttl, etcd's.
const (
	DefaultBcryptCost = bcrypt.DefaultCost
	DefaultTokenTTL   = 300 * time.Second
)

// Options configure a Store.
type Options struct {
	// BcryptCost is the cost of new password hashes; outside bcrypt's
	// bounds it is DefaultBcryptCost, with a warning, as in etcd.
	BcryptCost int
	// TokenTTL is how long a simple token lives after its last use; zero
	// or less is DefaultTokenTTL.
	TokenTTL time.Duration
	// Tokens is the kind of tokens the member issues (--auth-token); the
	// zero value is simple tokens.
	Tokens TokenConfig
	Logger *zap.Logger
}

// Store is a member's auth state: the published State, which only the
// store actor replaces (through an Applier or Load), the member's tokens
// and its password tokens. Its methods are safe for concurrent use.
type Store struct {
	opts      Options
	state     atomic.Pointer[State]
	tokens    tokenProvider
	passwords *passwordTokens
}

// Open loads the auth state from e.
func Open(e storage.Engine, opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.BcryptCost < bcrypt.MinCost || opts.BcryptCost > bcrypt.MaxCost {
		opts.Logger.Warn("using the default bcrypt cost instead of the invalid one given",
			zap.Int("min-cost", bcrypt.MinCost), zap.Int("max-cost", bcrypt.MaxCost),
			zap.Int("default-cost", DefaultBcryptCost), zap.Int("given-cost", opts.BcryptCost))
		opts.BcryptCost = DefaultBcryptCost
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	s := &Store{opts: opts, tokens: newTokenProvider(opts.Tokens, opts.TokenTTL), passwords: newPasswordTokens()}
	if err := s.Load(e); err != nil {
		return nil, err
	}
	return s, nil
}

// Load replaces the published state with the one in e, after the engine
// was replaced by a snapshot. Only the store actor calls it, between two
// batches. Tokens survive unless auth is disabled in the new state.
func (s *Store) Load(e storage.Engine) error {
	st, err := load(e)
	if err != nil {
		return err
	}
	s.state.Store(st)
	if !st.enabled {
		s.tokens.clear()
	}
	return nil
}

// Current returns the published state.
func (s *Store) Current() *State { return s.state.Load() }

// HashPassword hashes a password for a UserAdd or UserChangePassword
// entry, base64-encoded as etcd carries it in the request. It runs bcrypt
// on the caller's goroutine.
func (s *Store) HashPassword(password string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(password), s.opts.BcryptCost)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(h), nil
}

// CheckPassword checks a user's password against the published state and
// returns the auth revision it was checked at: the caller proposes the
// Authenticate entry and tries again if the revision moved meanwhile. It
// runs bcrypt on the caller's goroutine.
func (s *Store) CheckPassword(user, password string) (uint64, error) {
	st := s.Current()
	if !st.enabled {
		return 0, ErrAuthNotEnabled
	}
	u := st.users[user]
	if u == nil {
		return 0, ErrAuthFailed
	}
	if u.Options != nil && u.Options.NoPassword {
		return 0, ErrNoPasswordUser
	}
	if bcrypt.CompareHashAndPassword(u.Password, []byte(password)) != nil {
		s.opts.Logger.Info("invalid password", zap.String("user-name", user))
		return 0, ErrAuthFailed
	}
	return st.revision, nil
}

// NewTokenPrefix draws what the Authenticate entry of a new token
// carries: the random part of a simple token, "" for other kinds.
func (s *Store) NewTokenPrefix() (string, error) { return s.tokens.newPrefix() }

// IssueToken returns the token to answer an Authenticate request with,
// once its entry applied with the response token assigned: a simple token
// as the entry made it, or a JWT signed here for user at auth revision
// rev (ErrVerifyOnly with a public key alone; ErrAuthFailed with
// --auth-token="", as in etcd).
func (s *Store) IssueToken(assigned, user string, rev uint64) (string, error) {
	return s.tokens.sign(assigned, user, rev)
}

// Identify resolves the token a request carries into its sender. A request
// without a token, or any request while auth is disabled, is from nobody
// (the zero Identity). Simple and password tokens resolve at the current
// auth revision, JWTs at the revision they carry. A simple token names the
// raft index of its Authenticate entry: wait blocks until this member has
// applied it, so a token obtained from another member works here too.
func (s *Store) Identify(ctx context.Context, token string, wait func(context.Context, uint64) error) (Identity, error) {
	st := s.Current()
	if token == "" || !st.enabled {
		return Identity{}, nil
	}
	var (
		id Identity
		ok bool
	)
	if isPasswordToken(token) {
		id, ok = s.passwords.identify(token, st)
	} else {
		id, ok = s.tokens.info(ctx, token, st.revision, wait)
	}
	if !ok {
		return Identity{}, ErrInvalidAuthToken
	}
	return id, nil
}

// tokenKey keys the token of a request in its context.
type tokenKey struct{}

// WithToken returns ctx carrying the auth token a request was sent with;
// front ends set it, the store resolves it when a request needs it.
func WithToken(ctx context.Context, token string) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

// TokenFrom returns the token set by WithToken, or "".
func TokenFrom(ctx context.Context) string {
	t, _ := ctx.Value(tokenKey{}).(string)
	return t
}
