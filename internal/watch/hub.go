// Package watch is Cairn's watch service core: a hub that the store
// publishes committed events to, and one actor per client stream that
// serves that stream's watchers with etcd's semantics (key, range and
// from-key watchers, start revisions in the past, prev_kv, filters,
// progress notifications, fragmentation).
//
// Publishing never blocks the store: each stream has a queue of published
// batches bounded in count and bytes, and a stream whose queue is full
// misses live batches and catches up from the MVCC history instead, as
// etcd's unsynced watchers do, in chunks of at most 1000 revisions (etcd's
// batch) and about one request's size. A slow client therefore slows only
// its own stream, and what the server holds for it stays bounded.
package watch

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/cairn-kv/cairn/internal/actors"
)

// Errors a create request can be canceled with; their texts are etcd's,
// which clients see as the cancel reason.
var (
	ErrDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
	ErrEmptyRange  = errors.New("mvcc: watcher range is empty")
	// ErrCompacted is the cancel reason of a negative start revision.
	ErrCompacted = errors.New("etcdserver: mvcc: required revision has been compacted")
)

// History is the MVCC state as the watch service reads it; *mvcc.KV
// implements it. All methods are called from stream actors, concurrently
// with the store's writer.
type History interface {
	// Rev is the revision of the last committed write.
	Rev() int64
	// CompactRev is the last compaction revision, -1 if none.
	CompactRev() int64
	// Events replays committed changes in [from, to], oldest first; it
	// fails with an error wrapping mvcc.ErrCompacted when from is below the
	// compaction revision.
	Events(from, to int64, fn func(*mvccpb.Event) bool) error
	// PrevKV is key's value at rev-1, or nil.
	PrevKV(key []byte, rev int64) *mvccpb.KeyValue
}

// Options configures a Hub.
type Options struct {
	// ProgressNotifyInterval is how often watchers that asked for progress
	// notifications get one (etcd's --watch-progress-notify-interval);
	// 10 minutes when 0, and, as in etcd, never less than 100ms.
	ProgressNotifyInterval time.Duration
	// MaxRequestBytes is the size above which a response to a watcher that
	// asked for fragments is split (etcd's --max-request-bytes).
	MaxRequestBytes int
	// QueueLen is how many published batches a stream may have queued
	// before it falls back to catching up from history; 1024 when 0.
	QueueLen int
	// QueueBytes bounds the key and value bytes of the batches a stream
	// has queued or in its mailbox; past it, the stream falls back to
	// catching up from history. 8 MiB when 0.
	QueueBytes int64
	// MailboxSize bounds each stream actor's mailbox; 256 when 0.
	MailboxSize int
}

// minProgressNotifyInterval is etcd's floor for the progress interval.
const minProgressNotifyInterval = 100 * time.Millisecond

// Hub distributes committed events to the open streams. Its methods are
// safe for concurrent use.
type Hub struct {
	sys  *actors.System
	hist History
	opts Options

	mu     sync.Mutex
	subs   map[*Stream]struct{}
	nextID atomic.Uint64
	// sentByClosed counts the events sent by the streams closed since,
	// under mu; the open ones count their own.
	sentByClosed int64

	closed    chan struct{}
	closeOnce sync.Once
}

// NewHub returns a hub reading history from hist and spawning stream actors
// in sys.
func NewHub(sys *actors.System, hist History, opts Options) *Hub {
	switch {
	case opts.ProgressNotifyInterval <= 0:
		opts.ProgressNotifyInterval = 10 * time.Minute
	case opts.ProgressNotifyInterval < minProgressNotifyInterval:
		opts.ProgressNotifyInterval = minProgressNotifyInterval
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = 1024
	}
	if opts.MailboxSize <= 0 {
		opts.MailboxSize = 256
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 8 << 20
	}
	return &Hub{sys: sys, hist: hist, opts: opts, subs: make(map[*Stream]struct{}), closed: make(chan struct{})}
}

// Close tells every stream, through Done, that the member is stopping, so
// front ends end their streams instead of holding a graceful shutdown up.
// Safe to call twice.
func (h *Hub) Close() { h.closeOnce.Do(func() { close(h.closed) }) }

// batch is the events of one commit, in revision order.
type batch []*mvccpb.Event

// eventBytes is what a stream's queue is charged for evs: their keys and
// values plus a fixed overhead per event.
func eventBytes(evs []*mvccpb.Event) int64 {
	var n int64
	for _, ev := range evs {
		n += int64(len(ev.Kv.Key)+len(ev.Kv.Value)) + 64
	}
	return n
}

// Publish hands the events of one engine commit to every stream. The store
// actor calls it after the commit, in revision order; it never blocks and
// keeps no reference into evs beyond reading them.
func (h *Hub) Publish(evs []*mvccpb.Event) {
	if len(evs) == 0 {
		return
	}
	p := liveMsg{evs: evs, size: eventBytes(evs)}
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		s.offer(p, h.opts)
	}
}

// offer queues p for the stream, or marks the stream behind if its queue
// is full in batches or in bytes.
func (s *Stream) offer(p liveMsg, opts Options) {
	s.qmu.Lock()
	if q := s.queued.Load(); len(s.queue) >= opts.QueueLen || (q > 0 && q+p.size > opts.QueueBytes) {
		s.qmu.Unlock()
		s.kick()
		return
	}
	s.queue = append(s.queue, p)
	s.queued.Add(p.size)
	s.qmu.Unlock()
	s.schedule()
}

// take removes from the queue the batches of one live message: every
// batch queued, up to coalesceBytes (at least one), merged in order. ok is
// false if the queue is empty. If batches remain, the actor is scheduled
// again.
func (s *Stream) take() (m liveMsg, ok bool) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	n := 0
	for n < len(s.queue) && (n == 0 || m.size < coalesceBytes) {
		p := s.queue[n]
		switch n {
		case 0:
			m.evs = p.evs
		case 1:
			// The first batch is shared with other streams: copy it.
			m.evs = append(slices.Clip(m.evs), p.evs...)
		default:
			m.evs = append(m.evs, p.evs...)
		}
		m.size += p.size
		n++
	}
	if n == 0 {
		return m, false
	}
	clear(s.queue[:n])
	switch {
	case n < len(s.queue):
		s.queue = s.queue[n:]
		s.schedule()
	case cap(s.queue) > smallQueue:
		s.queue = nil // an idle stream does not keep a burst's array
	default:
		s.queue = s.queue[:0]
	}
	return m, true
}

// smallQueue is the capacity of queue array an emptied queue may keep.
const smallQueue = 16

// Stream is one client stream's set of watchers, served by its own actor.
// Create, Cancel and RequestProgress may be called from one goroutine (the
// stream's receive loop) while the actor sends responses; Close ends it.
//
// Published batches, catch-up requests and progress ticks do not go
// through the actor's mailbox one by one: each sets its part of the
// stream's state (the queue, missed, tick) and schedules the actor, which
// then serves all that is pending in one turn (see streamActor.turn). A
// stream has at most one turn in its mailbox, so Publish never blocks and
// never floods the mailbox, and a commit reaches a stream's actor in one
// hand-off.
type Stream struct {
	hub *Hub
	ref *actors.Ref
	// queue holds the published batches not yet taken by the actor, at
	// most QueueLen. It grows with a backlog and is dropped when drained,
	// so an idle stream costs no queue memory.
	qmu   sync.Mutex
	queue []liveMsg
	// scheduled is set while a turn is in the actor's mailbox.
	scheduled atomic.Bool
	// missed is set when the stream dropped a live batch, or its actor left
	// a watcher behind, and cleared when the actor starts the catch-up.
	missed atomic.Bool
	// tick is set by the progress timer and cleared when the actor sends
	// the notifications.
	tick  atomic.Bool
	timer *time.Ticker
	// queued is the size of the batches queued or being delivered.
	queued atomic.Int64
	// watchers and slow are the stream's watchers and, of them, those not
	// synced, as its actor left them after its last message.
	watchers, slow atomic.Int64
	box            *outbox
	done           chan struct{}
	ticked         chan struct{}
	once           sync.Once
}

// Open starts a stream whose responses go to send, called from the stream's
// sender goroutine only. send gets responses whose Header carries the
// revision; the caller fills in the rest, in place if it likes: responses
// of one stream at one revision share their header, which after it is made
// only the sender goroutine touches. When send fails, the stream stops
// sending.
func (h *Hub) Open(send func(*pb.WatchResponse) error) *Stream {
	n := h.nextID.Add(1)
	s := &Stream{
		hub:    h,
		done:   make(chan struct{}),
		ticked: make(chan struct{}),
		timer:  time.NewTicker(h.opts.ProgressNotifyInterval),
	}
	box := newOutbox(send, outboxBytes, catchUpBytes(h.opts), s.done)
	s.box = box
	a := newStreamActor(h.hist, h.opts, box, s)
	s.ref = h.sys.Spawn(fmt.Sprintf("watch-stream-%d", n), h.opts.MailboxSize, a.receive)
	h.mu.Lock()
	h.subs[s] = struct{}{}
	h.mu.Unlock()
	go box.run()
	go s.ticks()
	return s
}

// ticks marks a progress tick due at every interval until the stream
// closes.
func (s *Stream) ticks() {
	defer close(s.ticked)
	for {
		select {
		case <-s.timer.C:
			s.tick.Store(true)
			s.schedule()
		case <-s.done:
			return
		}
	}
}

// schedule puts a turn in the actor's mailbox unless one is there already.
func (s *Stream) schedule() {
	if s.scheduled.CompareAndSwap(false, true) {
		s.ref.Signal(turnMsg{})
	}
}

// outboxBytes bounds what a stream's outbox holds (counted as its queue
// counts batches): past it the actor waits for the sender, and new batches
// wait in the stream's queue.
const outboxBytes = 1 << 20

// coalesceBytes is the size up to which a turn merges queued batches into
// one live message: a stream that keeps up gets each commit on its own at
// once, and one that falls behind gets the backlog in few responses rather
// than one per revision, as etcd's watchers that fall behind do.
const coalesceBytes = 1 << 20

// handled is called by the actor once it has delivered a live message of
// size bytes.
func (s *Stream) handled(size int64) { s.queued.Add(-size) }

// kick has the stream's watchers caught up from history: the stream is
// behind, having dropped a live batch or left a watcher mid-catch-up. It
// never blocks.
func (s *Stream) kick() {
	s.missed.Store(true)
	s.schedule()
}

func (s *Stream) send(m any) {
	select {
	case <-s.done:
	default:
		s.ref.Send(m)
	}
}

// Done is closed when the hub is closed: the stream should end.
func (s *Stream) Done() <-chan struct{} { return s.hub.closed }

// Create adds a watcher, as etcd's WatchCreateRequest does; the actor
// answers with a created (or canceled) response.
func (s *Stream) Create(req *pb.WatchCreateRequest) { s.send(createMsg{req: req}) }

// Refuse answers a create request the caller refused (etcd refuses one
// outside the user's permissions) with a created and canceled response
// carrying reason, ordered with the stream's other responses.
func (s *Stream) Refuse(reason string) { s.send(refuseMsg{reason: reason}) }

// Cancel removes watcher id; the actor answers with a canceled response if
// it existed.
func (s *Stream) Cancel(id int64) { s.send(cancelMsg{id: id}) }

// RequestProgress asks for a progress notification for all watchers.
func (s *Stream) RequestProgress() { s.send(progressRequestMsg{}) }

// Close unsubscribes the stream and stops its actor, its timer and its
// sender. The actor's wait for room in the outbox ends with Close; a send
// blocked on the client ends when its stream does. Safe to call twice.
func (s *Stream) Close() {
	s.once.Do(func() {
		s.hub.mu.Lock()
		delete(s.hub.subs, s)
		s.hub.sentByClosed += s.box.sent.Load()
		s.hub.mu.Unlock()
		close(s.done)
		<-s.ticked
		s.timer.Stop()
		s.ref.Stop()
	})
}
