package etcdcompat

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/internal/watch"
)

// watchServer implements etcd's Watch service over the watch hub: the
// receive loop runs here, and the stream's actor sends every response.
type watchServer struct {
	pb.UnimplementedWatchServer
	st  Store
	hub *watch.Hub
}

func (s *watchServer) Watch(stream pb.Watch_WatchServer) error {
	ws := s.hub.Open(func(r *pb.WatchResponse) error {
		h := s.st.ClusterHeader()
		h.Revision = r.Header.GetRevision()
		r.Header = h
		return stream.Send(r)
	})
	// Close waits for the actor, which may be blocked sending to this
	// stream; that send fails only once the handler has returned.
	defer func() { go ws.Close() }()
	errc := make(chan error, 1)
	go func() { errc <- recvWatchRequests(stream, ws) }()
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
func recvWatchRequests(stream pb.Watch_WatchServer, ws *watch.Stream) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if errors.Is(err, context.Canceled) || errors.Is(stream.Context().Err(), context.Canceled) {
				return rpctypes.ErrGRPCWatchCanceled
			}
			return err
		}
		switch u := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if u.CreateRequest != nil {
				ws.Create(u.CreateRequest)
			}
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
