package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// fakeWatchStream behaves as watch.Stream does towards the handler: one
// goroutine of its own passes responses to send, one at a time, and Close
// waits for that goroutine to end.
type fakeWatchStream struct {
	send   func(*etcdserverpb.WatchResponse) error
	quit   chan struct{}
	exited chan struct{}
	sent   atomic.Int64
}

func (s *fakeWatchStream) Create(*etcdserverpb.WatchCreateRequest) {
	go func() {
		defer close(s.exited)
		if s.send(&etcdserverpb.WatchResponse{Created: true}) != nil {
			return
		}
		for rev := int64(1); ; rev++ {
			resp := &etcdserverpb.WatchResponse{Header: &etcdserverpb.ResponseHeader{Revision: rev}}
			if s.send(resp) != nil {
				return
			}
			s.sent.Add(1)
			select {
			case <-s.quit:
				return
			default:
			}
		}
	}()
}

func (s *fakeWatchStream) Close() {
	close(s.quit)
	<-s.exited
}

func (s *fakeWatchStream) Done() <-chan struct{} { return nil }

// stalledWriter is a client connection whose socket buffer is full: every
// write blocks until the client goes away, and then fails.
type stalledWriter struct {
	header http.Header
	gone   chan struct{}
}

func (w *stalledWriter) Header() http.Header { return w.header }
func (w *stalledWriter) WriteHeader(int)     {}
func (w *stalledWriter) Flush()              {}
func (w *stalledWriter) Write(p []byte) (int, error) {
	<-w.gone
	return 0, errors.New("connection reset by peer")
}

// TestWatchSlowClientGoneReleasesStream is the regression test for a leak:
// an SSE client that fell behind, so that the stream's goroutine was
// blocked on the full response buffer, and then disconnected, left the
// handler waiting in stream.Close for ever, with the stream and its
// goroutines.
func TestWatchSlowClientGoneReleasesStream(t *testing.T) {
	var stream *fakeWatchStream
	opened := make(chan struct{})
	h := New(newFakeBackend(), Options{Watch: func(send func(*etcdserverpb.WatchResponse) error) WatchStream {
		stream = &fakeWatchStream{send: send, quit: make(chan struct{}), exited: make(chan struct{})}
		close(opened)
		return stream
	}})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &stalledWriter{header: http.Header{}, gone: make(chan struct{})}
	req := httptest.NewRequest(http.MethodGet, "/v1/watch/r/?prefix=true", nil).WithContext(ctx)
	served := make(chan struct{})
	go func() {
		defer close(served)
		h.ServeHTTP(w, req)
	}()

	<-opened
	// The handler is blocked writing the first response; the buffer fills
	// behind it and the stream's goroutine then blocks too.
	deadline := time.Now().Add(5 * time.Second)
	for stream.sent.Load() < watchBuffer {
		if time.Now().After(deadline) {
			t.Fatalf("stream sent %d responses, want the buffer (%d) full", stream.sent.Load(), watchBuffer)
		}
		time.Sleep(time.Millisecond)
	}

	close(w.gone) // the client disconnects
	cancel()
	select {
	case <-served:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not return after the client disconnected: the watch stream is leaked")
	}
	select {
	case <-stream.exited:
	default:
		t.Fatal("handler returned but the stream's goroutine is still running")
	}
}
