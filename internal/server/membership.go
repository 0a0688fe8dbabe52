package server

import (
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
)

// memberID derives a member's ID from its peer URLs and the cluster token,
// so every member computes the same IDs for the same --initial-cluster (the
// scheme etcd uses for its initial members).
func memberID(peerURLs []url.URL, token string) uint64 {
	urls := make([]string, 0, len(peerURLs))
	for _, u := range peerURLs {
		urls = append(urls, u.String())
	}
	sort.Strings(urls)
	h := sha1.New()
	for _, u := range urls {
		h.Write([]byte(u))
	}
	h.Write([]byte(token))
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// clusterIDOf derives the cluster ID from the sorted member IDs.
func clusterIDOf(ids []uint64) uint64 {
	sorted := append([]uint64(nil), ids...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	h := sha1.New()
	var b [8]byte
	for _, id := range sorted {
		binary.BigEndian.PutUint64(b[:], id)
		h.Write(b[:])
	}
	return binary.BigEndian.Uint64(h.Sum(nil)[:8])
}

// initialMembers returns the members --initial-cluster names, with the IDs
// etcd gives them, sorted by ID. This member must be one of them.
func initialMembers(cfg *config.Config) ([]*pb.Member, error) {
	self, ok := cfg.InitialCluster[cfg.Name]
	if !ok {
		return nil, fmt.Errorf("--initial-cluster has no member named %q (--name)", cfg.Name)
	}
	if !sameURLs(self, cfg.InitialAdvertisePeerURLs) {
		return nil, fmt.Errorf("--initial-cluster has %s=%s but --initial-advertise-peer-urls is %s",
			cfg.Name, strings.Join(urlStrings(self), ","), strings.Join(urlStrings(cfg.InitialAdvertisePeerURLs), ","))
	}
	var members []*pb.Member
	seen := make(map[uint64]string)
	for name, urls := range cfg.InitialCluster {
		id := memberID(urls, cfg.InitialClusterToken)
		if other, dup := seen[id]; dup {
			return nil, fmt.Errorf("--initial-cluster: members %q and %q have the same peer URLs", other, name)
		}
		seen[id] = name
		members = append(members, &pb.Member{ID: id, Name: name, PeerURLs: urlStrings(urls)})
	}
	sort.Slice(members, func(i, j int) bool { return members[i].ID < members[j].ID })
	return members, nil
}

// sameURLs reports whether a and b hold the same URLs, in any order.
func sameURLs(a, b []url.URL) bool {
	as, bs := urlStrings(a), urlStrings(b)
	sort.Strings(as)
	sort.Strings(bs)
	return slices.Equal(as, bs)
}

// cluster is the membership the Cluster service and the transport see: the
// members table the store applies from the log (bootstrap changes
// included), or, for a member bootstrapped before the table existed, the
// --initial-cluster members with the attributes they published.
type cluster struct {
	s       *Server
	initial []*pb.Member
}

// Members implements etcdcompat.Cluster; it returns copies.
func (c *cluster) Members() []*pb.Member {
	st := c.s.store
	if st != nil {
		if ms := st.Members(); len(ms) > 0 {
			return ms
		}
	}
	var attrs map[uint64]*membershippb.Attributes
	if st != nil {
		attrs = st.MemberAttrs()
	}
	out := make([]*pb.Member, 0, len(c.initial))
	for _, m := range c.initial {
		cp := &pb.Member{ID: m.ID, Name: m.Name, PeerURLs: slices.Clone(m.PeerURLs), ClientURLs: slices.Clone(m.ClientURLs)}
		if a := attrs[m.ID]; a != nil {
			cp.Name, cp.ClientURLs = a.GetName(), slices.Clone(a.GetClientUrls())
		}
		out = append(out, cp)
	}
	return out
}

// peerURLs returns member id's peer URLs, nil if it is unknown: one read
// of the members table, which forwarded requests pay, rather than a whole
// member list.
func (c *cluster) peerURLs(id uint64) []string {
	if st := c.s.store; st != nil {
		if m := st.Member(id); m != nil {
			return m.PeerURLs
		}
	}
	for _, m := range c.initial {
		if m.ID == id {
			return m.PeerURLs
		}
	}
	return nil
}

// AddMember implements etcdcompat.Cluster.
func (c *cluster) AddMember(ctx context.Context, peerURLs []string, learner bool) (*pb.Member, error) {
	return c.s.store.AddMember(ctx, peerURLs, learner, c.s.cfg.InitialClusterToken)
}

// RemoveMember implements etcdcompat.Cluster.
func (c *cluster) RemoveMember(ctx context.Context, id uint64) error {
	return c.s.store.RemoveMember(ctx, id)
}

// UpdateMember implements etcdcompat.Cluster.
func (c *cluster) UpdateMember(ctx context.Context, id uint64, peerURLs []string) error {
	return c.s.store.UpdateMember(ctx, id, peerURLs)
}

// PromoteMember implements etcdcompat.Cluster. Only the leader knows
// whether a learner has caught up, so a follower asks the leader, on the
// Cluster service its peer URL serves, as etcd's followers do, with the
// caller's identity, which the leader checks as etcd's checks the token.
// The leader counts what it decided, as etcd's does.
func (c *cluster) PromoteMember(ctx context.Context, id uint64) error {
	err := c.s.store.PromoteMember(ctx, id)
	if !errors.Is(err, store.ErrNotLeader) {
		if c.s.store.Leader() == c.s.selfID {
			c.s.metrics.promotion(err)
		}
		return err
	}
	conn, err := c.s.leaderConns.leader()
	if err != nil {
		return err
	}
	_, err = pb.NewClusterClient(conn).MemberPromote(etcdcompat.ForwardIdentity(ctx), &pb.MemberPromoteRequest{ID: id})
	return err
}

// membersChanged follows an applied membership change: the transport sends
// to added members and stops sending to removed ones, whose connection for
// forwarded requests is closed too; a member that is removed itself stops,
// as etcd's does. It runs on the store actor.
func (s *Server) membersChanged(cc *raftpb.ConfChange) {
	id := cc.GetNodeId()
	m := &pb.Member{}
	_ = proto.Unmarshal(cc.GetContext(), m)
	switch cc.GetType() {
	case raftpb.ConfChangeRemoveNode:
		if id == s.selfID {
			s.markRemoved()
			return
		}
		s.transport.RemovePeer(id)
		s.leaderConns.forget(id)
	default:
		if id != s.selfID && len(m.PeerURLs) > 0 {
			if err := s.transport.UpdatePeer(id, m.PeerURLs); err != nil {
				s.lg.Warn("cannot reach added member", zap.String("member-id", fmt.Sprintf("%x", id)), zap.Error(err))
			}
		}
	}
}

// markRemoved records that this member was removed from the cluster,
// learned from the log or from a peer that refused it.
func (s *Server) markRemoved() {
	s.removedOnce.Do(func() {
		s.lg.Warn("this member has been permanently removed from the cluster; stopping")
		close(s.removed)
	})
}

// errRemoved fails the start of a member that learns, while it waits for
// the cluster, that it was removed from it.
var errRemoved = errors.New("the member has been permanently removed from the cluster; its data directory must be removed before it is added again")

// isRemoved reports whether the member learned it was removed.
func (s *Server) isRemoved() bool {
	select {
	case <-s.removed:
		return true
	default:
		return false
	}
}

// Removed is closed when this member has been removed from the cluster;
// it must then stop.
func (s *Server) Removed() <-chan struct{} { return s.removed }

// join learns this member's ID, the cluster ID and the members from a
// running member, as a member started with --initial-cluster-state
// existing does: it was added there with its peer URLs (etcdctl member
// add), which is how it is found.
func (s *Server) join(initial []*pb.Member) (self uint64, clusterID uint64, members []*pb.Member, err error) {
	want := urlStrings(s.cfg.InitialAdvertisePeerURLs)
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, m := range initial {
			if m.Name == s.cfg.Name {
				continue
			}
			resp, err := s.listMembersAt(m.PeerURLs)
			if err != nil {
				s.lg.Warn("cannot list members of the cluster to join", zap.Strings("peer-urls", m.PeerURLs), zap.Error(err))
				continue
			}
			for _, mm := range resp.Members {
				if sameStrings(mm.PeerURLs, want) {
					return mm.ID, resp.GetHeader().GetClusterId(), resp.Members, nil
				}
			}
			return 0, 0, nil, fmt.Errorf("no member of the cluster has peer URLs %v: add this member first (etcdctl member add)", want)
		}
		if time.Now().After(deadline) {
			return 0, 0, nil, errors.New("no member of --initial-cluster answered within 30s")
		}
		time.Sleep(time.Second)
	}
}

// listMembersAt asks the member at peerURLs for the membership.
func (s *Server) listMembersAt(peerURLs []string) (*pb.MemberListResponse, error) {
	u, err := url.Parse(peerURLs[0])
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(u.Host, grpc.WithTransportCredentials(s.tls.peerCreds(u)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{})
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func urlStrings(us []url.URL) []string {
	out := make([]string, 0, len(us))
	for _, u := range us {
		out = append(out, u.String())
	}
	return out
}

// bootstrap is how this member starts: with whom it talks, and what raft
// needs at a first start.
type bootstrap struct {
	clusterID uint64
	// members are the membership known before the log is read: the
	// --initial-cluster members, or those a joined member was told of.
	members []*pb.Member
	// peers are the members the transport sends to at start.
	peers []*pb.Member
	// raftPeers and contexts bootstrap raft's configuration; none for a
	// member that joins, or restarts.
	raftPeers []uint64
	contexts  map[uint64][]byte
}

// identify settles this member's ID (s.selfID) and the cluster it belongs
// to. A member with no data either bootstraps a new cluster from
// --initial-cluster or, with --initial-cluster-state existing, joins a
// running one; a member with data keeps its recorded identity and, as in
// etcd, ignores the --initial-* flags where the log has recorded the
// membership.
func (s *Server) identify(initial []*pb.Member) (bootstrap, error) {
	cfg := s.cfg
	recorded := store.MembersOf(s.engine)
	last, err := s.rlog.LastIndex()
	if err != nil {
		return bootstrap{}, err
	}
	fresh := last == 0 && len(recorded) == 0
	if fresh && cfg.InitialClusterState == "existing" {
		self, cid, members, err := s.join(initial)
		if err != nil {
			return bootstrap{}, err
		}
		if s.selfID, cid, err = loadIdentity(cfg.EngineDir(), s.engine, self, cid); err != nil {
			return bootstrap{}, fmt.Errorf("member identity: %w", err)
		}
		s.lg.Info("joining an existing cluster", zap.String("member-id", fmt.Sprintf("%x", s.selfID)),
			zap.String("cluster-id", fmt.Sprintf("%x", cid)))
		return bootstrap{clusterID: cid, members: members, peers: members}, nil
	}
	ids := make([]uint64, 0, len(initial))
	var initialID uint64
	for _, m := range initial {
		ids = append(ids, m.ID)
		if m.Name == cfg.Name {
			initialID = m.ID
		}
	}
	self, cid, err := loadIdentity(cfg.EngineDir(), s.engine, initialID, clusterIDOf(ids))
	if err != nil {
		return bootstrap{}, fmt.Errorf("member identity: %w", err)
	}
	s.selfID = self
	// A member restored from a snapshot (cairnutl snapshot restore) has
	// its identity but no log: it must start with the cluster it was
	// restored for.
	if fresh && !slices.Contains(ids, self) {
		return bootstrap{}, fmt.Errorf("the data directory belongs to member %x of cluster %x, which --initial-cluster and --initial-cluster-token do not name; start it with the flags it was restored with", self, cid)
	}
	for _, m := range initial {
		if m.Name == cfg.Name {
			// A member keeps the ID it was created with, even when it
			// restarts with other peer URLs.
			m.ID = self
			m.ClientURLs = urlStrings(cfg.AdvertiseClientURLs)
		}
	}
	b := bootstrap{clusterID: cid, members: initial, peers: initial}
	if len(recorded) > 0 {
		b.peers = recorded
	}
	if !fresh && cfg.ForceNewCluster {
		if b.peers, err = s.forceNewCluster(recorded); err != nil {
			return bootstrap{}, err
		}
	}
	if fresh {
		b.raftPeers = ids
		b.contexts = make(map[uint64][]byte, len(initial))
		for _, m := range initial {
			b.contexts[m.ID] = store.MemberContext(m.ID, m.PeerURLs, false)
		}
	}
	return b, nil
}

// forceNewCluster makes the member the only one of its cluster, keeping its
// data and IDs (--force-new-cluster): the log is rewritten so that the
// other members' removal is committed and applies as the member restarts.
// It returns the peers left of recorded: the member itself.
func (s *Server) forceNewCluster(recorded []*pb.Member) ([]*pb.Member, error) {
	self := store.MemberContext(s.selfID, urlStrings(s.cfg.InitialAdvertisePeerURLs), false)
	removed, err := raftnode.ForceNewCluster(s.rlog, s.selfID, self, s.kv.AppliedIndex())
	if err != nil {
		return nil, fmt.Errorf("--force-new-cluster: %w", err)
	}
	ids := make([]string, len(removed))
	for i, id := range removed {
		ids[i] = fmt.Sprintf("%x", id)
	}
	s.lg.Warn("forcing restart as the only member of the cluster", zap.String("member-id", fmt.Sprintf("%x", s.selfID)),
		zap.Strings("removed-members", ids))
	var left []*pb.Member
	for _, m := range recorded {
		if m.ID == s.selfID {
			left = append(left, m)
		}
	}
	return left, nil
}
