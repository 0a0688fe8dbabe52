package auth

import "context"

// Requests without a token may still come from a user: one named by the
// verified client certificate (--client-cert-auth), one a member forwards
// on a caller's behalf, or the member itself. Their identity is taken at
// the auth revision of the moment it is resolved, as etcd takes a
// certificate's.

// userCtxKey keys the user a request is made as, without a token.
type userCtxKey struct{}

// WithUser returns ctx carrying the user a request is made as when it has
// no token: front ends set it from a verified certificate's common name
// or a trusted forwarder; the lessor sets RootUser for the revokes of
// expired leases, as etcd's lessor revokes as root. A token (WithToken)
// takes precedence over it.
func WithUser(ctx context.Context, user string) context.Context {
	return context.WithValue(ctx, userCtxKey{}, user)
}

// UserFrom returns the user set by WithUser, or "".
func UserFrom(ctx context.Context) string {
	u, _ := ctx.Value(userCtxKey{}).(string)
	return u
}

// UserIdentity is the identity of a request made as user without a
// token: the user at the current revision, or nobody while auth is
// disabled.
func (st *State) UserIdentity(user string) Identity {
	if !st.enabled || user == "" {
		return Identity{}
	}
	return Identity{User: user, Revision: st.revision}
}

// RequireIdentity is etcd's check of the requests any user may make but
// nobody may (lease grant, revoke and TimeToLive, Status, MemberList, an
// alarm list): while auth is enabled a request must come from a user.
func (st *State) RequireIdentity(id Identity) error {
	if st.enabled && id.User == "" {
		return ErrUserEmpty
	}
	return nil
}

// CheckLeaseKeys checks a request on a lease against the keys attached to
// it: root may do anything; anyone else needs write permission on every
// key (to revoke the lease or keep it alive) or read permission (to list
// them). A lease without keys allows anyone, as in etcd; callers that
// need an identity as well check RequireIdentity first.
func (st *State) CheckLeaseKeys(id Identity, keys [][]byte, write bool) error {
	if !st.enabled || st.CheckAdmin(id) == nil {
		return nil
	}
	for _, k := range keys {
		if err := st.checkOp(id, k, nil, write); err != nil {
			return err
		}
	}
	return nil
}
