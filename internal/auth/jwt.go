package auth

import (
	"context"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtTokens are JSON Web Tokens with etcd's claims: "username", "revision"
// (the auth revision the user authenticated at) and "exp". Any member
// holding the key, or a real etcd configured with it, verifies a token
// signed by another; nothing is recorded when the Authenticate entry
// applies. A token outlives password changes and permission changes, as in
// etcd, but its revision then is old: requests that need permissions fail
// with ErrAuthOldRevision and clients authenticate again.
type jwtTokens struct {
	cfg jwtConfig
}

func (t *jwtTokens) newPrefix() (string, error)                     { return "", nil }
func (t *jwtTokens) assign(uint64, string, string) (string, func()) { return "", nil }
func (t *jwtTokens) invalidateUser(string)                          {}
func (t *jwtTokens) clear()                                         {}

// sign signs a new token on the requester's goroutine, so that the store
// actor never waits for a signature.
func (t *jwtTokens) sign(_, user string, rev uint64) (string, error) {
	if t.cfg.signKey == nil {
		return "", ErrVerifyOnly
	}
	claims := jwt.MapClaims{
		"username": user,
		"revision": rev,
		"exp":      time.Now().Add(t.cfg.ttl).Unix(),
	}
	return jwt.NewWithClaims(t.cfg.method, claims).SignedString(t.cfg.signKey)
}

// info verifies the signature, the sign method and the expiry, and reads
// the user and revision the token carries.
func (t *jwtTokens) info(_ context.Context, token string, _ uint64, _ func(context.Context, uint64) error) (Identity, bool) {
	parsed, err := jwt.Parse(token, func(*jwt.Token) (any, error) { return t.cfg.verifyKey, nil },
		jwt.WithValidMethods([]string{t.cfg.method.Alg()}))
	if err != nil || !parsed.Valid {
		return Identity{}, false
	}
	claims, ok := parsed.Claims.(jwt.MapClaims)
	if !ok {
		return Identity{}, false
	}
	user, ok := claims["username"].(string)
	if !ok {
		return Identity{}, false
	}
	rev, ok := claims["revision"].(float64)
	if !ok {
		return Identity{}, false
	}
	return Identity{User: user, Revision: uint64(rev)}, true
}
