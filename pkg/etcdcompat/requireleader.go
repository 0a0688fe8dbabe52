package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// wantsLeader reports whether a call carries clientv3's WithRequireLeader
// metadata (hasleader=true).
func wantsLeader(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	vs := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(vs) > 0 && vs[0] == rpctypes.MetadataHasLeader
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

// requireLeaderUnary refuses what a learner does not serve, with etcd's
// "rpc not supported for learner", and a call that asks for a leader, with
// etcd's "etcdserver: no leader", while this member knows none.
func requireLeaderUnary(l Leadership) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if l != nil && l.IsLearner() && !learnerServes(req) {
			return nil, rpctypes.ErrGRPCNotSupportedForLearner
		}
		if l != nil && wantsLeader(ctx) && l.Leader() == 0 {
			return nil, rpctypes.ErrGRPCNoLeader
		}
		return handler(ctx, req)
	}
}

// requireLeaderStream does the same for streams, when they open; a
// learner serves none but Maintenance.Snapshot, as in etcd.
func requireLeaderStream(l Leadership) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if l != nil && l.IsLearner() && info.FullMethod != "/etcdserverpb.Maintenance/Snapshot" {
			return rpctypes.ErrGRPCNotSupportedForLearner
		}
		if l != nil && wantsLeader(ss.Context()) && l.Leader() == 0 {
			return rpctypes.ErrGRPCNoLeader
		}
		return handler(srv, ss)
	}
}
