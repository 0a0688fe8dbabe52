package store

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// identify resolves the caller's identity: the token in ctx
// (auth.WithToken), waiting at most the request timeout for the token's
// Authenticate entry to be applied here, or else the user ctx names
// (auth.WithUser) at the current auth revision.
func (c *Client) identify(ctx context.Context) (auth.Identity, error) {
	token := auth.TokenFrom(ctx)
	if token == "" {
		return c.auth.Current().UserIdentity(auth.UserFrom(ctx)), nil
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.auth.Identify(ctx, token, c.applied.wait)
}

// CheckAdmin is etcd's admin check of maintenance and membership
// requests: while auth is enabled only a user with the root role passes.
// A bad token fails first, with auth.ErrInvalidAuthToken.
func (c *Client) CheckAdmin(ctx context.Context) error {
	id, err := c.identify(ctx)
	if err != nil {
		return err
	}
	return c.auth.Current().CheckAdmin(id)
}

// RequireIdentity fails with auth.ErrUserEmpty while auth is enabled if
// the caller is nobody, as etcd refuses Status, MemberList, alarm lists
// and lease requests without a user.
func (c *Client) RequireIdentity(ctx context.Context) error {
	id, err := c.identify(ctx)
	if err != nil {
		return err
	}
	return c.auth.Current().RequireIdentity(id)
}

// CheckWatch checks that the caller may watch [key, end) (end as in
// Range), as etcd checks a watch when it is created; later changes of
// permissions do not end it, as in etcd.
func (c *Client) CheckWatch(ctx context.Context, key, end []byte) error {
	id, err := c.identify(ctx)
	if err != nil {
		return err
	}
	return c.auth.Current().CheckRange(id, key, end)
}

// CheckLease is etcd's check of a keep-alive (write) or of a TimeToLive
// that lists the keys (read) of lease id, made on the member the client
// asked: the caller must be someone, and root or allowed on every key
// attached to the lease. If the auth state changed meanwhile it fails
// with auth.ErrAuthOldRevision.
func (c *Client) CheckLease(ctx context.Context, id int64, write bool) error {
	return c.checkLeases(ctx, []int64{id}, write)
}

// CheckLeases is etcd's check of LeaseLeases: the caller must be root or
// allowed to read every key attached to any lease.
func (c *Client) CheckLeases(ctx context.Context) error {
	if !c.auth.Current().Enabled() {
		return nil
	}
	ls := c.kv.Leases()
	ids := make([]int64, len(ls))
	for i, l := range ls {
		ids[i] = l.ID
	}
	return c.checkLeases(ctx, ids, false)
}

func (c *Client) checkLeases(ctx context.Context, leases []int64, write bool) error {
	st := c.auth.Current()
	if !st.Enabled() {
		return nil
	}
	id, err := c.identify(ctx)
	if err != nil {
		return err
	}
	if err := st.RequireIdentity(id); err != nil {
		return err
	}
	for _, l := range leases {
		if err := st.CheckLeaseKeys(id, c.leaseKeys(l), write); err != nil {
			return err
		}
	}
	if c.auth.Current().Revision() != st.Revision() {
		return auth.ErrAuthOldRevision
	}
	return nil
}

// leaseKeys lists the keys attached to a lease, for the permission check
// of a put that attaches one more.
func (c *Client) leaseKeys(id int64) [][]byte {
	_, keys, _ := c.kv.Lease(id, true)
	return keys
}

// Authenticate checks a user's password and proposes an Authenticate
// entry, whose application on every member records the new simple token
// (a JWT is signed once the entry applied, and only here).
// The password is checked here, on the caller's goroutine, against the
// state after a linearizable read; if the auth state changed before the
// entry applied, the check is done again with the new state, as in etcd.
func (c *Client) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	if err := c.linearizeFor(ctx); err != nil {
		return nil, err
	}
	for {
		rev, err := c.auth.CheckPassword(r.Name, r.Password)
		if err != nil {
			return nil, err
		}
		prefix, err := c.auth.NewTokenPrefix()
		if err != nil {
			return nil, err
		}
		// The entry carries no password: the log must not hold it.
		res, err := c.propose(ctx, &pb.InternalRaftRequest{Authenticate: &pb.InternalAuthenticateRequest{Name: r.Name, SimpleToken: prefix}})
		if err != nil {
			return nil, err
		}
		if rev == c.auth.Current().Revision() {
			resp := res.(*pb.AuthenticateResponse)
			// A JWT is signed here, off the store actor, at the revision
			// the password was checked at: the one the entry applied at.
			if resp.Token, err = c.auth.IssueToken(resp.Token, r.Name, rev); err != nil {
				return nil, err
			}
			resp.Header = c.header(c.kv.Rev())
			return resp, nil
		}
	}
}

// UserAdd adds a user through raft; its password is hashed here, off the
// store actor, and only the hash is proposed.
func (c *Client) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	req := proto.Clone(r).(*pb.AuthUserAddRequest)
	if req.Options == nil || !req.Options.NoPassword {
		h, err := c.auth.HashPassword(req.Password)
		if err != nil {
			return nil, err
		}
		req.HashedPassword, req.Password = h, ""
	}
	res, err := c.AuthRequest(ctx, &pb.InternalRaftRequest{AuthUserAdd: req})
	if err != nil {
		return nil, err
	}
	return res.(*pb.AuthUserAddResponse), nil
}

// UserChangePassword changes a user's password through raft; the new one
// is hashed here, off the store actor.
func (c *Client) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	req := proto.Clone(r).(*pb.AuthUserChangePasswordRequest)
	if req.Password != "" {
		h, err := c.auth.HashPassword(req.Password)
		if err != nil {
			return nil, err
		}
		req.HashedPassword, req.Password = h, ""
	}
	res, err := c.AuthRequest(ctx, &pb.InternalRaftRequest{AuthUserChangePassword: req})
	if err != nil {
		return nil, err
	}
	return res.(*pb.AuthUserChangePasswordResponse), nil
}

// AuthRequest applies one auth request (any but Authenticate, UserAdd and
// UserChangePassword, which have methods of their own) through raft, as
// etcd does even for the reading ones, and returns its response with a
// header. Errors are package auth's sentinels.
func (c *Client) AuthRequest(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error) {
	res, err := c.propose(ctx, r)
	if err != nil {
		return nil, err
	}
	resp := res.(proto.Message)
	m := resp.ProtoReflect()
	if f := m.Descriptor().Fields().ByName("header"); f != nil {
		m.Set(f, protoreflect.ValueOfMessage(c.header(c.kv.Rev()).ProtoReflect()))
	}
	return resp, nil
}

// authorize checks a KV write or a lease revoke against the auth state
// the entries before it left, with the identity it was proposed with.
func (a *storeActor) authorize(r *pb.InternalRaftRequest) error {
	st := a.auth.State()
	if !st.Enabled() {
		return nil
	}
	id := auth.IdentityOf(r.Header)
	switch {
	case r.Put != nil:
		return st.CheckPut(id, r.Put, a.c.leaseKeys)
	case r.DeleteRange != nil:
		return st.CheckDeleteRange(id, r.DeleteRange)
	case r.Txn != nil:
		return st.CheckTxn(id, r.Txn, a.c.leaseKeys)
	case r.LeaseRevoke != nil:
		// Whoever may write every key of a lease may revoke it.
		return st.CheckLeaseKeys(id, a.c.leaseKeys(r.LeaseRevoke.ID), true)
	}
	return nil
}

// stageAuth applies an auth entry.
func (a *storeActor) stageAuth(ap *mvcc.Applier, index uint64, r *pb.InternalRaftRequest) result {
	resp, err := a.auth.Apply(ap, index, r)
	return result{resp: resp, err: err}
}

// Identify resolves the token in ctx (auth.WithToken) as the store's own
// checks do, for front ends that check a request before sending it (the
// REST API answers a bad token 401 whatever the route).
func (c *Client) Identify(ctx context.Context) (auth.Identity, error) { return c.identify(ctx) }

// AuthState returns the published auth state.
func (c *Client) AuthState() *auth.State { return c.auth.Current() }

// PasswordToken checks a user's password and returns a member-local token
// standing for it a short while (auth.Store.PasswordToken), for clients
// that send their password with every request.
func (c *Client) PasswordToken(ctx context.Context, user, password string) (string, error) {
	return c.auth.PasswordToken(ctx, user, password)
}
