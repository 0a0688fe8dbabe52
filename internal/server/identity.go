package server

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Meta keys of the member's identity. The IDs are derived from the flags
// once, at the first start, and read back afterwards: like etcd, a member
// keeps its ID when it restarts with other URLs.
var (
	memberIDKey  = []byte("member/id")
	clusterIDKey = []byte("member/cluster_id")
)

// loadIdentity returns the member and cluster IDs recorded in e, recording
// the given ones (durably) when e has none yet.
func loadIdentity(e storage.Engine, member, cluster uint64) (uint64, uint64, error) {
	m, err := e.Get(storage.Meta, memberIDKey)
	if err != nil {
		return 0, 0, err
	}
	c, err := e.Get(storage.Meta, clusterIDKey)
	if err != nil {
		return 0, 0, err
	}
	if m != nil && c != nil {
		if len(m) != 8 || len(c) != 8 {
			return 0, 0, fmt.Errorf("corrupt member identity in data directory (%d and %d bytes)", len(m), len(c))
		}
		return binary.BigEndian.Uint64(m), binary.BigEndian.Uint64(c), nil
	}
	b := e.NewBatch()
	defer b.Close()
	b.Put(storage.Meta, memberIDKey, binary.BigEndian.AppendUint64(nil, member))
	b.Put(storage.Meta, clusterIDKey, binary.BigEndian.AppendUint64(nil, cluster))
	if err := b.Commit(true); err != nil {
		return 0, 0, err
	}
	// The memory engine is durable only through its checkpoint file.
	if err := e.Checkpoint(); err != nil {
		return 0, 0, err
	}
	return member, cluster, nil
}
