package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// clusterServer implements etcd's Cluster service; membership changes are
// not supported yet and answer codes.Unimplemented.
type clusterServer struct {
	pb.UnimplementedClusterServer
	st Store
	cl Cluster
}

func (s *clusterServer) MemberList(_ context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	return &pb.MemberListResponse{Header: s.st.ClusterHeader(), Members: s.cl.Members()}, nil
}
