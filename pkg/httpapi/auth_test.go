package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

// fakeAuth is a real auth.Store behind the Auth interface, with entries
// applied one by one as the store actor would, and no raft: Authenticate
// applies its entry at once.
type fakeAuth struct {
	t     *testing.T
	e     storage.Engine
	s     *auth.Store
	a     *auth.Applier
	index uint64
}

func newFakeAuth(t *testing.T) *fakeAuth {
	t.Helper()
	e, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s, err := auth.Open(e, auth.Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return &fakeAuth{t: t, e: e, s: s, a: s.NewApplier()}
}

// batchWriter stages auth records in one engine batch.
type batchWriter struct{ b storage.Batch }

func (w batchWriter) SetRecord(b storage.Bucket, _ uint64, k, v []byte) { w.b.Put(b, k, v) }
func (w batchWriter) DeleteRecord(b storage.Bucket, _ uint64, k []byte) { w.b.Delete(b, k) }
func (w batchWriter) SetApplied(uint64)                                 {}

// apply applies r as root and publishes it.
func (f *fakeAuth) apply(r *etcdserverpb.InternalRaftRequest) (*etcdserverpb.AuthenticateResponse, error) {
	f.t.Helper()
	f.index++
	r.Header = &etcdserverpb.RequestHeader{ID: f.index, Username: "root", AuthRevision: f.s.Current().Revision()}
	w := batchWriter{f.e.NewBatch()}
	resp, err := f.a.Apply(w, f.index, r)
	if cerr := w.b.Commit(false); cerr != nil {
		f.t.Fatal(cerr)
	}
	f.a.Publish()
	a, _ := resp.(*etcdserverpb.AuthenticateResponse)
	return a, err
}

func (f *fakeAuth) must(r *etcdserverpb.InternalRaftRequest) {
	f.t.Helper()
	if _, err := f.apply(r); err != nil {
		f.t.Fatalf("%v: %v", r, err)
	}
}

// enable adds root (rootpw) and app (apppw, read-write on "app/"), and
// enables auth.
func (f *fakeAuth) enable() {
	f.t.Helper()
	for _, u := range []string{"root", "app"} {
		h, err := f.s.HashPassword(u + "pw")
		if err != nil {
			f.t.Fatal(err)
		}
		f.must(&etcdserverpb.InternalRaftRequest{AuthUserAdd: &etcdserverpb.AuthUserAddRequest{Name: u, HashedPassword: h}})
		f.must(&etcdserverpb.InternalRaftRequest{AuthRoleAdd: &etcdserverpb.AuthRoleAddRequest{Name: u}})
		f.must(&etcdserverpb.InternalRaftRequest{AuthUserGrantRole: &etcdserverpb.AuthUserGrantRoleRequest{User: u, Role: u}})
	}
	f.must(&etcdserverpb.InternalRaftRequest{AuthRoleGrantPermission: &etcdserverpb.AuthRoleGrantPermissionRequest{
		Name: "app", Perm: &authpb.Permission{PermType: authpb.Permission_READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")},
	}})
	f.must(&etcdserverpb.InternalRaftRequest{AuthEnable: &etcdserverpb.AuthEnableRequest{}})
}

func (f *fakeAuth) AuthState() *auth.State { return f.s.Current() }

func (f *fakeAuth) Authenticate(_ context.Context, r *etcdserverpb.AuthenticateRequest) (*etcdserverpb.AuthenticateResponse, error) {
	rev, err := f.s.CheckPassword(r.Name, r.Password)
	if err != nil {
		return nil, err
	}
	prefix, err := f.s.NewTokenPrefix()
	if err != nil {
		return nil, err
	}
	resp, err := f.apply(&etcdserverpb.InternalRaftRequest{Authenticate: &etcdserverpb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix}})
	if err != nil {
		return nil, err
	}
	resp.Token, err = f.s.IssueToken(resp.Token, r.Name, rev)
	return resp, err
}

func (f *fakeAuth) PasswordToken(ctx context.Context, user, password string) (string, error) {
	return f.s.PasswordToken(ctx, user, password)
}

func (f *fakeAuth) Identify(ctx context.Context) (auth.Identity, error) {
	return f.s.Identify(ctx, auth.TokenFrom(ctx), func(context.Context, uint64) error { return nil })
}

// checkingBackend checks KV requests as the store does, with the token
// the request context carries.
type checkingBackend struct {
	*fakeBackend
	a *fakeAuth
}

func (b checkingBackend) Range(ctx context.Context, r *etcdserverpb.RangeRequest) (*etcdserverpb.RangeResponse, error) {
	id, err := b.a.Identify(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.a.s.Current().CheckRange(id, r.Key, r.RangeEnd); err != nil {
		return nil, err
	}
	return b.fakeBackend.Range(ctx, r)
}

func (b checkingBackend) Put(ctx context.Context, r *etcdserverpb.PutRequest) (*etcdserverpb.PutResponse, error) {
	id, err := b.a.Identify(ctx)
	if err != nil {
		return nil, err
	}
	if err := b.a.s.Current().CheckPut(id, r, nil); err != nil {
		return nil, err
	}
	return b.fakeBackend.Put(ctx, r)
}

// TestHTTPAuthRoutes: with auth enabled every route but the status and
// the token route needs HTTP Basic credentials or a Bearer token, and the
// store's checks see the user.
func TestHTTPAuthRoutes(t *testing.T) {
	fa := newFakeAuth(t)
	watchOpened := false
	h := New(checkingBackend{newFakeBackend(), fa}, Options{
		Auth: fa,
		Watch: func(func(*etcdserverpb.WatchResponse) error) WatchStream {
			watchOpened = true
			return nil
		},
	})
	do := func(method, target, body string, header ...string) *httptest.ResponseRecorder {
		t.Helper()
		req := httptest.NewRequest(method, target, strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	basic := func(user, password string) []string {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		req.SetBasicAuth(user, password)
		return []string{"Authorization", req.Header.Get("Authorization")}
	}
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	// Auth disabled: no credentials needed, credentials ignored, no token.
	expectJSON(t, do(http.MethodPut, "/v1/kv/app/x", `{"value":"1"}`), http.StatusOK, `{"revision":2}`)
	expectJSON(t, do(http.MethodPut, "/v1/kv/other", `{"value":"1"}`, basic("nobody", "x")...), http.StatusOK, `{"revision":3}`)
	expectError(t, do(http.MethodPost, "/v1/auth/token", `{"user":"app","password":"apppw"}`), http.StatusConflict, "auth_not_enabled")

	fa.enable()
	unauthorized := func(rec *httptest.ResponseRecorder, code string) {
		t.Helper()
		expectError(t, rec, http.StatusUnauthorized, code)
		if got := rec.Header().Get("WWW-Authenticate"); got != `Basic realm="cairn"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
	}
	if rec := do(http.MethodGet, "/v1/status", ""); rec.Code == http.StatusUnauthorized {
		t.Errorf("status without credentials: %d %s", rec.Code, rec.Body)
	}
	unauthorized(do(http.MethodGet, "/v1/kv/app/x", ""), "auth_required")
	unauthorized(do(http.MethodGet, "/v1/kv/app/x", "", "Authorization", "Digest abc"), "auth_required")
	unauthorized(do(http.MethodGet, "/v1/kv/app/x", "", basic("app", "wrong")...), "auth_failed")
	unauthorized(do(http.MethodGet, "/v1/kv/app/x", "", basic("ghost", "apppw")...), "auth_failed")
	unauthorized(do(http.MethodGet, "/v1/kv/app/x", "", bearer("forged.1")...), "invalid_token")
	unauthorized(do(http.MethodGet, "/v1/watch/app/x", "", bearer("forged.1")...), "invalid_token")

	// Basic credentials.
	expectJSON(t, do(http.MethodPut, "/v1/kv/app/y", `{"value":"2"}`, basic("app", "apppw")...), http.StatusOK, `{"revision":4}`)
	if rec := do(http.MethodGet, "/v1/kv/app/y", "", basic("app", "apppw")...); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"key":"app/y"`) {
		t.Errorf("app reads its key: %d %s", rec.Code, rec.Body)
	}
	expectError(t, do(http.MethodGet, "/v1/kv/other", "", basic("app", "apppw")...), http.StatusForbidden, "permission_denied")
	expectError(t, do(http.MethodPut, "/v1/kv/other", `{"value":"x"}`, basic("app", "apppw")...), http.StatusForbidden, "permission_denied")
	if rec := do(http.MethodGet, "/v1/kv/other", "", basic("root", "rootpw")...); rec.Code != http.StatusOK {
		t.Errorf("root reads anything: %d %s", rec.Code, rec.Body)
	}

	// Bearer tokens from the token route.
	unauthorized(do(http.MethodPost, "/v1/auth/token", `{"user":"app","password":"nope"}`), "auth_failed")
	rec := do(http.MethodPost, "/v1/auth/token", `{"user":"app","password":"apppw"}`)
	var tok struct{ Token string }
	if err := json.Unmarshal(rec.Body.Bytes(), &tok); rec.Code != http.StatusOK || err != nil || tok.Token == "" {
		t.Fatalf("token route: %d %s", rec.Code, rec.Body)
	}
	if rec := do(http.MethodGet, "/v1/kv/app/y", "", bearer(tok.Token)...); rec.Code != http.StatusOK {
		t.Errorf("bearer read: %d %s", rec.Code, rec.Body)
	}
	expectError(t, do(http.MethodGet, "/v1/kv/other", "", bearer(tok.Token)...), http.StatusForbidden, "permission_denied")

	// A watch needs read permission on its range; none is opened without.
	expectError(t, do(http.MethodGet, "/v1/watch/other", "", basic("app", "apppw")...), http.StatusForbidden, "permission_denied")
	expectError(t, do(http.MethodGet, "/v1/watch/app/?prefix=true&revision=x", "", basic("app", "apppw")...), http.StatusBadRequest, "invalid_argument")
	expectError(t, do(http.MethodGet, "/v1/watch/?prefix=true", "", bearer(tok.Token)...), http.StatusForbidden, "permission_denied")
	if watchOpened {
		t.Error("a watch was opened without permission")
	}
}
