package etcdcompat

import (
	"context"

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

// requireLeaderUnary refuses a call that asks for a leader, with etcd's
// "etcdserver: no leader", while this member knows none.
func requireLeaderUnary(l Leadership) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if l != nil && wantsLeader(ctx) && l.Leader() == 0 {
			return nil, rpctypes.ErrGRPCNoLeader
		}
		return handler(ctx, req)
	}
}

// requireLeaderStream does the same for streams, when they open.
func requireLeaderStream(l Leadership) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if l != nil && wantsLeader(ss.Context()) && l.Leader() == 0 {
			return rpctypes.ErrGRPCNoLeader
		}
		return handler(srv, ss)
	}
}
