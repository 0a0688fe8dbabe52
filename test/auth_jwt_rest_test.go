package test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
)

// jwtKeys writes a fresh RSA and ECDSA key pair as PEM files in a
// temporary directory and returns --auth-token values using them.
func jwtKeys(t *testing.T) (rs256, es256 string) {
	t.Helper()
	dir := t.TempDir()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for name, k := range map[string]crypto.Signer{"rsa": r, "ec": e} {
		privDER, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		pubDER, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			t.Fatal(err)
		}
		for suffix, b := range map[string]*pem.Block{
			".key": {Type: "PRIVATE KEY", Bytes: privDER},
			".pub": {Type: "PUBLIC KEY", Bytes: pubDER},
		} {
			files[name+suffix] = filepath.Join(dir, name+suffix)
			if err := os.WriteFile(files[name+suffix], pem.EncodeToMemory(b), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return "jwt,sign-method=RS256,priv-key=" + files["rsa.key"] + ",pub-key=" + files["rsa.pub"] + ",ttl=1m",
		"jwt,sign-method=ES256,priv-key=" + files["ec.key"] + ",pub-key=" + files["ec.pub"]
}

// restDo sends one REST request with an Authorization header (none if
// empty) and returns the status, the body and the WWW-Authenticate header.
func restDo(t *testing.T, m *member, method, path, authz, body string) (int, string, string) {
	t.Helper()
	var h http.Header
	if authz != "" {
		h = http.Header{"Authorization": {authz}}
	}
	resp, b := httpRequest(t, nil, method, m.httpURL+path, strings.NewReader(body), h)
	return resp.StatusCode, string(b), resp.Header.Get("WWW-Authenticate")
}

// basicAuth is the Authorization header of HTTP Basic credentials.
func basicAuth(user, password string) string {
	req, _ := http.NewRequest(http.MethodGet, "/", nil)
	req.SetBasicAuth(user, password)
	return req.Header.Get("Authorization")
}

// restToken gets a token from POST /v1/auth/token.
func restToken(t *testing.T, m *member, user, password string) string {
	t.Helper()
	code, body, _ := restDo(t, m, http.MethodPost, "/v1/auth/token", "", `{"user":"`+user+`","password":"`+password+`"}`)
	var resp struct{ Token string }
	if err := json.Unmarshal([]byte(body), &resp); code != http.StatusOK || err != nil || resp.Token == "" {
		t.Fatalf("POST /v1/auth/token: %d %s", code, body)
	}
	return resp.Token
}

// checkRESTAuth runs the REST API's auth rules on m, where enableAuth ran
// and "app/x" holds "1": Basic and Bearer credentials, 401 and 403, and
// the same keys as the etcd API shows the same user.
func checkRESTAuth(t *testing.T, m *member, token string) {
	t.Helper()
	for _, tt := range []struct {
		name, method, path, authz, body string
		code                            int
		contains                        string
	}{
		{"status needs nothing", http.MethodGet, "/v1/status", "", "", http.StatusOK, `"member_id"`},
		{"no credentials", http.MethodGet, "/v1/kv/app/x", "", "", http.StatusUnauthorized, `"auth_required"`},
		{"wrong password", http.MethodGet, "/v1/kv/app/x", basicAuth("app", "nope"), "", http.StatusUnauthorized, `"auth_failed"`},
		{"bad token", http.MethodGet, "/v1/kv/app/x", "Bearer forged.1", "", http.StatusUnauthorized, `"invalid_token"`},
		{"basic read", http.MethodGet, "/v1/kv/app/x", basicAuth("app", "apppw"), "", http.StatusOK, `"value":"1"`},
		{"basic write", http.MethodPut, "/v1/kv/app/rest", basicAuth("app", "apppw"), "from-rest", http.StatusOK, `"revision"`},
		{"basic outside", http.MethodGet, "/v1/kv/other", basicAuth("app", "apppw"), "", http.StatusForbidden, `"permission_denied"`},
		{"basic prefix outside", http.MethodGet, "/v1/kv/?prefix=true", basicAuth("app", "apppw"), "", http.StatusForbidden, `"permission_denied"`},
		{"root anywhere", http.MethodGet, "/v1/kv/?prefix=true", basicAuth("root", "rootpw"), "", http.StatusOK, `"app/x"`},
		{"bearer read", http.MethodGet, "/v1/kv/app/?prefix=true", "Bearer " + token, "", http.StatusOK, `"app/rest"`},
		{"bearer txn outside", http.MethodPost, "/v1/txn", "Bearer " + token, `{"success":[{"put":{"key":"other","value":"v"}}]}`, http.StatusForbidden, `"permission_denied"`},
		{"watch outside", http.MethodGet, "/v1/watch/other", "Bearer " + token, "", http.StatusForbidden, `"permission_denied"`},
		{"lease without credentials", http.MethodPost, "/v1/leases", "", `{"ttl":60}`, http.StatusUnauthorized, `"auth_required"`},
	} {
		code, body, challenge := restDo(t, m, tt.method, tt.path, tt.authz, tt.body)
		if code != tt.code || !strings.Contains(body, tt.contains) {
			t.Errorf("%s: %d %s; want %d with %s", tt.name, code, body, tt.code, tt.contains)
		}
		if code == http.StatusUnauthorized && challenge != `Basic realm="cairn"` {
			t.Errorf("%s: WWW-Authenticate %q", tt.name, challenge)
		}
	}
	// The key written through REST, as app sees it through gRPC.
	app := userClient(t, []string{m.clientEP}, "app")
	if r, err := app.Get(ctx(t), "app/rest"); err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "from-rest" {
		t.Errorf("gRPC read of the REST write: %v, %v", r, err)
	}
}

// TestAuthJWTCluster: members with JWT tokens; clientv3 logs in with a
// password, a token from one member works on another and through REST,
// and a change of the auth state makes it old, as in etcd.
func TestAuthJWTCluster(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		rs256, _ := jwtKeys(t)
		c := startCluster(t, engine, 2, testBcryptCost, "--auth-token="+rs256)
		a, b := c.members[0], c.members[1]
		enableAuth(t, a.client(t))
		app := userClient(t, []string{a.clientEP}, "app")
		if _, err := app.Put(ctx(t), "app/x", "1"); err != nil {
			t.Fatalf("clientv3 with a password: %v", err)
		}
		sideA := dialAuthSide(t, a.clientEP)
		resp, err := sideA.auth.Authenticate(ctx(t), &pb.AuthenticateRequest{Name: "app", Password: "apppw"})
		if err != nil {
			t.Fatal(err)
		}
		if strings.Count(resp.Token, ".") != 2 {
			t.Fatalf("token %q is not a JWT", resp.Token)
		}
		sideB := dialAuthSide(t, b.clientEP)
		sideB.tokens["app"] = resp.Token
		if r, err := sideB.kv.Range(sideB.as(ctx(t), "app"), &pb.RangeRequest{Key: []byte("app/x")}); err != nil || len(r.Kvs) != 1 {
			t.Errorf("member B, token from A: %v, %v", r, err)
		}
		if _, err := sideB.kv.Put(sideB.as(ctx(t), "app"), &pb.PutRequest{Key: []byte("other")}); statusMsg(err) != "etcdserver: permission denied" {
			t.Errorf("member B, put outside the prefix: %v", err)
		}
		// REST on B with Basic credentials, and with a token from A's REST.
		checkRESTAuth(t, b, restToken(t, a, "app", "apppw"))

		// A change of roles leaves the JWT valid but old.
		if _, err := userClient(t, []string{a.clientEP}, "root").RoleAdd(ctx(t), "extra"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := sideB.kv.Range(sideB.as(ctx(t), "app"), &pb.RangeRequest{Key: []byte("app/x")})
			if statusMsg(err) == "etcdserver: revision of auth store is old" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("old JWT after a role change: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if code, body, _ := restDo(t, b, http.MethodGet, "/v1/kv/app/x", "Bearer "+resp.Token, ""); code != http.StatusUnauthorized || !strings.Contains(body, "auth_revision_old") {
			t.Errorf("REST with an old JWT: %d %s", code, body)
		}
		if _, err := app.Get(ctx(t), "app/x"); err != nil {
			t.Errorf("clientv3 after its JWT became old: %v", err)
		}
	})
}

// TestAuthJWTFromEtcd: a token signed by a real etcd with the same keys is
// accepted by Cairn, once both have the same auth revision.
func TestAuthJWTFromEtcd(t *testing.T) {
	_, es256 := jwtKeys(t)
	etcd := startEtcd(t, etcdLowBcrypt, func(cfg *embed.Config) { cfg.AuthToken = es256 })
	m := startMember(t, "memory", testBcryptCost, "--auth-token="+es256)
	enableAuth(t, etcd)
	enableAuth(t, m.client(t))
	es, err := userClient(t, []string{etcdEndpoint(etcd)}, "root").AuthStatus(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := userClient(t, []string{m.clientEP}, "root").AuthStatus(ctx(t))
	if err != nil || cs.AuthRevision != es.AuthRevision {
		t.Fatalf("auth revisions: etcd %d, cairn %v (%v)", es.AuthRevision, cs, err)
	}
	resp, err := dialAuthSide(t, etcdEndpoint(etcd)).auth.Authenticate(ctx(t), &pb.AuthenticateRequest{Name: "app", Password: "apppw"})
	if err != nil {
		t.Fatal(err)
	}
	cairn := dialAuthSide(t, m.clientEP)
	cairn.tokens["app"] = resp.Token
	if _, err := cairn.kv.Put(cairn.as(ctx(t), "app"), &pb.PutRequest{Key: []byte("app/x"), Value: []byte("1")}); err != nil {
		t.Errorf("Cairn, put with etcd's JWT: %v", err)
	}
	if code, body, _ := restDo(t, m, http.MethodGet, "/v1/kv/app/x", "Bearer "+resp.Token, ""); code != http.StatusOK {
		t.Errorf("REST with etcd's JWT: %d %s", code, body)
	}
	// And the other way round.
	cresp, err := cairn.auth.Authenticate(ctx(t), &pb.AuthenticateRequest{Name: "app", Password: "apppw"})
	if err != nil {
		t.Fatal(err)
	}
	side := dialAuthSide(t, etcdEndpoint(etcd))
	side.tokens["app"] = cresp.Token
	if _, err := side.kv.Put(side.as(ctx(t), "app"), &pb.PutRequest{Key: []byte("app/x"), Value: []byte("1")}); err != nil {
		t.Errorf("etcd, put with Cairn's JWT: %v", err)
	}
}

// TestAuthJWTBadOptions: etcd and Cairn refuse the same bad --auth-token
// at start, with the same message.
func TestAuthJWTBadOptions(t *testing.T) {
	for _, opts := range []string{"jwt,sign-method=XX999,priv-key=/nonexistent", "jwt,sign-method=RS256", "paseto"} {
		cfg := embed.NewConfig()
		cfg.Dir = t.TempDir()
		cfg.LogLevel = "error"
		cfg.AuthToken = opts
		want := "etcd started"
		if e, err := embed.StartEtcd(cfg); err != nil {
			want = err.Error()
		} else {
			e.Close()
		}
		c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(c, cairnBin, "--data-dir", t.TempDir(), "--auth-token="+opts).CombinedOutput()
		cancel()
		if code := exitCode(err); code != 1 || !strings.Contains(string(out), "--auth-token: "+want) {
			t.Errorf("--auth-token=%s: exit %d, output %q; want exit 1 and etcd's %q", opts, code, out, want)
		}
	}
}

// exitCode is the exit status of a command's error (0 for none).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestHTTPAuthSimpleTokens: the REST API's auth with etcd's default simple
// tokens, on both engines.
func TestHTTPAuthSimpleTokens(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine, testBcryptCost)
		if code, body, _ := restDo(t, m, http.MethodPost, "/v1/auth/token", "", `{"user":"app","password":"apppw"}`); code != http.StatusConflict || !strings.Contains(body, "auth_not_enabled") {
			t.Errorf("token while auth is disabled: %d %s", code, body)
		}
		enableAuth(t, m.client(t))
		if _, err := userClient(t, []string{m.clientEP}, "app").Put(ctx(t), "app/x", "1"); err != nil {
			t.Fatal(err)
		}
		tok := restToken(t, m, "app", "apppw")
		if !simpleToken.MatchString(tok) {
			t.Errorf("token %q is not a simple token", tok)
		}
		checkRESTAuth(t, m, tok)
		// The REST token works on the etcd API too.
		s := dialAuthSide(t, m.clientEP)
		s.tokens["app"] = tok
		if r, err := s.kv.Range(s.as(ctx(t), "app"), &pb.RangeRequest{Key: []byte("app/rest")}); err != nil || len(r.Kvs) != 1 {
			t.Errorf("gRPC with the REST token: %v, %v", r, err)
		}
	})
}
