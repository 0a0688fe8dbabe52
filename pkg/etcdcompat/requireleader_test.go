package etcdcompat

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// switchLeader is a Leadership whose leader the test sets.
type switchLeader struct{ lead atomic.Uint64 }

func (l *switchLeader) Leader() uint64                           { return l.lead.Load() }
func (l *switchLeader) IsLearner() bool                          { return false }
func (l *switchLeader) MoveLeader(context.Context, uint64) error { return nil }

// ctxStream is a server stream with nothing but a context.
type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s ctxStream) Context() context.Context { return s.ctx }

// TestStreamsThatAskForALeaderEndWithoutOne: a stream opened with
// hasleader is ended with etcd's "no leader", its handler's context
// canceled, once the member has had no leader for three checks; a stream
// that did not ask goes on, and so does one whose member finds a leader
// again in time.
func TestStreamsThatAskForALeaderEndWithoutOne(t *testing.T) {
	l := &switchLeader{}
	l.lead.Store(1)
	const every = 50 * time.Millisecond
	intercept := requireLeaderStream(l, every, nil)
	info := &grpc.StreamServerInfo{FullMethod: "/etcdserverpb.Watch/Watch"}
	open := func(hasLeader bool) (<-chan error, <-chan struct{}, context.CancelFunc) {
		ctx, cancel := context.WithCancel(context.Background())
		if hasLeader {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(rpctypes.MetadataRequireLeaderKey, rpctypes.MetadataHasLeader))
		}
		handlerDone := make(chan struct{})
		errc := make(chan error, 1)
		go func() {
			errc <- intercept(nil, ctxStream{ctx: ctx}, info, func(_ any, ss grpc.ServerStream) error {
				defer close(handlerDone)
				<-ss.Context().Done()
				return ss.Context().Err()
			})
		}()
		return errc, handlerDone, cancel
	}

	asked, askedHandler, cancelAsked := open(true)
	defer cancelAsked()
	plain, _, cancelPlain := open(false)
	defer cancelPlain()

	// At most two checks without a leader, then a leader again: nothing
	// ends.
	time.Sleep(every / 2)
	l.lead.Store(0)
	time.Sleep(every + every/2)
	l.lead.Store(1)
	time.Sleep(3 * every)
	select {
	case err := <-asked:
		t.Fatalf("the stream ended after a short loss of leader: %v", err)
	default:
	}

	l.lead.Store(0)
	select {
	case err := <-asked:
		if s, _ := status.FromError(err); s.Message() != "etcdserver: no leader" {
			t.Fatalf("stream ended with %v, want etcd's no leader", err)
		}
	case <-time.After(20 * every):
		t.Fatal("the stream that asked for a leader still runs without one")
	}
	select {
	case <-askedHandler:
	case <-time.After(time.Second):
		t.Fatal("the handler's context was not canceled")
	}
	select {
	case err := <-plain:
		t.Fatalf("a stream that did not ask for a leader ended: %v", err)
	default:
	}

	// A new stream that asks for a leader is refused at once meanwhile.
	refused, _, cancelRefused := open(true)
	defer cancelRefused()
	if err := <-refused; err != rpctypes.ErrGRPCNoLeader {
		t.Fatalf("hasleader stream opened without a leader: %v", err)
	}
}
