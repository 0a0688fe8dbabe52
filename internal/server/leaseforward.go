package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
)

// leaderConns keeps gRPC connections to members' peer URLs, where etcd's
// Lease and Cluster services are served beside the raft transport, for the
// requests only the leader can answer. Its methods are safe for concurrent
// use: request goroutines ask for the leader, the store actor forgets
// removed members (membersChanged), Stop closes it.
type leaderConns struct {
	leaderID func() uint64            // the current leader's ID, 0 if none or if it is this member
	peerURLs func(id uint64) []string // a member's peer URLs, nil if unknown
	// creds are the credentials for dialling a peer URL.
	creds func(u *url.URL) credentials.TransportCredentials

	mu      sync.Mutex
	conns   map[uint64]*memberConn // by member ID
	removed map[uint64]bool        // members removed from the cluster, never dialled again
	closed  bool
}

// leaderBackoff paces reconnections to a member that cannot be reached.
// Under gRPC's default the wait grows to two minutes while the forwarder
// keeps asking, and a call fails at once while it lasts: a leader back
// after six seconds away was reached 3.4 s later, 0.4 s with this one. A
// second at most keeps within the request timeout the forwarder retries
// for.
var leaderBackoff = backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}

// memberConn is a connection to a member and the address it was dialled
// at, which changes when the member's peer URLs are updated.
type memberConn struct {
	target string
	conn   *grpc.ClientConn
}

// leader returns a connection to the current leader, dialled on first use
// and again when its peer URL changes: store.ErrNoLeader (wrapped) if there
// is none, or it was removed from the cluster, or has no peer URL;
// store.ErrStopped once Close was called.
func (f *leaderConns) leader() (*grpc.ClientConn, error) {
	id := f.leaderID()
	if id == 0 {
		return nil, store.ErrNoLeader
	}
	urls := f.peerURLs(id)
	if len(urls) == 0 {
		return nil, fmt.Errorf("leader %x has no peer URL: %w", id, store.ErrNoLeader)
	}
	u, err := url.Parse(urls[0])
	if err != nil {
		return nil, fmt.Errorf("leader %x peer URL: %w", id, err)
	}
	target := u.Host
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed:
		return nil, store.ErrStopped
	case f.removed[id]:
		// raft may still name a leader whose removal was just applied.
		return nil, fmt.Errorf("leader %x was removed from the cluster: %w", id, store.ErrNoLeader)
	}
	if mc := f.conns[id]; mc != nil {
		if mc.target == target {
			return mc.conn, nil
		}
		mc.conn.Close() // its peer URLs were updated
		delete(f.conns, id)
	}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(f.creds(u)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: leaderBackoff, MinConnectTimeout: 5 * time.Second}))
	if err != nil {
		return nil, err
	}
	f.conns[id] = &memberConn{target: target, conn: conn}
	return conn, nil
}

// forget closes the connection to member id, which was removed from the
// cluster, and keeps it from being dialled again: a removed member's ID is
// never given to another (see store.RemovedOf). It never blocks on the
// network, so the store actor may call it.
func (f *leaderConns) forget(id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed[id] = true
	if mc := f.conns[id]; mc != nil {
		mc.conn.Close()
		delete(f.conns, id)
	}
}

// Close closes the connections; leader then fails with store.ErrStopped.
func (f *leaderConns) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	for id, mc := range f.conns {
		mc.conn.Close()
		delete(f.conns, id)
	}
}

// leaseForwarder sends a follower's keep-alives and TimeToLive requests to
// the leader, the member whose lease clocks count (lease.Forwarder), on
// the leader's peer URL as etcd does. Its errors are the core packages'
// sentinels, as the lessor's own are.
type leaseForwarder struct {
	conns *leaderConns
	// timeout bounds one forwarded request, retries included: the request
	// timeout, as etcd's followers bound theirs.
	timeout time.Duration
}

// forwardRetryInterval is the pause before a forwarded request is sent
// again, as etcd's followers throttle their retries.
const forwardRetryInterval = 50 * time.Millisecond

// forward runs call against the leader until it answers, as etcd's
// followers do (LeaseRenew and leaseTimeToLive in etcdserver/v3_server.go):
// while there is no leader, while it cannot be reached, and while it
// answers that it no longer leads, has no leader or is stopping, the
// request is sent again, to whichever member leads by then, until the
// request timeout. The caller's identity goes with it
// (etcdcompat.ForwardIdentity). It returns nil, or call's own error if it is a sentinel
// (mvcc.ErrLeaseNotFound), or:
//   - the leader's answer, one of etcd's errors, as the sentinel it was
//     made from (etcdcompat.FromGRPCError);
//   - store.ErrTimeout once the timeout passes, etcd's "request timed out",
//     or store.ErrNoLeader if the last try found no leader, as etcd's
//     waitLeader answers;
//   - ctx's error if the caller gave up; store.ErrStopped once this member
//     stops.
func (f leaseForwarder) forward(ctx context.Context, call func(context.Context, pb.LeaseClient) error) error {
	// The leader checks the caller's permissions too.
	ctx, cancel := context.WithTimeout(etcdcompat.ForwardIdentity(ctx), f.timeout)
	defer cancel()
	// noLeader: the last answer said there is no leader. A call the
	// deadline cuts short answers nothing, so it leaves it as it was.
	noLeader := false
	for {
		conn, err := f.conns.leader()
		switch {
		case errors.Is(err, store.ErrStopped):
			return store.ErrStopped
		case err == nil:
			err = call(ctx, pb.NewLeaseClient(conn))
			if err == nil || errors.Is(err, mvcc.ErrLeaseNotFound) {
				return err
			}
			if s, ok := leaderAnswer(err); ok {
				if !askAgain(s) {
					return s
				}
				err = s
			}
		}
		if ctx.Err() == nil {
			noLeader = errors.Is(err, store.ErrNoLeader)
		}
		select {
		case <-time.After(forwardRetryInterval):
		case <-ctx.Done():
			switch {
			case errors.Is(ctx.Err(), context.Canceled):
				return ctx.Err()
			case noLeader:
				return store.ErrNoLeader
			}
			return store.ErrTimeout
		}
	}
}

// leaderAnswer returns the sentinel error that err, the failure of a
// forwarded call, stands for if it is one of etcd's errors, which the
// leader's etcd API made from that sentinel. A status of the gRPC client's
// own (Unavailable for a leader it cannot reach, Canceled or
// DeadlineExceeded for a call cut short) or any other error is not.
func leaderAnswer(err error) (error, bool) {
	if _, ok := status.FromError(err); !ok {
		return err, false
	}
	s := etcdcompat.FromGRPCError(err)
	_, still := status.FromError(s)
	return s, !still
}

// askAgain reports whether the leader's answer s says that it cannot
// answer but the member leading next may: a leader that could not confirm
// its leadership (lease.ErrNotPrimary) is likely replaced by now.
func askAgain(s error) bool {
	return errors.Is(s, store.ErrNotLeader) || errors.Is(s, store.ErrNoLeader) || errors.Is(s, store.ErrStopped) ||
		errors.Is(s, lease.ErrNotPrimary)
}

// Renew implements lease.Forwarder: one keep-alive on the leader.
func (f leaseForwarder) Renew(ctx context.Context, id int64) (int64, error) {
	var ttl int64
	err := f.forward(ctx, func(ctx context.Context, c pb.LeaseClient) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stream, err := c.LeaseKeepAlive(ctx)
		if err != nil {
			return err
		}
		// io.EOF: the stream has ended, and Recv says why.
		if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		if resp.TTL <= 0 {
			return mvcc.ErrLeaseNotFound
		}
		ttl = resp.TTL
		return nil
	})
	if err != nil {
		return 0, err
	}
	return ttl, nil
}

// TimeToLive implements lease.Forwarder.
func (f leaseForwarder) TimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	var resp *pb.LeaseTimeToLiveResponse
	err := f.forward(ctx, func(ctx context.Context, c pb.LeaseClient) error {
		got, err := c.LeaseTimeToLive(ctx, r)
		if err != nil {
			return err
		}
		if got.TTL == -1 {
			return mvcc.ErrLeaseNotFound
		}
		resp = got
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// requestTimeout is etcd's request timeout (ReqTimeout): 5 s plus two
// election timeouts.
func (s *Server) requestTimeout() time.Duration { return 5*time.Second + 2*s.cfg.ElectionTimeout }

// forwarder returns the lease forwarder; a leader's lessor answers itself,
// so a member alone never uses it.
func (s *Server) forwarder() lease.Forwarder {
	return leaseForwarder{conns: s.leaderConns, timeout: s.requestTimeout()}
}

// newLeaderConns returns the connection pool to this member's leaders.
func (s *Server) newLeaderConns() *leaderConns {
	return &leaderConns{
		leaderID: func() uint64 {
			if st := s.store; st != nil {
				if l := st.Leader(); l != s.selfID {
					return l
				}
			}
			return 0
		},
		peerURLs: s.cluster.peerURLs,
		creds:    s.tls.peerCreds,
		conns:    make(map[uint64]*memberConn),
		removed:  make(map[uint64]bool),
	}
}
