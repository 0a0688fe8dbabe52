package auth

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// Password tokens serve clients that send a user and password with every
// request (HTTP Basic on the REST API). A successful bcrypt check gives
// a member-local token that stands for the credentials for
// PasswordTokenTTL, as long as the user's password hash stays the one it
// was checked against; the same credentials get the same token meanwhile,
// so bcrypt runs once per TTL, not once per request. The token never
// leaves the member: front ends put it in the request context
// (WithToken) and Identify resolves it like any other. Checks that fail
// are not remembered, but at most maxPasswordChecks run at once.

// PasswordTokenTTL is how long a successful password check is reused.
const PasswordTokenTTL = 10 * time.Second

const (
	// passwordTokenPrefix starts every password token; neither simple
	// tokens nor JWTs can start with it.
	passwordTokenPrefix = "cairn-password:"
	// maxPasswordTokens bounds the table: when full, it is emptied.
	maxPasswordTokens = 4096
)

// maxPasswordChecks bounds concurrent bcrypt checks for password tokens,
// so that bad credentials sent in a loop cannot take every core.
var maxPasswordChecks = max(1, runtime.GOMAXPROCS(0)/2)

// passwordTokens is the table of password tokens. Its methods are safe for
// concurrent use.
type passwordTokens struct {
	// key keys the HMAC that indexes credentials, drawn at start: the
	// table holds no password, nor anything that tells one without key.
	key    []byte
	checks chan struct{}
	now    func() time.Time

	mu      sync.Mutex
	byCreds map[string]string
	byToken map[string]passwordToken
}

type passwordToken struct {
	user    string
	hash    []byte // the password hash the credentials matched
	creds   string
	expires time.Time
}

func newPasswordTokens() *passwordTokens {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails
	return &passwordTokens{
		key:     key,
		checks:  make(chan struct{}, maxPasswordChecks),
		now:     time.Now,
		byCreds: map[string]string{},
		byToken: map[string]passwordToken{},
	}
}

// PasswordToken checks user's password against the published state and
// returns a password token for it, reusing the one of an earlier check
// of the same credentials while it lasts. bcrypt runs on the caller's
// goroutine, after waiting for one of maxPasswordChecks slots (ctx bounds
// the wait). Errors are those of CheckPassword.
func (s *Store) PasswordToken(ctx context.Context, user, password string) (string, error) {
	st := s.Current()
	if !st.enabled {
		return "", ErrAuthNotEnabled
	}
	u := st.users[user]
	if u == nil {
		return "", ErrAuthFailed
	}
	if u.Options != nil && u.Options.NoPassword {
		return "", ErrNoPasswordUser
	}
	p := s.passwords
	creds := p.credsKey(user, password)
	if tok, ok := p.reuse(creds, u.Password); ok {
		return tok, nil
	}
	select {
	case p.checks <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	err := bcrypt.CompareHashAndPassword(u.Password, []byte(password))
	<-p.checks
	if err != nil {
		s.opts.Logger.Info("invalid password", zap.String("user-name", user))
		return "", ErrAuthFailed
	}
	return p.add(creds, user, u.Password), nil
}

// credsKey is the HMAC of the credentials that indexes their token.
func (p *passwordTokens) credsKey(user, password string) string {
	m := hmac.New(sha256.New, p.key)
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	return string(m.Sum(nil))
}

// reuse returns the live token of creds if it was checked against hash.
func (p *passwordTokens) reuse(creds string, hash []byte) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	tok, ok := p.byCreds[creds]
	if !ok {
		return "", false
	}
	e := p.byToken[tok]
	if !p.now().Before(e.expires) || !bytes.Equal(e.hash, hash) {
		return "", false
	}
	return tok, true
}

// add records a new token for credentials just checked against hash.
func (p *passwordTokens) add(creds, user string, hash []byte) string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	tok := passwordTokenPrefix + hex.EncodeToString(b)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for t, e := range p.byToken {
		if !now.Before(e.expires) {
			delete(p.byToken, t)
			if p.byCreds[e.creds] == t {
				delete(p.byCreds, e.creds)
			}
		}
	}
	if len(p.byToken) >= maxPasswordTokens {
		clear(p.byToken)
		clear(p.byCreds)
	}
	p.byCreds[creds] = tok
	p.byToken[tok] = passwordToken{user: user, hash: hash, creds: creds, expires: now.Add(PasswordTokenTTL)}
	return tok
}

// isPasswordToken reports whether token has the form of a password token.
func isPasswordToken(token string) bool { return strings.HasPrefix(token, passwordTokenPrefix) }

// identify resolves a password token at st: its user, if the token is
// live and the user's password hash is still the one it was checked
// against.
func (p *passwordTokens) identify(token string, st *State) (Identity, bool) {
	p.mu.Lock()
	e, ok := p.byToken[token]
	live := ok && p.now().Before(e.expires)
	p.mu.Unlock()
	if !live {
		return Identity{}, false
	}
	u := st.users[e.user]
	if u == nil || !bytes.Equal(u.Password, e.hash) {
		return Identity{}, false
	}
	return Identity{User: e.user, Revision: st.revision}, true
}
