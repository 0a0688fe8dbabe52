package test

// Slow watch consumers (etcd issue 17529): a client that stops reading one
// watch stream must not starve the other watchers of its connection or of
// its stream, nor make the server hold everything written since. etcd
// keeps such watchers unsynced and catches them up from history once the
// client reads again; so must Cairn.

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const (
	slowPrefix    = "slow/"
	slowPuts      = 400
	slowValueSize = 100 << 10 // 400 puts of 100 KiB: 39 MiB of values
	slowWritten   = slowPuts * slowValueSize
	// slowDeadline bounds how long a watcher may take to deliver every
	// event once the writes are done; it catches a hang, not slowness.
	slowDeadline = 30 * time.Second
)

// slowEvents is what one watcher received.
type slowEvents struct {
	revs  []int64
	keys  []string
	sizes []int
	err   error
}

// TestWatchSlowStreamSameConnection: one connection carries a watch stream
// whose client never reads and a second stream whose client reads
// everything, and the writes. The reader gets every event while the other
// stream is stalled; the stalled stream is not canceled and, once its
// client reads again, gets every event in order from history; and the
// member's resident memory does not grow with what the stalled stream
// missed.
//
// Memory: a member's resident set grows by roughly 110 MiB (memory engine)
// to 160 MiB (rocksdb) while taking 39 MiB of puts (400 of 100 KiB),
// stalled stream or not (the engine, the raft log, the Go heap's
// headroom). So the test first plays the scenario without the stalled
// stream on a control member and bounds the difference by the data
// written. With each stream's queue bounded to 8 MiB, the stalled stream
// measured 1 to 23 MiB (noise included); with a queue of 1024 batches,
// which holds every event the stream missed, it measured 29 to 45 MiB.
func TestWatchSlowStreamSameConnection(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		control := startMember(t, engine)
		base := slowStreamScenario(t, control.clientEP, false, control.logs, memberRSS(t, control))
		control.stop()

		m := startMember(t, engine)
		growth := slowStreamScenario(t, m.clientEP, true, m.logs, memberRSS(t, m))
		t.Logf("server VmRSS grew %d MiB with a stalled stream, %d MiB without, for %d MiB written",
			growth>>20, base>>20, slowWritten>>20)
		if growth-base >= slowWritten {
			t.Errorf("the stalled stream cost %d MiB of resident memory, want less than the %d MiB written",
				(growth-base)>>20, slowWritten>>20)
		}
	})
}

// TestWatchSlowStreamSameConnectionEtcd plays the same scenario on a real
// etcd, to confirm that it serves the reader and catches the stalled
// stream up as the Cairn test expects; etcd runs inside the test process,
// so its memory is not measured.
func TestWatchSlowStreamSameConnectionEtcd(t *testing.T) {
	cli := startEtcd(t)
	slowStreamScenario(t, etcdEndpoint(cli), true, func() string { return "" }, nil)
}

// TestWatchSlowWatcherSameStream: two clientv3 watchers with the same
// context share one gRPC stream; the client never reads one of their
// channels. The other still gets every event, and so, later, does the
// unread one. clientv3 buffers each watcher's events on the client side,
// so this checks that the server keeps serving a stream whose client has
// a watcher it does not drain.
func TestWatchSlowWatcherSameStream(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		resp, err := cli.Get(c, "x")
		if err != nil {
			t.Fatal(err)
		}
		first := resp.Header.Revision + 1
		unread := cli.Watch(c, slowPrefix, clientv3.WithPrefix(), clientv3.WithRev(first))
		read := readSlowChan(cli.Watch(c, slowPrefix, clientv3.WithPrefix(), clientv3.WithRev(first)), slowPuts)

		putSlowValues(t, c, pb.NewKVClient(cli.ActiveConnection()))
		select {
		case got := <-read:
			checkSlowEvents(t, "read watcher", got, first, m.logs)
		case <-time.After(slowDeadline):
			t.Fatalf("read watcher: not every event within %v of the last put\n%s", slowDeadline, m.logs())
		}
		select {
		case got := <-readSlowChan(unread, slowPuts):
			checkSlowEvents(t, "unread watcher", got, first, m.logs)
		case <-time.After(slowDeadline):
			t.Fatalf("unread watcher: not every event within %v of reading it\n%s", slowDeadline, m.logs())
		}
	})
}

// slowStreamScenario plays the same-connection scenario on endpoint, with
// the stalled stream if stalled, and returns how much rss grew while the
// puts were written and read. rss, if not nil, reads the server's resident
// memory in bytes; logs returns the server's log for failure messages.
func slowStreamScenario(t *testing.T, endpoint string, stalled bool, logs func() string, rss func() int64) int64 {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	// etcd catches a stalled watcher up in responses of any size, as
	// clientv3, which accepts them, expects.
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	kv := pb.NewKVClient(conn)
	resp, err := kv.Range(c, &pb.RangeRequest{Key: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	first := resp.Header.Revision + 1

	var slow pb.Watch_WatchClient
	if stalled {
		slow = createSlowWatch(t, c, conn, first)
	}
	fast := readSlowEvents(createSlowWatch(t, c, conn, first), slowPuts)

	var before int64
	if rss != nil {
		before = rss()
	}
	putSlowValues(t, c, kv)
	select {
	case got := <-fast:
		checkSlowEvents(t, "reading watcher", got, first, logs)
	case <-time.After(slowDeadline):
		t.Fatalf("reading watcher: not every event within %v of the last put\n%s", slowDeadline, logs())
	}
	var growth int64
	if rss != nil {
		growth = rss() - before
	}

	if stalled {
		select {
		case got := <-readSlowEvents(slow, slowPuts):
			checkSlowEvents(t, "stalled watcher", got, first, logs)
		case <-time.After(slowDeadline):
			t.Fatalf("stalled watcher: not every event within %v of reading again\n%s", slowDeadline, logs())
		}
	}
	return growth
}

// createSlowWatch opens a watch stream on conn with one watcher on
// slowPrefix from revision first, and waits for it to be created.
func createSlowWatch(t *testing.T, c context.Context, conn *grpc.ClientConn, first int64) pb.Watch_WatchClient {
	t.Helper()
	ws, err := pb.NewWatchClient(conn).Watch(c)
	if err != nil {
		t.Fatal(err)
	}
	req := &pb.WatchCreateRequest{Key: []byte(slowPrefix), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(slowPrefix)), StartRevision: first}
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		t.Fatal(err)
	}
	r, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !r.Created || r.Canceled {
		t.Fatalf("creating watcher: got %v", r)
	}
	return ws
}

// readSlowEvents receives from ws until n events have come or the stream
// fails, and then sends what came. It keeps no values, only their sizes.
func readSlowEvents(ws pb.Watch_WatchClient, n int) <-chan slowEvents {
	ch := make(chan slowEvents, 1)
	go func() {
		var got slowEvents
		for len(got.revs) < n {
			r, err := ws.Recv()
			if err != nil {
				got.err = err
				break
			}
			if r.Canceled {
				got.err = fmt.Errorf("watcher canceled: %q", r.CancelReason)
				break
			}
			for _, ev := range r.Events {
				got.add(ev)
			}
		}
		ch <- got
	}()
	return ch
}

// putSlowValues writes slowPuts values of slowValueSize under slowPrefix,
// one put at a time.
func putSlowValues(t *testing.T, c context.Context, kv pb.KVClient) {
	t.Helper()
	val := make([]byte, slowValueSize)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	for i := 0; i < slowPuts; i++ {
		if _, err := kv.Put(c, &pb.PutRequest{Key: []byte(slowKey(i)), Value: val}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
}

func slowKey(i int) string { return fmt.Sprintf("%s%03d", slowPrefix, i) }

// checkSlowEvents asserts that got is exactly the puts of putSlowValues, at
// consecutive revisions from first: none missing, none repeated.
func checkSlowEvents(t *testing.T, who string, got slowEvents, first int64, logs func() string) {
	t.Helper()
	if got.err != nil {
		t.Fatalf("%s: after %d events: %v\n%s", who, len(got.revs), got.err, logs())
	}
	if len(got.revs) != slowPuts {
		t.Fatalf("%s: got %d events, want %d", who, len(got.revs), slowPuts)
	}
	for i := range got.revs {
		if got.revs[i] != first+int64(i) || got.keys[i] != slowKey(i) || got.sizes[i] != slowValueSize {
			t.Fatalf("%s: event %d is %s (%d bytes) at revision %d, want %s (%d bytes) at revision %d",
				who, i, got.keys[i], got.sizes[i], got.revs[i], slowKey(i), slowValueSize, first+int64(i))
		}
	}
}

// vmRSS reads the resident set size of process pid, in bytes.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// memberRSS returns a function reading m's resident set size.
func memberRSS(t *testing.T, m *member) func() int64 {
	pid := m.cmd.Process.Pid
	return func() int64 { return vmRSS(t, pid) }
}

// readSlowChan is readSlowEvents for a clientv3 watcher.
func readSlowChan(wc clientv3.WatchChan, n int) <-chan slowEvents {
	ch := make(chan slowEvents, 1)
	go func() {
		var got slowEvents
		for len(got.revs) < n {
			r, ok := <-wc
			if !ok {
				got.err = fmt.Errorf("watch channel closed")
				break
			}
			if err := r.Err(); err != nil {
				got.err = err
				break
			}
			for _, ev := range r.Events {
				got.add(ev)
			}
		}
		ch <- got
	}()
	return ch
}

func (got *slowEvents) add(ev *mvccpb.Event) {
	if ev.Type != mvccpb.PUT && got.err == nil {
		got.err = fmt.Errorf("unexpected %v event at revision %d", ev.Type, ev.Kv.ModRevision)
	}
	got.revs = append(got.revs, ev.Kv.ModRevision)
	got.keys = append(got.keys, string(ev.Kv.Key))
	got.sizes = append(got.sizes, len(ev.Kv.Value))
}
