package auth

import (
	"encoding/binary"

	"go.etcd.io/etcd/api/v3/authpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Records is the replicated auth state as plain records, for the code
// that translates it to and from other layouts (etcd's backend).
type Records struct {
	Enabled  bool
	Revision uint64
	// Users and Roles are in name order.
	Users []*authpb.User
	Roles []*authpb.Role
}

// ReadRecords reads the auth state held in r's Auth bucket.
func ReadRecords(r storage.Reader) (*Records, error) {
	st, err := load(r)
	if err != nil {
		return nil, err
	}
	rec := &Records{Enabled: st.enabled, Revision: st.revision}
	for _, name := range st.UserNames() {
		rec.Users = append(rec.Users, st.users[name])
	}
	for _, name := range st.RoleNames() {
		rec.Roles = append(rec.Roles, st.roles[name])
	}
	return rec, nil
}

// WriteRecords stores rec in b's Auth bucket, which should be empty.
func WriteRecords(b storage.Batch, rec *Records) error {
	enabled := byte(0)
	if rec.Enabled {
		enabled = 1
	}
	b.Put(storage.Auth, enabledKey, []byte{enabled})
	b.Put(storage.Auth, revisionKey, binary.BigEndian.AppendUint64(nil, rec.Revision))
	for _, u := range rec.Users {
		v, err := proto.Marshal(u)
		if err != nil {
			return err
		}
		b.Put(storage.Auth, userKey(string(u.Name)), v)
	}
	for _, r := range rec.Roles {
		v, err := proto.Marshal(r)
		if err != nil {
			return err
		}
		b.Put(storage.Auth, roleKey(string(r.Name)), v)
	}
	return nil
}
