package watch

import (
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

// fixture is a KV with a hub, written the way the store actor writes:
// commit, then publish.
type fixture struct {
	t     *testing.T
	kv    *mvcc.KV
	hub   *Hub
	index uint64
}

func newFixture(t *testing.T, opts Options) *fixture {
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
	return &fixture{t: t, kv: kv, hub: NewHub(actors.NewSystem(), kv, opts)}
}

func (f *fixture) put(key, value string) {
	f.t.Helper()
	f.index++
	_, evs, err := f.kv.Put(f.index, &pb.PutRequest{Key: []byte(key), Value: []byte(value)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.hub.Publish(evs)
}

func (f *fixture) del(key string) {
	f.t.Helper()
	f.index++
	_, evs, err := f.kv.DeleteRange(f.index, &pb.DeleteRangeRequest{Key: []byte(key)})
	if err != nil {
		f.t.Fatal(err)
	}
	f.hub.Publish(evs)
}

// client collects a stream's responses; gate, when set, holds every send
// until it is closed, as a client that does not read.
type client struct {
	mu   sync.Mutex
	got  []*pb.WatchResponse
	gate chan struct{}
}

func (c *client) send(r *pb.WatchResponse) error {
	if c.gate != nil {
		<-c.gate
	}
	c.mu.Lock()
	c.got = append(c.got, r)
	c.mu.Unlock()
	return nil
}

// waitFor waits until cond holds for the responses so far.
func (c *client) waitFor(t *testing.T, what string, cond func([]*pb.WatchResponse) bool) []*pb.WatchResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := append([]*pb.WatchResponse(nil), c.got...)
		c.mu.Unlock()
		if cond(got) {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; got %v", what, got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func events(rs []*pb.WatchResponse, id int64) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, r := range rs {
		if r.WatchId == id {
			out = append(out, r.Events...)
		}
	}
	return out
}

func created(rs []*pb.WatchResponse) bool {
	for _, r := range rs {
		if r.Created {
			return true
		}
	}
	return false
}

func TestLiveAndHistoryEventsInOrder(t *testing.T) {
	f := newFixture(t, Options{})
	f.put("foo", "v1") // 2
	f.put("foo", "v2") // 3
	c := &client{}
	s := f.hub.Open(c.send)
	defer s.Close()
	s.Create(&pb.WatchCreateRequest{Key: []byte("foo"), StartRevision: 2, PrevKv: true})
	c.waitFor(t, "created", created)
	f.put("bar", "x") // 4
	f.del("foo")      // 5
	got := events(c.waitFor(t, "3 events", func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) == 3 }), 0)
	for i, want := range []struct {
		typ  mvccpb.Event_EventType
		rev  int64
		prev string
	}{{mvccpb.PUT, 2, ""}, {mvccpb.PUT, 3, "v1"}, {mvccpb.DELETE, 5, "v2"}} {
		ev := got[i]
		if ev.Type != want.typ || ev.Kv.ModRevision != want.rev || string(ev.PrevKv.GetValue()) != want.prev {
			t.Errorf("event %d = %v, want %v", i, ev, want)
		}
	}
}

// TestSlowStreamNeverBlocksPublish: a stream whose client does not read
// holds no write back; once it reads again it gets every event exactly
// once, in order, from history.
func TestSlowStreamNeverBlocksPublish(t *testing.T) {
	f := newFixture(t, Options{QueueLen: 2, MailboxSize: 2})
	slow := &client{gate: make(chan struct{})}
	fast := &client{}
	ss, fs := f.hub.Open(slow.send), f.hub.Open(fast.send)
	defer ss.Close()
	defer fs.Close()
	fs.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	fast.waitFor(t, "created", created)
	// Its created response is held at the gate too, so the start revision
	// is explicit: the first write's.
	ss.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 2})
	const n = 500
	done := make(chan struct{})
	go func() {
		for i := range n {
			f.put(fmt.Sprintf("k%d", i%10), fmt.Sprint(i))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("writes blocked behind a stream that does not read")
	}
	fast.waitFor(t, "all events on the fast stream", func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) == n })
	close(slow.gate)
	got := events(slow.waitFor(t, "all events on the slow stream", func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) >= n }), 0)
	if len(got) != n {
		t.Fatalf("slow stream got %d events, want %d", len(got), n)
	}
	for i, ev := range got {
		if want := int64(i + 2); ev.Kv.ModRevision != want || string(ev.Kv.Value) != fmt.Sprint(i) {
			t.Fatalf("event %d: %v, want revision %d", i, ev, want)
		}
	}
}

func TestProgressNotify(t *testing.T) {
	f := newFixture(t, Options{ProgressNotifyInterval: 20 * time.Millisecond})
	c := &client{}
	s := f.hub.Open(c.send)
	defer s.Close()
	s.Create(&pb.WatchCreateRequest{Key: []byte("foo"), ProgressNotify: true})
	c.waitFor(t, "created", created)
	f.put("bar", "x") // 2
	c.waitFor(t, "a progress notification at revision 2", func(rs []*pb.WatchResponse) bool {
		for _, r := range rs {
			if !r.Created && len(r.Events) == 0 && r.WatchId == 0 && r.Header.Revision == 2 {
				return true
			}
		}
		return false
	})
}

func TestRequestProgressAndCancel(t *testing.T) {
	f := newFixture(t, Options{})
	c := &client{}
	s := f.hub.Open(c.send)
	defer s.Close()
	s.RequestProgress() // no watcher: no answer, as in etcd
	s.Create(&pb.WatchCreateRequest{Key: []byte("foo")})
	c.waitFor(t, "created", created)
	f.put("foo", "v1")
	s.RequestProgress()
	c.waitFor(t, "progress", func(rs []*pb.WatchResponse) bool {
		for _, r := range rs {
			if r.WatchId == -1 && r.Header.Revision == 2 {
				return true
			}
		}
		return false
	})
	s.Cancel(0)
	s.Cancel(42) // unknown: no answer
	f.put("foo", "v2")
	rs := c.waitFor(t, "canceled", func(rs []*pb.WatchResponse) bool { return rs[len(rs)-1].Canceled })
	if ev := events(rs, 0); len(ev) != 1 {
		t.Errorf("events after cancel: %v", ev)
	}
}

// TestManyStreamsConcurrently writes while streams open, watch and close;
// run with -race.
func TestManyStreamsConcurrently(t *testing.T) {
	f := newFixture(t, Options{QueueLen: 4})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				c := &client{}
				s := f.hub.Open(c.send)
				s.Create(&pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: int64(i + 1)})
				time.Sleep(time.Millisecond)
				s.Close()
			}
		})
	}
	for i := range 300 {
		f.put(fmt.Sprintf("k%d", i%5), "v")
	}
	close(stop)
	wg.Wait()
}
