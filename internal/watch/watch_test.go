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

// TestCatchUpInChunks: a watcher far behind gets its history in responses
// of at most maxCatchUpRevs revisions each (etcd's batch), each headed by
// the current revision, every event once and in order.
func TestCatchUpInChunks(t *testing.T) {
	f := newFixture(t, Options{})
	const n = 2500
	for i := range n {
		f.put(fmt.Sprintf("k%d", i%7), fmt.Sprint(i))
	}
	f.put("other", "x") // a key the watcher does not watch
	c := &client{}
	s := f.hub.Open(c.send)
	defer s.Close()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 1})
	rs := c.waitFor(t, "every event", func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) >= n })
	var chunks []int
	for _, r := range rs {
		if len(r.Events) == 0 {
			continue
		}
		chunks = append(chunks, len(r.Events))
		if r.Header.Revision != n+2 {
			t.Errorf("catch-up response headed by revision %d, want the current %d", r.Header.Revision, n+2)
		}
	}
	if want := []int{1000, 1000, 500}; fmt.Sprint(chunks) != fmt.Sprint(want) {
		t.Errorf("catch-up responses carried %v events, want %v", chunks, want)
	}
	for i, ev := range events(rs, 0) {
		if want := int64(i + 2); ev.Kv.ModRevision != want {
			t.Fatalf("event %d at revision %d, want %d", i, ev.Kv.ModRevision, want)
		}
	}
}

// TestCatchUpCutAtSize: large values are caught up in responses of about
// one request's size, not in one response holding the whole history.
func TestCatchUpCutAtSize(t *testing.T) {
	f := newFixture(t, Options{MaxRequestBytes: 1 << 20})
	value := string(make([]byte, 100<<10))
	const n = 30 // 3 MiB in all
	for range n {
		f.put("big", value)
	}
	c := &client{}
	s := f.hub.Open(c.send)
	defer s.Close()
	s.Create(&pb.WatchCreateRequest{Key: []byte("big"), StartRevision: 1})
	rs := c.waitFor(t, "every event", func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) >= n })
	for _, r := range rs {
		if len(r.Events) > 11 {
			t.Errorf("one catch-up response carried %d events of 100 KiB, above the 1 MiB cut", len(r.Events))
		}
	}
	if got := len(events(rs, 0)); got != n {
		t.Errorf("got %d events, want %d", got, n)
	}
}

// TestQueueBoundedInBytes: what a stream that does not read holds queued
// stays within QueueBytes (plus the batch the actor is blocked on), and it
// still gets every event once it reads.
func TestQueueBoundedInBytes(t *testing.T) {
	const bound = 1 << 20
	f := newFixture(t, Options{QueueBytes: bound, QueueLen: 1 << 16, MailboxSize: 1 << 16})
	slow := &client{gate: make(chan struct{})}
	s := f.hub.Open(slow.send)
	defer s.Close()
	s.Create(&pb.WatchCreateRequest{Key: []byte("k"), StartRevision: 2})
	value := string(make([]byte, 64<<10))
	const n = 200 // 12.5 MiB
	var peak int64
	for range n {
		f.put("k", value)
		peak = max(peak, s.queued.Load())
	}
	if peak > bound+eventBytes([]*mvccpb.Event{{Kv: &mvccpb.KeyValue{Key: []byte("k"), Value: []byte(value)}}}) {
		t.Errorf("queued bytes peaked at %d, bound %d", peak, bound)
	}
	close(slow.gate)
	got := events(slow.waitFor(t, "every event", func(rs []*pb.WatchResponse) bool { return len(events(rs, 0)) >= n }), 0)
	if len(got) != n {
		t.Fatalf("got %d events, want %d", len(got), n)
	}
	for i, ev := range got {
		if want := int64(i + 2); ev.Kv.ModRevision != want {
			t.Fatalf("event %d at revision %d, want %d", i, ev.Kv.ModRevision, want)
		}
	}
}

// TestDeliverAcrossADroppedBatch: when the batches merged into one live
// message skip a revision (a batch was dropped for the stream), each
// watcher gets what precedes the gap and the rest from history, every
// event once and in order; a contiguous message goes through the key
// index to single-key and range watchers alike.
func TestDeliverAcrossADroppedBatch(t *testing.T) {
	f := newFixture(t, Options{})
	for i := range 5 {
		f.put("k", fmt.Sprint(i)) // revisions 2..6
	}
	var all []*mvccpb.Event
	if err := f.kv.Events(2, 6, func(ev *mvccpb.Event) bool { all = append(all, ev); return true }); err != nil {
		t.Fatal(err)
	}
	c := &client{}
	s := &Stream{}
	a := newStreamActor(f.kv, Options{}, &direct{send: c.send}, s)
	a.add(&watcher{id: 0, key: []byte("k"), next: 2})
	a.add(&watcher{id: 1, key: []byte("a"), end: []byte("z"), next: 2})
	a.deliver(batch{all[0], all[1], all[3], all[4]}) // revision 4 dropped
	a.deliver(batch{all[4]})                         // already sent: ignored
	for id := range int64(2) {
		var revs []int64
		for _, ev := range events(c.got, id) {
			revs = append(revs, ev.Kv.ModRevision)
		}
		if fmt.Sprint(revs) != "[2 3 4 5 6]" {
			t.Errorf("watcher %d got revisions %v, want [2 3 4 5 6]", id, revs)
		}
	}
	f.put("k", "x") // 7
	var ev7 []*mvccpb.Event
	_ = f.kv.Events(7, 7, func(ev *mvccpb.Event) bool { ev7 = append(ev7, ev); return true })
	a.deliver(ev7)
	for id := range int64(2) {
		if got := events(c.got, id); len(got) != 6 || got[5].Kv.ModRevision != 7 {
			t.Errorf("watcher %d after a contiguous batch: %d events", id, len(got))
		}
	}
}

// TestTakeMergesWithoutTouchingSharedBatches: a turn's merge of queued
// batches keeps their order and never writes into a published batch,
// which every stream shares.
func TestTakeMergesWithoutTouchingSharedBatches(t *testing.T) {
	ev := func(rev int64) *mvccpb.Event {
		return &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte("k"), ModRevision: rev}}
	}
	first := make(batch, 1, 8) // spare capacity a careless append would use
	first[0] = ev(2)
	s := &Stream{}
	s.scheduled.Store(true) // no actor: offer must not schedule a turn
	opts := Options{QueueLen: 10, QueueBytes: 1 << 20}
	for _, b := range []batch{first, {ev(3), ev(3)}, {ev(4)}} {
		s.offer(liveMsg{evs: b, size: eventBytes(b)}, opts)
	}
	m, ok := s.take()
	if !ok {
		t.Fatal("nothing taken")
	}
	var revs []int64
	for _, e := range m.evs {
		revs = append(revs, e.Kv.ModRevision)
	}
	if fmt.Sprint(revs) != "[2 3 3 4]" {
		t.Errorf("merged revisions %v, want [2 3 3 4]", revs)
	}
	if spare := first[:2]; spare[1] != nil {
		t.Errorf("the merge wrote into the first batch's spare capacity: %v", spare[1])
	}
	if _, ok := s.take(); ok {
		t.Error("a second take found batches the first one merged")
	}
}

// TestRefuse: a refused create is answered in its place among the
// stream's responses, created and canceled for no watcher with the
// reason given, and the next create gets the first free ID.
func TestRefuse(t *testing.T) {
	f := newFixture(t, Options{})
	f.put("foo", "v1") // 2
	c := &client{}
	s := f.hub.Open(c.send)
	defer s.Close()
	s.Refuse("no")
	s.Create(&pb.WatchCreateRequest{Key: []byte("foo")})
	got := c.waitFor(t, "two answers", func(rs []*pb.WatchResponse) bool { return len(rs) == 2 })
	if r := got[0]; !r.Created || !r.Canceled || r.WatchId != -1 || r.CancelReason != "no" || r.Header.GetRevision() != 2 {
		t.Errorf("refusal = %v", r)
	}
	if r := got[1]; !r.Created || r.Canceled || r.WatchId != 0 {
		t.Errorf("next create = %v", r)
	}
}

// direct is an emitter that sends each response at once, unmerged, so a
// stream actor a test drives answers before its method returns.
type direct struct {
	send func(*pb.WatchResponse) error
	bad  bool
}

func (d *direct) put(r *pb.WatchResponse, _ bool) {
	if !d.bad && d.send(r) != nil {
		d.bad = true
	}
}

func (d *direct) failed() bool { return d.bad }
