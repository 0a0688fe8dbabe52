package watch

import (
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// emitter takes a stream actor's responses, in order, for its client.
type emitter interface {
	// put hands over r. With merge set, r carries events of watcher
	// r.WatchId that may be appended to a response of the same watcher
	// still waiting to be sent, if nothing that must stay between them
	// was put in between.
	put(r *pb.WatchResponse, merge bool)
	// failed reports that the client stream is gone: nothing more is
	// sent.
	failed() bool
}

// outbox is the emitter of a stream: its actor puts responses here, and
// the stream's sender goroutine sends them to the client. Events the actor
// puts for a watcher whose previous response is still waiting here join
// that response, so a stream that is sent less often gets fewer, larger
// responses.
//
// A client pays for every response it receives, and gRPC's buffers and
// clientv3's own let a server send far more than a client can take without
// ever making Send wait, so the server cannot see a client fall behind.
// The outbox therefore watches the stream's demand: the revisions owed to
// its watchers, one per watcher and revision. While that stays under
// congestionBudget per congestionWindow, every response goes out at once.
// Above it, the stream is congested and sends once per window, each
// watcher getting everything of that window in one response. This is the
// batching etcd reaches when its watchers turn victims and are synced
// every 100 ms; here it starts only at a demand a client is unlikely to
// keep up with (20 000 watcher-revisions a second on one stream), and a
// batch waits 50 ms at most.
//
// Only a response of events can be merged into, and only with later
// events of the same watcher: a watcher's own control responses (created,
// canceled, progress) and the stream's (watch ID -1) end the merging, so
// no event moves past a response that followed it. A merged response
// stays within maxCatchUpRevs revisions and mergeBytes, as a catch-up
// response does. What is queued is bounded by limit bytes (the events'
// keys and values plus a fixed overhead, as the stream's queue counts
// them): past it, put waits, and the stream's queue takes the backlog.
type outbox struct {
	send       func(*pb.WatchResponse) error
	limit      int64
	mergeBytes int64
	done       <-chan struct{}

	mu    sync.Mutex
	items []outItem
	// open maps a watch ID to the index in items of its response that
	// later events may join.
	open map[int64]int
	// bytes counts the items queued or being sent; room is signalled
	// each time the sender has sent one, ready when items were added.
	bytes atomic.Int64
	room  chan struct{}
	ready chan struct{}
	bad   atomic.Bool
	// offered counts the revisions owed to watchers (one per watcher and
	// revision; one per control response) since the window began.
	offered atomic.Int64
	// pending counts the events put and not yet sent, sent those sent.
	pending, sent atomic.Int64
}

// outItem is one queued response, its charged size and its number of
// revisions.
type outItem struct {
	r    *pb.WatchResponse
	size int64
	revs int
}

// responseBytes is what a response is charged besides its events.
const responseBytes = 64

// A stream is congested when its watchers are owed more than
// congestionBudget revisions (one per watcher and revision) in a
// congestionWindow; it then sends once per window.
const (
	congestionWindow = 50 * time.Millisecond
	congestionBudget = 1000
)

func newOutbox(send func(*pb.WatchResponse) error, limit, mergeBytes int64, done <-chan struct{}) *outbox {
	return &outbox{
		send:       send,
		limit:      limit,
		mergeBytes: mergeBytes,
		done:       done,
		open:       make(map[int64]int),
		room:       make(chan struct{}, 1),
		ready:      make(chan struct{}, 1),
	}
}

// revisions counts the distinct revisions of evs, which are in order.
func revisions(evs []*mvccpb.Event) int {
	n := 0
	for i, ev := range evs {
		if i == 0 || ev.Kv.ModRevision != evs[i-1].Kv.ModRevision {
			n++
		}
	}
	return n
}

func (o *outbox) failed() bool { return o.bad.Load() }

func (o *outbox) put(r *pb.WatchResponse, merge bool) {
	size := eventBytes(r.Events) + responseBytes
	// Wait for room; an outbox that holds nothing takes any response.
	for b := o.bytes.Load(); b > 0 && b+size > o.limit && !o.bad.Load(); b = o.bytes.Load() {
		select {
		case <-o.room:
		case <-o.done:
			return
		}
	}
	revs := revisions(r.Events)
	o.offered.Add(int64(max(revs, 1)))
	o.pending.Add(int64(len(r.Events)))
	o.mu.Lock()
	if i, ok := o.open[r.WatchId]; ok && merge {
		if it := &o.items[i]; it.size+size <= o.mergeBytes && it.revs+revs <= maxCatchUpRevs {
			it.r.Events = append(it.r.Events, r.Events...)
			it.r.Header = r.Header
			it.size += size
			it.revs += revs
			o.bytes.Add(size)
			o.mu.Unlock()
			return
		}
	}
	switch {
	case merge:
		o.open[r.WatchId] = len(o.items)
	case r.WatchId == invalidID:
		clear(o.open)
	default:
		delete(o.open, r.WatchId)
	}
	o.items = append(o.items, outItem{r: r, size: size, revs: revs})
	o.bytes.Add(size)
	o.mu.Unlock()
	select {
	case o.ready <- struct{}{}:
	default:
	}
}

// run is the sender: it takes everything queued at once and sends it in
// order, at once or, while the stream is congested, at the end of the
// window, until done is closed. After the client stream fails it keeps
// taking responses, unsent, so that put never waits on it.
func (o *outbox) run() {
	var (
		taken     []outItem
		window    = time.Now()
		congested bool
	)
	for {
		select {
		case <-o.ready:
		case <-o.done:
			return
		}
		if congested {
			select {
			case <-time.After(time.Until(window.Add(congestionWindow))):
			case <-o.done:
				return
			}
		}
		if now := time.Now(); now.Sub(window) >= congestionWindow {
			// The demand of the window that ended, per window length.
			n := o.offered.Swap(0)
			congested = n*int64(congestionWindow) > congestionBudget*int64(now.Sub(window))
			window = now
		}
		o.mu.Lock()
		taken, o.items = o.items, taken[:0]
		clear(o.open)
		o.mu.Unlock()
		for i := range taken {
			n := len(taken[i].r.Events)
			if !o.bad.Load() {
				if err := o.send(taken[i].r); err != nil {
					o.bad.Store(true)
				} else {
					o.sent.Add(int64(n))
				}
			}
			o.pending.Add(-int64(n))
			o.bytes.Add(-taken[i].size)
			taken[i] = outItem{}
			select {
			case o.room <- struct{}{}:
			default:
			}
		}
		if cap(taken) > smallQueue {
			taken = nil // an idle stream does not keep a burst's array
		}
	}
}
