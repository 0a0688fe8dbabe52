package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The peer service, defined by hand: see the package comment.
const (
	serviceName    = "cairn.peer.v1.Raft"
	streamMethod   = "/" + serviceName + "/Stream"
	snapshotMethod = "/" + serviceName + "/Snapshot"
	probeMethod    = "/" + serviceName + "/Probe"
	hashKVMethod   = "/" + serviceName + "/HashKV"

	keyFrom     = "cairn-from-id"
	keyTo       = "cairn-to-id"
	keyCluster  = "cairn-cluster-id"
	keyAccepted = "cairn-accepted"
)

var (
	streamDesc   = grpc.StreamDesc{StreamName: "Stream", ClientStreams: true, ServerStreams: true}
	snapshotDesc = grpc.StreamDesc{StreamName: "Snapshot", ClientStreams: true}
)

// raftServer is what the service's handlers call; gRPC checks at
// registration that the Transport implements it.
type raftServer interface {
	serveStream(ss grpc.ServerStream) error
	serveSnapshot(ss grpc.ServerStream) error
	serveProbe(ctx context.Context) (*emptypb.Empty, error)
	serveHashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*raftServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Probe",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			if err := dec(&emptypb.Empty{}); err != nil {
				return nil, err
			}
			return srv.(raftServer).serveProbe(ctx)
		},
	}, {
		MethodName: "HashKV",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var rev wrapperspb.Int64Value
			if err := dec(&rev); err != nil {
				return nil, err
			}
			return srv.(raftServer).serveHashKV(ctx, rev.GetValue())
		},
	}},
	Streams: []grpc.StreamDesc{
		{
			StreamName:    streamDesc.StreamName,
			Handler:       func(srv any, ss grpc.ServerStream) error { return srv.(raftServer).serveStream(ss) },
			ClientStreams: true,
			ServerStreams: true,
		},
		{
			StreamName:    snapshotDesc.StreamName,
			Handler:       func(srv any, ss grpc.ServerStream) error { return srv.(raftServer).serveSnapshot(ss) },
			ClientStreams: true,
		},
	},
}

// Register adds the peer service to s, the gRPC server the caller runs on
// the peer listener (created with ServerOptions). Call it once, before s
// serves. Calls that arrive after Stop are refused with Unavailable.
func (t *Transport) Register(s grpc.ServiceRegistrar) { s.RegisterService(&serviceDesc, t) }

var errStopping = status.Error(codes.Unavailable, "member is stopping")

// accept checks a call's metadata and returns the sender's member ID.
func (t *Transport) accept(ctx context.Context) (uint64, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	from, err1 := mdID(md, keyFrom)
	to, err2 := mdID(md, keyTo)
	cid, err3 := mdID(md, keyCluster)
	if err := errors.Join(err1, err2, err3); err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "bad peer metadata: %v", err)
	}
	// A foreign cluster or member is a misconfiguration; an unknown member
	// is usually one whose addition this member has not applied yet.
	code, level := codes.FailedPrecondition, zapcore.ErrorLevel
	var msg string
	switch {
	case cid != t.cfg.ClusterID:
		msg = fmt.Sprintf("cluster ID mismatch: local %x, remote %x", t.cfg.ClusterID, cid)
	case to != t.cfg.ID:
		msg = fmt.Sprintf("member ID mismatch: local %x, remote expects %x", t.cfg.ID, to)
	case t.wasRemoved(from):
		// Told apart so that the removed member learns it and stops, as
		// etcd's members answer a removed one 410 Gone.
		code, level = codes.NotFound, zapcore.WarnLevel
		msg = fmt.Sprintf("member %x was removed from the cluster", from)
	case !t.heard(from):
		code, level = codes.PermissionDenied, zapcore.WarnLevel
		msg = fmt.Sprintf("member %x does not know member %x (not added, or removed)", t.cfg.ID, from)
	default:
		t.forgetRefusals("in/" + hexID(from) + "/")
		return from, nil
	}
	t.logOnce(level, "in/"+hexID(from)+"/"+msg, "refused a stream from a remote peer",
		zap.String("remote-peer-id", hexID(from)),
		zap.String("local-member-cluster-id", hexID(t.cfg.ClusterID)),
		zap.String("remote-peer-cluster-id", hexID(cid)),
		zap.String("reason", msg))
	return 0, status.Error(code, msg)
}

func mdID(md metadata.MD, key string) (uint64, error) {
	v := md.Get(key)
	if len(v) != 1 {
		return 0, fmt.Errorf("want one %s, have %d", key, len(v))
	}
	id, err := strconv.ParseUint(v[0], 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	return id, nil
}

// serveProbe answers a peer's Probe call, with which it measures the round
// trip.
func (t *Transport) serveProbe(ctx context.Context) (*emptypb.Empty, error) {
	if _, err := t.accept(ctx); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// serveHashKV answers a peer's HashKV call with ServeHashKV's function, as etcd's
// members answer /members/hashkv on their peer URLs.
func (t *Transport) serveHashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error) {
	if _, err := t.accept(ctx); err != nil {
		return nil, err
	}
	f := t.hashKV.Load()
	if f == nil {
		return nil, status.Error(codes.Unimplemented, "member does not serve HashKV")
	}
	return (*f)(ctx, rev)
}

// serveStream is the receiving end of a peer's Stream call. It returns when
// the stream ends or the transport stops; its receive loop runs on a
// tracked goroutine so that Stop need not wait for the peer to hang up.
func (t *Transport) serveStream(ss grpc.ServerStream) error {
	from, err := t.accept(ss.Context())
	if err != nil {
		return err
	}
	if err := ss.SendHeader(metadata.Pairs(keyAccepted, "1")); err != nil {
		return err
	}
	ended := make(chan error, 1)
	if !t.goTracked(func() { ended <- t.receive(ss, from) }) {
		return errStopping
	}
	select {
	case err := <-ended:
		return err
	case <-t.done:
		return errStopping
	}
}

// receive hands the messages of a stream from member from to the Handler
// until the stream ends.
func (t *Transport) receive(ss grpc.ServerStream, from uint64) error {
	received := t.metrics.receivedBytes.WithLabelValues(hexID(from))
	failures := t.metrics.receivedFailures.WithLabelValues(hexID(from))
	for {
		m := &raftpb.Message{}
		if err := ss.RecvMsg(m); err != nil {
			if err == io.EOF {
				return nil
			}
			if c := status.Code(err); c == codes.Internal || c == codes.ResourceExhausted {
				// gRPC's answer to a message that did not decode or
				// exceeded the limit; not a stream that went away.
				failures.Inc()
			}
			return err
		}
		if t.isStopped() {
			return errStopping
		}
		if !t.heard(from) {
			return status.Errorf(codes.NotFound, "member %x was removed from the cluster", from)
		}
		received.Add(float64(proto.Size(m)))
		if m.GetFrom() != from || m.GetTo() != t.cfg.ID || m.GetType() == raftpb.MsgSnap {
			failures.Inc()
			t.lg.Warn("dropped unexpected message from remote peer", zap.String("remote-peer-id", hexID(from)),
				zap.Stringer("type", m.GetType()), zap.String("from", hexID(m.GetFrom())), zap.String("to", hexID(m.GetTo())))
			continue
		}
		t.cfg.Handler.Step(m)
	}
}

// serveSnapshot is the receiving end of a peer's Snapshot call. One tracked
// goroutine pumps the chunks into a pipe, another runs Handler.Snapshot on
// the pipe's reader; the handler waits for the restore, or for Stop, which
// breaks the pipe.
func (t *Transport) serveSnapshot(ss grpc.ServerStream) error {
	start := time.Now()
	from, err := t.accept(ss.Context())
	if err != nil {
		return err
	}
	var head wrapperspb.BytesValue
	if err := ss.RecvMsg(&head); err != nil {
		return err
	}
	recvBytes := t.metrics.receivedBytes.WithLabelValues(hexID(from))
	recvBytes.Add(float64(proto.Size(&head)))
	m := &raftpb.Message{}
	if err := proto.Unmarshal(head.GetValue(), m); err != nil {
		t.metrics.receivedFailures.WithLabelValues(hexID(from)).Inc()
		t.metrics.snapReceiveFailed.WithLabelValues(hexID(from)).Inc()
		return status.Errorf(codes.InvalidArgument, "bad MsgSnap: %v", err)
	}
	if m.GetType() != raftpb.MsgSnap || m.GetFrom() != from || m.GetTo() != t.cfg.ID {
		t.metrics.receivedFailures.WithLabelValues(hexID(from)).Inc()
		t.metrics.snapReceiveFailed.WithLabelValues(hexID(from)).Inc()
		return status.Errorf(codes.InvalidArgument, "bad MsgSnap: %s from %x to %x", m.GetType(), m.GetFrom(), m.GetTo())
	}
	index := m.GetSnapshot().GetMetadata().GetIndex()
	lg := t.lg.With(zap.String("remote-peer-id", hexID(from)), zap.Uint64("snapshot-index", index))
	lg.Info("receiving database snapshot")
	receiving := t.metrics.snapReceiving.WithLabelValues(hexID(from))
	receiving.Inc()
	defer receiving.Dec()

	pr, pw := io.Pipe()
	var received atomic.Int64
	restored := make(chan error, 1)
	pump := func() {
		for {
			var c wrapperspb.BytesValue
			if err := ss.RecvMsg(&c); err != nil {
				if err == io.EOF {
					pw.Close()
				} else {
					pw.CloseWithError(err)
				}
				return
			}
			received.Add(int64(len(c.GetValue())))
			recvBytes.Add(float64(proto.Size(&c)))
			if _, err := pw.Write(c.GetValue()); err != nil {
				return // the Handler stopped reading
			}
		}
	}
	restore := func() {
		err := t.cfg.Handler.Snapshot(m, pr)
		pr.CloseWithError(errors.New("snapshot restore ended"))
		if err == nil && !t.isStopped() {
			// Here rather than on the handler's goroutine, which Stop
			// does not wait for.
			t.cfg.Handler.Step(m)
		}
		restored <- err
	}
	if !t.goTracked(pump) {
		return errStopping
	}
	if !t.goTracked(restore) {
		pw.CloseWithError(ErrStopped)
		return errStopping
	}
	select {
	case err = <-restored:
	case <-t.done:
		pw.CloseWithError(ErrStopped)
		return errStopping
	}
	if err != nil {
		lg.Warn("failed to restore database snapshot", zap.Int64("bytes", received.Load()), zap.Error(err))
		t.metrics.snapReceiveFailed.WithLabelValues(hexID(from)).Inc()
		return status.Errorf(codes.Aborted, "restoring snapshot: %v", err)
	}
	took := time.Since(start)
	lg.Info("received and restored database snapshot", zap.Int64("bytes", received.Load()), zap.Duration("took", took))
	t.metrics.snapReceived.WithLabelValues(hexID(from)).Inc()
	t.metrics.snapReceiveTime.WithLabelValues(hexID(from)).Observe(took.Seconds())
	return ss.SendMsg(&emptypb.Empty{})
}
