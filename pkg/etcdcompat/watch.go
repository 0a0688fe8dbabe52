package etcdcompat

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/watch"
)

// watchServer implements etcd's Watch service over the watch hub: the
// receive loop runs here, and the stream's actor sends every response.
type watchServer struct {
	pb.UnimplementedWatchServer
	st       Store
	hub      *watch.Hub
	failures *streamFailures
}

func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ws := s.hub.Open(func(r *pb.WatchResponse) error {
		if r.Header == nil {
			r.Header = &pb.ResponseHeader{}
		}
		s.st.StampHeader(r.Header)
		err := stream.Send(r)
		if err != nil {
			s.failures.failed(stream.Context(), err, "send", "watch", "failed to send watch response to gRPC stream")
		}
		return err
	})
	// Close waits for the actor, which may be blocked sending to this
	// stream; that send fails only once the handler has returned.
	defer func() { go ws.Close() }()
	errc := make(chan error, 1)
	go func() { errc <- s.recvWatchRequests(stream, ws) }()
	select {
	case err := <-errc:
		if err != nil {
			return err
		}
		// The client closed its side; etcd keeps sending until the
		// stream ends.
		select {
		case <-stream.Context().Done():
			return nil
		case <-ws.Done():
			return rpctypes.ErrGRPCStopped
		}
	case <-ws.Done():
		return rpctypes.ErrGRPCStopped
	}
}

// recvWatchRequests hands the stream's requests to ws until the client
// closes its side (nil) or the stream fails.
func (s *watchServer) recvWatchRequests(stream pb.Watch_WatchServer, ws *watch.Stream) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			s.failures.failed(stream.Context(), err, "receive", "watch", "failed to receive watch request from gRPC stream")
			if errors.Is(err, context.Canceled) || errors.Is(stream.Context().Err(), context.Canceled) {
				return rpctypes.ErrGRPCWatchCanceled
			}
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest == nil {
				break
			}
			if reason := s.refusal(stream.Context(), u.CreateRequest); reason != "" {
				ws.Refuse(reason)
				break
			}
			ws.Create(u.CreateRequest)
		case *pb.WatchRequest_CancelRequest:
			if u.CancelRequest != nil {
				ws.Cancel(u.CancelRequest.WatchId)
			}
		case *pb.WatchRequest_ProgressRequest:
			if u.ProgressRequest != nil {
				ws.RequestProgress()
			}
		}
	}
}

// refusal is etcd's answer to a watch the caller may not create: the
// cancel reason of its created and canceled response, "" if it may. A
// watch from a negative revision is not checked: the stream answers it
// as compacted, as etcd does before its permission check.
func (s *watchServer) refusal(ctx context.Context, r *pb.WatchCreateRequest) string {
	if r.StartRevision < 0 {
		return ""
	}
	key := r.Key
	if len(key) == 0 {
		key = []byte{0} // the smallest key, as the stream takes it
	}
	err := s.st.CheckWatch(ctx, key, r.RangeEnd)
	switch {
	case err == nil:
		return ""
	case errors.Is(err, auth.ErrInvalidAuthToken):
		return rpctypes.ErrGRPCInvalidAuthToken.Error()
	case errors.Is(err, auth.ErrAuthOldRevision):
		return rpctypes.ErrGRPCAuthOldRevision.Error()
	case errors.Is(err, auth.ErrUserEmpty):
		return rpctypes.ErrGRPCUserEmpty.Error()
	}
	// Whatever else failed, etcd answers that permission is denied.
	return rpctypes.ErrGRPCPermissionDenied.Error()
}
