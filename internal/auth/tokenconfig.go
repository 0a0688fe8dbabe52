package auth

import (
	"crypto"
	"crypto/ed25519"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenKind is the kind of tokens a member issues, --auth-token's type.
type TokenKind int

const (
	// SimpleTokens are etcd's default: "simple" (see tokenTable).
	SimpleTokens TokenKind = iota
	// JWTTokens are signed JSON Web Tokens: "jwt,sign-method=...".
	JWTTokens
	// NoTokens is "": etcd then issues no tokens at all.
	NoTokens
)

// DefaultJWTTTL is the lifetime of a JWT when --auth-token sets no ttl,
// etcd's.
const DefaultJWTTTL = 5 * time.Minute

// TokenConfig is a parsed --auth-token. The zero value is simple tokens.
type TokenConfig struct {
	Kind TokenKind
	jwt  jwtConfig
}

// jwtConfig is how a member signs and verifies JWTs.
type jwtConfig struct {
	method jwt.SigningMethod
	// signKey signs tokens; nil when only a public key was given
	// (verify-only). verifyKey checks them.
	signKey   any
	verifyKey any
	ttl       time.Duration
}

// JWT options of --auth-token.
const (
	optSignMethod = "sign-method"
	optPublicKey  = "pub-key"
	optPrivateKey = "priv-key"
	optTTL        = "ttl"
)

// ParseTokenConfig parses --auth-token and reads the key files it names,
// with etcd's rules and errors: "simple" (options ignored), "" (no
// tokens), or "jwt,sign-method=M,priv-key=F,pub-key=F,ttl=D", where M is
// one of golang-jwt's methods (RS*, PS*, ES*, EdDSA, HS*), a private key
// signs and verifies, a public key alone only verifies, and both must
// match. warnings name the options etcd warns about and ignores.
func ParseTokenConfig(s string) (cfg TokenConfig, warnings []string, err error) {
	kind, opts, err := splitTokenOptions(s)
	if err != nil {
		return TokenConfig{}, nil, err
	}
	switch kind {
	case "simple":
		return TokenConfig{Kind: SimpleTokens}, nil, nil
	case "":
		return TokenConfig{Kind: NoTokens}, nil, nil
	case "jwt":
	default:
		return TokenConfig{}, nil, ErrInvalidAuthOpts
	}
	var unknown []string
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if k != optSignMethod && k != optPublicKey && k != optPrivateKey && k != optTTL {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		warnings = append(warnings, fmt.Sprintf("--auth-token: unknown JWT options %s are ignored", strings.Join(unknown, ", ")))
	}
	jc, err := parseJWTConfig(opts)
	if err != nil {
		return TokenConfig{}, nil, err
	}
	return TokenConfig{Kind: JWTTokens, jwt: jc}, warnings, nil
}

// splitTokenOptions splits "type,name=value,..." into the type and its
// options; an option without exactly one "=", or given twice, is an
// error.
func splitTokenOptions(s string) (string, map[string]string, error) {
	parts := strings.Split(s, ",")
	opts := map[string]string{}
	for _, p := range parts[1:] {
		kv := strings.Split(p, "=")
		if len(kv) != 2 {
			return "", nil, ErrInvalidAuthOpts
		}
		if _, dup := opts[kv[0]]; dup {
			return "", nil, ErrInvalidAuthOpts
		}
		opts[kv[0]] = kv[1]
	}
	return parts[0], opts, nil
}

// parseJWTConfig reads the JWT options. An unreadable TTL or key file, or
// an unknown sign method, is ErrInvalidAuthOpts; a key that does not
// parse is golang-jwt's error.
func parseJWTConfig(opts map[string]string) (jwtConfig, error) {
	jc := jwtConfig{ttl: DefaultJWTTTL}
	if v := opts[optTTL]; v != "" {
		ttl, err := time.ParseDuration(v)
		if err != nil {
			return jwtConfig{}, ErrInvalidAuthOpts
		}
		jc.ttl = ttl
	}
	var pub, priv []byte
	for _, f := range []struct {
		opt string
		dst *[]byte
	}{{optPublicKey, &pub}, {optPrivateKey, &priv}} {
		if file := opts[f.opt]; file != "" {
			b, err := os.ReadFile(file)
			if err != nil {
				return jwtConfig{}, ErrInvalidAuthOpts
			}
			*f.dst = b
		}
	}
	jc.method = jwt.GetSigningMethod(opts[optSignMethod])
	if jc.method == nil {
		return jwtConfig{}, ErrInvalidAuthOpts
	}
	var err error
	switch jc.method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		jc.signKey, jc.verifyKey, err = keyPair(priv, pub, jwt.ParseRSAPrivateKeyFromPEM, jwt.ParseRSAPublicKeyFromPEM)
	case *jwt.SigningMethodECDSA:
		jc.signKey, jc.verifyKey, err = keyPair(priv, pub, jwt.ParseECPrivateKeyFromPEM, jwt.ParseECPublicKeyFromPEM)
	case *jwt.SigningMethodEd25519:
		jc.signKey, jc.verifyKey, err = keyPair(priv, pub, parseEdPrivateKey, parseEdPublicKey)
	case *jwt.SigningMethodHMAC:
		// The private key file holds the shared secret; pub-key is unused.
		if len(priv) == 0 {
			return jwtConfig{}, ErrMissingKey
		}
		jc.signKey, jc.verifyKey = priv, priv
	default: // "none"
		return jwtConfig{}, fmt.Errorf("unsupported signing method: %T", jc.method)
	}
	if err != nil {
		return jwtConfig{}, err
	}
	return jc, nil
}

// publicKey is what the public keys of crypto/rsa, crypto/ecdsa and
// crypto/ed25519 have in common.
type publicKey interface {
	Equal(crypto.PublicKey) bool
}

// keyPair parses the PEM keys given (either may be empty) and returns the
// key to sign with (nil with a public key alone) and the one to verify
// with.
func keyPair[Priv crypto.Signer, Pub publicKey](privPEM, pubPEM []byte, parsePriv func([]byte) (Priv, error), parsePub func([]byte) (Pub, error)) (any, any, error) {
	var (
		priv            Priv
		pub             Pub
		hasPriv, hasPub bool
		err             error
	)
	if len(privPEM) > 0 {
		if priv, err = parsePriv(privPEM); err != nil {
			return nil, nil, err
		}
		hasPriv = true
	}
	if len(pubPEM) > 0 {
		if pub, err = parsePub(pubPEM); err != nil {
			return nil, nil, err
		}
		hasPub = true
	}
	switch {
	case !hasPriv && !hasPub:
		return nil, nil, ErrMissingKey
	case !hasPriv:
		return nil, pub, nil
	case hasPub && !pub.Equal(priv.Public()):
		return nil, nil, ErrKeyMismatch
	}
	return priv, priv.Public(), nil
}

func parseEdPrivateKey(b []byte) (ed25519.PrivateKey, error) {
	k, err := jwt.ParseEdPrivateKeyFromPEM(b)
	if err != nil {
		return nil, err
	}
	return k.(ed25519.PrivateKey), nil
}

func parseEdPublicKey(b []byte) (ed25519.PublicKey, error) {
	k, err := jwt.ParseEdPublicKeyFromPEM(b)
	if err != nil {
		return nil, err
	}
	return k.(ed25519.PublicKey), nil
}
