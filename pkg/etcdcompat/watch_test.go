package etcdcompat

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage/memory"
	"github.com/cairn-kv/cairn/internal/watch"
)

// watchFixture serves the Watch service over a real KV and hub; writes go
// straight to the KV and are published as the store actor does.
type watchFixture struct {
	t     *testing.T
	kv    *mvcc.KV
	hub   *watch.Hub
	sys   *actors.System
	index uint64
	cli   *clientv3.Client
}

func newWatchFixture(t *testing.T) *watchFixture {
	return newWatchFixtureWith(t, watch.Options{})
}

func newWatchFixtureWith(t *testing.T, opts watch.Options) *watchFixture {
	t.Helper()
	e, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	kv, err := mvcc.Open(e, mvcc.Options{EventsWithPrevKV: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close(); e.Close() })
	sys := actors.NewSystem()
	f := &watchFixture{t: t, kv: kv, sys: sys, hub: watch.NewHub(sys, kv, opts)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(&fakeStore{}, fakeCluster{}, Options{MaxRequestBytes: 1 << 20, Watch: f.hub})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	f.cli, err = clientv3.New(clientv3.Config{Endpoints: []string{l.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cli.Close() })
	return f
}

func (f *watchFixture) put(key, value string) {
	f.t.Helper()
	f.index++
	_, evs, err := f.kv.Put(f.index, &pb.PutRequest{Key: []byte(key), Value: []byte(value)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.hub.Publish(evs)
}

func (f *watchFixture) next(t *testing.T, ch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no watch response")
	}
	panic("unreachable")
}

func TestWatchThroughClientv3(t *testing.T) {
	f := newWatchFixture(t)
	f.put("foo", "v1") // 2
	ch := f.cli.Watch(callCtx(t), "foo", clientv3.WithRev(2), clientv3.WithPrevKV())
	f.put("foo", "v2") // 3
	var got []int64
	for len(got) < 2 {
		r := f.next(t, ch)
		if r.Header.ClusterId != 1 || r.Header.MemberId != 2 {
			t.Errorf("header %v does not name the member", r.Header)
		}
		for _, ev := range r.Events {
			got = append(got, ev.Kv.ModRevision)
		}
	}
	if got[0] != 2 || got[1] != 3 {
		t.Errorf("revisions %v, want [2 3]", got)
	}
}

func TestWatchCompactedReachesClientv3(t *testing.T) {
	f := newWatchFixture(t)
	for range 3 {
		f.put("foo", "v") // 2, 3, 4
	}
	f.index++
	done, err := f.kv.Compact(f.index, 3)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	r := f.next(t, f.cli.Watch(callCtx(t), "foo", clientv3.WithRev(2)))
	if r.CompactRevision != 3 || r.Err() != rpctypes.ErrCompacted {
		t.Errorf("compact revision %d, err %v; want 3, %v", r.CompactRevision, r.Err(), rpctypes.ErrCompacted)
	}
}

// TestWatchStreamActorStopsWithStream: the stream's actor shows on
// /debug/actors while the stream lives and is gone after it ends.
func TestWatchStreamActorStopsWithStream(t *testing.T) {
	f := newWatchFixture(t)
	actorsNamed := func() int {
		n := 0
		for _, s := range f.sys.Snapshot() {
			if len(s.Name) > 13 && s.Name[:13] == "watch-stream-" {
				n++
			}
		}
		return n
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: f.cli.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ch := cli.Watch(callCtx(t), "foo", clientv3.WithCreatedNotify())
	if r := f.next(t, ch); !r.Created {
		t.Fatalf("first response %+v, want created", r)
	}
	if n := actorsNamed(); n != 1 {
		t.Fatalf("%d watch stream actors, want 1", n)
	}
	cli.Close()
	deadline := time.Now().Add(10 * time.Second)
	for actorsNamed() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("watch stream actor still running after the stream ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatchEndsWhenHubCloses: a stopping member ends its watch streams
// with etcd's "server stopped" rather than waiting for clients.
func TestWatchEndsWhenHubCloses(t *testing.T) {
	f := newWatchFixture(t)
	conn, err := grpc.NewClient(f.cli.Endpoints()[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pb.NewWatchClient(conn).Watch(callCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("foo")}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || !r.Created {
		t.Fatalf("create: %v %v", r, err)
	}
	f.hub.Close()
	_, err = stream.Recv()
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != status.Convert(rpctypes.ErrGRPCStopped).Message() {
		t.Errorf("after Close: %v, want %v", err, rpctypes.ErrGRPCStopped)
	}
}

// TestWatchSharedHeadersThroughClientv3: the watchers of one stream share
// a response header per revision, which the send path completes in place,
// while fragmented responses are measured on the stream's actor. Under
// the race detector this is where a header touched by both would show;
// every watcher must get every event under a complete header.
func TestWatchSharedHeadersThroughClientv3(t *testing.T) {
	const limit = 4 << 10
	f := newWatchFixtureWith(t, watch.Options{MaxRequestBytes: limit})
	big := strings.Repeat("v", limit/2)
	const keys, watchers, rounds = 4, 6, 5
	for i := range keys {
		f.put(fmt.Sprintf("k%d", i), big)
	}
	ctx := callCtx(t)
	chans := make([]clientv3.WatchChan, watchers)
	for w := range chans {
		opts := []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(1)}
		if w%2 == 0 {
			opts = append(opts, clientv3.WithFragment())
		}
		chans[w] = f.cli.Watch(ctx, "k", opts...)
	}
	for r := range rounds {
		for i := range keys {
			f.put(fmt.Sprintf("k%d", i), big+fmt.Sprint(r))
		}
	}
	want := keys * (rounds + 1)
	for w, ch := range chans {
		got := 0
		for got < want {
			resp := f.next(t, ch)
			if resp.Header.ClusterId != 1 || resp.Header.MemberId != 2 || resp.Header.RaftTerm != 4 {
				t.Fatalf("watcher %d: header %v does not name the member and term", w, resp.Header)
			}
			for _, ev := range resp.Events {
				if ev.Kv.ModRevision > resp.Header.Revision {
					t.Fatalf("watcher %d: event at %d under a header at %d", w, ev.Kv.ModRevision, resp.Header.Revision)
				}
			}
			got += len(resp.Events)
		}
		if got != want {
			t.Fatalf("watcher %d: %d events, want %d", w, got, want)
		}
	}
}
