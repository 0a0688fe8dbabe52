package watch

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// putEv returns a put event of key k at revision rev.
func putEv(k string, rev int64) *mvccpb.Event {
	return &mvccpb.Event{Kv: &mvccpb.KeyValue{Key: []byte(k), ModRevision: rev, Value: []byte("v")}}
}

// evResp is a response of watcher id carrying events at revisions revs.
func evResp(id int64, revs ...int64) *pb.WatchResponse {
	r := &pb.WatchResponse{Header: header(revs[len(revs)-1]), WatchId: id}
	for _, rev := range revs {
		r.Events = append(r.Events, putEv("k", rev))
	}
	return r
}

// heldSender records what an outbox sends; while held, its send waits for
// release, so a test can queue responses behind the one being sent.
type heldSender struct {
	mu      sync.Mutex
	got     []*pb.WatchResponse
	first   chan struct{} // closed when the first send began
	release chan struct{}
	once    sync.Once
	err     error
}

func newHeldSender() *heldSender {
	return &heldSender{first: make(chan struct{}), release: make(chan struct{})}
}

func (h *heldSender) send(r *pb.WatchResponse) error {
	h.once.Do(func() { close(h.first) })
	<-h.release
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, r)
	return h.err
}

// sent waits until n responses were sent and returns them.
func (h *heldSender) sent(t *testing.T, n int) []*pb.WatchResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h.mu.Lock()
		got := slices.Clone(h.got)
		h.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("sent %d responses, want %d", len(got), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// revsOf lists the revisions of r's events.
func revsOf(r *pb.WatchResponse) []int64 {
	var out []int64
	for _, ev := range r.Events {
		out = append(out, ev.Kv.ModRevision)
	}
	return out
}

// startHeld starts an outbox whose sender is held in its first send, of a
// response for watcher 9 that nothing else may join.
func startHeld(t *testing.T, limit, mergeBytes int64) (*outbox, *heldSender) {
	t.Helper()
	h := newHeldSender()
	done := make(chan struct{})
	o := newOutbox(h.send, limit, mergeBytes, done)
	go o.run()
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		close(done)
	})
	o.put(evResp(9, 1), false)
	<-h.first
	return o, h
}

func TestOutboxMergesEventsWaitingToBeSent(t *testing.T) {
	o, h := startHeld(t, 1<<20, 1<<20)
	o.put(evResp(1, 2), true)
	o.put(evResp(2, 2), true)
	o.put(evResp(1, 3), true)
	o.put(evResp(1, 4, 4), true) // two events of one revision
	o.put(evResp(2, 4), true)
	close(h.release)
	got := h.sent(t, 3)
	want := []struct {
		id   int64
		revs []int64
	}{{9, []int64{1}}, {1, []int64{2, 3, 4, 4}}, {2, []int64{2, 4}}}
	if len(got) != len(want) {
		t.Fatalf("sent %d responses, want %d", len(got), len(want))
	}
	for i, w := range want {
		if got[i].WatchId != w.id || !slices.Equal(revsOf(got[i]), w.revs) {
			t.Errorf("response %d: watcher %d revisions %v, want %d %v", i, got[i].WatchId, revsOf(got[i]), w.id, w.revs)
		}
	}
	if rev := got[1].Header.Revision; rev != 4 {
		t.Errorf("merged response's header revision %d, want the last one, 4", rev)
	}
}

// A response that must keep its place ends merging: no event passes a
// response that was put after it.
func TestOutboxControlResponsesEndMerging(t *testing.T) {
	o, h := startHeld(t, 1<<20, 1<<20)
	o.put(evResp(1, 2), true)
	o.put(evResp(2, 2), true)
	o.put(&pb.WatchResponse{Header: header(2), WatchId: 1}, false) // progress of watcher 1
	o.put(evResp(1, 3), true)                                      // after the progress
	o.put(evResp(2, 3), true)                                      // may still join watcher 2's
	o.put(&pb.WatchResponse{Header: header(3), WatchId: invalidID}, false)
	o.put(evResp(2, 4), true) // after the stream's notification
	o.put(evResp(3, 4), false)
	o.put(evResp(3, 5), true) // the unmergeable one is not joined
	close(h.release)
	type resp struct {
		id   int64
		revs []int64
	}
	want := []resp{
		{9, []int64{1}}, {1, []int64{2}}, {2, []int64{2, 3}}, {1, nil},
		{1, []int64{3}}, {invalidID, nil}, {2, []int64{4}}, {3, []int64{4}}, {3, []int64{5}},
	}
	got := h.sent(t, len(want))
	var gotR []resp
	for _, r := range got {
		gotR = append(gotR, resp{r.WatchId, revsOf(r)})
	}
	if !slices.EqualFunc(gotR, want, func(a, b resp) bool { return a.id == b.id && slices.Equal(a.revs, b.revs) }) {
		t.Errorf("sent %v\nwant %v", gotR, want)
	}
}

// A merged response stays within a catch-up response's bounds.
func TestOutboxMergeBounds(t *testing.T) {
	t.Run("revisions", func(t *testing.T) {
		o, h := startHeld(t, 1<<30, 1<<30)
		for rev := int64(2); rev < 2+maxCatchUpRevs+5; rev++ {
			o.put(evResp(1, rev), true)
		}
		close(h.release)
		got := h.sent(t, 3)
		if n := len(got[1].Events); n != maxCatchUpRevs {
			t.Errorf("first merged response has %d revisions, want %d", n, maxCatchUpRevs)
		}
		if n := len(got[2].Events); n != 5 {
			t.Errorf("second merged response has %d revisions, want 5", n)
		}
	})
	t.Run("bytes", func(t *testing.T) {
		one := eventBytes(evResp(1, 2).Events) + responseBytes
		o, h := startHeld(t, 1<<30, 3*one)
		for rev := int64(2); rev < 9; rev++ {
			o.put(evResp(1, rev), true)
		}
		close(h.release)
		got := h.sent(t, 4)
		var sizes []int
		for _, r := range got[1:] {
			sizes = append(sizes, len(r.Events))
		}
		if !slices.Equal(sizes, []int{3, 3, 1}) {
			t.Errorf("merged responses of %v events, want [3 3 1]", sizes)
		}
	})
}

// put waits while the outbox holds its limit, and goes on once the sender
// has made room.
func TestOutboxPutWaitsForRoom(t *testing.T) {
	one := eventBytes(evResp(1, 2).Events) + responseBytes
	o, h := startHeld(t, 2*one, 1<<20) // the held response fills half
	o.put(evResp(1, 2), false)
	put := make(chan struct{})
	go func() {
		o.put(evResp(1, 3), false)
		close(put)
	}()
	select {
	case <-put:
		t.Fatal("put returned with the outbox full")
	case <-time.After(50 * time.Millisecond):
	}
	close(h.release)
	select {
	case <-put:
	case <-time.After(10 * time.Second):
		t.Fatal("put still waiting after the sender made room")
	}
	h.sent(t, 3)
}

// After a failed send nothing more is sent, and put never waits.
func TestOutboxStopsSendingAfterFailure(t *testing.T) {
	one := eventBytes(evResp(1, 2).Events) + responseBytes
	o, h := startHeld(t, one, 1<<20)
	h.err = errors.New("stream gone")
	close(h.release)
	h.sent(t, 1)
	for deadline := time.Now().Add(10 * time.Second); !o.failed(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the outbox did not take the failed send as the stream's end")
		}
	}
	for rev := int64(2); rev < 100; rev++ {
		o.put(evResp(1, rev), false)
	}
	time.Sleep(20 * time.Millisecond)
	if got := h.sent(t, 1); len(got) != 1 {
		t.Errorf("sent %d responses after the failure", len(got)-1)
	}
}

// A stream whose watchers are owed far more revisions than the budget is
// sent once per window: its client gets few responses, each carrying many
// revisions, in order and none lost.
func TestOutboxCongestedStreamSendsPerWindow(t *testing.T) {
	var (
		mu  sync.Mutex
		got []*pb.WatchResponse
	)
	done := make(chan struct{})
	defer close(done)
	o := newOutbox(func(r *pb.WatchResponse) error {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, r)
		return nil
	}, 1<<30, 1<<30, done)
	go o.run()
	const watchers = 10
	rev := int64(1)
	end := time.Now().Add(10 * congestionWindow)
	for time.Now().Before(end) {
		// Above the budget however slowly the loop runs: each burst
		// alone owes as much.
		for range congestionBudget / watchers {
			rev++
			for id := range int64(watchers) {
				o.put(evResp(id, rev), true)
			}
		}
		time.Sleep(time.Millisecond)
	}
	want := (rev - 1) * watchers
	var n int64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n = 0
		for _, r := range got {
			n += int64(len(r.Events))
		}
		mu.Unlock()
		if n == want || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n != want {
		t.Fatalf("received %d events, want %d", n, want)
	}
	next := map[int64]int64{}
	for _, r := range got {
		for _, ev := range r.Events {
			if w := next[r.WatchId]; w != 0 && ev.Kv.ModRevision != w {
				t.Fatalf("watcher %d got revision %d, want %d", r.WatchId, ev.Kv.ModRevision, w)
			}
			next[r.WatchId] = ev.Kv.ModRevision + 1
		}
	}
	if len(got) > int(want/20) {
		t.Errorf("%d responses for %d events: a congested stream should merge them", len(got), want)
	}
}
