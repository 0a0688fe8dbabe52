package watch

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// modelHistory is an in-memory History for the model test: every event
// ever written, in revision order, with compaction by a moved floor.
type modelHistory struct {
	evs     []*mvccpb.Event // carry PrevKv, as published; Events strips it
	rev     int64
	compact int64
	live    map[string]*mvccpb.KeyValue
}

func (h *modelHistory) Rev() int64        { return h.rev }
func (h *modelHistory) CompactRev() int64 { return h.compact }

func (h *modelHistory) Events(from, to int64, fn func(*mvccpb.Event) bool) error {
	if from < h.compact {
		return fmt.Errorf("model: replay from %d: %w", from, mvcc.ErrCompacted)
	}
	i := sort.Search(len(h.evs), func(i int) bool { return h.evs[i].Kv.ModRevision >= from })
	for ; i < len(h.evs) && h.evs[i].Kv.ModRevision <= to; i++ {
		if !fn(&mvccpb.Event{Type: h.evs[i].Type, Kv: h.evs[i].Kv}) {
			break
		}
	}
	return nil
}

// PrevKV ignores compaction, unlike mvcc's, so that every event's prev_kv
// is known for the final check of the model test.
func (h *modelHistory) PrevKV(key []byte, rev int64) *mvccpb.KeyValue {
	for i := len(h.evs) - 1; i >= 0; i-- {
		ev := h.evs[i]
		if ev.Kv.ModRevision >= rev || !bytes.Equal(ev.Kv.Key, key) {
			continue
		}
		if ev.Type == mvccpb.PUT {
			return ev.Kv
		}
		return nil
	}
	return nil
}

// put writes key and returns the published batch.
func (h *modelHistory) put(key, value string) batch {
	h.rev++
	prev := h.live[key]
	kv := &mvccpb.KeyValue{Key: []byte(key), Value: []byte(value), ModRevision: h.rev, CreateRevision: h.rev, Version: 1}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
	}
	h.live[key] = kv
	ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: kv, PrevKv: prev}
	h.evs = append(h.evs, ev)
	return batch{ev}
}

// deleteRange deletes the keys in [key, end) in one revision, if any.
func (h *modelHistory) deleteRange(key, end string) batch {
	var keys []string
	for k := range h.live {
		if k >= key && k < end {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.Sort(keys)
	h.rev++
	var b batch
	for _, k := range keys {
		ev := &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: []byte(k), ModRevision: h.rev}, PrevKv: h.live[k]}
		delete(h.live, k)
		b = append(b, ev)
	}
	h.evs = append(h.evs, b...)
	return b
}

// refStream is the reference for the stream actor: the algorithm it had
// before the synced group and the range index, which visits every watcher
// in ID order on every batch, each with its own next revision. It shares
// the actor's filter, sendEvents and catchUp, which the change left alone,
// through an actor whose watchers all stay unsynced: nothing here settles
// them into the synced group.
type refStream struct{ a *streamActor }

func (r *refStream) create(req *pb.WatchCreateRequest) {
	a := r.a
	rev := a.hist.Rev()
	if req.StartRevision < 0 {
		a.respond(&pb.WatchResponse{Header: header(rev), WatchId: invalidID, Created: true, Canceled: true, CancelReason: ErrCompacted.Error()})
		return
	}
	w := &watcher{key: req.Key, start: req.StartRevision, prevKV: req.PrevKv, fragment: req.Fragment, progress: req.ProgressNotify}
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
		w.noPut = w.noPut || f == pb.WatchCreateRequest_NOPUT
		w.noDelete = w.noDelete || f == pb.WatchCreateRequest_NODELETE
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

func (r *refStream) cancel(id int64) { r.a.cancel(id) }

// deliver is the reference's per-watcher delivery of b, gaps and all.
func (r *refStream) deliver(b batch) {
	a := r.a
	if a.out.failed() {
		return
	}
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

func (r *refStream) catchUpAll(rev int64) {
	for _, id := range r.a.ids() {
		if w := r.a.watchers[id]; w != nil {
			r.a.catchUp(w, rev)
		}
	}
}

func (r *refStream) progressAll() {
	a := r.a
	rev := a.hist.Rev()
	r.catchUpAll(rev)
	if len(a.watchers) == 0 {
		return
	}
	for _, w := range a.watchers {
		if !(w.next > rev && rev >= w.start) {
			return
		}
	}
	a.respond(&pb.WatchResponse{Header: header(rev), WatchId: invalidID})
}

func (r *refStream) progressTick() {
	a := r.a
	rev := a.hist.Rev()
	for _, id := range a.ids() {
		w := a.watchers[id]
		if w == nil || !w.progress {
			continue
		}
		if w.quiet && w.next > rev && rev >= w.start {
			a.respond(&pb.WatchResponse{Header: header(rev), WatchId: w.id})
		}
		w.quiet = true
	}
}

// recorder collects one actor's responses.
type recorder struct{ got []*pb.WatchResponse }

func (c *recorder) send(r *pb.WatchResponse) error {
	c.got = append(c.got, r)
	return nil
}

// modelKeys are the keys the model test writes and watches: few, so that
// watchers share keys and ranges overlap.
var modelKeys = []string{"\x00", "a", "a/1", "a/2", "b", "b/1", "c", "k", "zz"}

// randomCreate returns a random create request: a key, a range, a prefix,
// a from-key range or the whole keyspace; a start revision of none, in the
// past, now, in the future or negative; and random options.
func randomCreate(r *rand.Rand, rev int64) *pb.WatchCreateRequest {
	req := &pb.WatchCreateRequest{Key: []byte(modelKeys[r.IntN(len(modelKeys))])}
	switch r.IntN(6) {
	case 0:
		req.RangeEnd = []byte(modelKeys[r.IntN(len(modelKeys))]) // maybe empty: refused
	case 1:
		req.RangeEnd = append(slices.Clone(req.Key), 0xff) // a prefix
	case 2:
		req.RangeEnd = []byte{0} // from key on
	case 3:
		req.Key, req.RangeEnd = []byte{0}, []byte{0} // every key
	}
	switch n := r.IntN(10); {
	case n < 5:
	case n < 8:
		req.StartRevision = 1 + r.Int64N(rev+3)
	case n < 9:
		req.StartRevision = rev + 1 + r.Int64N(20)
	default:
		req.StartRevision = -1
	}
	if r.IntN(8) == 0 {
		req.WatchId = r.Int64N(12)
	}
	if r.IntN(4) == 0 {
		req.Filters = append(req.Filters, pb.WatchCreateRequest_NOPUT)
	}
	if r.IntN(4) == 0 {
		req.Filters = append(req.Filters, pb.WatchCreateRequest_NODELETE)
	}
	req.PrevKv = r.IntN(2) == 0
	req.ProgressNotify = r.IntN(3) == 0
	req.Fragment = r.IntN(3) == 0
	return req
}

// life is one watcher's life on the stream, between its created and its
// canceled response.
type life struct {
	req      *pb.WatchCreateRequest
	from     int64 // the first revision it is owed
	evs      []*mvccpb.Event
	canceled bool
}

// TestStreamMatchesReference runs random writes, watcher creations and
// cancellations, deliveries of merged batches with some dropped,
// catch-ups, progress requests and ticks, and compactions against the
// stream actor and the reference, which visits every watcher on every
// batch; both must send exactly the same responses in the same order.
// The streams hold many synced watchers besides the unsynced ones. At the
// end, with nothing left behind, each watcher that lived to the end must
// have got exactly the history its request selects, every event once and
// in order.
func TestStreamMatchesReference(t *testing.T) {
	for seed := range uint64(30) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runStreamModel(t, seed) })
	}
}

func runStreamModel(t *testing.T, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 2))
	h := &modelHistory{compact: -1, live: map[string]*mvccpb.KeyValue{}}
	opts := Options{MaxRequestBytes: 1024}
	var got, want recorder
	a := newStreamActor(h, opts, &direct{send: got.send}, &Stream{})
	ref := &refStream{a: newStreamActor(h, opts, &direct{send: want.send}, &Stream{})}
	var lives []*life
	byID := map[int64]*life{}
	seen := 0
	// check compares the responses so far and follows each watcher's life.
	check := func(step int, what string) {
		t.Helper()
		if len(got.got) != len(want.got) {
			t.Fatalf("step %d (%s): %d responses, reference %d\ngot  %v\nwant %v", step, what, len(got.got), len(want.got), got.got[seen:], want.got[seen:])
		}
		for i := seen; i < len(got.got); i++ {
			if !proto.Equal(got.got[i], want.got[i]) {
				t.Fatalf("step %d (%s): response %d\ngot  %v\nwant %v", step, what, i, got.got[i], want.got[i])
			}
			resp := got.got[i]
			l := byID[resp.WatchId]
			switch {
			case resp.Created:
			case resp.Canceled:
				if l != nil {
					l.canceled = true
					delete(byID, resp.WatchId)
				}
			case l != nil:
				l.evs = append(l.evs, resp.Events...)
			}
		}
		seen = len(got.got)
	}
	var queue []batch
	write := func() {
		var b batch
		if r.IntN(5) == 0 {
			k := modelKeys[r.IntN(len(modelKeys))]
			b = h.deleteRange(k, k+"\xff")
		} else {
			v := make([]byte, 1+r.IntN(100))
			if r.IntN(20) == 0 {
				v = make([]byte, 700) // fragments for watchers that ask
			}
			b = h.put(modelKeys[r.IntN(len(modelKeys))], string(v))
		}
		if b != nil {
			queue = append(queue, b)
		}
	}
	for range 20 {
		write()
	}
	// Many watchers from the start, most of them synced, on keys and
	// ranges alike.
	// create creates a watcher on both and follows its life from its
	// created response on.
	create := func(step int, req *pb.WatchCreateRequest) {
		n := len(got.got)
		a.create(req)
		ref.create(req)
		if resp := got.got[n]; !resp.Canceled {
			from := resp.Header.Revision + 1
			if req.StartRevision > 0 {
				from = req.StartRevision
			}
			l := &life{req: req, from: from}
			lives = append(lives, l)
			byID[resp.WatchId] = l
		}
		check(step, "create")
	}
	for range 60 {
		req := randomCreate(r, h.rev)
		req.StartRevision, req.WatchId = 0, 0
		create(-1, req)
	}
	for step := range 1500 {
		var what string
		switch op := r.IntN(100); {
		case op < 40:
			what = "write"
			write()
		case op < 70:
			what = "deliver"
			var m batch
			for n := 1 + r.IntN(3); n > 0 && len(queue) > 0; n-- {
				if r.IntN(6) != 0 { // else the batch is dropped
					m = append(m, queue[0]...)
				}
				queue = queue[1:]
			}
			if len(m) > 0 {
				a.deliver(m)
				ref.deliver(m)
			}
		case op < 80:
			what = "catch up"
			a.catchUpAll(h.rev)
			ref.catchUpAll(h.rev)
		case op < 88:
			what = "create"
			create(step, randomCreate(r, h.rev))
		case op < 92:
			what = "cancel"
			id := r.Int64N(14)
			a.cancel(id)
			ref.cancel(id)
		case op < 95:
			what = "progress request"
			a.progressAll()
			ref.progressAll()
		case op < 98:
			what = "progress tick"
			a.progressTick()
			ref.progressTick()
		default:
			what = "compact"
			h.compact = max(h.compact, h.rev-r.Int64N(30))
		}
		check(step, what)
	}
	// Drain: every queued batch and a last one, so the stream's position
	// is the current revision, then catch-ups until nobody is behind.
	for _, b := range append(queue, h.put("zz", "last")) {
		a.deliver(b)
		ref.deliver(b)
	}
	for range 10 {
		a.catchUpAll(h.rev)
		ref.catchUpAll(h.rev)
	}
	check(-1, "drain")
	for id, w := range a.watchers {
		if a.nextOf(w) <= h.rev {
			t.Fatalf("watcher %d still behind after the drain", id)
		}
		// Caught up, a watcher is back in the synced group, unless its
		// start revision is yet to come.
		if !w.inSync && w.start <= h.rev+1 {
			t.Fatalf("watcher %d caught up but not in the synced group", id)
		}
	}
	if a.nSynced+len(a.unsynced) != len(a.watchers) {
		t.Fatalf("%d synced and %d unsynced watchers, %d in all", a.nSynced, len(a.unsynced), len(a.watchers))
	}
	checked := 0
	for _, l := range lives {
		if l.canceled {
			continue
		}
		checked++
		want := modelSelect(h, l.req, l.from)
		if len(l.evs) != len(want) {
			t.Fatalf("watcher on %q..%q from %d got %d events, history selects %d", l.req.Key, l.req.RangeEnd, l.from, len(l.evs), len(want))
		}
		for i := range want {
			if !proto.Equal(l.evs[i], want[i]) {
				t.Fatalf("watcher on %q..%q from %d, event %d:\ngot  %v\nwant %v", l.req.Key, l.req.RangeEnd, l.from, i, l.evs[i], want[i])
			}
		}
	}
	if checked == 0 {
		t.Fatal("no watcher lived to the end")
	}
}

// modelSelect is what a watcher created by req, owed revisions from on,
// must get: the events of the history it watches, with prev_kv if asked,
// straight from the written history.
func modelSelect(h *modelHistory, req *pb.WatchCreateRequest, from int64) []*mvccpb.Event {
	key, end := req.Key, req.RangeEnd
	in := func(k []byte) bool {
		switch {
		case len(end) == 0:
			return bytes.Equal(k, key)
		case len(end) == 1 && end[0] == 0:
			return bytes.Compare(k, key) >= 0
		}
		return bytes.Compare(k, key) >= 0 && bytes.Compare(k, end) < 0
	}
	var out []*mvccpb.Event
	for _, ev := range h.evs {
		if ev.Kv.ModRevision < from || !in(ev.Kv.Key) {
			continue
		}
		if slices.Contains(req.Filters, pb.WatchCreateRequest_NOPUT) && ev.Type == mvccpb.PUT ||
			slices.Contains(req.Filters, pb.WatchCreateRequest_NODELETE) && ev.Type == mvccpb.DELETE {
			continue
		}
		e := &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		if req.PrevKv && !ev.IsCreate() {
			e.PrevKv = ev.PrevKv
		}
		out = append(out, e)
	}
	return out
}
