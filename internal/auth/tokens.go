package auth

import (
	"crypto/rand"
	"strconv"
	"strings"
	"sync"
	"time"
)

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

// NewTokenPrefix draws the random part of a simple token.
func NewTokenPrefix() (string, error) {
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

// tokenTable maps live tokens to their users. Its methods are safe for
// concurrent use: the store actor assigns and invalidates, requests look
// up.
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

// assign records token for user. Expired tokens are dropped on the way,
// so the table holds at most the tokens of one TTL.
func (t *tokenTable) assign(token, user string) {
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

// invalidate drops every token of user.
func (t *tokenTable) invalidate(user string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for tok, e := range t.byToken {
		if e.user == user {
			delete(t.byToken, tok)
		}
	}
}

// clear drops every token.
func (t *tokenTable) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	clear(t.byToken)
}
