package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// maintenanceServer implements the parts of etcd's Maintenance service
// Cairn supports so far; the rest answer codes.Unimplemented (see
// docs/limitations.md).
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	st Store
}

func (s *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	resp, err := s.st.Status(ctx)
	return resp, toGRPCError(err)
}

// Alarm reports no alarms: Cairn raises none yet.
func (s *maintenanceServer) Alarm(_ context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return &pb.AlarmResponse{Header: s.st.Header()}, nil
}

// Defragment reclaims free space. Unlike etcd's, it does not block the
// member's reads and writes while it runs.
func (s *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.st.Defragment(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.DefragmentResponse{Header: s.st.Header()}, nil
}
