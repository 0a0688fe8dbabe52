package store

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// memberAttrsPrefix keys each member's published attributes in the Meta
// bucket, by its ID in 16 hex digits: replicated state, as in etcd, so
// every member lists every other's name and client URLs.
const memberAttrsPrefix = "members/attrs/"

func memberAttrsKey(id uint64) []byte {
	return fmt.Appendf(nil, "%s%016x", memberAttrsPrefix, id)
}

// setMemberAttrs applies a member's published attributes.
func (a *storeActor) setMemberAttrs(ap *mvcc.Applier, index uint64, r *membershippb.ClusterMemberAttrSetRequest) {
	b, err := proto.Marshal(r.GetMemberAttributes())
	if err != nil {
		a.lg.Warn("cannot encode member attributes", zap.Error(err))
		ap.SetApplied(index)
		return
	}
	ap.SetMeta(index, memberAttrsKey(r.GetMember_ID()), b)
}

// PublishMember records this member's name and client URLs through raft,
// as etcd's members publish theirs once started, so that every member
// lists them.
func (c *Client) PublishMember(ctx context.Context, id uint64, name string, clientURLs []string) error {
	_, err := c.propose(ctx, &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        id,
		MemberAttributes: &membershippb.Attributes{Name: name, ClientUrls: clientURLs},
	}})
	return err
}

// MemberAttrs returns the attributes every member has published, by ID.
func (c *Client) MemberAttrs() map[uint64]*membershippb.Attributes {
	return MemberAttrsOf(c.cfg.Engine)
}

// MemberAttrsOf reads the attributes every member has published, by ID,
// from an engine or a view of one.
func MemberAttrsOf(r storage.Reader) map[uint64]*membershippb.Attributes {
	out := make(map[uint64]*membershippb.Attributes)
	start := []byte(memberAttrsPrefix)
	end := []byte(memberAttrsPrefix + "\xff")
	_ = r.Iterate(storage.Meta, start, end, false, func(k, v []byte) bool {
		id, err := strconv.ParseUint(string(k[len(start):]), 16, 64)
		attrs := &membershippb.Attributes{}
		if err == nil && proto.Unmarshal(v, attrs) == nil {
			out[id] = attrs
		}
		return true
	})
	return out
}

// membersPrefix keys each member's record (ID, peer URLs, learner) in the
// Meta bucket, by ID in 16 hex digits. The records are applied from the
// committed configuration changes, the bootstrap ones included, so every
// member holds the same membership, and a snapshot carries it.
const membersPrefix = "members/ids/"

func memberKey(id uint64) []byte { return fmt.Appendf(nil, "%s%016x", membersPrefix, id) }

// removedPrefix keys the IDs of removed members, as etcd keeps them: a
// removed member that comes back, even after every other member has
// restarted, is told it was removed and stops.
const removedPrefix = "members/removed/"

func removedKey(id uint64) []byte { return fmt.Appendf(nil, "%s%016x", removedPrefix, id) }

// RemovedOf returns the IDs of the members removed from the cluster, as
// recorded in e.
func RemovedOf(e storage.Reader) []uint64 {
	var out []uint64
	start, end := []byte(removedPrefix), []byte(removedPrefix+"\xff")
	_ = e.Iterate(storage.Meta, start, end, false, func(k, _ []byte) bool {
		if id, err := strconv.ParseUint(string(k[len(start):]), 16, 64); err == nil {
			out = append(out, id)
		}
		return true
	})
	return out
}

// applyConfChange records a committed membership change; raft has applied
// it to its own configuration already.
func (a *storeActor) applyConfChange(ap *mvcc.Applier, index uint64, cc *raftpb.ConfChange) result {
	m := &pb.Member{}
	if len(cc.GetContext()) > 0 {
		if err := proto.Unmarshal(cc.GetContext(), m); err != nil {
			a.lg.Warn("conf change with an unreadable member", zap.Uint64("index", index), zap.Error(err))
			ap.SetApplied(index)
			return result{err: err}
		}
	}
	m.ID = cc.GetNodeId()
	old := a.c.member(m.ID)
	if cc.GetType() == raftpb.ConfChangeAddLearnerNode && old != nil {
		// A second copy of a learner's addition (a proposal made again)
		// must not demote it once promoted; etcd refuses the ID at apply.
		ap.SetApplied(index)
		return result{err: ErrMemberExists}
	}
	switch cc.GetType() {
	case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
		m.IsLearner = cc.GetType() == raftpb.ConfChangeAddLearnerNode
		if old != nil && len(m.PeerURLs) == 0 {
			m.PeerURLs = old.PeerURLs // a promotion carries no URLs
		}
		a.putMember(ap, index, m)
	case raftpb.ConfChangeUpdateNode:
		switch {
		case old != nil:
			old.PeerURLs = m.PeerURLs
			a.putMember(ap, index, old)
		case len(MembersOf(a.c.cfg.Engine)) == 0:
			// A member whose log predates the members table records
			// itself this way (see RecordMembership).
			a.putMember(ap, index, m)
		default:
			ap.SetApplied(index)
		}
	case raftpb.ConfChangeRemoveNode:
		ap.DeleteMeta(index, memberKey(m.ID))
		ap.DeleteMeta(index, memberAttrsKey(m.ID))
		ap.SetMeta(index, removedKey(m.ID), []byte{1})
	default:
		ap.SetApplied(index)
	}
	if m.ID == a.c.cfg.MemberID {
		isAdd := cc.GetType() == raftpb.ConfChangeAddNode || cc.GetType() == raftpb.ConfChangeAddLearnerNode
		a.c.learner.Store(isAdd && m.IsLearner)
	}
	a.lg.Info("applied membership change", zap.Stringer("type", cc.GetType()),
		zap.String("member-id", fmt.Sprintf("%x", m.ID)), zap.Strings("peer-urls", m.PeerURLs))
	return result{resp: &pb.MemberListResponse{}}
}

func (a *storeActor) putMember(ap *mvcc.Applier, index uint64, m *pb.Member) {
	b, err := proto.Marshal(&pb.Member{ID: m.ID, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner})
	if err != nil {
		a.lg.Warn("cannot encode member", zap.Error(err))
		ap.SetApplied(index)
		return
	}
	ap.SetMeta(index, memberKey(m.ID), b)
}

// MemberContext is the record a bootstrap or added member's configuration
// change carries, for every member to apply.
func MemberContext(id uint64, peerURLs []string, learner bool) []byte {
	b, _ := proto.Marshal(&pb.Member{ID: id, PeerURLs: peerURLs, IsLearner: learner})
	return b
}

// Member returns member id's record (ID, peer URLs, learner), nil if the
// members table has none.
func (c *Client) Member(id uint64) *pb.Member { return c.member(id) }

// member reads one member's record; nil if absent.
func (c *Client) member(id uint64) *pb.Member {
	v, err := c.cfg.Engine.Get(storage.Meta, memberKey(id))
	if err != nil || v == nil {
		return nil
	}
	m := &pb.Member{}
	if proto.Unmarshal(v, m) != nil {
		return nil
	}
	return m
}

// Members returns the applied membership, in ID order, with the names
// and client URLs members have published; empty for a member bootstrapped
// before membership was recorded (its membership is then its flags').
func (c *Client) Members() []*pb.Member {
	attrs := c.MemberAttrs()
	out := MembersOf(c.cfg.Engine)
	for _, m := range out {
		if a := attrs[m.ID]; a != nil {
			m.Name, m.ClientURLs = a.GetName(), a.GetClientUrls()
		}
	}
	return out
}

// MembersOf reads the applied membership (IDs, peer URLs, learners) from
// an engine or a view of one.
func MembersOf(e storage.Reader) []*pb.Member {
	var out []*pb.Member
	start, end := []byte(membersPrefix), []byte(membersPrefix+"\xff")
	_ = e.Iterate(storage.Meta, start, end, false, func(_, v []byte) bool {
		m := &pb.Member{}
		if proto.Unmarshal(v, m) == nil {
			out = append(out, m)
		}
		return true
	})
	return out
}

// RecordMembership records member id with peerURLs in the members table
// when the table is empty: a member bootstrapped before membership was
// recorded (then always alone) does so once it is ready, through raft like
// any membership change, before any change can be made.
func (c *Client) RecordMembership(ctx context.Context, id uint64, peerURLs []string) error {
	if len(MembersOf(c.cfg.Engine)) > 0 {
		return nil
	}
	return c.confChange(ctx, raftpb.ConfChangeUpdateNode, id, MemberContext(id, peerURLs, false))
}

// AddMember adds a member with peerURLs, a learner if asked, under a new
// ID derived from its URLs, the cluster token and the time, as etcd's
// MemberAdd does; it returns the member once the change is applied here.
func (c *Client) AddMember(ctx context.Context, peerURLs []string, learner bool, token string) (*pb.Member, error) {
	members := c.Members()
	learners := 0
	for _, m := range members {
		if m.IsLearner {
			learners++
		}
		for _, u := range m.PeerURLs {
			if slices.Contains(peerURLs, u) {
				return nil, ErrPeerURLExists
			}
		}
	}
	if learner && learners >= c.cfg.MaxLearners {
		return nil, ErrTooManyLearners
	}
	if !learner && c.cfg.StrictReconfigCheck && !c.quorumAfter(members, +1) {
		return nil, ErrNotEnoughStarted
	}
	if c.cfg.StrictReconfigCheck && !c.quorumConnectedAfterAdding(members) {
		return nil, ErrUnhealthy
	}
	id := newMemberID(peerURLs, token, time.Now())
	if c.member(id) != nil {
		return nil, ErrMemberExists
	}
	typ := raftpb.ConfChangeAddNode
	if learner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	if err := c.confChange(ctx, typ, id, MemberContext(id, peerURLs, learner)); err != nil {
		return nil, err
	}
	return &pb.Member{ID: id, PeerURLs: peerURLs, IsLearner: learner}, nil
}

// RemoveMember removes member id.
func (c *Client) RemoveMember(ctx context.Context, id uint64) error {
	m := c.member(id)
	if m == nil {
		return ErrMemberNotFound
	}
	if !m.IsLearner && c.cfg.StrictReconfigCheck && !c.quorumAfter(c.Members(), -1, id) {
		return ErrNotEnoughStarted
	}
	if !m.IsLearner && c.cfg.StrictReconfigCheck && !c.removalKeepsActiveQuorum(id) {
		return ErrUnhealthy
	}
	return c.confChange(ctx, raftpb.ConfChangeRemoveNode, id, nil)
}

// UpdateMember replaces member id's peer URLs.
func (c *Client) UpdateMember(ctx context.Context, id uint64, peerURLs []string) error {
	m := c.member(id)
	if m == nil {
		return ErrMemberNotFound
	}
	for _, o := range c.Members() {
		if o.ID == id {
			continue
		}
		for _, u := range o.PeerURLs {
			if slices.Contains(peerURLs, u) {
				return ErrPeerURLExists
			}
		}
	}
	return c.confChange(ctx, raftpb.ConfChangeUpdateNode, id, MemberContext(id, peerURLs, m.IsLearner))
}

// PromoteMember makes learner id a voter. Only the leader knows how far a
// learner's log is: elsewhere it fails with ErrNotLeader, for the caller
// to ask the leader. A learner whose log matches less than 90% of the
// leader's is not ready, as in etcd.
func (c *Client) PromoteMember(ctx context.Context, id uint64) error {
	m := c.member(id)
	if m == nil {
		return ErrMemberNotFound
	}
	if !m.IsLearner {
		return ErrMemberNotLearner
	}
	match, last, ok := c.raft.Progress(id)
	if !ok {
		return ErrNotLeader
	}
	if float64(match) < 0.9*float64(last) {
		return ErrLearnerNotReady
	}
	if c.cfg.StrictReconfigCheck && !c.quorumAfter(c.Members(), +1) {
		return ErrNotEnoughStarted
	}
	return c.confChange(ctx, raftpb.ConfChangeAddNode, id, MemberContext(id, m.PeerURLs, false))
}

// quorumAfter reports whether, after adding (delta +1) or removing (delta
// -1, member remove) a voter, the voters that have started (published
// their attributes) still form a quorum, as etcd's strict reconfiguration
// check requires.
func (c *Client) quorumAfter(members []*pb.Member, delta int, remove ...uint64) bool {
	voters, started := 0, 0
	for _, m := range members {
		if m.IsLearner || slices.Contains(remove, m.ID) {
			continue
		}
		voters++
		if m.Name != "" {
			started++
		}
	}
	if delta > 0 {
		voters++ // the new voter has not started
		if started == 1 && voters == 2 {
			// etcd lets a lone member take a second voter, the way to
			// grow a cluster restored from one member's data.
			return true
		}
	}
	return started >= voters/2+1
}

// healthInterval is how long a peer's stream must have been up for the
// strict reconfiguration check to count it as connected (etcd's
// HealthInterval).
const healthInterval = 5 * time.Second

// voters returns the voting members of members.
func voters(members []*pb.Member) []*pb.Member {
	return slices.DeleteFunc(slices.Clone(members), func(m *pb.Member) bool { return m.IsLearner })
}

// quorumConnectedAfterAdding reports whether the voters this member has
// been connected to for healthInterval would still be a quorum with one
// more member that is not up yet, which etcd asks before adding any member,
// learners included. A lone voter may always add one.
func (c *Client) quorumConnectedAfterAdding(members []*pb.Member) bool {
	vs := voters(members)
	if len(vs) == 1 {
		return true
	}
	return c.connectedSince(time.Now().Add(-healthInterval), vs) >= (len(vs)+1)/2+1
}

// removalKeepsActiveQuorum reports whether removing voter id leaves a
// quorum of the voters connected to this member for healthInterval, as
// etcd checks: a member that is down is not part of the active quorum and
// can always go.
func (c *Client) removalKeepsActiveQuorum(id uint64) bool {
	if id != c.cfg.MemberID && c.cfg.ActiveSince != nil && c.cfg.ActiveSince(id).IsZero() {
		return true
	}
	vs := voters(c.Members())
	active := c.connectedSince(time.Now().Add(-healthInterval), vs)
	return active-1 >= 1+(len(vs)-1)/2
}

// confChange proposes a membership change and waits until it is applied
// here.
func (c *Client) confChange(ctx context.Context, typ raftpb.ConfChangeType, id uint64, context []byte) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	reqID := c.nextID.Add(1)
	start := time.Now()
	cc := &raftpb.ConfChange{Id: &reqID, Type: &typ, NodeId: &id, Context: context}
	ch := make(chan result, 1)
	msg := confChangeMsg{id: reqID, cc: cc, reply: func(res result) { ch <- res }}
	c.ref.Send(msg)
	// A leader drops a configuration change proposed before it has applied
	// every entry of its predecessors (raft's pending change guard), as
	// happens just after an election: the proposal is made again, with the
	// same ID, until one applies. A second copy applying later changes
	// nothing (see applyConfChange).
	every := max(c.cfg.ElectionTimeout, time.Second)
	retry := time.NewTicker(every)
	defer retry.Stop()
	for {
		select {
		case res := <-ch:
			return res.err
		case <-retry.C:
			c.ref.Send(msg)
		case <-ctx.Done():
			c.ref.Send(forgetMsg{id: reqID})
			return c.proposalCtxErr(ctx.Err(), start)
		}
	}
}

// newMemberID is etcd's ID for a member added at a given time: the first
// eight bytes of the SHA-1 of its sorted peer URLs, the cluster token and
// the time in seconds.
func newMemberID(peerURLs []string, token string, now time.Time) uint64 {
	urls := slices.Clone(peerURLs)
	slices.Sort(urls)
	h := sha1.New()
	for _, u := range urls {
		h.Write([]byte(u))
	}
	h.Write([]byte(token))
	h.Write([]byte(strconv.FormatInt(now.Unix(), 10)))
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// MoveLeader hands leadership to member target and returns once it leads,
// as etcd's Maintenance.MoveLeader: only the leader can, the target must be
// a voter, and a transfer that does not finish within the request's time
// fails with ErrLeaderTransferTimeout.
func (c *Client) MoveLeader(ctx context.Context, target uint64) error {
	if !c.IsLeader() {
		return ErrNotLeader
	}
	if m := c.member(target); m == nil || m.IsLearner {
		return ErrBadLeaderTransferee
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	c.raft.TransferLeadership(target)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for c.raft.Status().Leader != target {
		select {
		case <-ctx.Done():
			return ErrLeaderTransferTimeout
		case <-t.C:
		}
	}
	return nil
}
