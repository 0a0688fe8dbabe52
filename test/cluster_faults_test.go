package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// faultDurationEnv sets how long TestClusterFaultsLinearizable keeps its
// clients busy on each engine; make test-faults sets it to a long pass.
const faultDurationEnv = "CAIRN_FAULT_DURATION"

const (
	faultKeyPrefix  = "lin/"
	faultKeys       = 4
	faultWorkers    = 6
	faultOpTimeout  = 2 * time.Second
	faultPause      = 1500 * time.Millisecond
	faultStopLength = 2 * time.Second
)

// faultOp is one operation a worker issued, as it saw it. err is nil when
// the operation was acknowledged; rev is then the header revision.
type faultOp struct {
	client    int
	in        kvInput
	out       kvOutput
	call, ret int64 // nanoseconds since the run began
	err       error
	rev       int64
}

// watchEvent is one event a watcher received, and when.
type watchEvent struct {
	rev   int64
	key   string
	typ   mvccpb.Event_EventType
	value string
	at    int64
}

func (e watchEvent) String() string {
	return fmt.Sprintf("%d %s %s=%q", e.rev, e.typ, e.key, e.value)
}

// TestClusterFaultsLinearizable: clients put, get, delete and
// compare-and-swap over four keys of a three-member cluster while the
// leader is killed and restarted, the leader and then a follower are
// frozen with SIGSTOP and thawed, and, where the test may freeze a
// filesystem, the disk of a member asked to lead hangs for a while. The
// history they record is linearizable (porcupine, per key); every acknowledged write is in the watch stream at
// its revision and survives in the final state; all members converge on
// the same keys, values and mod revisions; one watcher per member, resumed
// from its last revision when its stream breaks, sees every revision once
// and in order. Doctored copies of the history are shown to be rejected.
func TestClusterFaultsLinearizable(t *testing.T) {
	dur := 12 * time.Second
	if s := os.Getenv(faultDurationEnv); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s=%q: %v", faultDurationEnv, s, err)
		}
		dur = d
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		runFaultTest(t, engine, dur)
	})
}

func runFaultTest(t *testing.T, engine string, dur time.Duration) {
	// Quick elections; frequent snapshots, so that a member back from a
	// fault catches up from a snapshot as often as from the log.
	// Where a filesystem can be frozen, the first member's data lives on
	// one, so that its disk can stall as well.
	disk, noDisk := mountFreezableDisk(t)
	var o clusterOpts
	if disk != nil {
		o.memberArgs = func(name string) []string {
			if name == "c0" {
				return []string{"--data-dir", filepath.Join(disk.mnt, "c0")}
			}
			return nil
		}
	} else {
		t.Logf("no disk stalls: %s", noDisk)
	}
	c := startClusterOpts(t, engine, 3, o, "--heartbeat-interval", "50", "--election-timeout", "500",
		"--snapshot-count", "2000", "--snapshot-catchup-entries", "500")
	began := time.Now()
	now := func() int64 { return time.Since(began).Nanoseconds() }

	var keys []string
	for i := 0; i < faultKeys; i++ {
		keys = append(keys, fmt.Sprintf("%sk%d", faultKeyPrefix, i))
	}
	firstCli := newFaultClient(c.endpoints())
	first, err := firstCli.Get(ctx(t), faultKeyPrefix, clientv3.WithPrefix())
	firstCli.Close()
	if err != nil {
		t.Fatal(err)
	}
	startRev := first.Header.Revision

	// Watchers, one per member, from revision 1.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	t.Cleanup(stopWatch)
	watchers := make([]*faultWatcher, len(c.members))
	var watchWG sync.WaitGroup
	for i, m := range c.members {
		w := &faultWatcher{member: m.name, cli: newFaultClient([]string{m.clientEP})}
		t.Cleanup(func() { w.cli.Close() })
		watchers[i] = w
		watchWG.Add(1)
		go func() {
			defer watchWG.Done()
			w.run(watchCtx, now)
		}()
	}

	// Workers: half over every endpoint, half pinned to one member.
	stop := make(chan struct{})
	var (
		workWG   sync.WaitGroup
		stopOnce sync.Once
		ids      = &clientIDs{}
	)
	stopWorkers := func() {
		stopOnce.Do(func() { close(stop) })
		workWG.Wait()
	}
	t.Cleanup(stopWorkers)
	histories := make([][]faultOp, faultWorkers)
	for w := 0; w < faultWorkers; w++ {
		eps := c.endpoints()
		if w >= faultWorkers/2 {
			eps = []string{c.members[w%len(c.members)].clientEP}
		}
		cli := newFaultClient(eps)
		t.Cleanup(func() { cli.Close() })
		workWG.Add(1)
		go func() {
			defer workWG.Done()
			histories[w] = runFaultWorker(cli, w, keys, ids, stop, now)
		}()
	}

	// Faults, from this goroutine since they may fail the test.
	var paused *member
	t.Cleanup(func() {
		if paused != nil && paused.cmd != nil {
			_ = paused.cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	freeze := func(m *member, what string) {
		t.Logf("%6.2fs SIGSTOP %s %s", time.Since(began).Seconds(), what, m.name)
		if err := m.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		paused = m
		time.Sleep(faultStopLength)
		if err := m.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		paused = nil
		t.Logf("%6.2fs SIGCONT %s", time.Since(began).Seconds(), m.name)
	}
	faults := []func(){
		func() {
			l := c.leader()
			t.Logf("%6.2fs kill -9 leader %s", time.Since(began).Seconds(), l.name)
			l.kill9()
			time.Sleep(time.Second)
			c.launch(l)
			t.Logf("%6.2fs %s restarted", time.Since(began).Seconds(), l.name)
		},
		func() { freeze(c.leader(), "leader") },
		func() { freeze(c.followers()[0], "follower") },
	}
	if disk != nil {
		// The first member's disk hangs for a while, after it was asked
		// to lead: its raft log writes block, and with them its raft
		// clock, while its gRPC and peer servers keep answering.
		faults = append(faults, func() {
			stalled := c.members[0]
			if l := c.leader(); l != stalled {
				mctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := l.client(t).MoveLeader(mctx, stalled.statusID(t))
				cancel()
				if err != nil {
					t.Logf("%6.2fs move leader to %s: %v", time.Since(began).Seconds(), stalled.name, err)
				}
			}
			role := "follower"
			if st, err := stalled.status(); err == nil && st.Leader == st.Header.MemberId {
				role = "leader"
			}
			t.Logf("%6.2fs disk of %s %s frozen", time.Since(began).Seconds(), role, stalled.name)
			disk.freeze()
			time.Sleep(faultStopLength)
			disk.thaw()
			t.Logf("%6.2fs disk of %s thawed", time.Since(began).Seconds(), stalled.name)
		})
	}
	deadline := began.Add(dur)
	time.Sleep(faultPause)
	injected := 0
	// Every fault at least once, however short the run.
	for injected < len(faults) || time.Now().Add(faultPause).Before(deadline) {
		faults[injected%len(faults)]()
		injected++
		time.Sleep(faultPause)
	}
	if d := time.Until(deadline); d > 0 {
		time.Sleep(d)
	}
	stopWorkers()
	loadEnd := time.Since(began)

	var ops []faultOp
	for _, h := range histories {
		ops = append(ops, h...)
	}
	counts := map[string]int{}
	for _, op := range ops {
		switch {
		case op.err == nil:
			counts["acknowledged"]++
		case op.in.kind == kvGet:
			counts["failed reads"]++
		default:
			counts["unknown writes"]++
		}
	}
	t.Logf("%s: %d faults, %d operations in %v: %v", engine, injected, len(ops), loadEnd.Round(time.Millisecond), counts)
	if counts["acknowledged"] < 100 {
		t.Fatalf("only %d operations acknowledged: the cluster did not serve the load", counts["acknowledged"])
	}

	// All members up: they converge on the same keys, values and revisions.
	var dumps [][]string
	converged := waitFor(30*time.Second, func() bool {
		dumps = dumps[:0]
		for _, m := range c.members {
			d, err := dumpPrefix(m, faultKeyPrefix)
			if err != nil {
				return false
			}
			dumps = append(dumps, d)
		}
		for _, d := range dumps[1:] {
			if !reflect.DeepEqual(d, dumps[0]) {
				return false
			}
		}
		return true
	})
	if !converged {
		t.Fatalf("members did not converge within 30s; serializable reads:\n%s", strings.Join(func() []string {
			var out []string
			for i, d := range dumps {
				out = append(out, fmt.Sprintf("%s: %v", c.members[i].name, d))
			}
			return out
		}(), "\n"))
	}
	var restored []string
	for _, m := range c.members {
		if m.logContains("restored a snapshot") {
			restored = append(restored, m.name)
		}
	}
	t.Logf("members that caught up from a snapshot: %v", restored)
	var finalRev int64
	if _, err := fmt.Sscanf(dumps[0][0], "rev %d", &finalRev); err != nil {
		t.Fatal(err)
	}

	// Every watcher reaches the final revision.
	if !waitFor(30*time.Second, func() bool {
		for _, w := range watchers {
			if w.lastRev() < finalRev {
				return false
			}
		}
		return true
	}) {
		for _, w := range watchers {
			t.Errorf("watcher on %s reached revision %d of %d", w.member, w.lastRev(), finalRev)
		}
		t.FailNow()
	}
	stopWatch()
	watchWG.Wait()
	stream := checkWatchStreams(t, watchers, startRev, finalRev)

	// Final linearizable reads through each member join the history: the
	// final state must be a possible outcome of it.
	for _, m := range c.members {
		cli := newFaultClient([]string{m.clientEP})
		id := ids.next()
		for _, k := range keys {
			op := faultOp{client: id, in: kvInput{kind: kvGet, key: k}, call: now()}
			gctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := cli.Get(gctx, k)
			cancel()
			op.ret = now()
			if err != nil {
				cli.Close()
				t.Fatalf("final read of %s through %s: %v", k, m.name, err)
			}
			if len(resp.Kvs) == 1 {
				op.out = kvOutput{exists: true, value: string(resp.Kvs[0].Value)}
			}
			op.rev = resp.Header.Revision
			ops = append(ops, op)
		}
		cli.Close()
	}

	checkAcknowledgedWrites(t, ops, stream, dumps[0], keys)
	history := resolveUnknown(t, ops, stream)
	timeout := max(30*time.Second, dur)
	checkLinearizable(t, engine+" faults", history, timeout)
	checkDoctoredHistories(t, history, timeout)
}

// newFaultClient is a client over eps that stays quiet about the faults.
func newFaultClient(eps []string) *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		// clientv3.New does not dial without WithBlock; it fails only on
		// a bad configuration.
		panic(err)
	}
	return cli
}

// clientIDs hands out porcupine client IDs: a worker takes a new one after
// an operation of unknown outcome, since that one may still be running.
type clientIDs struct {
	mu sync.Mutex
	n  int
}

func (c *clientIDs) next() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return c.n - 1
}

// runFaultWorker issues random operations over keys until stop closes and
// returns what it saw. Written values are unique: "w<worker>-<seq>".
func runFaultWorker(cli *clientv3.Client, w int, keys []string, ids *clientIDs, stop <-chan struct{}, now func() int64) []faultOp {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	lastSeen := map[string]string{}
	id := ids.next()
	var ops []faultOp
	for seq := 0; ; seq++ {
		select {
		case <-stop:
			return ops
		default:
		}
		key := keys[rng.IntN(len(keys))]
		value := fmt.Sprintf("w%d-%d", w, seq)
		op := faultOp{client: id, in: kvInput{key: key}}
		octx, cancel := context.WithTimeout(context.Background(), faultOpTimeout)
		switch r := rng.IntN(100); {
		case r < 35:
			op.in.kind, op.in.value = kvPut, value
			op.call = now()
			resp, err := cli.Put(octx, key, value)
			op.ret, op.err = now(), err
			if err == nil {
				op.rev = resp.Header.Revision
				lastSeen[key] = value
			}
		case r < 70:
			op.in.kind = kvGet
			op.call = now()
			resp, err := cli.Get(octx, key)
			op.ret, op.err = now(), err
			if err == nil {
				op.rev = resp.Header.Revision
				if len(resp.Kvs) == 1 {
					op.out = kvOutput{exists: true, value: string(resp.Kvs[0].Value)}
					lastSeen[key] = op.out.value
				}
			}
		case r < 80:
			op.in.kind = kvDelete
			op.call = now()
			resp, err := cli.Delete(octx, key)
			op.ret, op.err = now(), err
			if err == nil {
				op.rev, op.out.deleted = resp.Header.Revision, resp.Deleted
				delete(lastSeen, key)
			}
		default:
			op.in.kind, op.in.value, op.in.expect = kvCAS, value, lastSeen[key]
			op.call = now()
			resp, err := cli.Txn(octx).
				If(clientv3.Compare(clientv3.Value(key), "=", op.in.expect)).
				Then(clientv3.OpPut(key, value)).
				Else(clientv3.OpGet(key)).
				Commit()
			op.ret, op.err = now(), err
			if err == nil {
				op.rev, op.out.succeeded = resp.Header.Revision, resp.Succeeded
				if resp.Succeeded {
					lastSeen[key] = value
				} else if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) == 1 {
					op.out.exists, op.out.value = true, string(kvs[0].Value)
					lastSeen[key] = op.out.value
				}
			}
		}
		cancel()
		ops = append(ops, op)
		if op.err != nil {
			id = ids.next()
			select {
			case <-stop:
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
}

// faultWatcher watches the key prefix through one member from revision 1,
// and watches again from its last revision + 1 whenever its stream ends.
type faultWatcher struct {
	member   string
	cli      *clientv3.Client
	mu       sync.Mutex
	events   []watchEvent
	restarts int
	errs     []string
}

func (w *faultWatcher) run(ctx context.Context, now func() int64) {
	next := int64(1)
	for ctx.Err() == nil {
		wch := w.cli.Watch(ctx, faultKeyPrefix, clientv3.WithPrefix(), clientv3.WithRev(next))
		for wr := range wch {
			if err := wr.Err(); err != nil {
				w.mu.Lock()
				w.errs = append(w.errs, err.Error())
				w.mu.Unlock()
				break
			}
			at := now()
			w.mu.Lock()
			for _, ev := range wr.Events {
				w.events = append(w.events, watchEvent{rev: ev.Kv.ModRevision, key: string(ev.Kv.Key), typ: ev.Type, value: string(ev.Kv.Value), at: at})
				next = ev.Kv.ModRevision + 1
			}
			w.mu.Unlock()
		}
		if ctx.Err() != nil {
			return
		}
		w.mu.Lock()
		w.restarts++
		w.mu.Unlock()
		time.Sleep(100 * time.Millisecond)
	}
}

func (w *faultWatcher) lastRev() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.events) == 0 {
		return 0
	}
	return w.events[len(w.events)-1].rev
}

// checkWatchStreams checks that each watcher saw exactly the revisions
// startRev+1 .. finalRev, once each and in order (every write of the run
// is under the watched prefix and makes one event), and that all saw the
// same events. It returns the stream by revision, with the earliest time
// any watcher received each event.
func checkWatchStreams(t *testing.T, watchers []*faultWatcher, startRev, finalRev int64) map[int64]watchEvent {
	t.Helper()
	stream := map[int64]watchEvent{}
	var ref []string
	for i, w := range watchers {
		var seq []string
		for j, ev := range w.events {
			if want := startRev + 1 + int64(j); ev.rev != want {
				t.Fatalf("watcher on %s: event %d is at revision %d, want %d (each revision once, in order); events around it: %v",
					w.member, j, ev.rev, want, w.events[max(0, j-3):min(len(w.events), j+3)])
			}
			seq = append(seq, ev.String())
			if s, ok := stream[ev.rev]; !ok || ev.at < s.at {
				stream[ev.rev] = ev
			}
		}
		if got := w.lastRev(); got != finalRev {
			t.Fatalf("watcher on %s ends at revision %d, want %d", w.member, got, finalRev)
		}
		t.Logf("watcher on %s: %d events, %d restarts %v", w.member, len(w.events), w.restarts, w.errs)
		if i == 0 {
			ref = seq
		} else if !slices.Equal(seq, ref) {
			for j := range seq {
				if seq[j] != ref[j] {
					t.Fatalf("watchers on %s and %s differ at revision %d: %s vs %s", watchers[0].member, w.member, startRev+1+int64(j), ref[j], seq[j])
				}
			}
		}
	}
	return stream
}

// checkAcknowledgedWrites checks each acknowledged write against the watch
// stream (it is there, at its revision) and the final state (it is the
// latest value of its key or a later write replaced it); that every
// written value in the stream was written by a client, once; and that the
// final state the members agree on is the one the stream leads to.
func checkAcknowledgedWrites(t *testing.T, ops []faultOp, stream map[int64]watchEvent, finalDump []string, keys []string) {
	t.Helper()
	attempted := map[string]string{} // value -> key
	for _, op := range ops {
		if op.in.kind == kvPut || op.in.kind == kvCAS {
			attempted[op.in.value] = op.in.key
		}
	}
	revs := make([]int64, 0, len(stream))
	for r := range stream {
		revs = append(revs, r)
	}
	sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
	lastWrite := map[string]int64{} // key -> revision of its last event
	seenValue := map[string]int64{}
	for _, r := range revs {
		ev := stream[r]
		lastWrite[ev.key] = r
		if ev.typ != mvccpb.PUT {
			continue
		}
		if k, ok := attempted[ev.value]; !ok || k != ev.key {
			t.Errorf("revision %d puts %s=%q, which no client wrote to that key", r, ev.key, ev.value)
		}
		if prev, ok := seenValue[ev.value]; ok {
			t.Errorf("value %q was applied twice, at revisions %d and %d", ev.value, prev, r)
		}
		seenValue[ev.value] = r
	}
	final := map[string]string{} // key -> "value m<mod revision>" every member holds
	for _, l := range finalDump[1:] {
		f := strings.Fields(l)
		k, v, _ := strings.Cut(f[0], "=")
		final[k] = v + " " + f[2]
	}
	lost := 0
	for _, op := range ops {
		if op.err != nil || op.in.kind == kvGet {
			continue
		}
		ev, ok := stream[op.rev]
		var want string
		switch {
		case op.in.kind == kvDelete && op.out.deleted == 0:
			continue
		case op.in.kind == kvCAS && !op.out.succeeded:
			if r, ok := seenValue[op.in.value]; ok {
				t.Errorf("failed cas of %s to %q was applied at revision %d", op.in.key, op.in.value, r)
			}
			continue
		case op.in.kind == kvDelete:
			want = fmt.Sprintf("%d DELETE %s=%q", op.rev, op.in.key, "")
		default:
			want = fmt.Sprintf("%d PUT %s=%q", op.rev, op.in.key, op.in.value)
		}
		if !ok || ev.String() != want {
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged %s at revision %d: the watch stream has %v there", kvModel.DescribeOperation(op.in, op.out), op.rev, ev)
			}
			continue
		}
		// Not lost: the latest write of its key, and then what every
		// member holds, or overwritten by a later one.
		if lastWrite[op.in.key] == op.rev {
			fin, ok := final[op.in.key]
			if op.in.kind == kvDelete && ok || op.in.kind != kvDelete && fin != fmt.Sprintf("%s m%d", op.in.value, op.rev) {
				t.Errorf("acknowledged %s at revision %d is the last write of its key, but the members hold %q", kvModel.DescribeOperation(op.in, op.out), op.rev, fin)
			}
		}
	}
	if lost > 10 {
		t.Errorf("%d acknowledged writes in all are not in the watch stream at their revision", lost)
	}

	// The final state the stream leads to is what every member holds.
	var want []string
	for _, k := range keys {
		if r, ok := lastWrite[k]; ok && stream[r].typ == mvccpb.PUT {
			want = append(want, fmt.Sprintf("%s=%s m%d", k, stream[r].value, r))
		}
	}
	if got := stripCreateRev(finalDump[1:]); !slices.Equal(got, want) {
		t.Errorf("final state of every member:\n %v\nthe watch stream leads to:\n %v", got, want)
	}
}

// stripCreateRev keeps key, value and mod revision of dumpPrefix lines.
func stripCreateRev(lines []string) []string {
	var out []string
	for _, l := range lines {
		f := strings.Fields(l)
		out = append(out, f[0]+" "+f[2])
	}
	return out
}

// dumpPrefix is a serializable read of every key under prefix on m alone:
// "rev N", then "key=value c<create> m<mod> v<version>" per key.
func dumpPrefix(m *member, prefix string) ([]string, error) {
	if m.cmd == nil {
		return nil, errors.New("not running")
	}
	cli := newFaultClient([]string{m.clientEP})
	defer cli.Close()
	gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(gctx, prefix, clientv3.WithPrefix(), clientv3.WithSerializable())
	if err != nil {
		return nil, err
	}
	out := []string{fmt.Sprint("rev ", resp.Header.Revision)}
	for _, kv := range resp.Kvs {
		out = append(out, fmt.Sprintf("%s=%s c%d m%d v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version))
	}
	return out, nil
}

// resolveUnknown turns the recorded operations into porcupine's history.
// Failed reads are dropped. A write of unknown outcome is decided by the
// watch stream, which the checks before have shown complete: a put or cas
// whose (unique) value is in it took effect, no later than the first
// watcher received it, so that time bounds its return; one whose value is
// not in it never took effect before the end, which is the same as taking
// effect after every recorded operation, so it is dropped. A delete of
// unknown outcome is dropped when its key has no delete event besides the
// acknowledged ones (it changed nothing), and otherwise stays open until
// the end of the history.
func resolveUnknown(t *testing.T, ops []faultOp, stream map[int64]watchEvent) []porcupine.Operation {
	t.Helper()
	putAt := map[string]watchEvent{}
	deleteEvents := map[string]int{}
	for _, ev := range stream {
		if ev.typ == mvccpb.PUT {
			putAt[ev.value] = ev
		} else {
			deleteEvents[ev.key]++
		}
	}
	for _, op := range ops {
		if op.err == nil && op.in.kind == kvDelete && op.out.deleted == 1 {
			deleteEvents[op.in.key]--
		}
	}
	var end int64
	for _, op := range ops {
		end = max(end, op.ret)
	}
	var history []porcupine.Operation
	resolved := map[string]int{}
	for _, op := range ops {
		h := porcupine.Operation{ClientId: op.client, Input: op.in, Output: op.out, Call: op.call, Return: op.ret}
		if op.err != nil {
			switch op.in.kind {
			case kvGet:
				continue
			case kvPut, kvCAS:
				ev, ok := putAt[op.in.value]
				if !ok {
					resolved["not applied"]++
					continue
				}
				resolved["applied"]++
				if ev.at < op.call {
					t.Errorf("%s was in the watch stream (revision %d) before it was sent", kvModel.DescribeOperation(op.in, op.out), ev.rev)
				}
				h.Output, h.Return = kvOutput{unknown: true}, max(ev.at, op.call+1)
			case kvDelete:
				if deleteEvents[op.in.key] == 0 {
					resolved["delete changed nothing"]++
					continue
				}
				resolved["delete open"]++
				end++
				h.Output, h.Return = kvOutput{unknown: true}, end
			}
		}
		history = append(history, h)
	}
	t.Logf("writes of unknown outcome: %v", resolved)
	return history
}

// checkDoctoredHistories shows that the check has teeth: a read changed
// to return a value never written, or a value overwritten before the read
// began, makes the history not linearizable.
func checkDoctoredHistories(t *testing.T, history []porcupine.Operation, timeout time.Duration) {
	t.Helper()
	doctor := func(name string, i int, out kvOutput) {
		t.Helper()
		bad := slices.Clone(history)
		was := kvModel.DescribeOperation(bad[i].Input, bad[i].Output)
		bad[i].Output = out
		res := porcupine.CheckOperationsTimeout(kvModel, bad, timeout)
		if res != porcupine.Illegal {
			t.Errorf("doctored history (%s: %s made %s) checked %s, want Illegal",
				name, was, kvModel.DescribeOperation(bad[i].Input, out), res)
		} else {
			t.Logf("doctored history (%s: %s made %s): rejected", name, was, kvModel.DescribeOperation(bad[i].Input, out))
		}
	}

	// A read of a value never written.
	readAt := -1
	for i, op := range history {
		if in, out := op.Input.(kvInput), op.Output.(kvOutput); in.kind == kvGet && out.exists {
			readAt = i
			break
		}
	}
	if readAt < 0 {
		t.Fatal("no read found a value: cannot doctor the history")
	}
	doctor("value never written", readAt, kvOutput{exists: true, value: "never-written"})

	// A stale read: put v, then put w, then a read of v, each starting
	// after the one before returned. Values are unique, so only the first
	// put wrote v.
	isPut := func(op porcupine.Operation) bool {
		in, out := op.Input.(kvInput), op.Output.(kvOutput)
		return in.kind == kvPut && !out.unknown
	}
	for _, p1 := range history {
		if !isPut(p1) {
			continue
		}
		key := p1.Input.(kvInput).key
		for _, p2 := range history {
			if !isPut(p2) || p2.Input.(kvInput).key != key || p2.Call <= p1.Return {
				continue
			}
			for g, op := range history {
				if in := op.Input.(kvInput); in.kind == kvGet && in.key == key && op.Call > p2.Return {
					doctor("stale read", g, kvOutput{exists: true, value: p1.Input.(kvInput).value})
					return
				}
			}
		}
	}
	t.Log("no put, overwrite and later read of one key in order: the stale-read doctoring is skipped")
}
