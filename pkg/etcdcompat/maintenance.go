package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maintenanceServer implements etcd's Maintenance service. A dependency
// left out of Options (Leadership, Snapshots) makes its RPC answer
// codes.Unimplemented. With auth enabled, every RPC is checked first as
// etcd checks it: Status and listing alarms need a user, the rest root.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	st   Store
	lead Leadership
	snap Snapshotter
}

// MoveLeader hands leadership to another voter, as etcd's: only the leader
// can, and it answers once the target leads.
func (s *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	if s.lead == nil {
		return nil, status.Error(codes.Unimplemented, "method MoveLeader not implemented")
	}
	if err := s.lead.MoveLeader(ctx, r.GetTargetID()); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MoveLeaderResponse{Header: s.st.Header()}, nil
}

func (s *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	if err := s.st.RequireIdentity(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := s.st.Status(ctx)
	return resp, toGRPCError(err)
}

// Alarm lists, raises or clears alarms through raft, as etcd's: listing
// needs a user, raising and clearing root (any alarm, for any member).
func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	check := s.st.CheckAdmin
	if r.GetAction() == pb.AlarmRequest_GET {
		check = s.st.RequireIdentity
	}
	if err := check(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := s.st.Alarm(ctx, r)
	return resp, toGRPCError(err)
}

// Defragment reclaims free space. Unlike etcd's, it does not block the
// member's reads and writes while it runs.
func (s *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	if err := s.st.Defragment(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	// etcd answers without a header.
	return &pb.DefragmentResponse{}, nil
}

// Hash answers with a hash of the member's whole state. Members with the
// same state agree, but the value is not etcd's (see docs/limitations.md).
func (s *maintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := s.st.Hash(ctx)
	return resp, toGRPCError(err)
}

// HashKV answers with etcd's own hash of the key-value history up to
// r.Revision, so it can be compared with etcd members' too.
func (s *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := s.st.HashKV(ctx, r.Revision)
	return resp, toGRPCError(err)
}

// Snapshot streams the member's state as etcd's snapshot: a bbolt
// database in etcd's layout followed by its SHA-256. Only root may, as in
// etcd.
func (s *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream pb.Maintenance_SnapshotServer) error {
	if err := s.st.CheckAdmin(stream.Context()); err != nil {
		return toGRPCError(err)
	}
	if s.snap == nil {
		return status.Error(codes.Unimplemented, "method Snapshot not implemented")
	}
	return toGRPCError(s.snap.Snapshot(stream.Context(), stream.Send))
}

// Downgrade validates, enables or cancels a cluster downgrade, as etcd's:
// only root may, whatever the action.
func (s *maintenanceServer) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	if err := s.st.CheckAdmin(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := s.st.Downgrade(ctx, r)
	return resp, toGRPCError(err)
}
