package store

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// identify resolves the token in ctx (auth.WithToken) into the caller's
// identity, waiting at most the request timeout for the token's
// Authenticate entry to be applied here.
func (c *Client) identify(ctx context.Context) (auth.Identity, error) {
	token := auth.TokenFrom(ctx)
	if token == "" {
		return auth.Identity{}, nil
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	return c.auth.Identify(ctx, token, c.applied.wait)
}

// leaseKeys lists the keys attached to a lease, for the permission check
// of a put that attaches one more.
func (c *Client) leaseKeys(id int64) [][]byte {
	_, keys, _ := c.kv.Lease(id, true)
	return keys
}

// Authenticate checks a user's password and proposes an Authenticate
// entry, whose application on every member records the new simple token.
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
		prefix, err := auth.NewTokenPrefix()
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

// authorize checks a KV write against the auth state the entries before
// it left, with the identity it was proposed with.
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
	}
	return nil
}

// stageAuth applies an auth entry.
func (a *storeActor) stageAuth(ap *mvcc.Applier, index uint64, r *pb.InternalRaftRequest) result {
	resp, err := a.auth.Apply(ap, index, r)
	return result{resp: resp, err: err}
}
