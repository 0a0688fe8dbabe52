package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
)

// writeKeys writes k's private key (PKCS #8) and public key (PKIX) as PEM
// files in dir and returns their paths.
func writeKeys(t *testing.T, dir, name string, k crypto.Signer) (priv, pub string) {
	t.Helper()
	privDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	priv, pub = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".pub")
	for _, f := range []struct {
		path, typ string
		der       []byte
	}{{priv, "PRIVATE KEY", privDER}, {pub, "PUBLIC KEY", pubDER}} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return priv, pub
}

// testKeys are one key of each kind JWTs are signed with.
type testKeys struct{ rsa, ec, ed, otherEC crypto.Signer }

func newTestKeys(t *testing.T) testKeys {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, d, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKeys{rsa: r, ec: e, ed: d, otherEC: o}
}

func mustTokenConfig(t *testing.T, s string) TokenConfig {
	t.Helper()
	cfg, _, err := ParseTokenConfig(s)
	if err != nil {
		t.Fatalf("ParseTokenConfig(%q): %v", s, err)
	}
	return cfg
}

// newTokenHarness is newHarness with the tokens cfg asks for.
func newTokenHarness(t *testing.T, cfg TokenConfig) *harness {
	t.Helper()
	h := newHarness(t)
	s, err := Open(h.e, Options{BcryptCost: bcrypt.MinCost, Tokens: cfg})
	if err != nil {
		t.Fatal(err)
	}
	h.s, h.a = s, s.NewApplier()
	return h
}

// authenticate runs Authenticate as the store client does: password
// check, entry, token.
func (h *harness) authenticate(user, password string) (string, error) {
	h.t.Helper()
	rev, err := h.s.CheckPassword(user, password)
	if err != nil {
		return "", err
	}
	prefix, err := h.s.NewTokenPrefix()
	if err != nil {
		return "", err
	}
	resp, err := h.apply("", &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: user, SimpleToken: prefix}})
	if err != nil {
		return "", err
	}
	return h.s.IssueToken(resp.(*pb.AuthenticateResponse).Token, user, rev)
}

var noWait = func(context.Context, uint64) error { return nil }

// TestJWTTokens signs and verifies a token with every kind of key, on the
// member that signed it and on one that has the public key alone, and
// checks etcd's claims and the rejections.
func TestJWTTokens(t *testing.T) {
	dir := t.TempDir()
	keys := newTestKeys(t)
	rsaPriv, rsaPub := writeKeys(t, dir, "rsa", keys.rsa)
	ecPriv, ecPub := writeKeys(t, dir, "ec", keys.ec)
	edPriv, edPub := writeKeys(t, dir, "ed", keys.ed)
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte("shared secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ method, priv, pub string }{
		{"RS256", rsaPriv, rsaPub}, {"RS384", rsaPriv, rsaPub}, {"RS512", rsaPriv, rsaPub},
		{"PS256", rsaPriv, rsaPub}, {"PS384", rsaPriv, rsaPub}, {"PS512", rsaPriv, rsaPub},
		{"ES256", ecPriv, ecPub}, {"EdDSA", edPriv, edPub}, {"HS256", secret, ""},
	} {
		t.Run(tt.method, func(t *testing.T) {
			signer := newTokenHarness(t, mustTokenConfig(t, "jwt,sign-method="+tt.method+",priv-key="+tt.priv+",ttl=1m"))
			setupRoot(signer)
			tok, err := signer.authenticate("root", "rootpw")
			if err != nil {
				t.Fatal(err)
			}
			parts := strings.Split(tok, ".")
			if len(parts) != 3 {
				t.Fatalf("token %q is not a JWT", tok)
			}
			claims := jwt.MapClaims{}
			if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
				t.Fatal(err)
			}
			exp, _ := claims.GetExpirationTime()
			if claims["username"] != "root" || claims["revision"] != float64(signer.s.Current().Revision()) ||
				exp == nil || time.Until(exp.Time) < 50*time.Second || time.Until(exp.Time) > time.Minute {
				t.Errorf("claims %v, want username root, revision %d, exp in 1m", claims, signer.s.Current().Revision())
			}
			want := Identity{User: "root", Revision: signer.s.Current().Revision()}
			if id, err := signer.s.Identify(context.Background(), tok, noWait); err != nil || id != want {
				t.Errorf("Identify on the signer = %+v, %v; want %+v", id, err, want)
			}
			if tt.pub == "" {
				return
			}
			// Another member, given the public key only, verifies the
			// token but cannot sign.
			verifier := newTokenHarness(t, mustTokenConfig(t, "jwt,sign-method="+tt.method+",pub-key="+tt.pub))
			setupRoot(verifier)
			if id, err := verifier.s.Identify(context.Background(), tok, noWait); err != nil || id != want {
				t.Errorf("Identify on a verify-only member = %+v, %v; want %+v", id, err, want)
			}
			if _, err := verifier.authenticate("root", "rootpw"); !errors.Is(err, ErrVerifyOnly) {
				t.Errorf("Authenticate on a verify-only member: %v", err)
			}
			for name, bad := range map[string]string{
				"tampered":  parts[0] + "." + parts[1] + "x." + parts[2],
				"unsigned":  parts[0] + "." + parts[1] + ".",
				"malformed": "abc.1",
			} {
				if _, err := verifier.s.Identify(context.Background(), bad, noWait); !errors.Is(err, ErrInvalidAuthToken) {
					t.Errorf("%s token: %v", name, err)
				}
			}
		})
	}

	t.Run("rejections", func(t *testing.T) {
		h := newTokenHarness(t, mustTokenConfig(t, "jwt,sign-method=ES256,priv-key="+ecPriv+",pub-key="+ecPub))
		setupRoot(h)
		sign := func(method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
			tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		rev := float64(h.s.Current().Revision())
		exp := time.Now().Add(time.Minute).Unix()
		for name, tok := range map[string]string{
			"expired":        sign(jwt.SigningMethodES256, keys.ec, jwt.MapClaims{"username": "root", "revision": rev, "exp": time.Now().Add(-time.Minute).Unix()}),
			"other key":      sign(jwt.SigningMethodES256, keys.otherEC, jwt.MapClaims{"username": "root", "revision": rev, "exp": exp}),
			"other method":   sign(jwt.SigningMethodHS256, []byte("secret"), jwt.MapClaims{"username": "root", "revision": rev, "exp": exp}),
			"no username":    sign(jwt.SigningMethodES256, keys.ec, jwt.MapClaims{"revision": rev, "exp": exp}),
			"no revision":    sign(jwt.SigningMethodES256, keys.ec, jwt.MapClaims{"username": "root", "exp": exp}),
			"string rev":     sign(jwt.SigningMethodES256, keys.ec, jwt.MapClaims{"username": "root", "revision": "1", "exp": exp}),
			"not even a JWT": "abcdefghijklmnop.1",
		} {
			if _, err := h.s.Identify(context.Background(), tok, noWait); !errors.Is(err, ErrInvalidAuthToken) {
				t.Errorf("%s: %v", name, err)
			}
		}
		// A token outlives a change of the auth state, but with its old
		// revision: permission checks then fail as in etcd.
		tok, err := h.authenticate("root", "rootpw")
		if err != nil {
			t.Fatal(err)
		}
		h.must("root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}})
		id, err := h.s.Identify(context.Background(), tok, noWait)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.s.Current().CheckRange(id, []byte("k"), nil); !errors.Is(err, ErrAuthOldRevision) {
			t.Errorf("token from before a change: %v", err)
		}
		// Disabled auth ignores tokens; enabled again, a JWT is still
		// valid (etcd keeps no table of them) but old.
		h.must("root", &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}})
		if id, err := h.s.Identify(context.Background(), tok, noWait); err != nil || id != (Identity{}) {
			t.Errorf("token while disabled: %+v, %v", id, err)
		}
	})
}

// TestTokenConfigErrors: --auth-token's errors are etcd's: its own
// sentinels, or golang-jwt's error for a key that does not parse.
func TestTokenConfigErrors(t *testing.T) {
	dir := t.TempDir()
	keys := newTestKeys(t)
	ecPriv, ecPub := writeKeys(t, dir, "ec", keys.ec)
	_, otherPub := writeKeys(t, dir, "other", keys.otherEC)
	rsaPriv, _ := writeKeys(t, dir, "rsa", keys.rsa)
	for _, tt := range []struct {
		opts string
		want string
	}{
		{"opaque", ErrInvalidAuthOpts.Error()},
		{"jwt,priv-key", ErrInvalidAuthOpts.Error()},
		{"jwt,sign-method=,priv-key=" + rsaPriv, ErrInvalidAuthOpts.Error()},
		{"jwt,sign-method=RS256,priv-key=" + rsaPriv + ",ttl=x", ErrInvalidAuthOpts.Error()},
		{"jwt,sign-method=ES256", ErrMissingKey.Error()},
		{"jwt,sign-method=HS256,pub-key=" + ecPub, ErrMissingKey.Error()},
		{"jwt,sign-method=ES256,priv-key=" + ecPriv + ",pub-key=" + otherPub, ErrKeyMismatch.Error()},
		{"jwt,sign-method=RS256,priv-key=" + ecPriv, jwt.ErrNotRSAPrivateKey.Error()},
		{"jwt,sign-method=none,priv-key=" + rsaPriv, "unsupported signing method: *jwt.signingMethodNone"},
	} {
		if _, _, err := ParseTokenConfig(tt.opts); err == nil || err.Error() != tt.want {
			t.Errorf("ParseTokenConfig(%q) = %v, want %q", tt.opts, err, tt.want)
		}
	}
}

// TestNoTokens: with --auth-token="" nobody can authenticate and no token
// is valid, as in etcd.
func TestNoTokens(t *testing.T) {
	h := newTokenHarness(t, mustTokenConfig(t, ""))
	setupRoot(h)
	if _, err := h.authenticate("root", "rootpw"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("Authenticate: %v", err)
	}
	if _, err := h.s.Identify(context.Background(), "abcdefghijklmnop.3", noWait); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("Identify: %v", err)
	}
}
