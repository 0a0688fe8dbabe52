package store

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// MaxLeaseTTL is the largest TTL a lease may be granted, in seconds
// (etcd's lease.MaxLeaseTTL).
const MaxLeaseTTL = 9000000000

// MinLeaseTTL is etcd's smallest lease TTL for a member with the given raft
// timing: one and a half election timeouts, rounded up to whole seconds,
// so that a lease outlives a leader election.
func MinLeaseTTL(heartbeat, election time.Duration) int64 {
	if heartbeat <= 0 {
		return 1
	}
	ticks := int64(election / heartbeat)
	return int64(math.Ceil((time.Duration(3*ticks/2) * heartbeat).Seconds()))
}

// LeaseGrant grants a lease through raft. A zero ID is replaced by a
// generated one; a TTL below the minimum is raised to it. With auth
// enabled any user may grant, nobody may not.
func (c *Client) LeaseGrant(ctx context.Context, req *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if err := c.RequireIdentity(ctx); err != nil {
		return nil, err
	}
	if req.TTL > MaxLeaseTTL {
		return nil, ErrLeaseTTLTooLarge
	}
	r := &pb.LeaseGrantRequest{ID: req.ID, TTL: max(req.TTL, c.cfg.MinLeaseTTL, 1)}
	for r.ID == 0 {
		// A lease ID is positive, as etcd's are.
		r.ID = int64(rand.Uint64() & math.MaxInt64)
	}
	res, err := c.propose(ctx, &pb.InternalRaftRequest{LeaseGrant: r})
	if err != nil {
		return nil, err
	}
	resp := res.(*pb.LeaseGrantResponse)
	resp.Header = c.header(c.kv.Rev())
	return resp, nil
}

// LeaseRevoke revokes a lease through raft, deleting its keys in one
// revision; an unknown lease fails with mvcc.ErrLeaseNotFound. With auth
// enabled the caller must be someone, and when the entry applies, root or
// allowed to write every key of the lease.
func (c *Client) LeaseRevoke(ctx context.Context, req *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if err := c.RequireIdentity(ctx); err != nil {
		return nil, err
	}
	res, err := c.propose(ctx, &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: req.ID}})
	if err != nil {
		return nil, err
	}
	resp := res.(*pb.LeaseRevokeResponse)
	resp.Header = c.header(c.kv.Rev())
	return resp, nil
}

// LeaseCheckpoint records leases' remaining TTLs through raft (etcd's
// lease checkpoint entry); a remaining TTL of 0 clears a lease's.
func (c *Client) LeaseCheckpoint(ctx context.Context, req *pb.LeaseCheckpointRequest) error {
	_, err := c.propose(ctx, &pb.InternalRaftRequest{LeaseCheckpoint: req})
	return err
}

// LeaseCheckpointed is lease id's remaining TTL at its last applied
// checkpoint, 0 if none.
func (c *Client) LeaseCheckpointed(id int64) int64 { return c.kv.LeaseCheckpointed(id) }

// Lease returns the granted TTL of lease id and, with withKeys, its keys,
// as of the last applied entry; ok is false if it does not exist.
func (c *Client) Lease(id int64, withKeys bool) (ttl int64, keys [][]byte, ok bool) {
	return c.kv.Lease(id, withKeys)
}

// Leader returns the ID of the member this one last knew as leader, 0 if
// none.
func (c *Client) Leader() uint64 { return c.raft.Status().Leader }

// IsLeader reports whether this member leads the raft group.
func (c *Client) IsLeader() bool {
	st := c.raft.Status()
	return st.Leader != 0 && st.Leader == st.ID
}

// ConfirmLeader reports whether this member, which found itself leader,
// may act as leader for a keep-alive, a revoke or a checkpoint, as etcd's
// ensureLeadership decides.
// While raft's clock moves, raft steps down on its own once followers stop
// answering (check quorum), so its word is taken. When the clock has
// stalled (a stuck log write, a flooded raft actor), raft may still
// believe it leads while the others have elected another member: it is
// asked for a read index, which needs a quorum's answer, and must still
// lead afterwards.
func (c *Client) ConfirmLeader(ctx context.Context) bool {
	if c.raft.Ticking() {
		return true
	}
	// Two election timeouts, not etcd's request timeout: by then the
	// other members have elected a leader if this one no longer reaches a
	// quorum, and a client told sooner can renew elsewhere before a short
	// TTL runs out.
	if d := 2 * c.cfg.ElectionTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	if err := c.linearize(ctx); err != nil {
		c.cfg.Logger.Warn("failed to check current member's leadership", zap.Error(err))
		return false
	}
	if !c.IsLeader() {
		c.cfg.Logger.Warn("current member isn't a leader", zap.String("local-member-id", fmt.Sprintf("%x", c.cfg.MemberID)),
			zap.String("new-lead", fmt.Sprintf("%x", c.Leader())))
		return false
	}
	return true
}

// Leases lists the granted leases.
func (c *Client) Leases() []mvcc.LeaseInfo { return c.kv.Leases() }
