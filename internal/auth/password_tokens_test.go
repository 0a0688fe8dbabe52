package auth

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestPasswordTokens follows a password token through its life: reused
// while the same credentials come back within the TTL, gone with a
// password change, an expiry or a deleted user.
func TestPasswordTokens(t *testing.T) {
	h := newHarness(t)
	if _, err := h.s.PasswordToken(context.Background(), "root", "rootpw"); !errors.Is(err, ErrAuthNotEnabled) {
		t.Errorf("password token while auth is disabled: %v", err)
	}
	setupRoot(h)
	h.must("root", userAdd(h, "u", "pw"))
	h.must("root", &pb.InternalRaftRequest{AuthUserAdd: &pb.AuthUserAddRequest{Name: "nopw", Options: &authpb.UserAddOptions{NoPassword: true}}})
	now := time.Unix(1000, 0)
	h.s.passwords.now = func() time.Time { return now }
	ctx := context.Background()
	for _, bad := range []struct {
		user, password string
		want           error
	}{{"u", "wrong", ErrAuthFailed}, {"ghost", "pw", ErrAuthFailed}, {"nopw", "", ErrNoPasswordUser}} {
		if _, err := h.s.PasswordToken(ctx, bad.user, bad.password); !errors.Is(err, bad.want) {
			t.Errorf("PasswordToken(%q, %q) = %v, want %v", bad.user, bad.password, err, bad.want)
		}
	}
	tok, err := h.s.PasswordToken(ctx, "u", "pw")
	if err != nil {
		t.Fatal(err)
	}
	want := Identity{User: "u", Revision: h.s.Current().Revision()}
	if id, err := h.s.Identify(ctx, tok, noWait); err != nil || id != want {
		t.Errorf("Identify = %+v, %v; want %+v", id, err, want)
	}
	if again, err := h.s.PasswordToken(ctx, "u", "pw"); err != nil || again != tok {
		t.Errorf("same credentials within the TTL: %q, %v; want the token %q again", again, err, tok)
	}
	if other, err := h.s.PasswordToken(ctx, "root", "rootpw"); err != nil || other == tok {
		t.Errorf("other credentials: %q, %v", other, err)
	}
	// A change elsewhere in the state keeps the token, at the new revision.
	h.must("root", &pb.InternalRaftRequest{AuthRoleAdd: &pb.AuthRoleAddRequest{Name: "r"}})
	if id, err := h.s.Identify(ctx, tok, noWait); err != nil || id.Revision != h.s.Current().Revision() {
		t.Errorf("after a role change: %+v, %v", id, err)
	}
	// Past the TTL the token is gone and the password is checked again.
	now = now.Add(PasswordTokenTTL)
	if _, err := h.s.Identify(ctx, tok, noWait); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("expired password token: %v", err)
	}
	if tok, err = h.s.PasswordToken(ctx, "u", "pw"); err != nil {
		t.Fatal(err)
	}
	// A password change ends it at once.
	h.must("root", &pb.InternalRaftRequest{AuthUserChangePassword: &pb.AuthUserChangePasswordRequest{Name: "u", HashedPassword: h.hash("new")}})
	if _, err := h.s.Identify(ctx, tok, noWait); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token after a password change: %v", err)
	}
	if _, err := h.s.PasswordToken(ctx, "u", "pw"); !errors.Is(err, ErrAuthFailed) {
		t.Errorf("old password after a change: %v", err)
	}
	if tok, err = h.s.PasswordToken(ctx, "u", "new"); err != nil {
		t.Fatal(err)
	}
	h.must("root", &pb.InternalRaftRequest{AuthUserDelete: &pb.AuthUserDeleteRequest{Name: "u"}})
	if _, err := h.s.Identify(ctx, tok, noWait); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("token of a deleted user: %v", err)
	}
	if _, err := h.s.Identify(ctx, passwordTokenPrefix+"00", noWait); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("unknown password token: %v", err)
	}
}

// TestPasswordTokensConcurrent checks the table under -race, and that a
// caller waiting for a bcrypt slot gives up with its context.
func TestPasswordTokensConcurrent(t *testing.T) {
	h := newHarness(t)
	setupRoot(h)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				tok, err := h.s.PasswordToken(context.Background(), "root", "rootpw")
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := h.s.Identify(context.Background(), tok, noWait); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for range cap(h.s.passwords.checks) {
		h.s.passwords.checks <- struct{}{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := h.s.PasswordToken(ctx, "root", "not the password"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with every bcrypt slot taken: %v", err)
	}
}
