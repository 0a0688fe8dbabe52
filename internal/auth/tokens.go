package auth

import (
	"context"
	"crypto/rand"
	"strconv"
	"strings"
	"sync"
	"time"
)

// tokenProvider makes and resolves the tokens of the kind --auth-token
// names: simple tokens (tokenTable), JWTs (jwtTokens) or none (noTokens).
// Authenticate runs in three steps: the requester draws a prefix, the
// store actor applies the entry carrying it (assign), and the requester
// turns the result into the token it answers with (sign). Request
// goroutines call newPrefix, sign and info concurrently; the store actor
// calls assign, and the functions it returns, invalidateUser and clear run
// when the entry's batch is published (or at Load).
type tokenProvider interface {
	// newPrefix draws the part of a new token that the Authenticate entry
	// carries; "" for providers whose tokens do not come from the entry.
	newPrefix() (string, error)
	// assign is called for the Authenticate entry of user at index, with
	// the prefix it carries. It returns the token that entry makes ("" if
	// it makes none) and what to do once the entry is published (nil if
	// nothing).
	assign(index uint64, prefix, user string) (token string, publish func())
	// sign returns the token for the requester, once its entry applied:
	// assigned is what assign returned, user is authenticated at auth
	// revision rev.
	sign(assigned, user string, rev uint64) (string, error)
	// info resolves a token into its user and auth revision; rev is the
	// current revision, which tokens that carry none are resolved at.
	// wait blocks until this member has applied a raft index.
	info(ctx context.Context, token string, rev uint64, wait func(context.Context, uint64) error) (Identity, bool)
	// invalidateUser drops the tokens of user (deleted, or its password
	// changed); clear drops every token (auth disabled).
	invalidateUser(user string)
	clear()
}

// newTokenProvider returns the provider cfg asks for; simple tokens live
// ttl after their last use.
func newTokenProvider(cfg TokenConfig, ttl time.Duration) tokenProvider {
	switch cfg.Kind {
	case JWTTokens:
		return &jwtTokens{cfg: cfg.jwt}
	case NoTokens:
		return noTokens{}
	default:
		return newTokenTable(ttl)
	}
}

// noTokens is --auth-token="": as in etcd, nobody can authenticate and
// every token is invalid (only TLS common names could identify a client).
type noTokens struct{}

func (noTokens) newPrefix() (string, error)                     { return "", nil }
func (noTokens) assign(uint64, string, string) (string, func()) { return "", nil }
func (noTokens) sign(string, string, uint64) (string, error)    { return "", ErrAuthFailed }
func (noTokens) invalidateUser(string)                          {}
func (noTokens) clear()                                         {}
func (noTokens) info(context.Context, string, uint64, func(context.Context, uint64) error) (Identity, bool) {
	return Identity{}, false
}

// Simple tokens, etcd's default: "<16 random letters>.<raft index>". The
// API layer draws the letters, the index is that of the Authenticate entry,
// and every member records the token when it applies the entry, so a token
// obtained from one member works on all. Each member expires its tokens on
// its own clock, TTL after their last use, and forgets them at restart
// (clients authenticate again on ErrInvalidAuthToken).

// tokenLetters are the characters of a token's random part.
const tokenLetters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// tokenPrefixLen is the length of a token's random part.
const tokenPrefixLen = 16

// newSimplePrefix draws the random part of a simple token.
func newSimplePrefix() (string, error) {
	b := make([]byte, tokenPrefixLen)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	for i := range b {
		// 256 is not a multiple of 52: the few letters favoured by the
		// modulo do not matter against 16 characters and a raft index.
		b[i] = tokenLetters[int(b[i])%len(tokenLetters)]
	}
	return string(b), nil
}

// tokenIndex parses the raft index out of a simple token.
func tokenIndex(token string) (uint64, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 2 {
		return 0, false
	}
	n, err := strconv.ParseUint(parts[1], 10, 64)
	return n, err == nil
}

// tokenTable maps live simple tokens to their users. Its methods are safe
// for concurrent use: the store actor records and invalidates, requests
// look up.
type tokenTable struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	byToken map[string]tokenEntry
}

type tokenEntry struct {
	user    string
	expires time.Time
}

func newTokenTable(ttl time.Duration) *tokenTable {
	return &tokenTable{ttl: ttl, now: time.Now, byToken: map[string]tokenEntry{}}
}

func (t *tokenTable) newPrefix() (string, error) { return newSimplePrefix() }

func (t *tokenTable) assign(index uint64, prefix, user string) (string, func()) {
	token := prefix + "." + strconv.FormatUint(index, 10)
	return token, func() { t.record(token, user) }
}

func (t *tokenTable) sign(assigned, _ string, _ uint64) (string, error) { return assigned, nil }

func (t *tokenTable) info(ctx context.Context, token string, rev uint64, wait func(context.Context, uint64) error) (Identity, bool) {
	index, ok := tokenIndex(token)
	if !ok || wait(ctx, index) != nil {
		return Identity{}, false
	}
	user, ok := t.lookup(token)
	if !ok {
		return Identity{}, false
	}
	return Identity{User: user, Revision: rev}, true
}

// record adds token for user. Expired tokens are dropped on the way, so
// the table holds at most the tokens of one TTL.
func (t *tokenTable) record(token, user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for tok, e := range t.byToken {
		if now.After(e.expires) {
			delete(t.byToken, tok)
		}
	}
	t.byToken[token] = tokenEntry{user: user, expires: now.Add(t.ttl)}
}

// lookup returns token's user and extends its life by a TTL.
func (t *tokenTable) lookup(token string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byToken[token]
	if !ok {
		return "", false
	}
	now := t.now()
	if now.After(e.expires) {
		delete(t.byToken, token)
		return "", false
	}
	e.expires = now.Add(t.ttl)
	t.byToken[token] = e
	return e.user, true
}

func (t *tokenTable) invalidateUser(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, e := range t.byToken {
		if e.user == user {
			delete(t.byToken, tok)
		}
	}
}

func (t *tokenTable) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.byToken)
}
