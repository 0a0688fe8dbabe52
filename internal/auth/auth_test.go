package auth

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

// batchWriter stages an Applier's records in one engine batch, as the
// store's mvcc.Applier does.
type batchWriter struct {
	b       storage.Batch
	applied uint64
}

func (w *batchWriter) SetRecord(b storage.Bucket, index uint64, k, v []byte) {
	w.b.Put(b, k, v)
	w.applied = index
}
func (w *batchWriter) DeleteRecord(b storage.Bucket, index uint64, k []byte) {
	w.b.Delete(b, k)
	w.applied = index
}
func (w *batchWriter) SetApplied(index uint64) { w.applied = index }

// harness applies entries one by one, each in its own committed batch.
type harness struct {
	t     *testing.T
	e     storage.Engine
	s     *Store
	a     *Applier
	index uint64
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	e, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s, err := Open(e, Options{BcryptCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, e: e, s: s, a: s.NewApplier()}
}

// apply applies r as user (with the current revision) and publishes it.
func (h *harness) apply(user string, r *pb.InternalRaftRequest) (proto.Message, error) {
	h.t.Helper()
	h.index++
	r.Header = &pb.RequestHeader{ID: h.index}
	if user != "" {
		r.Header.Username, r.Header.AuthRevision = user, h.s.Current().Revision()
	}
	w := &batchWriter{b: h.e.NewBatch()}
	resp, err := h.a.Apply(w, h.index, r)
	if w.applied != h.index {
		h.t.Fatalf("entry %d not recorded as applied (%d)", h.index, w.applied)
	}
	if cerr := w.b.Commit(false); cerr != nil {
		h.t.Fatal(cerr)
	}
	h.a.Publish()
	return resp, err
}

func (h *harness) must(user string, r *pb.InternalRaftRequest) proto.Message {
	h.t.Helper()
	resp, err := h.apply(user, r)
	if err != nil {
		h.t.Fatalf("%v: %v", r, err)
	}
	return resp
}

func (h *harness) hash(pw string) string {
	h.t.Helper()
	s, err := h.s.HashPassword(pw)
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func userAdd(h *harness, name, pw string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: name, HashedPassword: h.hash(pw)}}
}

func grant(user, role string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: user, Role: role}}
}

func grantPerm(role string, typ authpb.Permission_Type, key, end string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{
		Name: role, Perm: &authpb.Permission{PermType: typ, Key: []byte(key), RangeEnd: []byte(end)},
	}}
}

// setupRoot creates root with the root role and enables auth.
func setupRoot(h *harness) {
	h.must("", userAdd(h, "root", "rootpw"))
	h.must("", grant("root", RootRole))
	h.must("", &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}})
}

// TestApplyRules runs etcd's management rules in order, each step with the
// error etcd gives.
func TestApplyRules(t *testing.T) {
	h := newHarness(t)
	if got := h.s.Current().Revision(); got != 1 {
		t.Fatalf("fresh revision = %d, want 1", got)
	}
	steps := []struct {
		name string
		user string
		req  *pb.InternalRaftRequest
		want error
	}{
		{"enable without root", "", &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}, ErrRootUserNotExist},
		{"empty user", "", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{}}, ErrUserEmpty},
		{"add root", "", userAdd(h, "root", "rootpw"), nil},
		{"add root again", "", userAdd(h, "root", "x"), ErrUserAlreadyExist},
		{"enable without root role", "", &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}, ErrRootRoleNotExist},
		{"grant missing role", "", grant("root", "nope"), ErrRoleNotFound},
		{"grant to missing user", "", grant("nobody", RootRole), ErrUserNotFound},
		{"grant root role before it exists", "", grant("root", RootRole), nil},
		{"grant it twice", "", grant("root", RootRole), nil},
		{"enable", "", &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}, nil},
		{"enable again", "root", &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}, nil},
		{"anonymous admin", "", &pb.InternalRaftRequest{AuthUserList: &pb.AuthUserListRequest{}}, ErrUserEmpty},
		{"empty role", "root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{}}, ErrRoleEmpty},
		{"add role", "root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}}, nil},
		{"add role again", "root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}}, ErrRoleAlreadyExist},
		{"no permission", "root", &pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{Name: "r"}}, ErrPermissionNotGiven},
		{"empty key", "root", grantPerm("r", authpb.Permission_READ, "", ""), ErrInvalidAuthMgmt},
		{"end before key", "root", grantPerm("r", authpb.Permission_READ, "b", "a"), ErrInvalidAuthMgmt},
		{"permission of missing role", "root", grantPerm("x", authpb.Permission_READ, "a", ""), ErrRoleNotFound},
		{"grant permission", "root", grantPerm("r", authpb.Permission_READ, "a", ""), nil},
		{"revoke missing permission", "root", &pb.InternalRaftRequest{AuthRoleRevokePermission: &pb.AuthRoleRevokePermissionRequest{Role: "r", Key: []byte("b")}}, ErrPermissionNotGranted},
		{"revoke permission of missing role", "root", &pb.InternalRaftRequest{AuthRoleRevokePermission: &pb.AuthRoleRevokePermissionRequest{Role: "x", Key: []byte("a")}}, ErrRoleNotFound},
		{"add alice", "root", userAdd(h, "alice", "pw"), nil},
		{"grant r", "root", grant("alice", "r"), nil},
		{"alice is no admin", "alice", &pb.InternalRaftRequest{AuthRoleList: &pb.AuthRoleListRequest{}}, ErrPermissionDenied},
		{"alice reads herself", "alice", &pb.InternalRaftRequest{AuthUserGet: &pb.AuthUserGetRequest{Name: "alice"}}, nil},
		{"alice reads root", "alice", &pb.InternalRaftRequest{AuthUserGet: &pb.AuthUserGetRequest{Name: "root"}}, ErrPermissionDenied},
		{"alice reads her role", "alice", &pb.InternalRaftRequest{AuthRoleGet: &pb.AuthRoleGetRequest{Role: "r"}}, nil},
		{"alice reads root role", "alice", &pb.InternalRaftRequest{AuthRoleGet: &pb.AuthRoleGetRequest{Role: RootRole}}, ErrPermissionDenied},
		{"unknown user as admin", "ghost", &pb.InternalRaftRequest{AuthUserList: &pb.AuthUserListRequest{}}, ErrUserNotFound},
		{"revoke role not granted", "root", &pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: "alice", Role: "zz"}}, ErrRoleNotGranted},
		{"root keeps root role", "root", &pb.InternalRaftRequest{AuthUserRevokeRole: &pb.AuthUserRevokeRoleRequest{Name: "root", Role: RootRole}}, ErrInvalidAuthMgmt},
		{"root user stays", "root", &pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "root"}}, ErrInvalidAuthMgmt},
		{"root role stays", "root", &pb.InternalRaftRequest{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: RootRole}}, ErrInvalidAuthMgmt},
		{"missing user delete", "root", &pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "x"}}, ErrUserNotFound},
		{"missing user password", "root", &pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "x"}}, ErrUserNotFound},
		{"bad hash", "root", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "b", HashedPassword: "!"}}, ErrNoPasswordUser},
		{"delete role", "root", &pb.InternalRaftRequest{AuthRoleDelete: &pb.AuthRoleDeleteRequest{Role: "r"}}, nil},
		{"disable", "root", &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}}, nil},
		{"root user may go now", "", &pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "root"}}, nil},
	}
	for _, s := range steps {
		before := h.s.Current().Revision()
		_, err := h.apply(s.user, s.req)
		if !errors.Is(err, s.want) {
			t.Fatalf("%s: err = %v, want %v", s.name, err, s.want)
		}
		if err != nil && h.s.Current().Revision() != before {
			t.Errorf("%s: failed step moved the revision %d → %d", s.name, before, h.s.Current().Revision())
		}
	}
	st := h.s.Current()
	if roles, _ := st.UserRoles("alice"); len(roles) != 0 {
		t.Errorf("alice keeps roles %v after the role was deleted", roles)
	}
	// Nine changes after the start at 1: root add, grant, role add,
	// permission grant, alice add, grant, role delete, disable, root
	// delete. Enable and a repeated grant do not count.
	if got := st.Revision(); got != 10 {
		t.Errorf("revision = %d, want 10", got)
	}
}

// TestReload checks the state survives a reopen of the engine.
func TestReload(t *testing.T) {
	h := newHarness(t)
	setupRoot(h)
	h.must("root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}})
	h.must("root", grantPerm("r", authpb.Permission_WRITE, "k", "\x00"))
	h.must("root", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "np", Options: &authpb.UserAddOptions{NoPassword: true}}})
	h.must("root", grant("np", "r"))
	s2, err := Open(h.e, Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, b := h.s.Current(), s2.Current()
	if a.Enabled() != b.Enabled() || a.Revision() != b.Revision() {
		t.Fatalf("reloaded enabled %v rev %d, want %v %d", b.Enabled(), b.Revision(), a.Enabled(), a.Revision())
	}
	if got, want := b.UserNames(), a.UserNames(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("users %v, want %v", got, want)
	}
	id := Identity{User: "np", Revision: b.Revision()}
	if err := b.CheckPut(id, &pb.PutRequest{Key: []byte("kz")}, nil); err != nil {
		t.Errorf("reloaded permission: %v", err)
	}
	if _, err := s2.CheckPassword("np", ""); !errors.Is(err, ErrNoPasswordUser) {
		t.Errorf("no-password user: %v", err)
	}
}

// TestPermissionMatrix checks keys, ranges and open ends as etcd does.
func TestPermissionMatrix(t *testing.T) {
	h := newHarness(t)
	setupRoot(h)
	for _, r := range []string{"one", "pre", "from"} {
		h.must("root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: r}})
		h.must("root", userAdd(h, "u"+r, "pw"))
		h.must("root", grant("u"+r, r))
	}
	h.must("root", grantPerm("one", authpb.Permission_READ, "k", ""))
	h.must("root", grantPerm("pre", authpb.Permission_READWRITE, "p/", "p0"))
	h.must("root", grantPerm("pre", authpb.Permission_READWRITE, "p0", "p1"))
	h.must("root", grantPerm("from", authpb.Permission_WRITE, "m", "\x00"))
	st := h.s.Current()
	rev := st.Revision()
	cases := []struct {
		user, key, end string
		write, ok      bool
	}{
		{"uone", "k", "", false, true},
		{"uone", "k", "", true, false},
		{"uone", "k2", "", false, false},
		{"uone", "k", "k\x00", false, true},
		{"uone", "k", "k\x01", false, false},
		{"upre", "p/a", "", true, true},
		{"upre", "p/", "p0", false, true},
		{"upre", "p/", "p1", false, true}, // two adjacent permissions
		{"upre", "p/", "p2", false, false},
		{"upre", "p", "", false, false},
		{"ufrom", "m", "\x00", true, true},
		{"ufrom", "zzz", "", true, true},
		{"ufrom", "l", "\x00", true, false},
		{"ufrom", "m", "\x00", false, false},
		{"root", "anything", "\x00", true, true},
	}
	for _, c := range cases {
		err := st.checkOp(Identity{User: c.user, Revision: rev}, []byte(c.key), []byte(c.end), c.write)
		if (err == nil) != c.ok {
			t.Errorf("%s %q-%q write=%v: %v, want allowed=%v", c.user, c.key, c.end, c.write, err, c.ok)
		}
	}
	if err := st.checkOp(Identity{}, []byte("k"), nil, false); !errors.Is(err, ErrUserEmpty) {
		t.Errorf("nobody: %v", err)
	}
	if err := st.checkOp(Identity{User: "uone", Revision: rev - 1}, []byte("k"), nil, false); !errors.Is(err, ErrAuthOldRevision) {
		t.Errorf("stale: %v", err)
	}
	txn := &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("p/x")}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("q")}}}},
		}}}},
	}
	if err := st.CheckTxn(Identity{User: "upre", Revision: rev}, txn, nil); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("nested txn delete outside the prefix: %v", err)
	}
	leaseKeys := func(int64) [][]byte { return [][]byte{[]byte("outside")} }
	if err := st.CheckPut(Identity{User: "upre", Revision: rev}, &pb.PutRequest{Key: []byte("p/a"), Lease: 5}, leaseKeys); !errors.Is(err, ErrPermissionDenied) {
		t.Errorf("put attaching to a lease with a foreign key: %v", err)
	}
}

// TestTokens follows a token through its life.
func TestTokens(t *testing.T) {
	h := newHarness(t)
	setupRoot(h)
	now := time.Unix(1000, 0)
	h.s.tokens.(*tokenTable).now = func() time.Time { return now }
	applied := func(context.Context, uint64) error { return nil }
	rev, err := h.s.CheckPassword("root", "rootpw")
	if err != nil || rev != h.s.Current().Revision() {
		t.Fatalf("CheckPassword = %d, %v", rev, err)
	}
	if _, err := h.s.CheckPassword("root", "wrong"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("wrong password: %v", err)
	}
	authn := func(name string) string {
		resp := h.must("", &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: name, SimpleToken: "abc"}})
		return resp.(*pb.AuthenticateResponse).Token
	}
	tok := authn("root")
	if want := "abc." + itoa(h.index); tok != want {
		t.Fatalf("token %q, want %q", tok, want)
	}
	id, err := h.s.Identify(context.Background(), tok, applied)
	if err != nil || id.User != "root" || id.Revision != h.s.Current().Revision() {
		t.Fatalf("Identify = %+v, %v", id, err)
	}
	for _, bad := range []string{"abc", "abc.x", "a.b.c", "zzz." + itoa(h.index)} {
		if _, err := h.s.Identify(context.Background(), bad, applied); !errors.Is(err, ErrInvalidAuthToken) {
			t.Errorf("Identify(%q) = %v", bad, err)
		}
	}
	notYet := func(context.Context, uint64) error { return context.DeadlineExceeded }
	if _, err := h.s.Identify(context.Background(), tok, notYet); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token of an entry not applied: %v", err)
	}
	// Used within the TTL, the token lives on; idle longer, it expires.
	now = now.Add(DefaultTokenTTL - time.Second)
	if _, err := h.s.Identify(context.Background(), tok, applied); err != nil {
		t.Errorf("token used in time: %v", err)
	}
	now = now.Add(DefaultTokenTTL + time.Second)
	if _, err := h.s.Identify(context.Background(), tok, applied); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("expired token: %v", err)
	}
	// A password change drops the user's tokens.
	tok = authn("root")
	h.must("root", &pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "root", HashedPassword: h.hash("new")}})
	if _, err := h.s.Identify(context.Background(), tok, applied); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token after password change: %v", err)
	}
	// Disabling drops every token and makes every request anonymous.
	tok = authn("root")
	h.must("root", &pb.InternalRaftRequest{AuthDisable: &pb.AuthDisableRequest{}})
	if id, err := h.s.Identify(context.Background(), tok, applied); err != nil || id != (Identity{}) {
		t.Errorf("token while disabled: %+v, %v", id, err)
	}
	h.must("", &pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}})
	if _, err := h.s.Identify(context.Background(), tok, applied); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token from before a disable: %v", err)
	}
	if _, err := h.apply("", &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: "ghost"}}); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("authenticate unknown user: %v", err)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestConcurrentReaders checks readers against the applier under -race.
func TestConcurrentReaders(t *testing.T) {
	h := newHarness(t)
	setupRoot(h)
	h.must("root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}})
	h.must("root", userAdd(h, "u", "pw"))
	h.must("root", grant("u", "r"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				st := h.s.Current()
				_ = st.CheckRange(Identity{User: "u", Revision: st.Revision()}, []byte("a"), []byte("z"))
				_, _ = st.RolePermissions("r")
				_ = st.UserNames()
			}
		}()
	}
	for i := range 50 {
		typ := authpb.Permission_READ
		if i%2 == 1 {
			typ = authpb.Permission_WRITE
		}
		h.must("root", grantPerm("r", typ, "a", "z"))
	}
	close(stop)
	wg.Wait()
}
