package store

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// HashKV answers etcd's Maintenance.HashKV from this member's own state, as
// etcd does: no raft round trip, so members compare what each has applied.
// rev 0 hashes at the current revision. Errors are mvcc's ErrCompacted and
// ErrFutureRev, or an engine failure. The hash is computed on the caller's
// goroutine, never on the store actor, since it reads the whole history.
func (c *Client) HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, current, err := c.kv.HashKV(rev)
	if err != nil {
		return nil, err
	}
	return &pb.HashKVResponse{
		Header:          c.header(current),
		Hash:            h.Hash,
		CompactRevision: h.CompactRevision,
		HashRevision:    h.Revision,
	}, nil
}

// Hash answers etcd's Maintenance.Hash: a hash of this member's whole
// replicated state, equal on members holding the same state but not equal
// to etcd's value (see mvcc.KV.Hash). Like HashKV it runs on the caller's
// goroutine.
func (c *Client) Hash(ctx context.Context) (*pb.HashResponse, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	h, rev, err := c.kv.Hash()
	if err != nil {
		return nil, err
	}
	return &pb.HashResponse{Header: c.header(rev), Hash: h}, nil
}
