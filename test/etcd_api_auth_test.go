package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Passwords are hashed at bcrypt's lowest cost on both servers, so that
// the tests spend their time on the protocol.
const testBcryptCost = "--bcrypt-cost=4"

func etcdLowBcrypt(cfg *embed.Config) { cfg.BcryptCost = 4 }

// authSide is one server under a differential auth test: raw gRPC clients
// (clientv3 would rewrite the errors it knows) and the tokens its users
// got, by name.
type authSide struct {
	auth     pb.AuthClient
	kv       pb.KVClient
	watch    pb.WatchClient
	lease    pb.LeaseClient
	maint    pb.MaintenanceClient
	cluster  pb.ClusterClient
	lock     v3lockpb.LockClient
	election v3electionpb.ElectionClient
	tokens   map[string]string
}

func dialAuthSide(t *testing.T, endpoint string) *authSide {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &authSide{
		auth: pb.NewAuthClient(conn), kv: pb.NewKVClient(conn), watch: pb.NewWatchClient(conn),
		lease: pb.NewLeaseClient(conn), maint: pb.NewMaintenanceClient(conn), cluster: pb.NewClusterClient(conn),
		lock: v3lockpb.NewLockClient(conn), election: v3electionpb.NewElectionClient(conn),
		tokens: map[string]string{"forged": "forged.1"},
	}
}

// as returns a context that sends the token of user ("" sends none).
func (s *authSide) as(ctx context.Context, user string) context.Context {
	if user == "" {
		return ctx
	}
	return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, s.tokens[user])
}

// authStep is one request of a differential auth test, sent as user.
type authStep struct {
	name string
	as   string
	call func(ctx context.Context, s *authSide) (proto.Message, error)
}

// login authenticates user (password user+"pw") and keeps the token.
func login(user string) authStep {
	return authStep{name: "authenticate " + user, call: func(ctx context.Context, s *authSide) (proto.Message, error) {
		resp, err := s.auth.Authenticate(ctx, &pb.AuthenticateRequest{Name: user, Password: user + "pw"})
		if err == nil {
			s.tokens[user] = resp.Token
		}
		return resp, err
	}}
}

func step[R proto.Message](name, as string, call func(context.Context, *authSide) (R, error)) authStep {
	return authStep{name: name, as: as, call: func(ctx context.Context, s *authSide) (proto.Message, error) {
		return call(ctx, s)
	}}
}

// normalised is an outcome with what legitimately differs between two
// servers removed: headers, and the random part of tokens.
func normalised(resp proto.Message, err error) outcome {
	o := outcomeOf(resp, err)
	if o.Resp == nil {
		return o
	}
	o.Resp = proto.Clone(o.Resp)
	m := o.Resp.ProtoReflect()
	if f := m.Descriptor().Fields().ByName("header"); f != nil {
		m.Clear(f)
	}
	if a, ok := o.Resp.(*pb.AuthenticateResponse); ok && simpleToken.MatchString(a.Token) {
		a.Token = "<simple token>"
	}
	return o
}

// simpleToken is the form of etcd's simple tokens: 16 letters, a dot and
// the raft index of the Authenticate entry.
var simpleToken = regexp.MustCompile(`^[a-zA-Z]{16}\.[0-9]+$`)

// runAuthSteps sends every step to etcd and Cairn and compares outcomes.
func runAuthSteps(t *testing.T, etcd, cairn *authSide, steps []authStep) {
	t.Helper()
	for i, st := range steps {
		c := ctx(t)
		want := normalised(st.call(etcd.as(c, st.as), etcd))
		got := normalised(st.call(cairn.as(c, st.as), cairn))
		same := want.Code == got.Code && want.Msg == got.Msg
		if same && want.Resp != nil {
			same = got.Resp != nil && proto.Equal(want.Resp, got.Resp)
		}
		if !same {
			t.Errorf("step %d %q as %q:\n etcd:  %v\n cairn: %v", i, st.name, st.as, want, got)
		}
	}
}

func perm(typ authpb.Permission_Type, key, end string) *authpb.Permission {
	return &authpb.Permission{PermType: typ, Key: []byte(key), RangeEnd: []byte(end)}
}

// authManagementSteps exercises every Auth RPC and every error etcd gives
// for it, in an order that moves through disabled, enabled and disabled
// again.
func authManagementSteps() []authStep {
	a := func(s *authSide) pb.AuthClient { return s.auth }
	userAdd := func(name, as string, opts *authpb.UserAddOptions) authStep {
		return step("user add "+name, as, func(c context.Context, s *authSide) (*pb.AuthUserAddResponse, error) {
			return a(s).UserAdd(c, &pb.AuthUserAddRequest{Name: name, Password: name + "pw", Options: opts})
		})
	}
	roleAdd := func(name, as string) authStep {
		return step("role add "+name, as, func(c context.Context, s *authSide) (*pb.AuthRoleAddResponse, error) {
			return a(s).RoleAdd(c, &pb.AuthRoleAddRequest{Name: name})
		})
	}
	grantRole := func(user, role, as string) authStep {
		return step("grant "+role+" to "+user, as, func(c context.Context, s *authSide) (*pb.AuthUserGrantRoleResponse, error) {
			return a(s).UserGrantRole(c, &pb.AuthUserGrantRoleRequest{User: user, Role: role})
		})
	}
	revokeRole := func(user, role, as string) authStep {
		return step("revoke "+role+" from "+user, as, func(c context.Context, s *authSide) (*pb.AuthUserRevokeRoleResponse, error) {
			return a(s).UserRevokeRole(c, &pb.AuthUserRevokeRoleRequest{Name: user, Role: role})
		})
	}
	grantPerm := func(role string, p *authpb.Permission, as string) authStep {
		return step(fmt.Sprintf("grant %v to %s", p, role), as, func(c context.Context, s *authSide) (*pb.AuthRoleGrantPermissionResponse, error) {
			return a(s).RoleGrantPermission(c, &pb.AuthRoleGrantPermissionRequest{Name: role, Perm: p})
		})
	}
	revokePerm := func(role, key, end, as string) authStep {
		return step("revoke "+key+" from "+role, as, func(c context.Context, s *authSide) (*pb.AuthRoleRevokePermissionResponse, error) {
			return a(s).RoleRevokePermission(c, &pb.AuthRoleRevokePermissionRequest{Role: role, Key: []byte(key), RangeEnd: []byte(end)})
		})
	}
	userGet := func(name, as string) authStep {
		return step("user get "+name, as, func(c context.Context, s *authSide) (*pb.AuthUserGetResponse, error) {
			return a(s).UserGet(c, &pb.AuthUserGetRequest{Name: name})
		})
	}
	roleGet := func(name, as string) authStep {
		return step("role get "+name, as, func(c context.Context, s *authSide) (*pb.AuthRoleGetResponse, error) {
			return a(s).RoleGet(c, &pb.AuthRoleGetRequest{Role: name})
		})
	}
	userList := func(as string) authStep {
		return step("user list", as, func(c context.Context, s *authSide) (*pb.AuthUserListResponse, error) {
			return a(s).UserList(c, &pb.AuthUserListRequest{})
		})
	}
	roleList := func(as string) authStep {
		return step("role list", as, func(c context.Context, s *authSide) (*pb.AuthRoleListResponse, error) {
			return a(s).RoleList(c, &pb.AuthRoleListRequest{})
		})
	}
	userDelete := func(name, as string) authStep {
		return step("user delete "+name, as, func(c context.Context, s *authSide) (*pb.AuthUserDeleteResponse, error) {
			return a(s).UserDelete(c, &pb.AuthUserDeleteRequest{Name: name})
		})
	}
	roleDelete := func(name, as string) authStep {
		return step("role delete "+name, as, func(c context.Context, s *authSide) (*pb.AuthRoleDeleteResponse, error) {
			return a(s).RoleDelete(c, &pb.AuthRoleDeleteRequest{Role: name})
		})
	}
	passwd := func(name, as string) authStep {
		return step("passwd "+name, as, func(c context.Context, s *authSide) (*pb.AuthUserChangePasswordResponse, error) {
			return a(s).UserChangePassword(c, &pb.AuthUserChangePasswordRequest{Name: name, Password: name + "pw"})
		})
	}
	status := func(as string) authStep {
		return step("auth status", as, func(c context.Context, s *authSide) (*pb.AuthStatusResponse, error) {
			return a(s).AuthStatus(c, &pb.AuthStatusRequest{})
		})
	}
	enable := func(as string) authStep {
		return step("auth enable", as, func(c context.Context, s *authSide) (*pb.AuthEnableResponse, error) {
			return a(s).AuthEnable(c, &pb.AuthEnableRequest{})
		})
	}
	disable := func(as string) authStep {
		return step("auth disable", as, func(c context.Context, s *authSide) (*pb.AuthDisableResponse, error) {
			return a(s).AuthDisable(c, &pb.AuthDisableRequest{})
		})
	}
	wrongPassword := step("wrong password", "", func(c context.Context, s *authSide) (*pb.AuthenticateResponse, error) {
		return a(s).Authenticate(c, &pb.AuthenticateRequest{Name: "root", Password: "nope"})
	})
	get := func(key, as string) authStep {
		return step("get "+key, as, func(c context.Context, s *authSide) (*pb.RangeResponse, error) {
			return s.kv.Range(c, &pb.RangeRequest{Key: []byte(key)})
		})
	}
	putKey := func(key, as string) authStep {
		return step("put "+key, as, func(c context.Context, s *authSide) (*pb.PutResponse, error) {
			return s.kv.Put(c, &pb.PutRequest{Key: []byte(key), Value: []byte("v")})
		})
	}
	compact := step("compact", "alice", func(c context.Context, s *authSide) (*pb.CompactionResponse, error) {
		return s.kv.Compact(c, &pb.CompactionRequest{Revision: 1})
	})
	rw := authpb.Permission_READWRITE
	return []authStep{
		status(""),
		enable(""),
		userAdd("", "", nil),
		userAdd("root", "", nil),
		userAdd("root", "", nil),
		enable(""),
		roleAdd("", ""),
		grantRole("root", "root", ""),
		roleAdd("root", ""),
		roleAdd("root", ""),
		grantRole("nobody", "root", ""),
		grantRole("root", "nope", ""),
		login("root"),
		wrongPassword,
		enable(""),
		enable(""),
		status(""),
		userList(""),
		userList("forged"),
		wrongPassword,
		step("authenticate ghost", "", func(c context.Context, s *authSide) (*pb.AuthenticateResponse, error) {
			return a(s).Authenticate(c, &pb.AuthenticateRequest{Name: "ghost", Password: "x"})
		}),
		login("root"),
		userAdd("alice", "root", nil),
		userAdd("bob", "root", &authpb.UserAddOptions{NoPassword: true}),
		roleAdd("reader", "root"),
		grantPerm("reader", nil, "root"),
		grantPerm("reader", perm(rw, "", ""), "root"),
		grantPerm("reader", perm(rw, "b", "a"), "root"),
		grantPerm("nope", perm(rw, "a", ""), "root"),
		grantPerm("reader", perm(authpb.Permission_READ, "foo/", "foo0"), "root"),
		grantPerm("reader", perm(authpb.Permission_WRITE, "foo/", "foo0"), "root"),
		grantPerm("reader", perm(authpb.Permission_READ, "foo/", "foo0"), "root"),
		grantPerm("reader", perm(authpb.Permission_READ, "bar", ""), "root"),
		grantPerm("reader", perm(authpb.Permission_READ, "zz", "\x00"), "root"),
		roleGet("reader", "root"),
		roleGet("root", "root"),
		roleGet("nope", "root"),
		roleList("root"),
		userList("root"),
		grantRole("alice", "reader", "root"),
		grantRole("alice", "reader", "root"),
		userGet("alice", "root"),
		userGet("nope", "root"),
		login("bob"),
		login("alice"),
		userGet("alice", "alice"),
		userGet("root", "alice"),
		roleGet("reader", "alice"),
		roleGet("root", "alice"),
		userList("alice"),
		roleAdd("x", "alice"),
		disable("alice"),
		compact,
		get("foo/a", "alice"),
		get("zzz", "alice"),
		get("other", "alice"),
		putKey("foo/a", "alice"),
		get("foo/a", ""),
		putKey("foo/a", ""),
		get("foo/a", "forged"),
		putKey("foo/a", "root"),
		revokePerm("reader", "nope", "", "root"),
		revokePerm("nope", "foo/", "foo0", "root"),
		revokePerm("reader", "bar", "", "root"),
		roleGet("reader", "root"),
		revokeRole("alice", "reader", "root"),
		revokeRole("alice", "reader", "root"),
		revokeRole("nobody", "reader", "root"),
		revokeRole("root", "root", "root"),
		userDelete("root", "root"),
		roleDelete("root", "root"),
		passwd("nobody", "root"),
		passwd("alice", "root"),
		get("foo/a", "alice"),
		userDelete("alice", "root"),
		userDelete("alice", "root"),
		roleDelete("reader", "root"),
		roleDelete("reader", "root"),
		status("root"),
		disable("root"),
		disable(""),
		get("foo/a", ""),
		get("foo/a", "forged"),
		status(""),
		userList(""),
		roleList(""),
	}
}

// permissionMatrixSteps gives users read, write and read-write on a key,
// a prefix and every key from one on, and tries reads, writes, deletes
// and transactions inside and outside each, as each user.
func permissionMatrixSteps() []authStep {
	var steps []authStep
	root := func(name string, call func(context.Context, *authSide) (proto.Message, error)) {
		steps = append(steps, authStep{name: name, as: "root", call: call})
	}
	steps = append(steps,
		step("add root", "", func(c context.Context, s *authSide) (*pb.AuthUserAddResponse, error) {
			return s.auth.UserAdd(c, &pb.AuthUserAddRequest{Name: "root", Password: "rootpw"})
		}),
		step("root role", "", func(c context.Context, s *authSide) (*pb.AuthRoleAddResponse, error) {
			return s.auth.RoleAdd(c, &pb.AuthRoleAddRequest{Name: "root"})
		}),
		step("grant root", "", func(c context.Context, s *authSide) (*pb.AuthUserGrantRoleResponse, error) {
			return s.auth.UserGrantRole(c, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
		}),
		step("enable", "", func(c context.Context, s *authSide) (*pb.AuthEnableResponse, error) {
			return s.auth.AuthEnable(c, &pb.AuthEnableRequest{})
		}),
		login("root"),
	)
	shapes := []struct{ name, key, end string }{{"key", "k", ""}, {"prefix", "p/", "p0"}, {"from", "m", "\x00"}}
	types := map[string]authpb.Permission_Type{"r": authpb.Permission_READ, "w": authpb.Permission_WRITE, "rw": authpb.Permission_READWRITE}
	var users []string
	for _, sh := range shapes {
		for _, tn := range []string{"r", "w", "rw"} {
			u := tn + "-" + sh.name
			users = append(users, u)
			root("setup "+u, func(c context.Context, s *authSide) (proto.Message, error) {
				if _, err := s.auth.UserAdd(c, &pb.AuthUserAddRequest{Name: u, Password: u + "pw"}); err != nil {
					return nil, err
				}
				if _, err := s.auth.RoleAdd(c, &pb.AuthRoleAddRequest{Name: u}); err != nil {
					return nil, err
				}
				if _, err := s.auth.RoleGrantPermission(c, &pb.AuthRoleGrantPermissionRequest{Name: u, Perm: perm(types[tn], sh.key, sh.end)}); err != nil {
					return nil, err
				}
				return s.auth.UserGrantRole(c, &pb.AuthUserGrantRoleRequest{User: u, Role: u})
			})
		}
	}
	for _, k := range []string{"k", "p/a", "m", "zz", "a"} {
		root("seed "+k, func(c context.Context, s *authSide) (proto.Message, error) {
			return s.kv.Put(c, &pb.PutRequest{Key: []byte(k), Value: []byte("seed")})
		})
	}
	rng := func(k, e string) *pb.RangeRequest { return &pb.RangeRequest{Key: []byte(k), RangeEnd: []byte(e)} }
	ops := []struct {
		name string
		req  proto.Message
	}{
		{"get k", rng("k", "")},
		{"get k..l", rng("k", "l")},
		{"get p/ prefix", rng("p/", "p0")},
		{"get p/a", rng("p/a", "")},
		{"get p/ .. p1", rng("p/", "p1")},
		{"get from m", rng("m", "\x00")},
		{"get from a", rng("a", "\x00")},
		{"get zz", rng("zz", "")},
		{"get a", rng("a", "")},
		{"put k", &pb.PutRequest{Key: []byte("k"), Value: []byte("x")}},
		{"put k prev", &pb.PutRequest{Key: []byte("k"), Value: []byte("x"), PrevKv: true}},
		{"put p/b", &pb.PutRequest{Key: []byte("p/b"), Value: []byte("x")}},
		{"put zz", &pb.PutRequest{Key: []byte("zz"), Value: []byte("x")}},
		{"put a", &pb.PutRequest{Key: []byte("a"), Value: []byte("x")}},
		{"delete k", &pb.DeleteRangeRequest{Key: []byte("k")}},
		{"delete p/ prefix", &pb.DeleteRangeRequest{Key: []byte("p/"), RangeEnd: []byte("p0")}},
		{"delete from m prev", &pb.DeleteRangeRequest{Key: []byte("m"), RangeEnd: []byte("\x00"), PrevKv: true}},
		{"txn compare k put k", &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("k"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: []byte("t")}}}},
		}},
		{"txn read prefix", &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: rng("p/", "p0")}}}}},
		{"txn nested put zz in failure", &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: []byte("zz"), Target: pb.Compare_VERSION, Result: pb.Compare_GREATER}},
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("zz"), Value: []byte("n")}}}},
			}}}},
		}},
	}
	for _, u := range users {
		steps = append(steps, login(u))
		for _, op := range ops {
			steps = append(steps, authStep{name: op.name, as: u, call: func(c context.Context, s *authSide) (proto.Message, error) {
				o := send(c, s.kv, op.req)
				if o.Resp == nil {
					return nil, statusError(o)
				}
				return o.Resp, nil
			}})
		}
	}
	return steps
}

// TestAuthMatchesEtcd runs every Auth RPC, with every error etcd gives,
// and a permission matrix over KV, against etcd and Cairn, and compares
// codes, messages and responses.
func TestAuthMatchesEtcd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Run("management", func(t *testing.T) {
			etcd := dialAuthSide(t, etcdEndpoint(startEtcd(t, etcdLowBcrypt)))
			cairn := dialAuthSide(t, startMember(t, engine, testBcryptCost).clientEP)
			runAuthSteps(t, etcd, cairn, authManagementSteps())
		})
		t.Run("permissions", func(t *testing.T) {
			etcd := dialAuthSide(t, etcdEndpoint(startEtcd(t, etcdLowBcrypt)))
			cairn := dialAuthSide(t, startMember(t, engine, testBcryptCost).clientEP)
			runAuthSteps(t, etcd, cairn, permissionMatrixSteps())
		})
	})
}

// enableAuth creates root (password "rootpw") and user "app" (password
// "apppw", read-write on the prefix "app/"), and enables auth.
func enableAuth(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	c := ctx(t)
	for _, f := range []func() error{
		func() error { _, err := cli.UserAdd(c, "root", "rootpw"); return err },
		func() error { _, err := cli.RoleAdd(c, "root"); return err },
		func() error { _, err := cli.UserGrantRole(c, "root", "root"); return err },
		func() error { _, err := cli.UserAdd(c, "app", "apppw"); return err },
		func() error { _, err := cli.RoleAdd(c, "app"); return err },
		func() error {
			_, err := cli.RoleGrantPermission(c, "app", "app/", clientv3.GetPrefixRangeEnd("app/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cli.UserGrantRole(c, "app", "app"); return err },
		func() error { _, err := cli.AuthEnable(c); return err },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
}

func userClient(t *testing.T, endpoints []string, user string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		Username: user, Password: user + "pw",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestAuthClientv3SurvivesKill9 uses clientv3 with a user and password,
// the JSON gateway with a token, then kills the member and checks that
// auth is still enforced, and the users still log in, after the restart.
func TestAuthClientv3SurvivesKill9(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine, testBcryptCost)
		enableAuth(t, m.client(t))
		app := userClient(t, []string{m.clientEP}, "app")
		c := ctx(t)
		if _, err := app.Put(c, "app/x", "1"); err != nil {
			t.Fatalf("app puts in its prefix: %v", err)
		}
		if _, err := app.Put(c, "other", "1"); err != rpctypes.ErrPermissionDenied {
			t.Fatalf("app puts outside its prefix: %v", err)
		}
		if _, err := m.client(t).Get(c, "app/x"); err != rpctypes.ErrUserEmpty {
			t.Fatalf("anonymous get: %v", err)
		}

		// The gateway takes the token from the Authorization header.
		gw := func(path, token, body string) (int, string) {
			var h http.Header
			if token != "" {
				h = http.Header{"Authorization": {token}}
			}
			resp, b := httpRequest(t, nil, http.MethodPost, "http://"+m.clientEP+path, strings.NewReader(body), h)
			return resp.StatusCode, string(b)
		}
		code, body := gw("/v3/auth/authenticate", "", `{"name":"app","password":"apppw"}`)
		var authResp struct{ Token string }
		if err := json.Unmarshal([]byte(body), &authResp); code != http.StatusOK || err != nil || authResp.Token == "" {
			t.Fatalf("gateway authenticate: %d %s", code, body)
		}
		if code, body := gw("/v3/kv/range", authResp.Token, `{"key":"YXBwL3g="}`); code != http.StatusOK || !strings.Contains(body, `"count":"1"`) {
			t.Errorf("gateway range with token: %d %s", code, body)
		}
		if code, body := gw("/v3/kv/range", "", `{"key":"YXBwL3g="}`); code == http.StatusOK || !strings.Contains(body, "user name is empty") {
			t.Errorf("gateway range without token: %d %s", code, body)
		}

		m.kill9()
		m.start() // on new ports
		c = ctx(t)
		if _, err := m.client(t).Put(c, "app/y", "1"); err != rpctypes.ErrUserEmpty {
			t.Errorf("anonymous put after restart: %v", err)
		}
		app = userClient(t, []string{m.clientEP}, "app")
		if _, err := app.Put(c, "app/y", "2"); err != nil {
			t.Errorf("app puts after restart: %v", err)
		}
		if _, err := app.Get(c, "other"); err != rpctypes.ErrPermissionDenied {
			t.Errorf("app reads outside its prefix after restart: %v", err)
		}
		st, err := userClient(t, []string{m.clientEP}, "root").AuthStatus(c)
		if err != nil || !st.Enabled {
			t.Errorf("auth status after restart: %v, %v", st, err)
		}
	})
}

// TestAuthTokenWorksOnEveryMember authenticates on one member of a
// three-member cluster and uses the token on the others: every member
// records it when it applies the Authenticate entry. Once the token's TTL
// passes unused it is refused everywhere, and clientv3 logs in again.
func TestAuthTokenWorksOnEveryMember(t *testing.T) {
	c := startCluster(t, "memory", 3, testBcryptCost, "--auth-token-ttl=2")
	enableAuth(t, c.members[0].client(t))
	app := userClient(t, c.endpoints(), "app")
	if _, err := app.Put(ctx(t), "app/clientv3", "1"); err != nil {
		t.Fatal(err)
	}
	first := dialAuthSide(t, c.members[0].clientEP)
	resp, err := first.auth.Authenticate(ctx(t), &pb.AuthenticateRequest{Name: "app", Password: "apppw"})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range c.members {
		s := dialAuthSide(t, m.clientEP)
		s.tokens["app"] = resp.Token
		k := fmt.Sprintf("app/%d", i)
		if _, err := s.kv.Put(s.as(ctx(t), "app"), &pb.PutRequest{Key: []byte(k), Value: []byte("v")}); err != nil {
			t.Errorf("member %d: put with a token from member 0: %v", i, err)
		}
		if r, err := s.kv.Range(s.as(ctx(t), "app"), &pb.RangeRequest{Key: []byte(k)}); err != nil || len(r.Kvs) != 1 {
			t.Errorf("member %d: range with a token from member 0: %v, %v", i, r, err)
		}
		if _, err := s.kv.Put(s.as(ctx(t), "app"), &pb.PutRequest{Key: []byte("nope")}); statusMsg(err) != "etcdserver: permission denied" {
			t.Errorf("member %d: put outside the prefix: %v", i, err)
		}
	}
	// Followers forward keep-alives and TimeToLive to the leader with the
	// caller's token, and both check it: app may keep alive the lease of
	// its own key, not the lease of a key outside its prefix.
	root := userClient(t, c.endpoints(), "root")
	var leases [2]clientv3.LeaseID
	for i, k := range []string{"app/leased", "nope"} {
		l, err := root.Grant(ctx(t), 60)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := root.Put(ctx(t), k, "v", clientv3.WithLease(l.ID)); err != nil {
			t.Fatal(err)
		}
		leases[i] = l.ID
	}
	// Status needs a user now, so the harness cannot tell the followers.
	var followers []*member
	for _, m := range c.members {
		st, err := root.Status(ctx(t), m.clientEP)
		if err != nil {
			t.Fatal(err)
		}
		if st.Header.MemberId != st.Leader {
			followers = append(followers, m)
		}
	}
	if len(followers) != 2 {
		t.Fatalf("%d followers, want 2", len(followers))
	}
	for _, m := range followers {
		s := dialAuthSide(t, m.clientEP)
		s.tokens["app"] = resp.Token
		if r, err := keepAliveOnce(s.as(ctx(t), "app"), s, int64(leases[0])); err != nil || r.TTL != 60 {
			t.Errorf("follower %s: keep-alive of app's lease: %v, %v", m.name, r, err)
		}
		if r, err := s.lease.LeaseTimeToLive(s.as(ctx(t), "app"), &pb.LeaseTimeToLiveRequest{ID: int64(leases[0]), Keys: true}); err != nil || len(r.Keys) != 1 {
			t.Errorf("follower %s: time to live of app's lease: %v, %v", m.name, r, err)
		}
		if _, err := keepAliveOnce(s.as(ctx(t), "app"), s, int64(leases[1])); statusMsg(err) != "etcdserver: permission denied" {
			t.Errorf("follower %s: keep-alive of a lease outside app's prefix: %v", m.name, err)
		}
	}
	time.Sleep(3500 * time.Millisecond)
	for i, m := range c.members {
		s := dialAuthSide(t, m.clientEP)
		s.tokens["app"] = resp.Token
		if _, err := s.kv.Range(s.as(ctx(t), "app"), &pb.RangeRequest{Key: []byte("app/0")}); statusMsg(err) != "etcdserver: invalid auth token" {
			t.Errorf("member %d: expired token: %v", i, err)
		}
	}
	if _, err := app.Put(ctx(t), "app/clientv3", "2"); err != nil {
		t.Errorf("clientv3 after its token expired: %v", err)
	}
}

// TestAuthEtcdctlSession runs a basic etcdctl session with --user against
// etcd and Cairn and compares what etcdctl prints.
func TestAuthEtcdctlSession(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		etcdEP := etcdEndpoint(startEtcd(t, etcdLowBcrypt))
		cairnEP := startMember(t, engine, testBcryptCost).clientEP
		session := [][]string{
			{"user", "add", "root:pw"},
			{"auth", "enable"},
			{"put", "k", "v"},
			{"--user", "root:pw", "put", "k", "v"},
			{"--user", "root:pw", "get", "k"},
			{"--user", "root:bad", "get", "k"},
			{"--user", "root:pw", "user", "list"},
			{"--user", "root:pw", "role", "list"},
			{"--user", "root:pw", "auth", "status"},
			{"--user", "root:pw", "auth", "disable"},
			{"get", "k"},
		}
		for _, args := range session {
			eo, ee, ex := etcdctlAt(etcdEP, "", args...)
			co, ce, cx := etcdctlAt(cairnEP, "", args...)
			ee, ce = withoutClientLogs(ee), withoutClientLogs(ce)
			if eo != co || ee != ce || ex != cx {
				t.Errorf("etcdctl %v:\n etcd:  %q %q exit %d\n cairn: %q %q exit %d", args, eo, ee, ex, co, ce, cx)
			}
		}
	})
}

// withoutClientLogs drops the client library's JSON log lines (retries,
// with times and addresses) from etcdctl's standard error.
func withoutClientLogs(stderr string) string {
	var out []string
	for _, l := range strings.SplitAfter(stderr, "\n") {
		if !strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// statusError turns an outcome's error back into a gRPC status error.
func statusError(o outcome) error { return status.Error(o.Code, o.Msg) }

func statusMsg(err error) string { return status.Convert(err).Message() }
