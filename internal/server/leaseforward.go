package server

import (
	"context"
	"fmt"
	"net/url"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
)

// leaderConns keeps gRPC connections to members' peer URLs, where etcd's
// Lease and Cluster services are served beside the raft transport, for the
// requests only the leader can answer.
type leaderConns struct {
	leaderID func() uint64            // the current leader's ID, 0 if none or if it is this member
	peerURLs func(id uint64) []string // a member's peer URLs, nil if unknown

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by target
}

// leaseForwarder sends a follower's keep-alives and TimeToLive requests to
// the leader, the member whose lease clocks count (lease.Forwarder), on
// the leader's peer URL as etcd does.
type leaseForwarder struct{ conns *leaderConns }

// client returns a Lease client of the leader.
func (f leaseForwarder) client() (pb.LeaseClient, error) {
	conn, err := f.conns.leader()
	if err != nil {
		return nil, err
	}
	return pb.NewLeaseClient(conn), nil
}

// leader returns a connection to the current leader.
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
	conn := f.conns[target]
	if conn == nil {
		var err error
		if conn, err = grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			return nil, err
		}
		f.conns[target] = conn
	}
	return conn, nil
}

// Renew implements lease.Forwarder: one keep-alive on the leader.
func (f leaseForwarder) Renew(ctx context.Context, id int64) (int64, error) {
	c, err := f.client()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.LeaseKeepAlive(ctx)
	if err != nil {
		return 0, err
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return 0, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	if resp.TTL <= 0 {
		return 0, mvcc.ErrLeaseNotFound
	}
	return resp.TTL, nil
}

// TimeToLive implements lease.Forwarder.
func (f leaseForwarder) TimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	c, err := f.client()
	if err != nil {
		return nil, err
	}
	resp, err := c.LeaseTimeToLive(ctx, r)
	if err != nil {
		return nil, err
	}
	if resp.TTL == -1 {
		return nil, mvcc.ErrLeaseNotFound
	}
	return resp, nil
}

// Close closes the connections.
func (f *leaderConns) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t, c := range f.conns {
		c.Close()
		delete(f.conns, t)
	}
}

// forwarder returns the lease forwarder; a leader's lessor answers itself,
// so a member alone never uses it.
func (s *Server) forwarder() lease.Forwarder { return leaseForwarder{conns: s.leaderConns} }

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
		conns:    make(map[string]*grpc.ClientConn),
	}
}
