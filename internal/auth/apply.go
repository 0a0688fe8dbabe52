package auth

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Writer is the engine batch an Applier stages its records into, with the
// entries around them; *mvcc.Applier implements it. An Applier writes in
// the Auth bucket only. Each call records the entry at index as applied.
type Writer interface {
	SetRecord(b storage.Bucket, index uint64, key, value []byte)
	DeleteRecord(b storage.Bucket, index uint64, key []byte)
	SetApplied(index uint64)
}

// Applier applies committed auth entries. The store actor owns the only
// one, and calls it for every entry of a batch in log order: each entry
// sees the entries staged before it (State), readers see none of them
// until Publish, which the actor calls after the engine commit.
type Applier struct {
	s *Store
	// cur is the state after the staged entries; nil if none changed it.
	cur *State
	// tokenOps are the staged entries' effects on tokens, in order.
	tokenOps []func()
}

// NewApplier returns the Applier of s. There must be only one.
func (s *Store) NewApplier() *Applier { return &Applier{s: s} }

// State returns the state after the staged entries: the one a KV entry
// staged next is checked against.
func (a *Applier) State() *State {
	if a.cur != nil {
		return a.cur
	}
	return a.s.Current()
}

// Publish makes the staged entries visible to readers and applies their
// token changes. Call it only once their engine batch is committed.
func (a *Applier) Publish() {
	if a.cur != nil {
		a.s.state.Store(a.cur)
		a.cur = nil
	}
	for i, op := range a.tokenOps {
		op()
		a.tokenOps[i] = nil
	}
	a.tokenOps = a.tokenOps[:0]
}

// IsRequest reports whether r is an auth request, one for Apply.
func IsRequest(r *pb.InternalRaftRequest) bool {
	return r.Authenticate != nil || r.AuthEnable != nil || r.AuthDisable != nil || r.AuthStatus != nil ||
		r.AuthUserAdd != nil || r.AuthUserDelete != nil || r.AuthUserChangePassword != nil ||
		r.AuthUserGrantRole != nil || r.AuthUserGet != nil || r.AuthUserRevokeRole != nil ||
		r.AuthUserList != nil || r.AuthRoleAdd != nil || r.AuthRoleDelete != nil ||
		r.AuthRoleGrantPermission != nil || r.AuthRoleRevokePermission != nil ||
		r.AuthRoleGet != nil || r.AuthRoleList != nil
}

// needsAdmin lists the requests only root may make once auth is enabled.
func needsAdmin(r *pb.InternalRaftRequest) bool {
	return r.AuthEnable != nil || r.AuthDisable != nil || r.AuthUserAdd != nil ||
		r.AuthUserDelete != nil || r.AuthUserChangePassword != nil || r.AuthUserGrantRole != nil ||
		r.AuthUserRevokeRole != nil || r.AuthRoleAdd != nil || r.AuthRoleGrantPermission != nil ||
		r.AuthRoleRevokePermission != nil || r.AuthRoleDelete != nil || r.AuthUserList != nil ||
		r.AuthRoleList != nil
}

// IdentityOf is the identity a raft entry was proposed with.
func IdentityOf(h *pb.RequestHeader) Identity {
	return Identity{User: h.GetUsername(), Revision: h.GetAuthRevision()}
}

// Apply stages the auth request of the entry at index (IsRequest(r)) into
// w, and returns its response, without a header. A request that fails
// stages nothing but its index. Management requests need root once auth
// is enabled; UserGet and RoleGet are also allowed for oneself and for
// one's own roles.
func (a *Applier) Apply(w Writer, index uint64, r *pb.InternalRaftRequest) (proto.Message, error) {
	resp, err := a.apply(w, index, r)
	if err != nil {
		w.SetApplied(index)
		return nil, err
	}
	return resp, nil
}

func (a *Applier) apply(w Writer, index uint64, r *pb.InternalRaftRequest) (proto.Message, error) {
	st := a.State()
	id := IdentityOf(r.Header)
	if needsAdmin(r) {
		if err := st.CheckAdmin(id); err != nil {
			return nil, err
		}
	}
	switch {
	case r.Authenticate != nil:
		return a.authenticate(w, index, st, r.Authenticate)
	case r.AuthEnable != nil:
		return a.enable(w, index, st)
	case r.AuthDisable != nil:
		return a.disable(w, index, st)
	case r.AuthStatus != nil:
		w.SetApplied(index)
		return &pb.AuthStatusResponse{Enabled: st.enabled, AuthRevision: st.revision}, nil
	case r.AuthUserAdd != nil:
		return a.userAdd(w, index, st, r.AuthUserAdd)
	case r.AuthUserDelete != nil:
		return a.userDelete(w, index, st, r.AuthUserDelete.Name)
	case r.AuthUserChangePassword != nil:
		return a.userChangePassword(w, index, st, r.AuthUserChangePassword)
	case r.AuthUserGrantRole != nil:
		return a.userGrantRole(w, index, st, r.AuthUserGrantRole)
	case r.AuthUserRevokeRole != nil:
		return a.userRevokeRole(w, index, st, r.AuthUserRevokeRole)
	case r.AuthUserGet != nil:
		if err := st.CheckAdmin(id); err != nil && r.AuthUserGet.Name != id.User {
			return nil, err
		}
		roles, ok := st.UserRoles(r.AuthUserGet.Name)
		if !ok {
			return nil, ErrUserNotFound
		}
		w.SetApplied(index)
		return &pb.AuthUserGetResponse{Roles: roles}, nil
	case r.AuthUserList != nil:
		w.SetApplied(index)
		return &pb.AuthUserListResponse{Users: st.UserNames()}, nil
	case r.AuthRoleAdd != nil:
		return a.roleAdd(w, index, st, r.AuthRoleAdd.Name)
	case r.AuthRoleDelete != nil:
		return a.roleDelete(w, index, st, r.AuthRoleDelete.Role)
	case r.AuthRoleGrantPermission != nil:
		return a.roleGrantPermission(w, index, st, r.AuthRoleGrantPermission)
	case r.AuthRoleRevokePermission != nil:
		return a.roleRevokePermission(w, index, st, r.AuthRoleRevokePermission)
	case r.AuthRoleGet != nil:
		if err := st.CheckAdmin(id); err != nil && !st.hasRole(id.User, r.AuthRoleGet.Role) {
			return nil, err
		}
		perms, ok := st.RolePermissions(r.AuthRoleGet.Role)
		if !ok {
			return nil, ErrRoleNotFound
		}
		w.SetApplied(index)
		return &pb.AuthRoleGetResponse{Perm: perms}, nil
	default: // r.AuthRoleList != nil
		w.SetApplied(index)
		return &pb.AuthRoleListResponse{Roles: st.RoleNames()}, nil
	}
}

func (a *Applier) authenticate(w Writer, index uint64, st *State, r *pb.InternalAuthenticateRequest) (proto.Message, error) {
	if !st.enabled {
		return nil, ErrAuthNotEnabled
	}
	u := st.users[r.Name]
	if u == nil || u.Options != nil && u.Options.NoPassword {
		return nil, ErrAuthFailed
	}
	token, publish := a.s.tokens.assign(index, r.SimpleToken, r.Name)
	if publish != nil {
		a.tokenOps = append(a.tokenOps, publish)
	}
	w.SetApplied(index)
	return &pb.AuthenticateResponse{Token: token}, nil
}

func (a *Applier) enable(w Writer, index uint64, st *State) (proto.Message, error) {
	if !st.enabled {
		root := st.users[RootUser]
		if root == nil {
			return nil, ErrRootUserNotExist
		}
		if !hasRootRole(root) {
			return nil, ErrRootRoleNotExist
		}
		next := st.clone()
		next.enabled = true
		w.SetRecord(storage.Auth, index, enabledKey, []byte{1})
		a.commit(next)
	}
	w.SetApplied(index)
	return &pb.AuthEnableResponse{}, nil
}

func (a *Applier) disable(w Writer, index uint64, st *State) (proto.Message, error) {
	if st.enabled {
		next := st.clone()
		next.enabled = false
		w.SetRecord(storage.Auth, index, enabledKey, []byte{0})
		a.bump(w, index, next)
		a.tokenOps = append(a.tokenOps, a.s.tokens.clear)
	}
	w.SetApplied(index)
	return &pb.AuthDisableResponse{}, nil
}

func (a *Applier) userAdd(w Writer, index uint64, st *State, r *pb.AuthUserAddRequest) (proto.Message, error) {
	if r.Name == "" {
		return nil, ErrUserEmpty
	}
	if st.users[r.Name] != nil {
		return nil, ErrUserAlreadyExist
	}
	opts := r.Options
	if opts == nil {
		opts = &authpb.UserAddOptions{}
	}
	u := &authpb.User{Name: []byte(r.Name), Options: proto.Clone(opts).(*authpb.UserAddOptions)}
	if !opts.NoPassword {
		h, err := decodeHash(r.HashedPassword)
		if err != nil {
			return nil, err
		}
		u.Password = h
	}
	a.updateUser(w, index, st, u)
	return &pb.AuthUserAddResponse{}, nil
}

func (a *Applier) userDelete(w Writer, index uint64, st *State, name string) (proto.Message, error) {
	if st.enabled && name == RootUser {
		return nil, ErrInvalidAuthMgmt
	}
	if st.users[name] == nil {
		return nil, ErrUserNotFound
	}
	next := st.clone()
	delete(next.users, name)
	w.DeleteRecord(storage.Auth, index, userKey(name))
	a.bump(w, index, next)
	a.invalidate(name)
	return &pb.AuthUserDeleteResponse{}, nil
}

func (a *Applier) userChangePassword(w Writer, index uint64, st *State, r *pb.AuthUserChangePasswordRequest) (proto.Message, error) {
	old := st.users[r.Name]
	if old == nil {
		return nil, ErrUserNotFound
	}
	u := &authpb.User{Name: old.Name, Roles: old.Roles, Options: old.Options}
	if old.Options == nil || !old.Options.NoPassword {
		h, err := decodeHash(r.HashedPassword)
		if err != nil {
			return nil, err
		}
		u.Password = h
	}
	a.updateUser(w, index, st, u)
	a.invalidate(r.Name)
	return &pb.AuthUserChangePasswordResponse{}, nil
}

func (a *Applier) userGrantRole(w Writer, index uint64, st *State, r *pb.AuthUserGrantRoleRequest) (proto.Message, error) {
	old := st.users[r.User]
	if old == nil {
		return nil, ErrUserNotFound
	}
	// The root role may be granted before it exists, as in etcd.
	if r.Role != RootRole && st.roles[r.Role] == nil {
		return nil, ErrRoleNotFound
	}
	i := sort.SearchStrings(old.Roles, r.Role)
	if i < len(old.Roles) && old.Roles[i] == r.Role {
		w.SetApplied(index)
		return &pb.AuthUserGrantRoleResponse{}, nil
	}
	u := &authpb.User{Name: old.Name, Password: old.Password, Options: old.Options, Roles: slices.Insert(slices.Clone(old.Roles), i, r.Role)}
	a.updateUser(w, index, st, u)
	return &pb.AuthUserGrantRoleResponse{}, nil
}

func (a *Applier) userRevokeRole(w Writer, index uint64, st *State, r *pb.AuthUserRevokeRoleRequest) (proto.Message, error) {
	if st.enabled && r.Name == RootUser && r.Role == RootRole {
		return nil, ErrInvalidAuthMgmt
	}
	old := st.users[r.Name]
	if old == nil {
		return nil, ErrUserNotFound
	}
	if !slices.Contains(old.Roles, r.Role) {
		return nil, ErrRoleNotGranted
	}
	a.updateUser(w, index, st, withoutRole(old, r.Role))
	return &pb.AuthUserRevokeRoleResponse{}, nil
}

func (a *Applier) roleAdd(w Writer, index uint64, st *State, name string) (proto.Message, error) {
	if name == "" {
		return nil, ErrRoleEmpty
	}
	if st.roles[name] != nil {
		return nil, ErrRoleAlreadyExist
	}
	a.updateRole(w, index, st, &authpb.Role{Name: []byte(name)})
	return &pb.AuthRoleAddResponse{}, nil
}

func (a *Applier) roleDelete(w Writer, index uint64, st *State, name string) (proto.Message, error) {
	if st.enabled && name == RootRole {
		return nil, ErrInvalidAuthMgmt
	}
	if st.roles[name] == nil {
		return nil, ErrRoleNotFound
	}
	next := st.clone()
	delete(next.roles, name)
	w.DeleteRecord(storage.Auth, index, roleKey(name))
	for _, un := range st.UserNames() {
		if u := st.users[un]; slices.Contains(u.Roles, name) {
			a.putUser(w, index, next, withoutRole(u, name))
		}
	}
	a.bump(w, index, next)
	return &pb.AuthRoleDeleteResponse{}, nil
}

func (a *Applier) roleGrantPermission(w Writer, index uint64, st *State, r *pb.AuthRoleGrantPermissionRequest) (proto.Message, error) {
	if r.Perm == nil {
		return nil, ErrPermissionNotGiven
	}
	if !validPermission(r.Perm.Key, r.Perm.RangeEnd) {
		return nil, ErrInvalidAuthMgmt
	}
	old := st.roles[r.Name]
	if old == nil {
		return nil, ErrRoleNotFound
	}
	role := proto.Clone(old).(*authpb.Role)
	perms := role.KeyPermission
	// Like etcd, only the first permission at the key is compared: one
	// with the same key and range end is updated, otherwise one is added.
	i := sort.Search(len(perms), func(i int) bool { return bytes.Compare(perms[i].Key, r.Perm.Key) >= 0 })
	if i < len(perms) && bytes.Equal(perms[i].Key, r.Perm.Key) && bytes.Equal(perms[i].RangeEnd, r.Perm.RangeEnd) {
		perms[i].PermType = r.Perm.PermType
	} else {
		role.KeyPermission = append(perms, &authpb.Permission{Key: r.Perm.Key, RangeEnd: r.Perm.RangeEnd, PermType: r.Perm.PermType})
		sort.Sort(permsByKey(role.KeyPermission))
	}
	a.updateRole(w, index, st, role)
	return &pb.AuthRoleGrantPermissionResponse{}, nil
}

func (a *Applier) roleRevokePermission(w Writer, index uint64, st *State, r *pb.AuthRoleRevokePermissionRequest) (proto.Message, error) {
	old := st.roles[r.Role]
	if old == nil {
		return nil, ErrRoleNotFound
	}
	role := &authpb.Role{Name: old.Name}
	for _, p := range old.KeyPermission {
		if !bytes.Equal(p.Key, r.Key) || !bytes.Equal(p.RangeEnd, r.RangeEnd) {
			role.KeyPermission = append(role.KeyPermission, p)
		}
	}
	if len(role.KeyPermission) == len(old.KeyPermission) {
		return nil, ErrPermissionNotGranted
	}
	a.updateRole(w, index, st, role)
	return &pb.AuthRoleRevokePermissionResponse{}, nil
}

// permsByKey sorts permissions by key as etcd does (sort.Sort, so that
// permissions with equal keys end in etcd's order too).
type permsByKey []*authpb.Permission

func (p permsByKey) Len() int           { return len(p) }
func (p permsByKey) Less(i, j int) bool { return bytes.Compare(p[i].Key, p[j].Key) < 0 }
func (p permsByKey) Swap(i, j int)      { p[i], p[j] = p[j], p[i] }

func withoutRole(u *authpb.User, role string) *authpb.User {
	out := &authpb.User{Name: u.Name, Password: u.Password, Options: u.Options}
	for _, r := range u.Roles {
		if r != role {
			out.Roles = append(out.Roles, r)
		}
	}
	return out
}

// decodeHash decodes the base64 bcrypt hash of a request. The API layer
// always hashes; etcd's older members could send the password itself,
// which would need bcrypt here, on the store actor, and is not supported.
func decodeHash(h string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(h)
	if err != nil {
		return nil, ErrNoPasswordUser
	}
	return b, nil
}

// putUser stages u, new or changed, into next, a copy of the state.
func (a *Applier) putUser(w Writer, index uint64, next *State, u *authpb.User) {
	next.users[string(u.Name)] = u
	w.SetRecord(storage.Auth, index, userKey(string(u.Name)), mustMarshal(u))
}

// updateUser stages an entry whose one change is u, a new or changed
// user: a copy of st holding u, at the next revision.
func (a *Applier) updateUser(w Writer, index uint64, st *State, u *authpb.User) {
	next := st.clone()
	a.putUser(w, index, next, u)
	a.bump(w, index, next)
}

// updateRole is updateUser for a role.
func (a *Applier) updateRole(w Writer, index uint64, st *State, r *authpb.Role) {
	next := st.clone()
	next.roles[string(r.Name)] = r
	w.SetRecord(storage.Auth, index, roleKey(string(r.Name)), mustMarshal(r))
	a.bump(w, index, next)
}

// bump raises next's revision, stages it, and makes next the staged state.
func (a *Applier) bump(w Writer, index uint64, next *State) {
	next.revision++
	w.SetRecord(storage.Auth, index, revisionKey, binary.BigEndian.AppendUint64(nil, next.revision))
	a.commit(next)
}

// commit makes next, complete, the staged state.
func (a *Applier) commit(next *State) {
	next.refreshPerms()
	a.cur = next
}

func (a *Applier) invalidate(user string) {
	a.tokenOps = append(a.tokenOps, func() { a.s.tokens.invalidateUser(user) })
}

// mustMarshal encodes a user or role; encoding a valid message cannot
// fail.
func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic("auth: encode " + string(m.ProtoReflect().Descriptor().FullName()) + ": " + err.Error())
	}
	return b
}
