package etcdcompat

import (
	"context"
	"sync"
	"time"
	"unicode/utf8"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// wantsLeader reports whether a call carries clientv3's WithRequireLeader
// metadata (hasleader=true).
func wantsLeader(ctx context.Context) bool {
	return firstOf(ctx, rpctypes.MetadataRequireLeaderKey) == rpctypes.MetadataHasLeader
}

// learnerServes reports whether a learner answers req: as in etcd, only
// Status and serializable ranges.
func learnerServes(req any) bool {
	switch r := req.(type) {
	case *pb.StatusRequest:
		return true
	case *pb.RangeRequest:
		return r.GetSerializable()
	}
	return false
}

// clientVersion returns the API version a call's client declares
// (clientv3 sends its own), "unknown" if none, and refuses one that is not
// UTF-8 with etcd's "invalid client api version".
func clientVersion(ctx context.Context) (string, error) {
	v := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataClientAPIVersionKey)
	if len(v) == 0 {
		return "unknown", nil
	}
	if !utf8.ValidString(v[0]) {
		return "", rpctypes.ErrGRPCInvalidClientAPIVersion
	}
	return v[0], nil
}

// requireLeaderUnary refuses what a learner does not serve, with etcd's
// "rpc not supported for learner", counts the call in m by its client's
// API version, and refuses a call that asks for a leader, with etcd's
// "etcdserver: no leader", while this member knows none.
func requireLeaderUnary(l Leadership, m *RequestMetrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if l != nil && l.IsLearner() && !learnerServes(req) {
			return nil, rpctypes.ErrGRPCNotSupportedForLearner
		}
		ver, err := clientVersion(ctx)
		if err != nil {
			return nil, err
		}
		m.count(false, ver)
		if l != nil && wantsLeader(ctx) && l.Leader() == 0 {
			return nil, rpctypes.ErrGRPCNoLeader
		}
		return handler(ctx, req)
	}
}

// requireLeaderStream does the same for streams, when they open; a
// learner serves none but Maintenance.Snapshot, as in etcd. A stream that
// asked for a leader is also ended, with "no leader", when the member
// later goes without one for maxNoLeaderChecks checks an election timeout
// apart (see leaderMonitor).
func requireLeaderStream(l Leadership, electionTimeout time.Duration, m *RequestMetrics) grpc.StreamServerInterceptor {
	if electionTimeout <= 0 {
		electionTimeout = time.Second
	}
	mon := &leaderMonitor{l: l, every: electionTimeout, streams: make(map[*leaderStream]struct{})}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if l != nil && l.IsLearner() && info.FullMethod != "/etcdserverpb.Maintenance/Snapshot" {
			return rpctypes.ErrGRPCNotSupportedForLearner
		}
		ver, err := clientVersion(ss.Context())
		if err != nil {
			return err
		}
		m.count(true, ver)
		if l == nil || !wantsLeader(ss.Context()) {
			return handler(srv, ss)
		}
		if l.Leader() == 0 {
			return rpctypes.ErrGRPCNoLeader
		}
		return mon.serve(srv, ss, handler)
	}
}

// maxNoLeaderChecks is how many checks in a row, an election timeout
// apart, must find no leader before the streams that asked for one are
// ended: reopening a stream costs more than refusing a new request, so
// etcd waits this long.
const maxNoLeaderChecks = 3

// leaderMonitor ends the streams opened with hasleader once the member has
// gone without a leader for maxNoLeaderChecks checks. It checks only while
// such streams are open.
type leaderMonitor struct {
	l     Leadership
	every time.Duration

	mu      sync.Mutex
	streams map[*leaderStream]struct{}
	running bool
}

// leaderStream is a stream whose context the monitor can end.
type leaderStream struct {
	grpc.ServerStream
	ctx    context.Context
	cancel context.CancelFunc
	lost   chan struct{} // closed when the monitor ends the stream
}

func (s *leaderStream) Context() context.Context { return s.ctx }

// serve runs handler on ss, ending it with etcd's "no leader" if the
// monitor finds the member without a leader for too long. The handler is
// left to return on its own once its context is canceled; the stream's
// status is sent at once.
func (m *leaderMonitor) serve(srv any, ss grpc.ServerStream, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	s := &leaderStream{ServerStream: ss, ctx: ctx, cancel: cancel, lost: make(chan struct{})}
	m.add(s)
	defer m.remove(s)
	done := make(chan error, 1)
	go func() { done <- handler(srv, s) }()
	select {
	case err := <-done:
		return err
	case <-s.lost:
		return rpctypes.ErrGRPCNoLeader
	}
}

func (m *leaderMonitor) add(s *leaderStream) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.streams[s] = struct{}{}
	if !m.running {
		m.running = true
		go m.run()
	}
}

func (m *leaderMonitor) remove(s *leaderStream) {
	m.mu.Lock()
	delete(m.streams, s)
	m.mu.Unlock()
}

// run checks for a leader every election timeout while streams are open.
func (m *leaderMonitor) run() {
	t := time.NewTicker(m.every)
	defer t.Stop()
	misses := 0
	for range t.C {
		if m.l.Leader() == 0 {
			misses++
		} else {
			misses = 0
		}
		m.mu.Lock()
		if len(m.streams) == 0 {
			m.running = false
			m.mu.Unlock()
			return
		}
		if misses >= maxNoLeaderChecks {
			for s := range m.streams {
				close(s.lost)
				s.cancel()
			}
			clear(m.streams)
		}
		m.mu.Unlock()
	}
}
