package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// serviceUsers are the callers of servicePermissionSteps: nobody, a
// forged token, a user without roles, a reader and a writer of the
// prefix "u/", and root.
var serviceUsers = []string{"", "forged", "n", "r", "u", "root"}

// accepted reduces a response whose contents legitimately differ between
// two servers (sizes, hashes, versions) to whether it was an error.
func accepted[R proto.Message](_ R, err error) (proto.Message, error) {
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// firstWatchResponse opens a watch stream, creates one watch and returns
// the first response.
func firstWatchResponse(c context.Context, s *authSide, req *pb.WatchCreateRequest) (*pb.WatchResponse, error) {
	c, cancel := context.WithCancel(c)
	defer cancel()
	ws, err := s.watch.Watch(c)
	if err != nil {
		return nil, err
	}
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		return nil, err
	}
	return ws.Recv()
}

// keepAliveOnce sends one keep-alive on a new stream and returns its
// answer.
func keepAliveOnce(c context.Context, s *authSide, id int64) (*pb.LeaseKeepAliveResponse, error) {
	c, cancel := context.WithCancel(c)
	defer cancel()
	ks, err := s.lease.LeaseKeepAlive(c)
	if err != nil {
		return nil, err
	}
	if err := ks.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return nil, err
	}
	return ks.Recv()
}

// servicePermissionSteps checks Watch, Lease, Maintenance, Cluster, lock
// and election requests as every one of serviceUsers. Leases 100 (key
// "u/a") and 200 (key "x") are granted before auth is enabled, and 500
// and 600 (no keys) for the lock and election.
func servicePermissionSteps() []authStep {
	var steps []authStep
	setup := func(name string, call func(context.Context, *authSide) (proto.Message, error)) {
		steps = append(steps, authStep{name: name, call: call})
	}
	setup("users and roles", func(c context.Context, s *authSide) (proto.Message, error) {
		for _, u := range []string{"root", "n", "r", "u"} {
			if _, err := s.auth.UserAdd(c, &pb.AuthUserAddRequest{Name: u, Password: u + "pw"}); err != nil {
				return nil, err
			}
		}
		for role, p := range map[string]authpb.Permission_Type{"r": authpb.Permission_READ, "u": authpb.Permission_READWRITE} {
			if _, err := s.auth.RoleAdd(c, &pb.AuthRoleAddRequest{Name: role}); err != nil {
				return nil, err
			}
			if _, err := s.auth.RoleGrantPermission(c, &pb.AuthRoleGrantPermissionRequest{Name: role, Perm: perm(p, "u/", "u0")}); err != nil {
				return nil, err
			}
			if _, err := s.auth.UserGrantRole(c, &pb.AuthUserGrantRoleRequest{User: role, Role: role}); err != nil {
				return nil, err
			}
		}
		if _, err := s.auth.RoleAdd(c, &pb.AuthRoleAddRequest{Name: "root"}); err != nil {
			return nil, err
		}
		return s.auth.UserGrantRole(c, &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
	})
	setup("leases and keys", func(c context.Context, s *authSide) (proto.Message, error) {
		for _, id := range []int64{100, 200, 500, 600} {
			if _, err := s.lease.LeaseGrant(c, &pb.LeaseGrantRequest{ID: id, TTL: 60}); err != nil {
				return nil, err
			}
		}
		if _, err := s.kv.Put(c, &pb.PutRequest{Key: []byte("u/a"), Value: []byte("v"), Lease: 100}); err != nil {
			return nil, err
		}
		return s.kv.Put(c, &pb.PutRequest{Key: []byte("x"), Value: []byte("v"), Lease: 200})
	})
	setup("enable", func(c context.Context, s *authSide) (proto.Message, error) {
		return s.auth.AuthEnable(c, &pb.AuthEnableRequest{})
	})
	steps = append(steps, login("root"), login("n"), login("r"), login("u"))

	type op struct {
		name    string
		rootToo bool // root is asked too (the others always are)
		call    func(c context.Context, s *authSide, i int) (proto.Message, error)
	}
	ttl := func(id int64, keys bool) func(context.Context, *authSide, int) (proto.Message, error) {
		return func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			resp, err := s.lease.LeaseTimeToLive(c, &pb.LeaseTimeToLiveRequest{ID: id, Keys: keys})
			if err == nil {
				resp.TTL = 0 // the remaining seconds may differ by one
			}
			return resp, err
		}
	}
	keepAlive := func(id int64) func(context.Context, *authSide, int) (proto.Message, error) {
		return func(c context.Context, s *authSide, _ int) (proto.Message, error) { return keepAliveOnce(c, s, id) }
	}
	watchOf := func(key, end string, rev int64) func(context.Context, *authSide, int) (proto.Message, error) {
		return func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return firstWatchResponse(c, s, &pb.WatchCreateRequest{Key: []byte(key), RangeEnd: []byte(end), StartRevision: rev})
		}
	}
	revoke := func(id int64) func(context.Context, *authSide, int) (proto.Message, error) {
		return func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return s.lease.LeaseRevoke(c, &pb.LeaseRevokeRequest{ID: id})
		}
	}
	ops := []op{
		{name: "lease grant", rootToo: true, call: func(c context.Context, s *authSide, i int) (proto.Message, error) {
			return s.lease.LeaseGrant(c, &pb.LeaseGrantRequest{ID: int64(1000 + i), TTL: 60})
		}},
		{name: "time to live u/a's lease with keys", rootToo: true, call: ttl(100, true)},
		{name: "time to live x's lease with keys", rootToo: true, call: ttl(200, true)},
		{name: "time to live x's lease", rootToo: true, call: ttl(200, false)},
		{name: "time to live of no lease with keys", rootToo: true, call: ttl(999, true)},
		{name: "leases", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			resp, err := s.lease.LeaseLeases(c, &pb.LeaseLeasesRequest{})
			if err == nil {
				// etcd lists by expiry, Cairn by ID (limitations.md).
				slices.SortFunc(resp.Leases, func(a, b *pb.LeaseStatus) int { return int(a.ID - b.ID) })
			}
			return resp, err
		}},
		{name: "keep alive u/a's lease", rootToo: true, call: keepAlive(100)},
		{name: "keep alive x's lease", rootToo: true, call: keepAlive(200)},
		{name: "keep alive no lease", rootToo: true, call: keepAlive(999)},
		{name: "watch u/ prefix", rootToo: true, call: watchOf("u/", "u0", 0)},
		{name: "watch x", rootToo: true, call: watchOf("x", "", 0)},
		{name: "watch every key", rootToo: true, call: watchOf("", "\x00", 0)},
		{name: "watch from a negative revision", rootToo: true, call: watchOf("x", "", -1)},
		{name: "status", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.Status(c, &pb.StatusRequest{}))
		}},
		{name: "alarm list", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.Alarm(c, &pb.AlarmRequest{Action: pb.AlarmRequest_GET}))
		}},
		{name: "alarm deactivate", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.Alarm(c, &pb.AlarmRequest{Action: pb.AlarmRequest_DEACTIVATE, Alarm: pb.AlarmType_NOSPACE}))
		}},
		{name: "defragment", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.Defragment(c, &pb.DefragmentRequest{}))
		}},
		{name: "hash", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.Hash(c, &pb.HashRequest{}))
		}},
		{name: "hash kv", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.HashKV(c, &pb.HashKVRequest{}))
		}},
		{name: "snapshot", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			c, cancel := context.WithCancel(c)
			defer cancel()
			ss, err := s.maint.Snapshot(c, &pb.SnapshotRequest{})
			if err != nil {
				return nil, err
			}
			return accepted(ss.Recv())
		}},
		{name: "downgrade", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.Downgrade(c, &pb.DowngradeRequest{Action: pb.DowngradeRequest_VALIDATE, Version: "3.6"}))
		}},
		{name: "move leader", call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.maint.MoveLeader(c, &pb.MoveLeaderRequest{TargetID: 12345}))
		}},
		{name: "member list", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.cluster.MemberList(c, &pb.MemberListRequest{Linearizable: true}))
		}},
		{name: "member add", call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.cluster.MemberAdd(c, &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:1"}}))
		}},
		{name: "member add with bad URLs", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.cluster.MemberAdd(c, &pb.MemberAddRequest{PeerURLs: []string{"bad"}}))
		}},
		{name: "member remove", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.cluster.MemberRemove(c, &pb.MemberRemoveRequest{ID: 12345}))
		}},
		{name: "member update", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.cluster.MemberUpdate(c, &pb.MemberUpdateRequest{ID: 12345, PeerURLs: []string{"http://127.0.0.1:1"}}))
		}},
		{name: "member promote", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return accepted(s.cluster.MemberPromote(c, &pb.MemberPromoteRequest{ID: 12345}))
		}},
		{name: "lock and unlock u/lock", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			resp, err := s.lock.Lock(c, &v3lockpb.LockRequest{Name: []byte("u/lock"), Lease: 500})
			if err != nil {
				return nil, err
			}
			if _, err := s.lock.Unlock(c, &v3lockpb.UnlockRequest{Key: resp.Key}); err != nil {
				return nil, fmt.Errorf("unlock: %w", err)
			}
			return resp, nil
		}},
		{name: "lock x", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			resp, err := s.lock.Lock(c, &v3lockpb.LockRequest{Name: []byte("x"), Lease: 500})
			if err != nil {
				return nil, err
			}
			if _, err := s.lock.Unlock(c, &v3lockpb.UnlockRequest{Key: resp.Key}); err != nil {
				return nil, fmt.Errorf("unlock: %w", err)
			}
			return resp, nil
		}},
		{name: "campaign and resign u/el", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			resp, err := s.election.Campaign(c, &v3electionpb.CampaignRequest{Name: []byte("u/el"), Lease: 600, Value: []byte("v")})
			if err != nil {
				return nil, err
			}
			if _, err := s.election.Resign(c, &v3electionpb.ResignRequest{Leader: resp.Leader}); err != nil {
				return nil, fmt.Errorf("resign: %w", err)
			}
			return resp, nil
		}},
		{name: "election leader", rootToo: true, call: func(c context.Context, s *authSide, _ int) (proto.Message, error) {
			return s.election.Leader(c, &v3electionpb.LeaderRequest{Name: []byte("u/el")})
		}},
		// Revokes last: root's deletes x.
		{name: "revoke u/a's lease", call: revoke(100)},
		{name: "revoke x's lease", rootToo: true, call: revoke(200)},
	}
	for _, o := range ops {
		for i, u := range serviceUsers {
			if u == "root" && !o.rootToo {
				continue
			}
			steps = append(steps, authStep{name: o.name, as: u, call: func(c context.Context, s *authSide) (proto.Message, error) {
				return o.call(c, s, i)
			}})
		}
	}
	steps = append(steps, authStep{name: "u/a is gone with its lease", as: "root", call: func(c context.Context, s *authSide) (proto.Message, error) {
		return s.kv.Range(c, &pb.RangeRequest{Key: []byte("u/"), RangeEnd: []byte("u0"), CountOnly: true})
	}})
	return steps
}

// TestAuthServicesMatchEtcd asks Watch, Lease, Maintenance, Cluster,
// lock and election as nobody, with a forged token, as users with no,
// read and read-write permission on a prefix, and as root, against etcd
// and Cairn, and compares codes, messages and responses.
func TestAuthServicesMatchEtcd(t *testing.T) {
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		etcd := dialAuthSide(t, etcdEndpoint(startEtcd(t, etcdLowBcrypt)))
		cairn := dialAuthSide(t, startMember(t, engine, testBcryptCost).clientEP)
		runAuthSteps(t, etcd, cairn, servicePermissionSteps())
	})
}

// TestAuthCertificateUsers: with --client-cert-auth, a request without a
// token is made as the user its client certificate names (root may
// manage auth and defragment, u is held to its prefix, for the lock
// service too, and an unknown name is nobody's), as etcd does; the JSON
// gateway refuses a request with a certificate once auth is on (with
// etcd 3.7.3's text: it could not make the call as that user), and a
// client cannot pass itself off as another user with the metadata
// members forward identities in.
func TestAuthCertificateUsers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		ca := newTestCA(t, dir, "ca")
		srv := ca.issue(t, dir, "server", "cairn-server")
		rootCert, uCert, strangerCert := ca.issue(t, dir, "root", "root"), ca.issue(t, dir, "u", "u"), ca.issue(t, dir, "stranger", "stranger")
		m := startTLSMember(t, engine, "--cert-file", srv.cert, "--key-file", srv.key,
			"--trusted-ca-file", ca.file, "--client-cert-auth", testBcryptCost)
		root := tlsClient(t, m.clientEP, ca.config(t, &rootCert))
		c := ctx(t)
		for _, f := range []func() error{
			func() error { _, err := root.UserAdd(c, "root", "rootpw"); return err },
			func() error { _, err := root.RoleAdd(c, "root"); return err },
			func() error { _, err := root.UserGrantRole(c, "root", "root"); return err },
			func() error { _, err := root.UserAdd(c, "u", "upw"); return err },
			func() error { _, err := root.RoleAdd(c, "u"); return err },
			func() error {
				_, err := root.RoleGrantPermission(c, "u", "u/", "u0", clientv3.PermissionType(clientv3.PermReadWrite))
				return err
			},
			func() error { _, err := root.UserGrantRole(c, "u", "u"); return err },
			func() error { _, err := root.AuthEnable(c); return err },
		} {
			if err := f(); err != nil {
				t.Fatal(err)
			}
		}
		u := tlsClient(t, m.clientEP, ca.config(t, &uCert))
		stranger := tlsClient(t, m.clientEP, ca.config(t, &strangerCert))
		want := func(what string, err error, msg string) {
			t.Helper()
			if got := ""; err != nil {
				got = err.Error()
				if got != msg {
					t.Errorf("%s: %q, want %q", what, got, msg)
				}
			} else if msg != "" {
				t.Errorf("%s succeeded, want %q", what, msg)
			}
		}
		_, err := root.UserList(c)
		want("root lists users", err, "")
		_, err = root.Defragment(c, m.clientEP)
		want("root defragments", err, "")
		_, err = u.Put(c, "u/a", "v")
		want("u puts u/a", err, "")
		_, err = u.Put(c, "x", "v")
		want("u puts x", err, "etcdserver: permission denied")
		_, err = u.Defragment(c, m.clientEP)
		want("u defragments", err, "etcdserver: permission denied")
		_, err = stranger.Get(c, "u/a")
		want("stranger gets u/a", err, "etcdserver: permission denied")
		_, err = stranger.Defragment(c, m.clientEP)
		want("stranger defragments", err, "etcdserver: user name not found")

		raw := &authSide{watch: pb.NewWatchClient(u.ActiveConnection()), lease: pb.NewLeaseClient(u.ActiveConnection())}
		w, err := firstWatchResponse(c, raw, &pb.WatchCreateRequest{Key: []byte("x")})
		if err != nil || !w.Canceled || w.CancelReason != "rpc error: code = PermissionDenied desc = etcdserver: permission denied" {
			t.Errorf("u watches x: %v, %v", w, err)
		}
		lease, err := u.Grant(c, 60)
		want("u grants a lease", err, "")
		if err == nil {
			_, err = keepAliveOnce(c, raw, int64(lease.ID))
			want("u keeps its lease alive", err, "")
		}
		// The lock service acts as u, whose certificate it never sees.
		locks := v3lockpb.NewLockClient(u.ActiveConnection())
		l, err := locks.Lock(c, &v3lockpb.LockRequest{Name: []byte("u/lock"), Lease: int64(lease.ID)})
		want("u locks u/lock", err, "")
		if err == nil {
			_, err = locks.Unlock(c, &v3lockpb.UnlockRequest{Key: l.Key})
			want("u unlocks u/lock", err, "")
		}
		_, err = locks.Lock(c, &v3lockpb.LockRequest{Name: []byte("x"), Lease: int64(lease.ID)})
		want("u locks x", err, "rpc error: code = Unknown desc = etcdserver: permission denied")
		// Forwarding metadata from a client is not believed.
		spoof := metadata.AppendToOutgoingContext(c, "cairn-user", "root", "cairn-self", "guess")
		_, err = u.Defragment(spoof, m.clientEP)
		want("u defragments claiming to be root", err, "etcdserver: permission denied")

		// The gateway, with and without a certificate naming root.
		for _, cert := range []*leaf{&uCert, &rootCert} {
			status, body := gatewayPost(t, "https://"+m.clientEP+"/v3/kv/put", ca.config(t, cert), `{"key":"dS9i","value":"dg=="}`,
				map[string]string{"Accept": "application/json", "Grpc-Metadata-Cairn-User": "root"})
			if want := "CommonName of client sending a request against gateway will be ignored and not used as expected\n"; status != http.StatusBadRequest || body != want {
				t.Errorf("gateway put with the certificate of %s: %d %s", cert.cert, status, body)
			}
		}
	})
}

// gatewayPost POSTs body to url with cfg and headers and returns the
// status and the body of the answer.
func gatewayPost(t *testing.T, url string, cfg *tls.Config, body string, headers map[string]string) (int, string) {
	t.Helper()
	h := http.Header{}
	for k, v := range headers {
		h.Set(k, v)
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	resp, b := httpRequest(t, &http.Client{Transport: tr, Timeout: 10 * time.Second}, http.MethodPost, url, strings.NewReader(body), h)
	return resp.StatusCode, string(b)
}
