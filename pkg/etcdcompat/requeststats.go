package etcdcompat

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"
)

// DefaultWarningUnaryRequestDuration is etcd's --warning-unary-request-duration.
const DefaultWarningUnaryRequestDuration = 300 * time.Millisecond

// requestStats logs each unary call as etcd's log interceptor does: a call
// slower than warn as a warning, every call at debug level, both as
// "request stats" with etcd's fields. It runs outside every other
// interceptor, so the time is the whole call's.
func requestStats(lg *zap.Logger, warn time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		took := time.Since(start)
		debug := lg.Core().Enabled(zap.DebugLevel)
		if !debug && took <= warn {
			return resp, err
		}
		log := lg.Warn
		if debug {
			log = lg.Debug
		}
		remote := "No remote client info."
		if p, ok := peer.FromContext(ctx); ok {
			remote = p.Addr.String()
		}
		reqCount, reqSize, respCount, respSize, content := describeCall(req, resp)
		log("request stats",
			zap.Time("start time", start),
			zap.Duration("time spent", took),
			zap.String("remote", remote),
			zap.String("response type", info.FullMethod),
			zap.Int64("request count", reqCount),
			zap.Int("request size", reqSize),
			zap.Int64("response count", respCount),
			zap.Int("response size", respSize),
			zap.String("request content", content))
		return resp, err
	}
}

// describeCall gives the counts, sizes and text etcd logs of a KV call:
// for a txn, the operations of the branch it took; values left out of
// puts. Other calls are described as -1, as etcd does.
func describeCall(req, resp any) (reqCount int64, reqSize int, respCount int64, respSize int, content string) {
	switch resp := resp.(type) {
	case *pb.RangeResponse:
		if r, ok := req.(*pb.RangeRequest); ok {
			reqSize, content = proto.Size(r), r.String()
		}
		if resp != nil {
			respCount, respSize = resp.GetCount(), proto.Size(resp)
		}
	case *pb.PutResponse:
		if r, ok := req.(*pb.PutRequest); ok {
			reqCount, reqSize, content = 1, proto.Size(r), pb.NewLoggablePutRequest(r).String()
		}
		if resp != nil {
			respSize = proto.Size(resp)
		}
	case *pb.DeleteRangeResponse:
		if r, ok := req.(*pb.DeleteRangeRequest); ok {
			reqSize, content = proto.Size(r), r.String()
		}
		if resp != nil {
			respCount, respSize = resp.GetDeleted(), proto.Size(resp)
		}
	case *pb.TxnResponse:
		if r, ok := req.(*pb.TxnRequest); ok && resp != nil {
			ops := r.GetFailure()
			if resp.GetSucceeded() {
				ops = r.GetSuccess()
			}
			reqCount = int64(len(ops))
			for _, op := range ops {
				reqSize += proto.Size(op)
			}
			content = pb.NewLoggableTxnRequest(r).String()
		}
		if resp != nil {
			respSize = proto.Size(resp)
		}
	default:
		return -1, -1, -1, -1, ""
	}
	return reqCount, reqSize, respCount, respSize, content
}
