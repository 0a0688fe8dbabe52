package auth

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// The root user and role: a user with the root role may do anything, and
// auth can be enabled only once the root user has it.
const (
	RootUser = "root"
	RootRole = "root"
)

// Keys of the auth records in the storage.Auth bucket.
var (
	enabledKey  = []byte("enabled")
	revisionKey = []byte("revision")
)

const (
	userPrefix = "user/"
	rolePrefix = "role/"
)

func userKey(name string) []byte { return []byte(userPrefix + name) }
func roleKey(name string) []byte { return []byte(rolePrefix + name) }

// Identity is who sent a request: a user and the auth revision at which
// the user's token was resolved. The zero Identity is nobody, what a
// request without a token carries.
type Identity struct {
	User     string
	Revision uint64
}

// State is one version of the replicated auth state. A State is never
// changed once made: applying an entry makes a new one, so readers share
// the published State without locks.
type State struct {
	enabled  bool
	revision uint64
	users    map[string]*authpb.User
	roles    map[string]*authpb.Role
	// perms are the merged permissions of each user's roles.
	perms map[string]*userPerms
}

// Enabled reports whether auth is enabled.
func (st *State) Enabled() bool { return st.enabled }

// Revision is the auth revision: it grows with every change of users,
// roles or permissions and with AuthDisable, and starts at 1, as etcd's.
func (st *State) Revision() uint64 { return st.revision }

// load reads the auth state from the engine's Auth bucket.
func load(e storage.Reader) (*State, error) {
	st := &State{revision: 1, users: map[string]*authpb.User{}, roles: map[string]*authpb.Role{}}
	v, err := e.Get(storage.Auth, enabledKey)
	if err != nil {
		return nil, fmt.Errorf("auth: read enabled: %w", err)
	}
	st.enabled = len(v) == 1 && v[0] == 1
	v, err = e.Get(storage.Auth, revisionKey)
	if err != nil {
		return nil, fmt.Errorf("auth: read revision: %w", err)
	}
	if len(v) == 8 {
		st.revision = binary.BigEndian.Uint64(v)
	}
	var decodeErr error
	err = e.Iterate(storage.Auth, nil, nil, false, func(k, v []byte) bool {
		switch {
		case bytes.HasPrefix(k, []byte(userPrefix)):
			u := &authpb.User{}
			if decodeErr = proto.Unmarshal(v, u); decodeErr == nil {
				st.users[string(u.Name)] = u
			}
		case bytes.HasPrefix(k, []byte(rolePrefix)):
			r := &authpb.Role{}
			if decodeErr = proto.Unmarshal(v, r); decodeErr == nil {
				st.roles[string(r.Name)] = r
			}
		}
		return decodeErr == nil
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, fmt.Errorf("auth: read users and roles: %w", err)
	}
	st.refreshPerms()
	return st, nil
}

// clone returns a copy of st to change. Users and roles are shared: a
// change replaces the record it changes.
func (st *State) clone() *State {
	return &State{
		enabled:  st.enabled,
		revision: st.revision,
		users:    maps.Clone(st.users),
		roles:    maps.Clone(st.roles),
	}
}

// refreshPerms rebuilds every user's merged permissions, as etcd rebuilds
// its permission cache after each change.
func (st *State) refreshPerms() {
	st.perms = make(map[string]*userPerms, len(st.users))
	for name, u := range st.users {
		st.perms[name] = mergePerms(u, st.roles)
	}
}

// UserNames lists the users in name order.
func (st *State) UserNames() []string { return slices.Sorted(maps.Keys(st.users)) }

// RoleNames lists the roles in name order.
func (st *State) RoleNames() []string { return slices.Sorted(maps.Keys(st.roles)) }

// UserRoles returns a user's roles, sorted, and whether the user exists.
func (st *State) UserRoles(name string) ([]string, bool) {
	u, ok := st.users[name]
	if !ok {
		return nil, false
	}
	return slices.Clone(u.Roles), true
}

// RolePermissions returns a role's permissions, in key order, and whether
// the role exists. The root role reports read-write on every key.
func (st *State) RolePermissions(name string) ([]*authpb.Permission, bool) {
	r, ok := st.roles[name]
	if !ok {
		return nil, false
	}
	if name == RootRole {
		return []*authpb.Permission{{PermType: authpb.Permission_READWRITE, Key: []byte{}, RangeEnd: []byte{0}}}, true
	}
	out := make([]*authpb.Permission, len(r.KeyPermission))
	for i, p := range r.KeyPermission {
		out[i] = proto.Clone(p).(*authpb.Permission)
	}
	return out, true
}

func hasRootRole(u *authpb.User) bool {
	i := sort.SearchStrings(u.Roles, RootRole)
	return i < len(u.Roles) && u.Roles[i] == RootRole
}

// hasRole reports whether user has role.
func (st *State) hasRole(user, role string) bool {
	u := st.users[user]
	return u != nil && slices.Contains(u.Roles, role)
}

// CheckAdmin allows only users with the root role while auth is enabled
// (etcd's admin check, which ignores the revision).
func (st *State) CheckAdmin(id Identity) error {
	if !st.enabled {
		return nil
	}
	if id.User == "" {
		return ErrUserEmpty
	}
	u := st.users[id.User]
	if u == nil {
		return ErrUserNotFound
	}
	if !hasRootRole(u) {
		return ErrPermissionDenied
	}
	return nil
}

// CheckRange checks that id may read [key, end): a single key if end is
// empty, every key from key on if end is "\x00".
func (st *State) CheckRange(id Identity, key, end []byte) error {
	return st.checkOp(id, key, end, false)
}

// CheckStale fails with ErrAuthOldRevision if the auth state changed
// since id was resolved: a read that checked id's permissions before
// reading must not return what a revoked permission no longer allows.
func (st *State) CheckStale(id Identity) error {
	if id.Revision != 0 && id.Revision != st.revision {
		return ErrAuthOldRevision
	}
	return nil
}

// LeaseKeys lists the keys attached to a lease; nil if it has none or
// does not exist.
type LeaseKeys func(lease int64) [][]byte

// CheckPut checks that id may write the put's key, read it too if the put
// asks for the previous value, and write every key already attached to
// the put's lease (whoever attaches a key to a lease can revoke it).
func (st *State) CheckPut(id Identity, r *pb.PutRequest, leaseKeys LeaseKeys) error {
	if err := st.checkOp(id, r.Key, nil, true); err != nil {
		return err
	}
	if r.Lease != 0 && st.CheckAdmin(id) != nil {
		for _, k := range leaseKeys(r.Lease) {
			if err := st.checkOp(id, k, nil, true); err != nil {
				return err
			}
		}
	}
	if r.PrevKv {
		return st.checkOp(id, r.Key, nil, false)
	}
	return nil
}

// CheckDeleteRange checks that id may delete the range, and read it too
// if the delete asks for the previous values.
func (st *State) CheckDeleteRange(id Identity, r *pb.DeleteRangeRequest) error {
	if err := st.checkOp(id, r.Key, r.RangeEnd, true); err != nil {
		return err
	}
	if r.PrevKv {
		return st.checkOp(id, r.Key, r.RangeEnd, false)
	}
	return nil
}

// CheckTxn checks every compare and every operation of both branches,
// nested transactions included, as etcd does whichever branch runs.
func (st *State) CheckTxn(id Identity, r *pb.TxnRequest, leaseKeys LeaseKeys) error {
	for _, c := range r.Compare {
		if err := st.checkOp(id, c.Key, c.RangeEnd, false); err != nil {
			return err
		}
	}
	if err := st.checkOps(id, r.Success, leaseKeys); err != nil {
		return err
	}
	return st.checkOps(id, r.Failure, leaseKeys)
}

func (st *State) checkOps(id Identity, ops []*pb.RequestOp, leaseKeys LeaseKeys) error {
	for _, op := range ops {
		var err error
		switch {
		case op.GetRequestRange() != nil:
			r := op.GetRequestRange()
			err = st.checkOp(id, r.Key, r.RangeEnd, false)
		case op.GetRequestPut() != nil:
			err = st.CheckPut(id, op.GetRequestPut(), leaseKeys)
		case op.GetRequestDeleteRange() != nil:
			err = st.CheckDeleteRange(id, op.GetRequestDeleteRange())
		case op.GetRequestTxn() != nil:
			err = st.CheckTxn(id, op.GetRequestTxn(), leaseKeys)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkOp is etcd's permission check of one key or range: nobody may do
// anything without an identity, an identity resolved before the last
// change of the state is stale, and root may do everything.
func (st *State) checkOp(id Identity, key, end []byte, write bool) error {
	if !st.enabled {
		return nil
	}
	if id.Revision == 0 {
		return ErrUserEmpty
	}
	if id.Revision < st.revision {
		return ErrAuthOldRevision
	}
	u := st.users[id.User]
	if u == nil {
		return ErrPermissionDenied
	}
	if hasRootRole(u) {
		return nil
	}
	p := st.perms[id.User]
	if p == nil || !p.allows(key, end, write) {
		return ErrPermissionDenied
	}
	return nil
}
