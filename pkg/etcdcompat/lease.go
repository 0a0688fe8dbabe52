package etcdcompat

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/lease"
)

// Lessor is the lease service as the etcd API needs it; *lease.Lessor
// implements it.
type Lessor interface {
	Grant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	Revoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// Renew returns the lease's TTL, or lease.ErrLeaseNotFound.
	Renew(ctx context.Context, id int64) (int64, error)
	// TimeToLive fails with lease.ErrLeaseNotFound for an unknown lease.
	TimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	Leases(ctx context.Context) (*pb.LeaseLeasesResponse, error)
	Header() *pb.ResponseHeader
}

type leaseServer struct {
	pb.UnimplementedLeaseServer
	le Lessor
	// failures reports failed keep-alive streams of clients; nil on the
	// peer server.
	failures *streamFailures
}

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := s.le.Grant(ctx, r)
	return resp, toGRPCError(err)
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.le.Revoke(ctx, r)
	return resp, toGRPCError(err)
}

// LeaseTimeToLive answers an unknown lease with TTL -1, not an error, as
// etcd does.
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.le.TimeToLive(ctx, r)
	if errors.Is(err, lease.ErrLeaseNotFound) {
		return &pb.LeaseTimeToLiveResponse{Header: s.le.Header(), ID: r.ID, TTL: -1}, nil
	}
	return resp, toGRPCError(err)
}

func (s *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := s.le.Leases(ctx)
	return resp, toGRPCError(err)
}

// LeaseKeepAlive renews a lease per request; an unknown lease gets a
// response with TTL 0 and the stream goes on, as in etcd.
func (s *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			s.failures.failed(ctx, err, "receive", "lease-keepalive", "failed to receive lease keepalive request from gRPC stream")
			return err
		}
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID, Header: s.le.Header()}
		ttl, err := s.le.Renew(ctx, req.ID)
		switch {
		case errors.Is(err, lease.ErrLeaseNotFound):
			ttl = 0
		case err != nil:
			return toGRPCError(err)
		}
		resp.TTL = ttl
		if err := stream.Send(resp); err != nil {
			s.failures.failed(ctx, err, "send", "lease-keepalive", "failed to send lease keepalive response to gRPC stream")
			return err
		}
	}
}
