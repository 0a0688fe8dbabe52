package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/corruptcheck"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// The corruption checks (internal/corruptcheck) compare the members'
// HashKV over the peer transport, as etcd's compare them over its peer
// URLs: peers are mutually authenticated there, and HashKV needs no user.

// initialCorruptCheck runs etcd's initial corruption check against peers
// when the InitialCorruptCheck gate is on and the member has data (etcd
// skips a member whose WAL does not exist yet). It runs before raft
// starts and before the member serves, so it hashes the state as the
// member stopped with it.
func (s *Server) initialCorruptCheck(peers []*pb.Member) error {
	if !s.cfg.InitialCorruptCheck {
		return nil
	}
	last, err := s.rlog.LastIndex()
	if err != nil {
		return err
	}
	if last == 0 && s.kv.AppliedIndex() == 0 {
		return nil
	}
	m := corruptMember{s: s, members: func() []*pb.Member { return peers }}
	err = corruptcheck.NewChecker(m, s.requestTimeout(), s.lg).InitialCheck(context.Background())
	if err != nil {
		s.lg.Error("checkInitialHashKV failed", zap.Error(err))
	}
	return err
}

// startCorruptChecks starts the leader's periodic check
// (--corrupt-check-time) and compaction hash check (the CompactHashCheck
// gate, every --compact-hash-check-time), those that are on.
func (s *Server) startCorruptChecks() *corruptcheck.Monitor {
	cfg := corruptcheck.Config{
		CorruptCheckTime: s.cfg.CorruptCheckTime,
		IsLeader:         s.store.IsLeader,
		Logger:           s.lg,
	}
	if s.cfg.CompactHashCheck {
		cfg.CompactHashCheckTime = s.cfg.CompactHashCheckTime
	}
	if cfg.CorruptCheckTime <= 0 && cfg.CompactHashCheckTime <= 0 {
		return nil
	}
	m := corruptMember{s: s, members: s.cluster.Members}
	cfg.Checker = corruptcheck.NewChecker(m, s.requestTimeout(), s.lg)
	return corruptcheck.Start(cfg)
}

// serveHashKV answers a peer's HashKV call from this member's state, with
// etcd's gRPC errors for a compacted or future revision.
func (s *Server) serveHashKV(_ context.Context, rev int64) (*pb.HashKVResponse, error) {
	h, current, err := s.kv.HashKV(rev)
	if err != nil {
		s.lg.Warn("failed to get hashKV", zap.Int64("requested-revision", rev), zap.Error(err))
		switch {
		case errors.Is(err, mvcc.ErrCompacted):
			return nil, rpctypes.ErrGRPCCompacted
		case errors.Is(err, mvcc.ErrFutureRev):
			return nil, rpctypes.ErrGRPCFutureRev
		}
		return nil, status.Error(codes.Unknown, err.Error())
	}
	return &pb.HashKVResponse{
		Header:          &pb.ResponseHeader{MemberId: s.selfID, Revision: current},
		Hash:            h.Hash,
		CompactRevision: h.CompactRevision,
		HashRevision:    h.Revision,
	}, nil
}

// corruptMember is the member as the corruption checks see it.
type corruptMember struct {
	s *Server
	// members returns the cluster's members, this one included.
	members func() []*pb.Member
}

func (m corruptMember) ID() uint64 { return m.s.selfID }

func (m corruptMember) HashKV(rev int64) (mvcc.KeyValueHash, int64, error) { return m.s.kv.HashKV(rev) }

func (m corruptMember) CompactionHashes() []mvcc.KeyValueHash { return m.s.kv.CompactionHashes() }

func (m corruptMember) Linearize(ctx context.Context) error { return m.s.store.Linearize(ctx) }

// PeerHashes asks every other member at once, in member ID order.
func (m corruptMember) PeerHashes(ctx context.Context, rev int64) []corruptcheck.PeerHash {
	var out []corruptcheck.PeerHash
	for _, mem := range m.members() {
		if mem.ID != m.s.selfID && len(mem.PeerURLs) > 0 {
			out = append(out, corruptcheck.PeerHash{ID: mem.ID, URLs: mem.PeerURLs})
		}
	}
	var wg sync.WaitGroup
	for i := range out {
		p := &out[i]
		wg.Go(func() {
			resp, err := m.s.transport.HashKV(ctx, p.ID, rev)
			if err != nil {
				p.Err = peerHashError(err)
				m.s.lg.Warn("failed hash kv request", zap.String("local-member-id", fmt.Sprintf("%x", m.s.selfID)),
					zap.Int64("requested-revision", rev), zap.String("remote-peer-endpoint", strings.Join(p.URLs, ",")),
					zap.Error(p.Err))
				return
			}
			p.Revision = resp.GetHeader().GetRevision()
			p.Hash = mvcc.KeyValueHash{Hash: resp.GetHash(), CompactRevision: resp.GetCompactRevision(), Revision: resp.GetHashRevision()}
		})
	}
	wg.Wait()
	return out
}

// peerHashError turns a peer's HashKV error status back into the error
// the checks tell apart.
func peerHashError(err error) error {
	switch e := rpctypes.Error(err); {
	case errors.Is(e, rpctypes.ErrCompacted):
		return mvcc.ErrCompacted
	case errors.Is(e, rpctypes.ErrFutureRev):
		return mvcc.ErrFutureRev
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition &&
		strings.HasPrefix(st.Message(), "cluster ID mismatch") {
		return corruptcheck.ErrClusterIDMismatch
	}
	return err
}

// RaiseCorrupt proposes the alarm as root, as etcd's server raises it
// whatever the auth settings.
func (m corruptMember) RaiseCorrupt(ctx context.Context, id uint64) {
	ctx, cancel := context.WithTimeout(auth.WithUser(ctx, auth.RootUser), m.s.requestTimeout())
	defer cancel()
	_, err := m.s.store.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT})
	if err != nil {
		m.s.lg.Warn("failed to raise the CORRUPT alarm", zap.String("member-id", fmt.Sprintf("%x", id)), zap.Error(err))
	}
}
