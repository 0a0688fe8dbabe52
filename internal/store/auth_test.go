package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/auth"
)

// TestAuthEnforcedThroughRaft enables auth through the store's client and
// checks that writes are checked when applied, reads where they arrive,
// and that the state survives a restart. (Tokens survive only if the
// restart replays their Authenticate entries, as in etcd.)
func TestAuthEnforcedThroughRaft(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		dir := t.TempDir()
		m := start(t, open, dir, 0)
		c := m.c
		bg := context.Background()
		mustAuth := func(r *pb.InternalRaftRequest) {
			t.Helper()
			if _, err := c.AuthRequest(bg, r); err != nil {
				t.Fatalf("%v: %v", r, err)
			}
		}
		for _, name := range []string{"root", "u"} {
			if _, err := c.UserAdd(bg, &pb.AuthUserAddRequest{Name: name, Password: name + "pw"}); err != nil {
				t.Fatal(err)
			}
		}
		mustAuth(&pb.InternalRaftRequest{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}})
		mustAuth(&pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}})
		mustAuth(&pb.InternalRaftRequest{AuthRoleGrantPermission: &pb.AuthRoleGrantPermissionRequest{
			Name: "r", Perm: &authpb.Permission{PermType: authpb.Permission_READ, Key: []byte("k")},
		}})
		mustAuth(&pb.InternalRaftRequest{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "u", Role: "r"}})
		if _, err := c.Authenticate(bg, &pb.AuthenticateRequest{Name: "root", Password: "rootpw"}); !errors.Is(err, auth.ErrAuthNotEnabled) {
			t.Fatalf("authenticate while disabled: %v", err)
		}
		mustAuth(&pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}})

		login := func(c interface {
			Authenticate(context.Context, *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error)
		}, name string) context.Context {
			t.Helper()
			resp, err := c.Authenticate(bg, &pb.AuthenticateRequest{Name: name, Password: name + "pw"})
			if err != nil {
				t.Fatal(err)
			}
			return auth.WithToken(bg, resp.Token)
		}
		if _, err := c.Authenticate(bg, &pb.AuthenticateRequest{Name: "u", Password: "wrong"}); !errors.Is(err, auth.ErrAuthFailed) {
			t.Errorf("wrong password: %v", err)
		}
		if _, err := c.Put(bg, &pb.PutRequest{Key: []byte("k")}); !errors.Is(err, auth.ErrUserEmpty) {
			t.Errorf("anonymous put: %v", err)
		}
		if _, err := c.Range(bg, &pb.RangeRequest{Key: []byte("k")}); !errors.Is(err, auth.ErrUserEmpty) {
			t.Errorf("anonymous range: %v", err)
		}
		root, u := login(c, "root"), login(c, "u")
		if _, err := c.Put(root, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
			t.Fatalf("root put: %v", err)
		}
		if resp, err := c.Range(u, &pb.RangeRequest{Key: []byte("k")}); err != nil || len(resp.Kvs) != 1 {
			t.Errorf("u reads k: %v, %v", resp, err)
		}
		if _, err := c.Range(u, &pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}); !errors.Is(err, auth.ErrPermissionDenied) {
			t.Errorf("u reads a range: %v", err)
		}
		if _, err := c.Put(u, &pb.PutRequest{Key: []byte("k")}); !errors.Is(err, auth.ErrPermissionDenied) {
			t.Errorf("u writes k: %v", err)
		}
		if _, err := c.Compact(u, &pb.CompactionRequest{Revision: 1}); !errors.Is(err, auth.ErrPermissionDenied) {
			t.Errorf("u compacts: %v", err)
		}
		if _, err := c.Put(auth.WithToken(bg, "bogus.1"), &pb.PutRequest{Key: []byte("k")}); !errors.Is(err, auth.ErrInvalidAuthToken) {
			t.Errorf("bogus token: %v", err)
		}

		m.stop()
		m = start(t, open, dir, 0)
		defer m.stop()
		if _, err := m.c.Put(login(m.c, "u"), &pb.PutRequest{Key: []byte("k")}); !errors.Is(err, auth.ErrPermissionDenied) {
			t.Errorf("u writes k after the restart: %v", err)
		}
	})
}

// TestRestoreCarriesAuth: a member that restores another's snapshot
// enforces the auth state of the snapshot at once.
func TestRestoreCarriesAuth(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		bg := context.Background()
		src := start(t, open, t.TempDir(), 0)
		if _, err := src.c.UserAdd(bg, &pb.AuthUserAddRequest{Name: "root", Password: "pw"}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*pb.InternalRaftRequest{
			{AuthUserGrantRole: &pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}},
			{AuthEnable: &pb.AuthEnableRequest{}},
		} {
			if _, err := src.c.AuthRequest(bg, r); err != nil {
				t.Fatal(err)
			}
		}
		var snap bytes.Buffer
		if err := src.engine.WriteSnapshot(&snap); err != nil {
			t.Fatal(err)
		}
		srcApplied := src.kv.AppliedIndex()
		src.stop()

		dst := startAs(t, 2, open, t.TempDir(), 0, nil)
		defer dst.stop()
		// Its own log runs past the snapshot, as a follower's does.
		for dst.kv.AppliedIndex() <= srcApplied+2 {
			put(t, dst.c, "k", "before the restore")
		}
		if err := dst.c.Restore(bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatal(err)
		}
		if _, err := dst.c.Put(bg, &pb.PutRequest{Key: []byte("k")}); !errors.Is(err, auth.ErrUserEmpty) {
			t.Errorf("anonymous put after restoring an auth-enabled snapshot: %v", err)
		}
		resp, err := dst.c.Authenticate(bg, &pb.AuthenticateRequest{Name: "root", Password: "pw"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dst.c.Put(auth.WithToken(bg, resp.Token), &pb.PutRequest{Key: []byte("k")}); err != nil {
			t.Errorf("root put after the restore: %v", err)
		}
	})
}
