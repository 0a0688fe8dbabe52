// Package corruptcheck is etcd's detection of members whose data has
// diverged from the others': three checks that compare etcd's HashKV
// across the members and raise the CORRUPT alarm, which stops every write
// in the cluster, for the member found at fault.
//
//   - The initial check (the InitialCorruptCheck feature gate) runs once,
//     before a member with data serves: a peer at the same compaction with
//     another hash makes the member refuse to start.
//   - The periodic check (--corrupt-check-time) runs on the leader: the
//     leader's hash, its peers' at that revision, a linearizable read,
//     then the leader's hash again.
//   - The compaction hash check (the CompactHashCheck feature gate,
//     --compact-hash-check-time) runs on the leader: the hashes the recent
//     compactions computed, compared with the peers' at the same
//     compaction, the majority's hash taken as the good one.
//
// The Checker holds the decisions, against a Member that hashes, asks
// peers and raises alarms; Start runs the two leader checks in the
// background.
package corruptcheck

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// ErrClusterIDMismatch is a PeerHash error for a peer of another cluster.
var ErrClusterIDMismatch = errors.New("cluster ID mismatch")

// PeerHash is one peer's answer to a HashKV at a revision.
type PeerHash struct {
	// ID is the peer's member ID and URLs its peer URLs, for the logs.
	ID   uint64
	URLs []string
	// Hash is the peer's HashKV and Revision its current revision, when
	// Err is nil.
	Hash     mvcc.KeyValueHash
	Revision int64
	// Err is why the peer did not answer: mvcc.ErrFutureRev if it has not
	// reached the revision, mvcc.ErrCompacted if it has compacted it away,
	// ErrClusterIDMismatch, or any failure to reach it.
	Err error
}

// Member is the local member as the checks see it. Its methods are called
// from the checks' goroutines, one at a time per check, and may be called
// by two checks at once.
type Member interface {
	// ID returns the local member's ID.
	ID() uint64
	// HashKV returns the local member's HashKV at rev (the current
	// revision when rev is 0) and its current revision, as
	// mvcc.KV.HashKV does.
	HashKV(rev int64) (mvcc.KeyValueHash, int64, error)
	// CompactionHashes returns the hashes the local member's recent
	// compactions computed, in any order.
	CompactionHashes() []mvcc.KeyValueHash
	// PeerHashes asks every other member for its HashKV at rev and
	// returns one answer per member, in a fixed order, each bounded by
	// ctx.
	PeerHashes(ctx context.Context, rev int64) []PeerHash
	// Linearize returns once the local member has applied everything
	// committed before the call, or fails when ctx ends.
	Linearize(ctx context.Context) error
	// RaiseCorrupt raises the CORRUPT alarm for member id (0 for the
	// whole cluster) through raft, giving up when ctx ends; a failure is
	// the Member's to log.
	RaiseCorrupt(ctx context.Context, id uint64)
}

// Checker decides, from the members' hashes, whether and where the data
// has diverged. Its methods may be called from several goroutines.
type Checker struct {
	m       Member
	timeout time.Duration
	lg      *zap.Logger

	mu sync.Mutex
	// checkedRev is the newest compaction revision the compaction hash
	// check found consistent on every member.
	checkedRev int64
}

// NewChecker returns a Checker for m, whose peer requests and
// linearizable reads are bounded by timeout (etcd's request timeout). lg
// may be nil.
func NewChecker(m Member, timeout time.Duration, lg *zap.Logger) *Checker {
	if lg == nil {
		lg = zap.NewNop()
	}
	return &Checker{m: m, timeout: timeout, lg: lg}
}

// hexID prints a member ID as etcd does.
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

// hexIDs prints member IDs, sorted, as etcd prints a types.IDSlice.
func hexIDs(ids []uint64) string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = hexID(id)
	}
	return strings.Join(s, ",")
}

// InitialCheck compares the local member's hash at its current revision
// with its peers' at that revision. It fails, and the member must not
// start, when a peer at the same compaction revision has another hash;
// peers that are behind, ahead, of another cluster or unreachable are
// logged and skipped, and so are peers at another compaction revision.
func (c *Checker) InitialCheck(ctx context.Context) error {
	self := hexID(c.m.ID())
	c.lg.Info("starting initial corruption check", zap.String("local-member-id", self), zap.Duration("timeout", c.timeout))
	h, _, err := c.m.HashKV(0)
	if err != nil {
		return fmt.Errorf("%s failed to fetch hash (%w)", self, err)
	}
	peers := c.peerHashes(ctx, h.Revision)
	local := []zap.Field{
		zap.String("local-member-id", self),
		zap.Int64("local-member-revision", h.Revision),
		zap.Int64("local-member-compact-revision", h.CompactRevision),
		zap.Uint32("local-member-hash", h.Hash),
	}
	mismatches := 0
	for _, p := range peers {
		peer := []zap.Field{zap.String("remote-peer-id", hexID(p.ID)), zap.Strings("remote-peer-endpoints", p.URLs)}
		if p.Err == nil {
			if p.Hash.Hash == h.Hash {
				continue
			}
			fields := append(append(local, peer...),
				zap.Int64("remote-peer-revision", p.Revision),
				zap.Int64("remote-peer-compact-revision", p.Hash.CompactRevision),
				zap.Uint32("remote-peer-hash", p.Hash.Hash))
			if p.Hash.CompactRevision == h.CompactRevision {
				c.lg.Warn("found different hash values from remote peer", fields...)
				mismatches++
			} else {
				c.lg.Warn("found different compact revision values from remote peer", fields...)
			}
			continue
		}
		fields := append(append(local, peer...), zap.Error(p.Err))
		switch {
		case errors.Is(p.Err, mvcc.ErrFutureRev):
			c.lg.Warn("cannot fetch hash from slow remote peer", fields...)
		case errors.Is(p.Err, mvcc.ErrCompacted):
			c.lg.Warn("cannot fetch hash from remote peer; local member is behind", fields...)
		case errors.Is(p.Err, ErrClusterIDMismatch):
			c.lg.Warn("cluster ID mismatch", fields...)
		}
	}
	if mismatches > 0 {
		return fmt.Errorf("%s found data inconsistency with peers", self)
	}
	c.lg.Info("initial corruption checking passed; no corruption", zap.String("local-member-id", self))
	return nil
}

// PeriodicCheck is the leader's check of the members' current state: its
// own hash, the peers' at that revision, a linearizable read, its own hash
// again. It raises one CORRUPT alarm at most: for the leader itself when
// its two hashes of the same revision differ, or else for the first peer
// that is ahead of the leader, has compacted further, or has another hash
// at the leader's first compaction revision. It fails only when the
// leader cannot hash or read.
func (c *Checker) PeriodicCheck(ctx context.Context) error {
	h, _, err := c.m.HashKV(0)
	if err != nil {
		return err
	}
	peers := c.peerHashes(ctx, h.Revision)
	rctx, cancel := context.WithTimeout(ctx, c.timeout)
	err = c.m.Linearize(rctx)
	cancel()
	if err != nil {
		return err
	}
	h2, rev2, err := c.m.HashKV(0)
	if err != nil {
		return err
	}
	alarmed := false
	blame := func(id uint64) {
		if !alarmed {
			alarmed = true
			c.m.RaiseCorrupt(ctx, id)
		}
	}
	if h2.Hash != h.Hash && h2.Revision == h.Revision && h2.CompactRevision == h.CompactRevision {
		c.lg.Warn("found hash mismatch",
			zap.Int64("revision-1", h.Revision), zap.Int64("compact-revision-1", h.CompactRevision), zap.Uint32("hash-1", h.Hash),
			zap.Int64("revision-2", h2.Revision), zap.Int64("compact-revision-2", h2.CompactRevision), zap.Uint32("hash-2", h2.Hash))
		blame(c.m.ID())
	}
	checked := 0
	for _, p := range peers {
		if p.Err != nil {
			continue
		}
		checked++
		id := zap.String("follower-peer-id", hexID(p.ID))
		if p.Revision > rev2 {
			c.lg.Warn("revision from follower must be less than or equal to leader's",
				zap.Int64("leader-revision", rev2), zap.Int64("follower-revision", p.Revision), id)
			blame(p.ID)
		}
		if p.Hash.CompactRevision > h2.CompactRevision {
			c.lg.Warn("compact revision from follower must be less than or equal to leader's",
				zap.Int64("leader-compact-revision", h2.CompactRevision), zap.Int64("follower-compact-revision", p.Hash.CompactRevision), id)
			blame(p.ID)
		}
		if p.Hash.CompactRevision == h.CompactRevision && p.Hash.Hash != h.Hash {
			c.lg.Warn("same compact revision then hashes must match",
				zap.Int64("leader-compact-revision", h2.CompactRevision), zap.Uint32("leader-hash", h.Hash),
				zap.Int64("follower-compact-revision", p.Hash.CompactRevision), zap.Uint32("follower-hash", p.Hash.Hash), id)
			blame(p.ID)
		}
	}
	c.lg.Info("finished peer corruption check", zap.Int("number-of-peers-checked", checked))
	return nil
}

// CompactHashCheck is the leader's check of the hashes its compactions
// computed: compactions run at the same revision on every member, and
// each member remembers the hash of its recent ones. Newest first, each
// compaction not yet found consistent is compared with the peers' hashes
// at its revision, until one is compared on every member or raises an
// alarm. A peer that has not compacted there (yet), or does not answer,
// is skipped, and the next older compaction is tried.
func (c *Checker) CompactHashCheck(ctx context.Context) {
	c.lg.Info("starting compact hash check", zap.String("local-member-id", hexID(c.m.ID())), zap.Duration("timeout", c.timeout))
	hashes := c.unchecked()
	for i, h := range hashes {
		peers := c.peerHashes(ctx, h.Revision)
		if len(peers) == 0 {
			continue
		}
		if c.comparePeers(ctx, h, peers) {
			c.lg.Info("finished compaction hash check", zap.Int("number-of-hashes-checked", i+1))
			return
		}
	}
	c.lg.Info("finished compaction hash check", zap.Int("number-of-hashes-checked", len(hashes)))
}

// comparePeers groups the leader and the peers at the leader's compaction
// revision by hash. When they differ, the members outside the group that
// holds a majority of the cluster are blamed, or, if no group does, the
// whole cluster (member 0). It returns false only when the hashes agree
// but some peer was skipped, so that an older compaction is worth
// checking.
func (c *Checker) comparePeers(ctx context.Context, leader mvcc.KeyValueHash, peers []PeerHash) bool {
	leaderID := hexID(c.m.ID())
	groups := map[uint32][]uint64{leader.Hash: {c.m.ID()}}
	checked := 0
	for _, p := range peers {
		reason := ""
		switch {
		case p.Err != nil:
			reason = "no response"
		case p.Hash.CompactRevision != leader.CompactRevision:
			reason = fmt.Sprintf("the peer's CompactRevision %d doesn't match leader's CompactRevision %d",
				p.Hash.CompactRevision, leader.CompactRevision)
		}
		if reason != "" {
			c.lg.Warn("Skipped peer's hash", zap.Int("number-of-peers", len(peers)), zap.String("leader-id", leaderID),
				zap.String("peer-id", hexID(p.ID)), zap.String("reason", reason))
			continue
		}
		checked++
		groups[p.Hash.Hash] = append(groups[p.Hash.Hash], p.ID)
	}
	if len(groups) == 1 {
		if checked < len(peers) {
			c.lg.Warn("skipped revision in compaction hash check; was not able to check all peers",
				zap.Int("number-of-peers-checked", checked), zap.Int("number-of-peers", len(peers)),
				zap.Int64("revision", leader.Revision), zap.Int64("compactRevision", leader.CompactRevision))
			return false
		}
		c.lg.Info("successfully checked hash on whole cluster", zap.Int("number-of-peers-checked", checked),
			zap.Int64("revision", leader.Revision), zap.Int64("compactRevision", leader.CompactRevision))
		c.mu.Lock()
		c.checkedRev = max(c.checkedRev, leader.Revision)
		c.mu.Unlock()
		return true
	}
	quorum := (len(peers)+1)/2 + 1
	majority, found := uint32(0), false
	for hash, ids := range groups {
		if len(ids) >= quorum {
			majority, found = hash, true
			break
		}
	}
	leaderFields := []zap.Field{
		zap.String("leader-id", leaderID),
		zap.Int64("leader-revision", leader.Revision),
		zap.Int64("leader-compact-revision", leader.CompactRevision),
		zap.Uint32("leader-hash", leader.Hash),
	}
	if found {
		delete(groups, majority)
	} else {
		c.lg.Error("Detected compaction hash mismatch but cannot identify the corrupted members, so intentionally set the memberID as 0", leaderFields...)
		c.m.RaiseCorrupt(ctx, 0)
	}
	// In hash order, so that alarms and logs come in a fixed order.
	for _, hash := range slices.Sorted(maps.Keys(groups)) {
		ids := groups[hash]
		if found {
			for _, id := range ids {
				c.m.RaiseCorrupt(ctx, id)
			}
		}
		c.lg.Error("Detected compaction hash mismatch", append(leaderFields,
			zap.Uint32("peer-hash", hash), zap.String("peer-ids", hexIDs(ids)), zap.Bool("quorum-exist", found))...)
	}
	return true
}

// unchecked returns the compaction hashes newer than the newest found
// consistent, newest first.
func (c *Checker) unchecked() []mvcc.KeyValueHash {
	c.mu.Lock()
	last := c.checkedRev
	c.mu.Unlock()
	hashes := c.m.CompactionHashes()
	slices.SortFunc(hashes, func(a, b mvcc.KeyValueHash) int { return cmp.Compare(b.Revision, a.Revision) })
	for i, h := range hashes {
		if h.Revision <= last {
			return hashes[:i]
		}
	}
	return hashes
}

// peerHashes asks the peers for their hashes at rev, each request bounded
// by the Checker's timeout.
func (c *Checker) peerHashes(ctx context.Context, rev int64) []PeerHash {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.m.PeerHashes(ctx, rev)
}
