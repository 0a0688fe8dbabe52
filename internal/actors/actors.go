// Package actors is Cairn's thin layer over protoactor-go: it creates the
// actor system with protoactor's own logger silenced, spawns named actors
// with bounded or unbounded mailboxes, measures every actor's mailbox depth
// and handling time, and stops actors for real (protoactor's Shutdown does
// not).
//
// Cairn never uses protoactor's RequestFuture: its reply/timeout race
// (upstream issue 1145) and per-request allocation make it unfit for the hot
// path. Messages carry their own reply channel or callback instead.
package actors

import (
	"io"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// protoactor's process registry is 1024 buckets, each one of
// concurrent-map's maps, which are split into cmap.SHARD_COUNT (32)
// locked shards: 32 768 Go maps and about 2.5 MiB of heap per actor
// system, for a registry of tens of actors (thousands with many watch
// streams). The buckets already spread the registry's locking, so one
// shard each is enough. The shard count must not change under an existing
// map: it is set here, before any actor system (the registry is
// concurrent-map's only user in Cairn) can have made one.
func init() { cmap.SHARD_COUNT = 1 }

// System owns the protoactor system and the statistics of every actor
// spawned through it. It is safe for concurrent use.
type System struct {
	sys *actor.ActorSystem

	mu     sync.Mutex
	actors map[string]*Stats
}

// NewSystem starts an actor system whose internal logging is discarded
// (Cairn logs through zap at the call sites that matter).
func NewSystem() *System {
	quiet := func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &System{
		sys:    actor.NewActorSystem(actor.WithLoggerFactory(quiet)),
		actors: make(map[string]*Stats),
	}
}

// Receiver is an actor's message handler. It runs on the actor's goroutine,
// one message at a time.
type Receiver func(ctx actor.Context)

// Ref is a handle to a spawned actor: send to it, stop it.
type Ref struct {
	sys   *System
	pid   *actor.PID
	stats *Stats
	done  chan struct{}
	// slots holds one token per message in a bounded mailbox; nil if the
	// mailbox is unbounded.
	slots chan struct{}
}

// Spawn starts an actor named name. A positive mailboxSize bounds its
// mailbox: senders block while it is full, which is the backpressure that
// clients flooding the actor must feel. Zero means unbounded, for actors fed
// only by other actors at a bounded rate. Names must be unique while the
// actor lives; the name appears on /debug/actors.
//
// The bound is a semaphore in front of an unbounded mailbox, not
// protoactor's bounded mailbox: that one's ring buffer makes a sender to a
// full mailbox spin on runtime.Gosched, which under watch fan-out burned
// half the CPU the receivers needed. A sender here parks on a channel.
func (s *System) Spawn(name string, mailboxSize int, receive Receiver) *Ref {
	st := &Stats{name: name}
	ref := &Ref{sys: s, stats: st, done: make(chan struct{})}
	if mailboxSize > 0 {
		ref.slots = make(chan struct{}, mailboxSize)
	}
	mailbox := actor.Unbounded(st)
	handler := func(ctx actor.Context) {
		switch ctx.Message().(type) {
		case *actor.Stopped:
			receive(ctx)
			close(ref.done)
			return
		case actor.SystemMessage, actor.AutoReceiveMessage:
			// Lifecycle notices (Started, Stopping) are not traffic: they
			// stay out of the processed count and handling times.
			receive(ctx)
			return
		}
		if sig, ok := ctx.Message().(signal); ok {
			ctx = signalContext{Context: ctx, msg: sig.msg} // took no slot
		} else if ref.slots != nil {
			<-ref.slots // out of the mailbox; it came through Send
		}
		start := time.Now()
		receive(ctx)
		st.observe(time.Since(start))
	}
	d := newPinnedDispatcher(ref.done)
	props := actor.PropsFromFunc(handler, actor.WithMailbox(mailbox), actor.WithDispatcher(d))
	ref.pid = s.sys.Root.Spawn(props)
	s.mu.Lock()
	s.actors[name] = st
	s.mu.Unlock()
	return ref
}

// pinnedDispatcher runs an actor's mailbox on one long-lived goroutine.
// protoactor's default dispatcher starts a fresh goroutine whenever an idle
// mailbox receives a message; on a hot actor that goroutine's stack then
// regrows through the same deep call paths every time (profiles of the raft
// actor showed most of its CPU in runtime.copystack). A pinned goroutine
// keeps its grown stack.
type pinnedDispatcher struct {
	runs chan func()
	done <-chan struct{}
}

// dispatcherThroughput is how many messages a mailbox handles before
// yielding the goroutine; protoactor's default.
const dispatcherThroughput = 300

func newPinnedDispatcher(done <-chan struct{}) *pinnedDispatcher {
	// A mailbox schedules a run only when it goes from idle to running, and
	// may do so once more while finishing the previous run; a small buffer
	// means Schedule never blocks on the worker.
	d := &pinnedDispatcher{runs: make(chan func(), 4), done: done}
	go func() {
		for {
			select {
			case fn := <-d.runs:
				fn()
			case <-done:
				// Drain runs scheduled while stopping, then quit.
				for {
					select {
					case fn := <-d.runs:
						fn()
					default:
						return
					}
				}
			}
		}
	}()
	return d
}

// Schedule implements actor.Dispatcher. Once the actor has stopped, runs
// are dropped: its mailbox is detached and there is nothing left to do.
func (d *pinnedDispatcher) Schedule(fn func()) {
	select {
	case d.runs <- fn:
	case <-d.done:
	}
}

// Throughput implements actor.Dispatcher.
func (d *pinnedDispatcher) Throughput() int { return dispatcherThroughput }

// Send delivers msg to the actor's mailbox; it blocks only while a bounded
// mailbox is full, and drops msg once the actor has stopped.
func (r *Ref) Send(msg any) {
	if r.slots != nil {
		select {
		case r.slots <- struct{}{}:
		case <-r.done:
			return
		}
	}
	r.sys.sys.Root.Send(r.pid, msg)
}

// Signal delivers msg without waiting for room in a bounded mailbox, and
// drops it once the actor has stopped. It is for notices of which a sender
// keeps at most one in the mailbox (a flag set before signalling and
// cleared by the actor when it takes the notice), so they cannot fill the
// mailbox, and for senders that must never wait on the actor.
func (r *Ref) Signal(msg any) {
	select {
	case <-r.done:
		return
	default:
	}
	r.sys.sys.Root.Send(r.pid, signal{msg: msg})
}

// signal carries a message posted by Signal, which holds no mailbox slot.
type signal struct{ msg any }

// signalContext is the context of a signalled message: the receiver sees
// the message itself.
type signalContext struct {
	actor.Context
	msg any
}

func (c signalContext) Message() any { return c.msg }

// Stop stops the actor after the message it is handling and waits until it
// has stopped. Messages still queued are dropped. Safe to call twice.
func (r *Ref) Stop() {
	select {
	case <-r.done:
		return
	default:
	}
	r.sys.sys.Root.Stop(r.pid)
	<-r.done
	r.sys.mu.Lock()
	if r.sys.actors[r.stats.name] == r.stats {
		delete(r.sys.actors, r.stats.name)
	}
	r.sys.mu.Unlock()
}

// Snapshot returns the current statistics of every live actor, sorted by
// name.
func (s *System) Snapshot() []Snapshot {
	s.mu.Lock()
	out := make([]Snapshot, 0, len(s.actors))
	for _, st := range s.actors {
		out = append(out, st.snapshot())
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Stats counts an actor's traffic. It is also the actor's mailbox
// middleware, so depth is measured where messages enter and leave.
type Stats struct {
	name      string
	posted    atomic.Int64
	received  atomic.Int64
	processed atomic.Int64
	totalNs   atomic.Int64
	maxNs     atomic.Int64
}

// Snapshot is one actor's statistics at a moment, as /debug/actors shows it.
type Snapshot struct {
	Name         string  `json:"name"`
	MailboxDepth int64   `json:"mailbox_depth"`
	Processed    int64   `json:"messages_processed"`
	MeanMicros   float64 `json:"mean_handling_us"`
	MaxMicros    float64 `json:"max_handling_us"`
}

// MailboxStarted implements actor.MailboxMiddleware.
func (st *Stats) MailboxStarted() {}

// MessagePosted implements actor.MailboxMiddleware.
func (st *Stats) MessagePosted(any) { st.posted.Add(1) }

// MessageReceived implements actor.MailboxMiddleware.
func (st *Stats) MessageReceived(any) { st.received.Add(1) }

// MailboxEmpty implements actor.MailboxMiddleware.
func (st *Stats) MailboxEmpty() {}

func (st *Stats) observe(d time.Duration) {
	ns := d.Nanoseconds()
	st.processed.Add(1)
	st.totalNs.Add(ns)
	for {
		cur := st.maxNs.Load()
		if ns <= cur || st.maxNs.CompareAndSwap(cur, ns) {
			return
		}
	}
}

func (st *Stats) snapshot() Snapshot {
	n := st.processed.Load()
	s := Snapshot{
		Name:         st.name,
		MailboxDepth: max(st.posted.Load()-st.received.Load(), 0),
		Processed:    n,
		MaxMicros:    float64(st.maxNs.Load()) / 1e3,
	}
	if n > 0 {
		s.MeanMicros = float64(st.totalNs.Load()) / float64(n) / 1e3
	}
	return s
}
