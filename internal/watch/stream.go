package watch

import (
	"bytes"
	"cmp"
	"errors"
	"slices"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// invalidID is the watch ID of responses that concern no single watcher
// (clientv3.InvalidWatchID).
const invalidID = -1

// The stream actor's messages.
type (
	// createMsg adds a watcher.
	createMsg struct{ req *pb.WatchCreateRequest }
	// cancelMsg removes a watcher.
	cancelMsg struct{ id int64 }
	// refuseMsg answers a create request the front end refused.
	refuseMsg struct{ reason string }
	// progressRequestMsg asks for one progress notification for the stream.
	progressRequestMsg struct{}
	// turnMsg has the actor serve what its Stream has pending: a
	// catch-up, queued batches, a progress tick.
	turnMsg struct{}
)

// liveMsg is one or more published batches, merged in revision order, and
// the bytes they were charged; a stream's queue holds one per published
// batch until a turn merges them.
type liveMsg struct {
	evs  batch
	size int64
}

// watcher is one watch of a stream.
type watcher struct {
	id       int64
	key, end []byte // end nil: the key alone; empty: every key from key on
	start    int64  // the start revision asked for (0: the next one)
	next     int64  // the next revision this watcher has to be sent
	prevKV   bool
	fragment bool
	noPut    bool
	noDelete bool
	progress bool
	// quiet is set by a progress tick and cleared by events: a watcher
	// gets a notification only for an interval in which it got no event.
	quiet bool
	// pending collects the watcher's events while deliver goes through a
	// batch.
	pending []*mvccpb.Event
	// inSync is set while the watcher is in its stream's synced group:
	// its next revision is then the stream's pos, and the next field is
	// stale, so a batch advances every synced watcher at once.
	inSync bool
}

func (w *watcher) contains(k []byte) bool {
	switch {
	case w.end == nil:
		return bytes.Equal(k, w.key)
	case len(w.end) == 0:
		return bytes.Compare(k, w.key) >= 0
	}
	return bytes.Compare(k, w.key) >= 0 && bytes.Compare(k, w.end) < 0
}

// streamActor serves one stream's watchers. Each watcher is either synced
// (next is past the current revision, and live batches reach it) or behind
// and caught up from history before anything newer is sent to it, so
// every event is sent exactly once and in revision order.
//
// A commit must cost the stream in proportion to its events and the
// watchers they match, not to all its watchers, so the watchers whose next
// revision is where the live batches continue (pos) form a synced group
// that shares pos instead of each holding its own next: a batch that
// continues at pos advances the whole group by moving pos. The others,
// unsynced, keep their own next and are visited on every batch: those
// created with a past or future start revision, those created while
// batches were queued for the stream, and those being caught up from
// history after the stream dropped batches. An unsynced watcher joins the
// group when its next reaches pos. This is etcd's split of synced and
// unsynced watchers; here the unsynced set is expected to be small except
// just after the stream fell behind.
type streamActor struct {
	hist History
	opts Options
	out  emitter

	watchers map[int64]*watcher
	nextID   int64
	// behind is set when a catch-up stopped at its chunk limit; the stream
	// is kicked after the message, so the rest follows in later messages
	// and live batches and requests are served in between.
	behind bool
	stream *Stream
	sorted []int64 // cache of ids()
	// evHeader is the header of the event responses at its revision:
	// every watcher a commit reaches gets a response, and they share it
	// (but for fragmented ones, see sendEvents). The actor reads only its
	// revision once it is handed over.
	evHeader *pb.ResponseHeader
	// byKey indexes the single-key watchers by key and ranges the others,
	// so a live event finds its watchers without a scan of all.
	byKey  map[string][]*watcher
	ranges rangeIndex
	// pos is the revision the next live batch is expected to start at:
	// one past the last batch delivered (past the current revision when
	// the stream opens). It is the next revision of every synced watcher.
	pos      int64
	nSynced  int
	unsynced map[int64]*watcher
	// acting, hits and runs are deliver's scratch space, kept across
	// batches so a commit allocates none of it.
	acting []*watcher
	hits   []*watcher
	runs   []run
}

// newStreamActor returns the actor of stream s, with no watcher yet, whose
// responses go to out.
func newStreamActor(hist History, opts Options, out emitter, s *Stream) *streamActor {
	return &streamActor{
		hist:     hist,
		opts:     opts,
		out:      out,
		watchers: make(map[int64]*watcher),
		byKey:    make(map[string][]*watcher),
		unsynced: make(map[int64]*watcher),
		pos:      hist.Rev() + 1,
		stream:   s,
	}
}

// add registers w, whose ID is free, as unsynced: the caller settles it
// once its next revision is known.
func (a *streamActor) add(w *watcher) {
	a.watchers[w.id] = w
	a.sorted = nil
	w.inSync = false
	a.unsynced[w.id] = w
	if w.end == nil {
		a.byKey[string(w.key)] = append(a.byKey[string(w.key)], w)
	} else {
		a.ranges.insert(w)
	}
}

// remove unregisters w.
func (a *streamActor) remove(w *watcher) {
	delete(a.watchers, w.id)
	a.sorted = nil
	if w.inSync {
		a.nSynced--
	} else {
		delete(a.unsynced, w.id)
	}
	if w.end != nil {
		a.ranges.delete(w)
		return
	}
	k := string(w.key)
	ws := slices.DeleteFunc(a.byKey[k], func(x *watcher) bool { return x == w })
	if len(ws) == 0 {
		delete(a.byKey, k)
	} else {
		a.byKey[k] = ws
	}
}

// nextOf is the next revision w has to be sent.
func (a *streamActor) nextOf(w *watcher) int64 {
	if w.inSync {
		return a.pos
	}
	return w.next
}

// settle moves w, if it is still an unsynced watcher of the stream, into
// the synced group when its next revision is pos.
func (a *streamActor) settle(w *watcher) {
	if a.unsynced[w.id] != w || w.next != a.pos {
		return
	}
	delete(a.unsynced, w.id)
	w.inSync = true
	a.nSynced++
}

// desyncAll makes every synced watcher unsynced at pos: the group is
// about to be caught up from history (batches were dropped, or a catch-up
// reaches past the live batches), and each of its watchers gets there on
// its own, as far as its own chunks reach. It costs O(W), but only where
// each watcher is read from history anyway.
func (a *streamActor) desyncAll() {
	if a.nSynced == 0 {
		return
	}
	for _, w := range a.watchers {
		if w.inSync {
			w.inSync = false
			w.next = a.pos
			a.unsynced[w.id] = w
		}
	}
	a.nSynced = 0
}

// maxCatchUpRevs is how many revisions one catch-up response carries at
// most: etcd's watchBatchMaxRevs.
const maxCatchUpRevs = 1000

// minCatchUpBytes is the floor of the size a catch-up response is cut at.
const minCatchUpBytes = 1 << 20

// catchUpBytes is the size a catch-up response is cut at, and that a
// merged response stays within: about one request's size, at least
// minCatchUpBytes.
func catchUpBytes(opts Options) int64 { return int64(max(opts.MaxRequestBytes, minCatchUpBytes)) }

func (a *streamActor) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case createMsg:
		a.create(m.req)
	case cancelMsg:
		a.cancel(m.id)
	case refuseMsg:
		a.refuse(m.reason)
	case progressRequestMsg:
		a.progressAll()
	case turnMsg:
		a.turn()
	}
	a.stream.watchers.Store(int64(len(a.watchers)))
	a.stream.slow.Store(int64(len(a.unsynced)))
	if a.behind {
		a.behind = false
		a.stream.kick()
	}
}

// turn serves what the stream has pending: the catch-up of a stream that
// dropped batches, then every queued batch up to coalesceBytes, then a
// progress tick. Batches left queued get another turn, after the messages
// already in the mailbox.
func (a *streamActor) turn() {
	s := a.stream
	// Cleared first: whatever is pending from here on schedules a turn.
	s.scheduled.Store(false)
	if s.missed.Swap(false) {
		a.catchUpAll(a.hist.Rev())
	}
	if m, ok := s.take(); ok {
		a.deliver(m.evs)
		s.handled(m.size)
	}
	if s.tick.Swap(false) {
		a.progressTick()
	}
}

// respond sends r, which must not be merged with other responses.
func (a *streamActor) respond(r *pb.WatchResponse) { a.out.put(r, false) }

func header(rev int64) *pb.ResponseHeader { return &pb.ResponseHeader{Revision: rev} }

// create adds a watcher with etcd's rules: an empty key means "\x00", a
// range_end of "\x00" means every key from key on, watch ID 0 asks for the
// lowest free ID, and a start revision at or below the current one replays
// history first.
func (a *streamActor) create(req *pb.WatchCreateRequest) {
	rev := a.hist.Rev()
	if req.StartRevision < 0 {
		a.respond(&pb.WatchResponse{Header: header(rev), WatchId: invalidID, Created: true, Canceled: true, CancelReason: ErrCompacted.Error()})
		return
	}
	w := &watcher{
		key:      req.Key,
		start:    req.StartRevision,
		prevKV:   req.PrevKv,
		fragment: req.Fragment,
		progress: req.ProgressNotify,
	}
	if len(w.key) == 0 {
		w.key = []byte{0}
	}
	switch {
	case len(req.RangeEnd) == 0:
	case len(req.RangeEnd) == 1 && req.RangeEnd[0] == 0:
		w.end = []byte{}
	default:
		w.end = req.RangeEnd
	}
	for _, f := range req.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	id, err := a.assignID(req.WatchId, w)
	if err != nil {
		a.respond(&pb.WatchResponse{Header: header(rev), WatchId: invalidID, Created: true, Canceled: true, CancelReason: err.Error()})
		return
	}
	w.id = id
	w.next = rev + 1
	if w.start > 0 {
		w.next = w.start
	}
	a.add(w)
	a.respond(&pb.WatchResponse{Header: header(rev), WatchId: id, Created: true})
	if w.next <= rev {
		a.catchUp(w, rev)
	}
	a.settle(w)
}

// refuse answers a create request that was refused before reaching the
// stream, in its place among the stream's responses: created and canceled
// at once, for no watcher, with the front end's reason.
func (a *streamActor) refuse(reason string) {
	a.respond(&pb.WatchResponse{Header: header(a.hist.Rev()), WatchId: invalidID, Created: true, Canceled: true, CancelReason: reason})
}

func (a *streamActor) assignID(want int64, w *watcher) (int64, error) {
	if len(w.end) > 0 && bytes.Compare(w.key, w.end) >= 0 {
		return 0, ErrEmptyRange
	}
	if want != 0 {
		if _, ok := a.watchers[want]; ok {
			return 0, ErrDuplicateID
		}
		return want, nil
	}
	for a.watchers[a.nextID] != nil {
		a.nextID++
	}
	id := a.nextID
	a.nextID++
	return id, nil
}

// cancel removes watcher id; an unknown ID gets no answer, as in etcd.
func (a *streamActor) cancel(id int64) {
	w, ok := a.watchers[id]
	if !ok {
		return
	}
	a.remove(w)
	a.respond(&pb.WatchResponse{Header: header(a.hist.Rev()), WatchId: id, Canceled: true})
}

// ids returns the watcher IDs in order, so responses go out in a stable
// order. The slice is kept until a watcher is added or removed; callers
// that remove watchers while ranging over it must skip missing IDs.
func (a *streamActor) ids() []int64 {
	if a.sorted == nil {
		a.sorted = make([]int64, 0, len(a.watchers))
		for id := range a.watchers {
			a.sorted = append(a.sorted, id)
		}
		slices.Sort(a.sorted)
	}
	return a.sorted
}

// run is a stretch of a live message with no revision missing: from event
// b[at], at revision first, to revision last.
type run struct {
	at          int
	first, last int64
}

// runOf returns the index of the run of a.runs that holds revision rev, or
// -1 if rev is before, between or after them.
func (a *streamActor) runOf(rev int64) int {
	i, _ := slices.BinarySearchFunc(a.runs, rev, func(r run, rev int64) int { return cmp.Compare(r.last, rev) })
	if i < len(a.runs) && a.runs[i].first <= rev {
		return i
	}
	return -1
}

// byID orders watchers as ids() does.
func byID(x, y *watcher) int { return cmp.Compare(x.id, y.id) }

// deliver sends the events of b (one or more published batches) that each
// watcher is owed, in one response per watcher headed by b's last
// revision. Every revision has at least one event, so b splits into runs
// with no revision missing, and a revision missing between two runs was in
// a batch dropped for the stream. A watcher whose next revision is in a
// run is owed that run's events from there on; if a later run follows, or
// if its next revision is in no run (it is behind), it is then caught up
// from history, which covers the rest of b.
//
// Events find their watchers through the indexes; besides those, only the
// unsynced watchers are visited, and the responses go out in ID order, as
// if every watcher were visited in turn. The synced group advances by pos
// alone, or, if it missed revisions, is broken up into unsynced watchers
// to be caught up one by one.
func (a *streamActor) deliver(b batch) {
	if a.out.failed() {
		return
	}
	last := b[len(b)-1].Kv.ModRevision
	runs := append(a.runs[:0], run{at: 0, first: b[0].Kv.ModRevision})
	for i := 1; i < len(b); i++ {
		if rev := b[i].Kv.ModRevision; rev > b[i-1].Kv.ModRevision+1 {
			runs[len(runs)-1].last = b[i-1].Kv.ModRevision
			runs = append(runs, run{at: i, first: rev})
		}
	}
	runs[len(runs)-1].last = last
	a.runs = runs
	lastRun := len(runs) - 1
	if a.pos <= last && a.runOf(a.pos) != lastRun {
		a.desyncAll()
	}
	a.acting = a.acting[:0]
	for ri, r := range runs {
		end := len(b)
		if ri < lastRun {
			end = runs[ri+1].at
		}
		for i := r.at; i < end; i++ {
			k := b[i].Kv.Key
			for _, w := range a.byKey[string(k)] {
				a.owe(w, b[i:i+1], r.first)
			}
			if a.ranges.size > 0 {
				a.hits = a.ranges.stab(k, a.hits[:0])
				for _, w := range a.hits {
					a.owe(w, b[i:i+1], r.first)
				}
			}
		}
	}
	acting := a.acting
	for _, w := range a.unsynced {
		if w.next <= last && len(w.pending) == 0 {
			acting = append(acting, w)
		}
	}
	slices.SortFunc(acting, byID)
	for _, w := range acting {
		if len(w.pending) > 0 {
			a.sendEvents(w, last, w.pending)
			w.pending = nil
		}
		if w.inSync {
			continue // pos moves below
		}
		switch ri := a.runOf(w.next); {
		case ri == lastRun:
			w.next = last + 1
		case ri >= 0:
			w.next = runs[ri].last + 1
			fallthrough
		default:
			a.catchUp(w, a.hist.Rev())
		}
	}
	clear(acting)
	a.acting = acting[:0]
	clear(a.hits[:cap(a.hits)])
	if a.pos <= last {
		a.pos = last + 1
	}
	for _, w := range a.unsynced {
		a.settle(w)
	}
}

// owe adds event ev[0] to w's pending events if w is owed it: w's next
// revision is in the run that starts at first and not past the event's. A
// watcher that gets its first pending event is listed in a.acting.
func (a *streamActor) owe(w *watcher, ev batch, first int64) {
	if n := a.nextOf(w); n < first || n > ev[0].Kv.ModRevision {
		return
	}
	had := len(w.pending)
	if w.pending = a.filter(w, ev, w.pending); had == 0 && len(w.pending) > 0 {
		a.acting = append(a.acting, w)
	}
}

// catchUpAll catches up every watcher that is behind rev, in ID order.
func (a *streamActor) catchUpAll(rev int64) {
	if a.out.failed() {
		return
	}
	if a.pos <= rev {
		a.desyncAll() // the group is behind rev too
	}
	behind := a.acting[:0]
	for _, w := range a.unsynced {
		if w.next <= rev {
			behind = append(behind, w)
		}
	}
	slices.SortFunc(behind, byID)
	for _, w := range behind {
		a.catchUp(w, rev)
	}
	clear(behind)
	a.acting = behind[:0]
	for _, w := range a.unsynced {
		a.settle(w)
	}
}

// catchUp sends w the events from w.next on, up to rev (no newer than the
// current revision), or cancels w if that history is compacted. Like
// etcd, one response carries at most maxCatchUpRevs revisions; Cairn also
// cuts it at about one request's size, so a far-behind watcher is caught up
// in bounded steps, one per message the actor handles.
func (a *streamActor) catchUp(w *watcher, rev int64) {
	if w.next > rev || a.out.failed() {
		return
	}
	limit := catchUpBytes(a.opts)
	var (
		evs   []*mvccpb.Event
		revs  int
		bytes int64
	)
	next := rev + 1
	err := a.hist.Events(w.next, rev, func(ev *mvccpb.Event) bool {
		if !w.contains(ev.Kv.Key) {
			return true
		}
		if r := ev.Kv.ModRevision; len(evs) == 0 || r > evs[len(evs)-1].Kv.ModRevision {
			if revs == maxCatchUpRevs || bytes >= limit {
				next = r
				return false
			}
			revs++
		}
		evs = append(evs, ev)
		bytes += eventBytes(evs[len(evs)-1:])
		return true
	})
	if err != nil {
		a.remove(w)
		if errors.Is(err, mvcc.ErrCompacted) {
			// etcd's compaction notice carries no revision in its header.
			a.respond(&pb.WatchResponse{Header: header(0), WatchId: w.id, CompactRevision: a.hist.CompactRev(), Canceled: true})
		} else {
			a.respond(&pb.WatchResponse{Header: header(rev), WatchId: w.id, Canceled: true, CancelReason: err.Error()})
		}
		return
	}
	w.next = next
	if next <= rev {
		a.behind = true
	}
	if evs = a.filter(w, evs, nil); len(evs) > 0 {
		a.sendEvents(w, rev, evs)
	}
}

// filter appends to out the events of evs that w wants, carrying PrevKv
// only if w asked for it. Events are shared, read-only, between watchers
// where they can be: only a PrevKv to add or to leave out makes a copy.
func (a *streamActor) filter(w *watcher, evs, out []*mvccpb.Event) []*mvccpb.Event {
	for _, ev := range evs {
		if !w.contains(ev.Kv.Key) {
			continue
		}
		if (ev.Type == mvccpb.Event_PUT && w.noPut) || (ev.Type == mvccpb.Event_DELETE && w.noDelete) {
			continue
		}
		if ev.PrevKv == nil && (!w.prevKV || ev.IsCreate()) {
			out = append(out, ev)
			continue
		}
		e := &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		if w.prevKV && !ev.IsCreate() {
			e.PrevKv = ev.PrevKv
			if e.PrevKv == nil {
				e.PrevKv = a.hist.PrevKV(ev.Kv.Key, ev.Kv.ModRevision)
			}
		}
		out = append(out, e)
	}
	return out
}

// sendEvents sends events at revision rev to w: in fragments if w asked
// for them and the response is too large, and otherwise in a response the
// outbox may merge with w's next events while it waits to be sent.
func (a *streamActor) sendEvents(w *watcher, rev int64, evs []*mvccpb.Event) {
	w.quiet = false
	if !w.fragment {
		if a.evHeader == nil || a.evHeader.Revision != rev {
			a.evHeader = header(rev)
		}
		a.out.put(&pb.WatchResponse{Header: a.evHeader, WatchId: w.id, Events: evs}, true)
		return
	}
	// The sizes below read a response's header, which the sending
	// goroutine completes in place once the response is handed over: each
	// response measured here has a header of its own.
	r := &pb.WatchResponse{Header: header(rev), WatchId: w.id, Events: evs}
	if a.opts.MaxRequestBytes <= 0 || len(evs) < 2 || proto.Size(r) < a.opts.MaxRequestBytes {
		a.respond(r)
		return
	}
	for len(evs) > 0 {
		cur := &pb.WatchResponse{Header: header(rev), WatchId: w.id, Fragment: true}
		n := 0
		for n < len(evs) {
			cur.Events = evs[:n+1]
			if n > 0 && proto.Size(cur) >= a.opts.MaxRequestBytes {
				break
			}
			n++
		}
		cur.Events = evs[:n]
		evs = evs[n:]
		cur.Fragment = len(evs) > 0
		a.respond(cur)
	}
}

// caughtUp reports whether w has been sent everything up to rev and its
// start revision is reached.
func (a *streamActor) caughtUp(w *watcher, rev int64) bool {
	return a.nextOf(w) > rev && rev >= w.start
}

// progressAll answers a progress request: one notification with watch ID
// -1 at the current revision, if every watcher is synced (etcd sends none
// otherwise, nor when the stream has no watcher).
func (a *streamActor) progressAll() {
	rev := a.hist.Rev()
	a.catchUpAll(rev)
	if len(a.watchers) == 0 {
		return
	}
	for _, w := range a.watchers {
		if !a.caughtUp(w, rev) {
			return
		}
	}
	a.respond(&pb.WatchResponse{Header: header(rev), WatchId: invalidID})
}

// progressTick sends a progress notification to each synced watcher that
// asked for them and got no event since the last tick.
func (a *streamActor) progressTick() {
	rev := a.hist.Rev()
	for _, id := range a.ids() {
		w := a.watchers[id]
		if w == nil || !w.progress {
			continue
		}
		if w.quiet && a.caughtUp(w, rev) {
			a.respond(&pb.WatchResponse{Header: header(rev), WatchId: w.id})
		}
		w.quiet = true
	}
}
