package server

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/internal/storage"
)

// identityFile is the member's identity inside its engine directory,
// beside the raft log. It is member-local: an engine snapshot never holds
// it, so a follower that restores the leader's snapshot stays itself.
const identityFile = "member"

// identity is the content of identityFile. IDs are hexadecimal strings, as
// etcd prints member and cluster IDs.
type identity struct {
	MemberID  string `json:"member_id"`
	ClusterID string `json:"cluster_id"`
}

// Meta keys where earlier versions kept the identity, inside what engine
// snapshots copy; loadIdentity moves it out.
var (
	legacyMemberIDKey  = []byte("member/id")
	legacyClusterIDKey = []byte("member/cluster_id")
)

// loadIdentity returns the member and cluster IDs recorded in dir, recording
// the given ones (durably) at the first start. Like etcd, a member keeps its
// IDs when it restarts with other flags. An identity found in e's Meta
// bucket (written by an earlier version) is moved to the file first.
func loadIdentity(dir string, e storage.Engine, member, cluster uint64) (uint64, uint64, error) {
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return parseIdentity(b)
	case !errors.Is(err, fs.ErrNotExist):
		return 0, 0, err
	}
	legacy, found, err := legacyIdentity(e)
	if err != nil {
		return 0, 0, err
	}
	if found {
		member, cluster = legacy[0], legacy[1]
	}
	if err := writeIdentity(dir, member, cluster); err != nil {
		return 0, 0, err
	}
	if found {
		batch := e.NewBatch()
		defer batch.Close()
		batch.Delete(storage.Meta, legacyMemberIDKey)
		batch.Delete(storage.Meta, legacyClusterIDKey)
		if err := batch.Commit(true); err != nil {
			return 0, 0, err
		}
	}
	return member, cluster, nil
}

func parseIdentity(b []byte) (uint64, uint64, error) {
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return 0, 0, fmt.Errorf("corrupt member identity file: %w", err)
	}
	m, err1 := strconv.ParseUint(id.MemberID, 16, 64)
	c, err2 := strconv.ParseUint(id.ClusterID, 16, 64)
	if err := errors.Join(err1, err2); err != nil || m == 0 || c == 0 {
		return 0, 0, fmt.Errorf("corrupt member identity file: member %q, cluster %q", id.MemberID, id.ClusterID)
	}
	return m, c, nil
}

// legacyIdentity reads the identity an earlier version kept in Meta.
func legacyIdentity(e storage.Engine) ([2]uint64, bool, error) {
	m, err := e.Get(storage.Meta, legacyMemberIDKey)
	if err != nil {
		return [2]uint64{}, false, err
	}
	c, err := e.Get(storage.Meta, legacyClusterIDKey)
	if err != nil || m == nil || c == nil {
		return [2]uint64{}, false, err
	}
	if len(m) != 8 || len(c) != 8 {
		return [2]uint64{}, false, fmt.Errorf("corrupt member identity in data directory (%d and %d bytes)", len(m), len(c))
	}
	return [2]uint64{binary.BigEndian.Uint64(m), binary.BigEndian.Uint64(c)}, true, nil
}

// writeIdentity writes the identity file durably: a synced temporary file
// renamed into place, then the directory synced.
func writeIdentity(dir string, member, cluster uint64) error {
	b, err := json.Marshal(identity{MemberID: strconv.FormatUint(member, 16), ClusterID: strconv.FormatUint(cluster, 16)})
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, identityFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, identityFile))
	}
	if err == nil {
		err = fsutil.SyncDir(dir)
	}
	return err
}
