package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// kvServer implements etcd's KV service.
type kvServer struct {
	pb.UnimplementedKVServer
	st Store
}

func (s *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	resp, err := s.st.Range(ctx, r)
	return resp, toGRPCError(err)
}

func (s *kvServer) RangeStream(r *pb.RangeRequest, stream pb.KV_RangeStreamServer) error {
	err := s.st.RangeStream(stream.Context(), r, func(resp *pb.RangeResponse) error {
		return stream.Send(&pb.RangeStreamResponse{RangeResponse: resp})
	})
	return toGRPCError(err)
}

func (s *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := s.st.Put(ctx, r)
	return resp, toGRPCError(err)
}

func (s *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := s.st.DeleteRange(ctx, r)
	return resp, toGRPCError(err)
}

func (s *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	resp, err := s.st.Txn(ctx, r)
	return resp, toGRPCError(err)
}

func (s *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.st.Compact(ctx, r)
	return resp, toGRPCError(err)
}
