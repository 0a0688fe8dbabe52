package watch

import (
	"bytes"
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
	// progressRequestMsg asks for one progress notification for the stream.
	progressRequestMsg struct{}
	// liveMsg carries one or more published batches, merged in revision
	// order, and the bytes they were charged; a stream's queue holds one
	// per published batch until the pump merges them.
	liveMsg struct {
		evs  batch
		size int64
	}
	// catchUpMsg reports that live batches were dropped for this stream.
	catchUpMsg struct{}
	// progressTickMsg is the periodic progress notification tick.
	progressTickMsg struct{}
)

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
type streamActor struct {
	hist History
	opts Options
	send func(*pb.WatchResponse) error

	watchers map[int64]*watcher
	nextID   int64
	failed   bool // the client stream is gone; nothing more is sent
	// behind is set when a catch-up stopped at its chunk limit; the stream
	// is kicked after the message, so the rest follows in later messages
	// and live batches and requests are served in between.
	behind bool
	stream *Stream
	sorted []int64 // cache of ids()
	// byKey indexes the single-key watchers by key and ranged holds the
	// others, so a live event finds its watchers without a scan of all.
	byKey  map[string][]*watcher
	ranged map[int64]*watcher
}

// add registers w, whose ID is free.
func (a *streamActor) add(w *watcher) {
	a.watchers[w.id] = w
	a.sorted = nil
	if w.end == nil {
		a.byKey[string(w.key)] = append(a.byKey[string(w.key)], w)
	} else {
		a.ranged[w.id] = w
	}
}

// remove unregisters w.
func (a *streamActor) remove(w *watcher) {
	delete(a.watchers, w.id)
	a.sorted = nil
	if w.end != nil {
		delete(a.ranged, w.id)
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

// maxCatchUpRevs is how many revisions one catch-up response carries at
// most: etcd's watchBatchMaxRevs.
const maxCatchUpRevs = 1000

// minCatchUpBytes is the floor of the size a catch-up response is cut at.
const minCatchUpBytes = 1 << 20

func (a *streamActor) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case createMsg:
		a.create(m.req)
	case cancelMsg:
		a.cancel(m.id)
	case progressRequestMsg:
		a.progressAll()
	case liveMsg:
		a.deliver(m.evs)
		a.stream.handled(m.size)
	case catchUpMsg:
		a.catchUpAll(a.hist.Rev())
	case progressTickMsg:
		a.progressTick()
	}
	if a.behind {
		a.behind = false
		a.stream.kick()
	}
}

func (a *streamActor) respond(r *pb.WatchResponse) {
	if a.failed {
		return
	}
	if err := a.send(r); err != nil {
		a.failed = true
	}
}

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

// deliver sends the events of b (one or more published batches) that each
// watcher is owed, in one response per watcher headed by b's last
// revision. Every revision has at least one event, so a revision past a
// watcher's next one means batches were dropped for the stream: the
// watcher is caught up from history instead, which covers the rest of b.
func (a *streamActor) deliver(b batch) {
	if a.failed {
		return
	}
	first, last := b[0].Kv.ModRevision, b[len(b)-1].Kv.ModRevision
	for i := 1; i < len(b); i++ {
		if b[i].Kv.ModRevision > b[i-1].Kv.ModRevision+1 {
			a.deliverEach(b) // a batch was dropped between two merged ones
			return
		}
	}
	// b is contiguous: a watcher whose next revision is in it is owed the
	// events from there on; one whose next revision is before it is
	// behind. Events find their watchers through the index.
	owed := func(w *watcher, rev int64) bool { return w.next >= first && w.next <= rev }
	for i, ev := range b {
		rev := ev.Kv.ModRevision
		for _, w := range a.byKey[string(ev.Kv.Key)] {
			if owed(w, rev) {
				w.pending = a.filter(w, b[i:i+1], w.pending)
			}
		}
		for _, w := range a.ranged {
			if owed(w, rev) && w.contains(ev.Kv.Key) {
				w.pending = a.filter(w, b[i:i+1], w.pending)
			}
		}
	}
	for _, id := range a.ids() {
		w := a.watchers[id]
		switch {
		case w == nil || w.next > last:
		case w.next < first:
			a.catchUp(w, a.hist.Rev())
		default:
			if len(w.pending) > 0 {
				a.sendEvents(w, last, w.pending)
				w.pending = nil
			}
			w.next = last + 1
		}
	}
}

// deliverEach is deliver for a b with a gap, watcher by watcher.
func (a *streamActor) deliverEach(b batch) {
	last := b[len(b)-1].Kv.ModRevision
	for _, id := range a.ids() {
		w := a.watchers[id]
		if w == nil || w.next > last {
			continue
		}
		var evs []*mvccpb.Event
		gap := false
		for i := 0; i < len(b); {
			rev := b[i].Kv.ModRevision
			j := i
			for j < len(b) && b[j].Kv.ModRevision == rev {
				j++
			}
			if rev > w.next {
				gap = true
				break
			}
			if rev == w.next {
				evs = a.filter(w, b[i:j], evs)
				w.next = rev + 1
			}
			i = j
		}
		if len(evs) > 0 {
			a.sendEvents(w, last, evs)
		}
		if gap {
			a.catchUp(w, a.hist.Rev())
		}
	}
}

// catchUpAll catches up every watcher that is behind rev.
func (a *streamActor) catchUpAll(rev int64) {
	if a.failed {
		return
	}
	for _, id := range a.ids() {
		if w := a.watchers[id]; w != nil {
			a.catchUp(w, rev)
		}
	}
}

// catchUp sends w the events from w.next on, up to rev (no newer than the
// current revision), or cancels w if that history is compacted. Like
// etcd, one response carries at most maxCatchUpRevs revisions; Cairn also
// cuts it at about one request's size, so a far-behind watcher is caught up
// in bounded steps, one per message the actor handles.
func (a *streamActor) catchUp(w *watcher, rev int64) {
	if w.next > rev || a.failed {
		return
	}
	limit := int64(max(a.opts.MaxRequestBytes, minCatchUpBytes))
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

// sendEvents sends events at revision rev to w, in fragments if w asked
// for them and the response is too large.
func (a *streamActor) sendEvents(w *watcher, rev int64, evs []*mvccpb.Event) {
	w.quiet = false
	r := &pb.WatchResponse{Header: header(rev), WatchId: w.id, Events: evs}
	if !w.fragment || a.opts.MaxRequestBytes <= 0 || len(evs) < 2 || proto.Size(r) < a.opts.MaxRequestBytes {
		a.respond(r)
		return
	}
	for len(evs) > 0 {
		cur := &pb.WatchResponse{Header: r.Header, WatchId: w.id, Fragment: true}
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

// synced reports whether w has been sent everything up to rev and its
// start revision is reached.
func (w *watcher) synced(rev int64) bool { return w.next > rev && rev >= w.start }

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
		if !w.synced(rev) {
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
		if w.quiet && w.synced(rev) {
			a.respond(&pb.WatchResponse{Header: header(rev), WatchId: w.id})
		}
		w.quiet = true
	}
}
