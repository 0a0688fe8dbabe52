package test

// Differential tests of etcd's Watch service: each scenario interleaves
// writes with watch requests on one or more raw gRPC watch streams, runs on
// a real etcd and on Cairn (both engines), and compares every watch
// response. Event responses are compared event by event per watch ID,
// since how events of a catch-up are grouped into responses depends on
// timing in etcd; control responses (created, canceled, compacted,
// progress) are compared whole, header revision included.

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// Watch steps; anything else in a scenario is a KV request.
type (
	// wCreate sends a create request on stream s and waits for its created
	// (or refused) response. StartRevision is in scenario revisions.
	wCreate struct {
		s   int
		req *pb.WatchCreateRequest
	}
	// wCancel cancels watch id on stream s and waits for the answer.
	wCancel struct {
		s  int
		id int64
	}
	// wProgress requests progress on stream s and waits for the answer.
	wProgress struct{ s int }
)

type watchScenario struct {
	name  string
	steps []any
}

func watchKey(key string) *pb.WatchCreateRequest { return &pb.WatchCreateRequest{Key: b(key)} }

// watchStream is one raw Watch stream and every response received on it.
type watchStream struct {
	cli pb.Watch_WatchClient
	ch  chan *pb.WatchResponse
	got []*pb.WatchResponse
}

func openWatchStream(t *testing.T, conn *grpc.ClientConn) *watchStream {
	t.Helper()
	cli, err := pb.NewWatchClient(conn).Watch(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	ws := &watchStream{cli: cli, ch: make(chan *pb.WatchResponse, 1024)}
	go func() {
		defer close(ws.ch)
		for {
			r, err := cli.Recv()
			if err != nil {
				return
			}
			ws.ch <- r
		}
	}()
	return ws
}

// await collects responses until one satisfies done or timeout passes
// (then it reports whether one did).
func (ws *watchStream) await(timeout time.Duration, done func(*pb.WatchResponse) bool) bool {
	deadline := time.After(timeout)
	for {
		select {
		case r, ok := <-ws.ch:
			if !ok {
				return false
			}
			ws.got = append(ws.got, r)
			if done != nil && done(r) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

// drain collects responses until none arrives for quiet.
func (ws *watchStream) drain(quiet time.Duration) {
	for {
		select {
		case r, ok := <-ws.ch:
			if !ok {
				return
			}
			ws.got = append(ws.got, r)
		case <-time.After(quiet):
			return
		}
	}
}

// run empties the store, plays the scenario and returns the normalised
// responses of every stream.
func (sc watchScenario) run(t *testing.T, endpoint string) string {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	c := ctx(t)
	delta := wipe(t, c, kv) - 1
	streams := map[int]*watchStream{}
	stream := func(i int) *watchStream {
		if streams[i] == nil {
			streams[i] = openWatchStream(t, conn)
		}
		return streams[i]
	}
	for i, step := range sc.steps {
		switch s := step.(type) {
		case wCreate:
			req := proto.Clone(s.req).(*pb.WatchCreateRequest)
			if req.StartRevision > 0 {
				req.StartRevision += delta
			}
			ws := stream(s.s)
			if err := ws.cli.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
				t.Fatal(err)
			}
			if !ws.await(5*time.Second, func(r *pb.WatchResponse) bool { return r.Created }) {
				t.Fatalf("step %d: no created response", i+1)
			}
		case wCancel:
			ws := stream(s.s)
			if err := ws.cli.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: s.id}}}); err != nil {
				t.Fatal(err)
			}
			ws.await(time.Second, func(r *pb.WatchResponse) bool { return r.Canceled && r.WatchId == s.id })
		case wProgress:
			ws := stream(s.s)
			if err := ws.cli.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}); err != nil {
				t.Fatal(err)
			}
			ws.await(time.Second, func(r *pb.WatchResponse) bool { return r.WatchId == -1 && !r.Created })
		case proto.Message:
			req := proto.Clone(s)
			shiftRevisions(req.ProtoReflect(), delta)
			if o := send(c, kv, req); o.Resp == nil {
				t.Fatalf("step %d %s: %v", i+1, brief(s), o)
			}
		default:
			t.Fatalf("unknown step %T", step)
		}
	}
	var out []string
	ids := make([]int, 0, len(streams))
	for i := range streams {
		ids = append(ids, i)
	}
	sort.Ints(ids)
	for _, i := range ids {
		ws := streams[i]
		// etcd syncs lagging watchers every 100ms.
		ws.drain(500 * time.Millisecond)
		_ = ws.cli.CloseSend()
		out = append(out, fmt.Sprintf("stream %d:", i))
		out = append(out, normalizeWatch(ws.got, delta)...)
	}
	return strings.Join(out, "\n")
}

// normalizeWatch turns responses into one line per control response and
// per event, grouped by watch ID in order of arrival, with revisions in
// scenario numbering.
func normalizeWatch(rs []*pb.WatchResponse, delta int64) []string {
	byID := map[int64][]string{}
	var ids []int64
	add := func(id int64, s string) {
		if _, ok := byID[id]; !ok {
			ids = append(ids, id)
		}
		byID[id] = append(byID[id], s)
	}
	for _, r := range rs {
		r = proto.Clone(r).(*pb.WatchResponse)
		clearMemberIdentity(r.ProtoReflect())
		shiftRevisions(r.ProtoReflect(), -delta)
		if len(r.Events) == 0 {
			add(r.WatchId, "  "+compactText(r))
			continue
		}
		frag := ""
		if r.Fragment {
			frag = "fragment "
		}
		for _, ev := range r.Events {
			for _, kv := range []*mvccpb.KeyValue{ev.Kv, ev.PrevKv} {
				if kv != nil && len(kv.Value) > 64 {
					kv.Value = fmt.Appendf(nil, "<%d bytes>", len(kv.Value))
				}
			}
			add(r.WatchId, fmt.Sprintf("  watch %d %sevent %s", r.WatchId, frag, compactText(ev)))
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []string
	for _, id := range ids {
		out = append(out, byID[id]...)
	}
	return out
}

// compactText is m in one line of text format (whose spacing protobuf
// varies on purpose).
func compactText(m proto.Message) string {
	return strings.Join(strings.Fields(prototext.Format(m)), " ")
}

func runWatchDifferential(t *testing.T, scenarios []watchScenario) {
	t.Helper()
	ep := etcdEndpoint(startEtcd(t))
	runWatchDifferentialAt(t, ep, scenarios)
}

// runWatchDifferentialAt runs scenarios on the etcd at ep, then on Cairn
// members started with flags.
func runWatchDifferentialAt(t *testing.T, ep string, scenarios []watchScenario, flags ...string) {
	t.Helper()
	want := make([]string, len(scenarios))
	for i, sc := range scenarios {
		want[i] = sc.run(t, ep)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine, flags...)
		for i, sc := range scenarios {
			t.Run(sc.name, func(t *testing.T) {
				if got := sc.run(t, m.clientEP); got != want[i] {
					t.Errorf("watch responses differ from etcd\n--- etcd:\n%s\n--- cairn:\n%s", want[i], got)
				}
			})
		}
	})
}

func TestWatchMatchesEtcd(t *testing.T) {
	pastFrom := func(rev int64) *pb.WatchCreateRequest {
		return &pb.WatchCreateRequest{Key: b("foo"), StartRevision: rev}
	}
	runWatchDifferential(t, []watchScenario{
		{"a key watcher sees puts and deletes of its key only", []any{
			wCreate{0, watchKey("foo")},
			put("foo", "v1"),
			put("bar", "x"),
			put("foo", "v2"),
			del("foo"),
		}},
		{"range, prefix and from-key watchers", []any{
			wCreate{0, &pb.WatchCreateRequest{Key: b("a"), RangeEnd: b("c")}},
			wCreate{0, &pb.WatchCreateRequest{Key: b("b"), RangeEnd: b("c")}},
			wCreate{0, &pb.WatchCreateRequest{Key: b("b"), RangeEnd: []byte{0}}},
			wCreate{0, &pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}}},
			put("a", "1"),
			put("b1", "2"),
			put("c", "3"),
			delRange("a", "z"),
		}},
		{"a txn's events arrive together at one revision", []any{
			wCreate{0, &pb.WatchCreateRequest{Key: b("k"), RangeEnd: b("l")}},
			put("k1", "old"),
			&pb.TxnRequest{Success: ops(opPut("k1", "new"), opPut("k2", "x"), opDel(del("k3")))},
			&pb.TxnRequest{Success: ops(opDel(delRange("k", "l")))},
		}},
		{"a start revision in the past replays history, then goes live", []any{
			put("foo", "v1"),
			put("foo", "v2"),
			del("foo"),
			put("foo", "v3"),
			wCreate{0, pastFrom(3)},
			put("foo", "v4"),
		}},
		{"a start revision in the future waits for it", []any{
			wCreate{0, pastFrom(4)},
			put("foo", "v1"),
			put("foo", "v2"),
			put("foo", "v3"),
		}},
		{"prev_kv on live and replayed events", []any{
			put("foo", "v1"),
			put("foo", "v2"),
			wCreate{0, &pb.WatchCreateRequest{Key: b("foo"), StartRevision: 2, PrevKv: true}},
			put("foo", "v3"),
			del("foo"),
			put("foo", "v4"),
		}},
		{"filters drop puts or deletes", []any{
			wCreate{0, &pb.WatchCreateRequest{Key: b("foo"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}}},
			wCreate{0, &pb.WatchCreateRequest{Key: b("foo"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}}},
			put("foo", "v1"),
			del("foo"),
		}},
		{"client-chosen watch IDs and a duplicate", []any{
			wCreate{0, &pb.WatchCreateRequest{Key: b("foo"), WatchId: 7}},
			wCreate{0, &pb.WatchCreateRequest{Key: b("foo"), WatchId: 7}},
			wCreate{0, watchKey("foo")},
			wCreate{0, &pb.WatchCreateRequest{Key: b("foo"), WatchId: 1}},
			wCreate{0, watchKey("foo")},
			put("foo", "v1"),
		}},
		{"an empty range and a negative start revision are refused", []any{
			wCreate{0, &pb.WatchCreateRequest{Key: b("b"), RangeEnd: b("a")}},
			wCreate{0, &pb.WatchCreateRequest{Key: b("foo"), StartRevision: -1}},
		}},
		{"cancel stops one watcher; other streams are independent", []any{
			wCreate{0, watchKey("foo")},
			wCreate{0, watchKey("foo")},
			wCreate{1, watchKey("foo")},
			put("foo", "v1"),
			wCancel{0, 0},
			put("foo", "v2"),
		}},
		{"progress request answers at the current revision when synced", []any{
			wCreate{0, watchKey("foo")},
			put("bar", "x"),
			wProgress{0},
			put("foo", "v1"),
			wProgress{0},
		}},
		{"a start revision below the compaction is canceled with compact_revision", []any{
			put("foo", "v1"),
			put("foo", "v2"),
			put("foo", "v3"),
			compact(3),
			wCreate{0, pastFrom(2)},
			wCreate{0, pastFrom(3)},
			put("foo", "v4"),
		}},
	})
}

func TestWatchFragmentsMatchEtcd(t *testing.T) {
	// Ten values of 100 KiB replayed at once exceed the fragment size,
	// which is --max-request-bytes (256 KiB here) plus etcd's 512 KiB
	// allowance: a watcher that asked for fragments gets them split,
	// another gets one response.
	const limit = 256 << 10
	ep := etcdEndpoint(startEtcd(t, func(c *embed.Config) { c.MaxRequestBytes = limit }))
	big := strings.Repeat("v", 100<<10)
	var steps []any
	for i := range 10 {
		steps = append(steps, put(fmt.Sprintf("k%d", i), big))
	}
	steps = append(steps,
		wCreate{0, &pb.WatchCreateRequest{Key: b("k"), RangeEnd: b("l"), StartRevision: 2, Fragment: true}},
		wCreate{1, &pb.WatchCreateRequest{Key: b("k"), RangeEnd: b("l"), StartRevision: 2}},
	)
	runWatchDifferentialAt(t, ep, []watchScenario{{"fragment splits a large response", steps}},
		"--max-request-bytes", fmt.Sprint(limit))
}

func TestEtcdctlWatchMatchesEtcd(t *testing.T) {
	// etcdctl watch --rev replays history and then runs until killed.
	watchOut := func(t *testing.T, endpoint string) string {
		t.Helper()
		conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		kv := pb.NewKVClient(conn)
		c := ctx(t)
		base := wipe(t, c, kv)
		for _, r := range []proto.Message{put("k1", "a"), put("k2", "b"), del("k1")} {
			if o := send(c, kv, r); o.Resp == nil {
				t.Fatal(o)
			}
		}
		wctx, cancel := context.WithTimeout(c, 1500*time.Millisecond)
		defer cancel()
		cmd := exec.CommandContext(wctx, etcdctlBin, "--endpoints", endpoint, "watch", "--prefix", "--prev-kv", "--rev", fmt.Sprint(base+1), "k")
		cmd.Env = cleanEnv()
		out, _ := cmd.Output()
		return string(out)
	}
	want := watchOut(t, etcdEndpoint(startEtcd(t)))
	if want == "" {
		t.Fatal("etcdctl watch printed nothing against etcd")
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		if got := watchOut(t, m.clientEP); got != want {
			t.Errorf("etcdctl watch output differs\n--- etcd:\n%s\n--- cairn:\n%s", want, got)
		}
	})
}

func TestWatchProgressNotifyMatchesEtcd(t *testing.T) {
	// A quiet watcher that asked for progress notifications gets one per
	// --watch-progress-notify-interval, at the current revision.
	const interval = 200 * time.Millisecond
	check := func(t *testing.T, cli *clientv3.Client) {
		t.Helper()
		c := ctx(t)
		put, err := cli.Put(c, "other", "x")
		if err != nil {
			t.Fatal(err)
		}
		ch := cli.Watch(c, "foo", clientv3.WithProgressNotify())
		select {
		case r := <-ch:
			if !r.IsProgressNotify() || r.Header.Revision != put.Header.Revision {
				t.Errorf("first response %+v, want a progress notification at revision %d", r, put.Header.Revision)
			}
		case <-time.After(10 * interval):
			t.Fatal("no progress notification")
		}
	}
	t.Run("etcd", func(t *testing.T) {
		check(t, startEtcd(t, func(c *embed.Config) { c.WatchProgressNotifyInterval = interval }))
	})
	forEachEngine(t, func(t *testing.T, engine string) {
		check(t, startServingMember(t, engine, "--watch-progress-notify-interval", interval.String()).client(t))
	})
}

// catchUpBatches writes n revisions under "cu/", then watches the prefix
// from the first of them and returns how many events each response
// carried, and whether every event came once and in order.
func catchUpBatches(t *testing.T, cli *clientv3.Client, n int) (sizes []int, inOrder bool) {
	t.Helper()
	c := ctx(t)
	var first int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				r, err := cli.Put(c, fmt.Sprintf("cu/%04d", i), "v")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if first == 0 || r.Header.Revision < first {
					first = r.Header.Revision
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return nil, false
	}
	wc := cli.Watch(c, "cu/", clientv3.WithPrefix(), clientv3.WithRev(first))
	next, got := first, 0
	inOrder = true
	for got < n {
		select {
		case r := <-wc:
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(r.Events))
			for _, ev := range r.Events {
				if ev.Kv.ModRevision != next {
					inOrder = false
				}
				next++
				got++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("catch-up stalled after %d of %d events", got, n)
		}
	}
	return sizes, inOrder
}

// TestWatchCatchUpBatchesMatchEtcd: a watcher starting far in the past
// gets its history in responses of at most 1000 revisions, as etcd sends
// them.
func TestWatchCatchUpBatchesMatchEtcd(t *testing.T) {
	const n = 2300
	want, ok := catchUpBatches(t, startEtcd(t), n)
	if !ok {
		t.Fatalf("etcd sent events out of order")
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Parallel()
		got, ok := catchUpBatches(t, startServingMember(t, engine).client(t), n)
		if !ok {
			t.Errorf("events out of order or repeated")
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("events per catch-up response %v, etcd's %v", got, want)
		}
	})
}
