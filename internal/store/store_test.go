package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/enginelog"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
	"github.com/cairn-kv/cairn/internal/storage/rocksdb"
	"github.com/cairn-kv/cairn/internal/store"
)

// member is the store pipeline of one member without network front ends:
// engine, raft log, MVCC, raft actor and store actor.
type member struct {
	engine storage.Engine
	log    raftlog.Log
	kv     *mvcc.KV
	c      *store.Client
}

type opener func(t *testing.T, dir string) (storage.Engine, raftlog.Log)

var engines = map[string]opener{
	"memory": func(t *testing.T, dir string) (storage.Engine, raftlog.Log) {
		e, err := memory.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		l, err := filelog.Open(filepath.Join(dir, "raft"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return e, l
	},
	"rocksdb": func(t *testing.T, dir string) (storage.Engine, raftlog.Log) {
		e, err := rocksdb.Open(dir, rocksdb.Options{})
		if err != nil {
			t.Fatal(err)
		}
		l, err := enginelog.Open(e)
		if err != nil {
			t.Fatal(err)
		}
		return e, l
	},
}

func start(t *testing.T, open opener, dir string, snapshotCount uint64) *member {
	t.Helper()
	return startAs(t, 1, open, dir, snapshotCount, nil)
}

// startAs starts member id, a cluster of its own; restored, if set, is
// its Config.Restored, and each of extra adjusts its Config.
func startAs(t *testing.T, id uint64, open opener, dir string, snapshotCount uint64, restored func(), extra ...func(*store.Config)) *member {
	t.Helper()
	e, l := open(t, dir)
	kv, err := mvcc.Open(e, mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sys := actors.NewSystem()
	cfg := store.Config{
		Engine: e, KV: kv, ClusterID: 7, MemberID: id,
		MaxRequestBytes: 1 << 20, MaxTxnOps: 128, SnapshotCount: snapshotCount, Restored: restored,
		VersionMonitorInterval: 20 * time.Millisecond,
		StartRaft: func(commit func([]*raftpb.Entry)) (store.Raft, error) {
			return raftnode.Start(sys, raftnode.Config{ID: id, Peers: []uint64{id}, Log: l, TickInterval: 10 * time.Millisecond, Commit: commit})
		},
	}
	for _, f := range extra {
		f(&cfg)
	}
	c, err := store.Start(sys, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &member{engine: e, log: l, kv: kv, c: c}
}

func (m *member) stop() {
	m.c.Stop()
	m.kv.Close()
	m.log.Close()
	m.engine.Close()
}

func forEachEngine(t *testing.T, fn func(t *testing.T, open opener)) {
	for name, open := range engines {
		t.Run(name, func(t *testing.T) { fn(t, open) })
	}
}

func put(t *testing.T, c *store.Client, k, v string) *pb.PutResponse {
	t.Helper()
	resp, err := c.Put(context.Background(), &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func get(t *testing.T, c *store.Client, k string, serializable bool) *pb.RangeResponse {
	t.Helper()
	resp, err := c.Range(context.Background(), &pb.RangeRequest{Key: []byte(k), Serializable: serializable})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestWritesAreOrderedAndHeadersFilled(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		for i := 1; i <= 5; i++ {
			resp := put(t, m.c, "k", fmt.Sprint(i))
			if resp.Header.Revision != int64(i+1) {
				t.Fatalf("put %d: revision %d, want %d", i, resp.Header.Revision, i+1)
			}
			if resp.Header.ClusterId != 7 || resp.Header.MemberId != 1 || resp.Header.RaftTerm == 0 {
				t.Fatalf("header not filled: %+v", resp.Header)
			}
		}
		for _, serializable := range []bool{false, true} {
			r := get(t, m.c, "k", serializable)
			if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "5" || r.Kvs[0].Version != 5 || r.Header.Revision != 6 {
				t.Fatalf("serializable=%v: got %+v", serializable, r)
			}
		}
	})
}

// TestConcurrentWritesThenReadYourWrites checks that a linearizable read
// issued after acknowledged writes sees all of them, while writers race.
func TestConcurrentWritesThenReadYourWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					k := fmt.Sprintf("w%d/%d", w, i)
					put(t, m.c, k, k)
					if r := get(t, m.c, k, false); len(r.Kvs) != 1 {
						t.Errorf("read after acknowledged write of %s found nothing", k)
					}
				}
			}()
		}
		wg.Wait()
		r, err := m.c.Range(context.Background(), &pb.RangeRequest{Key: []byte("w"), RangeEnd: []byte("x"), CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Count != 200 || r.Header.Revision != 201 {
			t.Fatalf("count %d at revision %d, want 200 at 201", r.Count, r.Header.Revision)
		}
	})
}

// TestRestartReplaysLog stops a member and starts it on the same data: every
// acknowledged write is there with its revision, including across raft log
// compaction (snapshot count 10).
func TestRestartReplaysLog(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		dir := t.TempDir()
		m := start(t, open, dir, 10)
		revs := map[string]int64{}
		for i := 0; i < 45; i++ {
			k := fmt.Sprintf("k%02d", i)
			revs[k] = put(t, m.c, k, k).Header.Revision
		}
		// Let a background checkpoint finish before stopping.
		time.Sleep(100 * time.Millisecond)
		m.stop()
		m = start(t, open, dir, 10)
		defer m.stop()
		for k, rev := range revs {
			r := get(t, m.c, k, false)
			if len(r.Kvs) != 1 || r.Kvs[0].ModRevision != rev || string(r.Kvs[0].Value) != k {
				t.Fatalf("%s after restart: %+v, want mod revision %d", k, r.Kvs, rev)
			}
		}
		if resp := put(t, m.c, "after", "x"); resp.Header.Revision != 47 {
			t.Fatalf("first write after restart at revision %d, want 47", resp.Header.Revision)
		}
	})
}

// After a restart raft hands over again the entries the engine already
// holds, in batches of about 1 MiB. Those batches end below the applied
// index, and none of them is a reason to checkpoint: a checkpoint there
// would rewrite the raft log for nothing. Only the RocksDB engine keeps an
// applied index across a restart without a checkpoint, so only its run can
// see a batch below it; the memory engine re-applies from its snapshot and
// its run checks that the replay still ends without one.
func TestRestartReplayDoesNotCheckpoint(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		dir := t.TempDir()
		m := start(t, open, dir, 1000)
		value := strings.Repeat("v", 100<<10)
		for i := range 30 {
			put(t, m.c, fmt.Sprintf("k%02d", i), value)
		}
		m.stop()
		m = start(t, open, dir, 1000)
		if r := get(t, m.c, "k29", false); len(r.Kvs) != 1 {
			t.Fatalf("k29 after restart: %+v", r.Kvs)
		}
		m.stop()
		snap, err := m.log.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		if i := snap.GetMetadata().GetIndex(); i != 0 {
			t.Fatalf("raft log snapshot at %d after replaying 30 entries with a snapshot count of 1000, want none", i)
		}
	})
}

func TestErrorsAreSentinels(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		ctx := context.Background()
		if _, err := m.c.Put(ctx, &pb.PutRequest{Key: []byte("big"), Value: make([]byte, 2<<20)}); !errors.Is(err, store.ErrRequestTooLarge) {
			t.Fatalf("oversized put: %v", err)
		}
		if _, err := m.c.Put(ctx, &pb.PutRequest{}); !errors.Is(err, mvcc.ErrEmptyKey) {
			t.Fatalf("empty key: %v", err)
		}
		if _, err := m.c.Put(ctx, &pb.PutRequest{Key: []byte("a"), Lease: 5}); !errors.Is(err, mvcc.ErrLeaseNotFound) {
			t.Fatalf("unknown lease: %v", err)
		}
		if _, err := m.c.Compact(ctx, &pb.CompactionRequest{Revision: 100}); !errors.Is(err, mvcc.ErrFutureRev) {
			t.Fatalf("compact future: %v", err)
		}
		if err := m.c.RangeStream(ctx, &pb.RangeRequest{Key: []byte("a"), SortOrder: pb.RangeRequest_DESCEND}, func(*pb.RangeResponse) error { return nil }); !errors.Is(err, store.ErrStreamSortOrder) {
			t.Fatalf("stream sort: %v", err)
		}
	})
}

func TestRangeStreamChunksMergeToRange(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		for i := 0; i < 300; i++ {
			put(t, m.c, fmt.Sprintf("s%03d", i), "v")
		}
		req := &pb.RangeRequest{Key: []byte("s"), RangeEnd: []byte("t"), Limit: 250}
		full, err := m.c.Range(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		var last *pb.RangeResponse
		chunks := 0
		err = m.c.RangeStream(context.Background(), req, func(r *pb.RangeResponse) error {
			chunks++
			for _, kv := range r.Kvs {
				keys = append(keys, string(kv.Key))
			}
			last = r
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if chunks < 2 || len(keys) != len(full.Kvs) || last.Count != full.Count || last.More != full.More || last.Header.Revision != full.Header.Revision {
			t.Fatalf("stream: %d chunks, %d keys, count %d more %v; range: %d keys, count %d more %v", chunks, len(keys), last.Count, last.More, len(full.Kvs), full.Count, full.More)
		}
		for i, kv := range full.Kvs {
			if keys[i] != string(kv.Key) {
				t.Fatalf("key %d: stream %s, range %s", i, keys[i], kv.Key)
			}
		}
	})
}

// nopRaft is a store.Raft that never commits: every method does nothing
// and reports nothing. The fakes below embed it and state only what they
// do differently.
type nopRaft struct{}

func (nopRaft) Propose([]byte, func(error))                       {}
func (nopRaft) ProposeConfChange(*raftpb.ConfChange, func(error)) {}
func (nopRaft) Progress(uint64) (uint64, uint64, bool)            { return 0, 0, false }
func (nopRaft) ReadIndex(context.Context) (uint64, error)         { return 0, nil }
func (nopRaft) Compact(uint64)                                    {}
func (nopRaft) Status() raftnode.Status                           { return raftnode.Status{} }
func (nopRaft) TransferLeadership(uint64)                         {}
func (nopRaft) Ticking() bool                                     { return true }
func (nopRaft) Stop()                                             {}

// laggingRaft reports a commit index far ahead of anything applied and
// never commits: the state a member is in when apply falls behind.
type laggingRaft struct{ nopRaft }

func (laggingRaft) Status() raftnode.Status { return raftnode.Status{Commit: 5001, Term: 1} }

// startOnRaft starts a store over a fresh memory engine and r, with cfg's
// other settings; the engine, the KV and the request limits are filled in.
// Everything stops when the test ends.
func startOnRaft(t *testing.T, r store.Raft, cfg store.Config) *store.Client {
	t.Helper()
	c, _ := startOnRaftCommitting(t, r, cfg)
	return c
}

// startOnRaftCommitting is startOnRaft that also returns the function
// through which the store takes committed entries, for a test to commit
// them itself.
func startOnRaftCommitting(t *testing.T, r store.Raft, cfg store.Config) (*store.Client, func([]*raftpb.Entry)) {
	t.Helper()
	e, err := memory.Open("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	kv, err := mvcc.Open(e, mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kv.Close() })
	cfg.Engine, cfg.KV = e, kv
	cfg.MaxRequestBytes, cfg.MaxTxnOps = 1<<20, 128
	var commit func([]*raftpb.Entry)
	cfg.StartRaft = func(f func([]*raftpb.Entry)) (store.Raft, error) { commit = f; return r, nil }
	c, err := store.Start(actors.NewSystem(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c, commit
}

// TestProposalsRefusedWhenApplyLags: with the applied index more than 5000
// entries behind the commit index, writes fail fast with
// ErrTooManyRequests, as etcd answers "too many requests".
func TestProposalsRefusedWhenApplyLags(t *testing.T) {
	c := startOnRaft(t, laggingRaft{}, store.Config{})
	_, err := c.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if !errors.Is(err, store.ErrTooManyRequests) {
		t.Fatalf("put while apply lags: %v, want ErrTooManyRequests", err)
	}
}

// silentRaft never commits; it reports the leader and election time its
// status function gives.
type silentRaft struct {
	nopRaft
	status func() raftnode.Status
}

func (r silentRaft) Status() raftnode.Status { return r.status() }

// TestProposalTimeoutCauses: a write that times out is told apart as
// etcd's parseProposeCtxErr does: the previous leader's failure when this
// member was elected within two election timeouts after it began, a lost
// connection when the leader's stream was not up for the whole request,
// a plain timeout otherwise.
func TestProposalTimeoutCauses(t *testing.T) {
	longAgo := time.Now().Add(-time.Hour)
	tests := []struct {
		name   string
		status func() raftnode.Status
		active time.Time
		want   error
	}{
		{"no leader", func() raftnode.Status { return raftnode.Status{} }, longAgo, store.ErrTimeout},
		{"elected during the request", func() raftnode.Status {
			return raftnode.Status{Leader: 1, BecameLeader: time.Now()}
		}, longAgo, store.ErrTimeoutDueToLeaderFail},
		{"elected long before", func() raftnode.Status {
			return raftnode.Status{Leader: 1, BecameLeader: longAgo}
		}, longAgo, store.ErrTimeout},
		{"leader connected throughout", func() raftnode.Status { return raftnode.Status{Leader: 2} }, longAgo, store.ErrTimeout},
		{"leader never connected", func() raftnode.Status { return raftnode.Status{Leader: 2} }, time.Time{}, store.ErrTimeoutDueToConnectionLost},
		{"leader reconnected meanwhile", func() raftnode.Status { return raftnode.Status{Leader: 2} }, time.Now().Add(time.Hour), store.ErrTimeoutDueToConnectionLost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startOnRaft(t, silentRaft{status: tt.status}, store.Config{
				MemberID:        1,
				ElectionTimeout: time.Second,
				ActiveSince:     func(uint64) time.Time { return tt.active },
			})
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
			if !errors.Is(err, tt.want) {
				t.Fatalf("put that timed out: %v, want %v", err, tt.want)
			}
		})
	}
}

// TestProposalRequestTimeout: a write whose context has no deadline fails
// with etcd's timeout after the request timeout, not sooner, every time:
// the timers that bound those waits are reused, and a reused one must not
// fire early.
func TestProposalRequestTimeout(t *testing.T) {
	const timeout = 40 * time.Millisecond
	noLeader := silentRaft{status: func() raftnode.Status { return raftnode.Status{} }}
	c := startOnRaft(t, noLeader, store.Config{MemberID: 1, RequestTimeout: timeout})
	for i := range 3 {
		start := time.Now()
		_, err := c.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		if !errors.Is(err, store.ErrTimeout) {
			t.Fatalf("put %d without a deadline: %v, want %v", i, err, store.ErrTimeout)
		}
		if took := time.Since(start); took < timeout {
			t.Fatalf("put %d timed out after %v, before the request timeout of %v", i, took, timeout)
		}
	}
}

// TestProposalTimeoutUnderLongerDeadline: the request timeout bounds a
// write whose caller allows longer, as etcd's ReqTimeout bounds every
// proposal, and the answer is etcd's timeout.
func TestProposalTimeoutUnderLongerDeadline(t *testing.T) {
	const timeout = 40 * time.Millisecond
	noLeader := silentRaft{status: func() raftnode.Status { return raftnode.Status{} }}
	c := startOnRaft(t, noLeader, store.Config{MemberID: 1, RequestTimeout: timeout})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	_, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if !errors.Is(err, store.ErrTimeout) {
		t.Fatalf("put under a minute's deadline: %v, want %v", err, store.ErrTimeout)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("put answered after %v, want the request timeout of %v", took, timeout)
	}
}

// droppingRaft drops the first configuration change proposed, as a leader
// just elected drops one (raft's pending change guard), and commits every
// later one at once.
type droppingRaft struct {
	silentRaft
	commit  func([]*raftpb.Entry)
	mu      sync.Mutex
	index   uint64
	dropped bool
}

func (r *droppingRaft) ProposeConfChange(cc *raftpb.ConfChange, _ func(error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.dropped {
		r.dropped = true
		return
	}
	data, err := proto.Marshal(cc)
	if err != nil {
		panic(err)
	}
	r.index++
	typ := raftpb.EntryConfChange
	r.commit([]*raftpb.Entry{{Term: proto.Uint64(1), Index: proto.Uint64(r.index), Type: &typ, Data: data}})
}

// TestDroppedConfChangeIsProposedAgain: a membership change whose proposal
// a leader dropped is proposed again and applies, instead of waiting out
// the request's deadline.
func TestDroppedConfChangeIsProposedAgain(t *testing.T) {
	e, err := memory.Open("")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	kv, err := mvcc.Open(e, mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	r := &droppingRaft{silentRaft: silentRaft{status: func() raftnode.Status { return raftnode.Status{Leader: 1} }}}
	c, err := store.Start(actors.NewSystem(), store.Config{
		Engine: e, KV: kv, MemberID: 1, MaxRequestBytes: 1 << 20, MaxTxnOps: 128, MaxLearners: 1,
		StartRaft: func(commit func([]*raftpb.Entry)) (store.Raft, error) {
			r.commit = commit
			return r, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.AddMember(ctx, []string{"http://127.0.0.1:1"}, true, "token")
	if err != nil {
		t.Fatalf("adding a learner whose first proposal was dropped: %v", err)
	}
	if got := c.Members(); len(got) != 1 || got[0].ID != m.ID || !got[0].IsLearner {
		t.Fatalf("members after the change: %v", got)
	}
}

// refusingRaft refuses every proposal, from another goroutine, as the raft
// node does when there is no leader to take it.
type refusingRaft struct{ nopRaft }

func (refusingRaft) Propose(_ []byte, rejected func(error)) {
	go rejected(raftnode.ErrNoLeader)
}

// holdingRaft takes proposals and never commits them; it reports each
// one on proposed.
type holdingRaft struct {
	silentRaft
	proposed chan struct{}
}

func (r holdingRaft) Propose([]byte, func(error)) { r.proposed <- struct{}{} }

// TestProposalOutcomesWithoutCommit: a write raft refuses fails at once
// with the refusal, mapped as etcd maps it; a write waiting when the store
// stops fails with ErrStopped, and so does one made after.
func TestProposalOutcomesWithoutCommit(t *testing.T) {
	startWith := func(t *testing.T, r store.Raft) *store.Client {
		e, err := memory.Open("")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		kv, err := mvcc.Open(e, mvcc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { kv.Close() })
		c, err := store.Start(actors.NewSystem(), store.Config{
			Engine: e, KV: kv, MemberID: 1, MaxRequestBytes: 1 << 20, MaxTxnOps: 128,
			StartRaft: func(func([]*raftpb.Entry)) (store.Raft, error) { return r, nil },
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	req := &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}
	t.Run("refused", func(t *testing.T) {
		c := startWith(t, refusingRaft{})
		defer c.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Put(ctx, req); !errors.Is(err, store.ErrNoLeader) {
			t.Fatalf("put raft refused: %v, want ErrNoLeader", err)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		r := holdingRaft{
			silentRaft: silentRaft{status: func() raftnode.Status { return raftnode.Status{Leader: 1} }},
			proposed:   make(chan struct{}, 1),
		}
		c := startWith(t, r)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errs := make(chan error, 1)
		go func() {
			_, err := c.Put(ctx, req)
			errs <- err
		}()
		<-r.proposed // the put is registered and proposed: it waits for its entry
		c.Stop()
		if err := <-errs; !errors.Is(err, store.ErrStopped) {
			t.Fatalf("put waiting at stop: %v, want ErrStopped", err)
		}
		if _, err := c.Put(ctx, req); !errors.Is(err, store.ErrStopped) {
			t.Fatalf("put after stop: %v, want ErrStopped", err)
		}
	})
}

// committedRaft reports the commit index it is told, and hands the store
// entries through the commit function the store gave it.
type committedRaft struct {
	nopRaft
	commit *atomic.Uint64
}

func (r committedRaft) Status() raftnode.Status {
	return raftnode.Status{ID: 1, Leader: 1, Term: 1, Commit: r.commit.Load()}
}

// TestWaitCommitted: WaitCommitted returns at once when everything
// committed is applied, waits while an entry the member knows committed is
// not, returns once it is, and gives up after a second with etcd's "waiting
// for the applied index took too long"; a caller's cancelled context ends
// the wait with its own error.
func TestWaitCommitted(t *testing.T) {
	var commitIdx atomic.Uint64
	c, apply := startOnRaftCommitting(t, committedRaft{commit: &commitIdx}, store.Config{MemberID: 1})
	ctx := context.Background()

	if err := c.WaitCommitted(ctx); err != nil {
		t.Fatalf("nothing committed: %v", err)
	}
	commitIdx.Store(1)
	done := make(chan error, 1)
	go func() { done <- c.WaitCommitted(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("returned %v before entry 1 was applied", err)
	case <-time.After(100 * time.Millisecond):
	}
	apply([]*raftpb.Entry{{Index: new(uint64(1)), Term: new(uint64(1)), Type: raftpb.EntryNormal.Enum()}})
	if err := <-done; err != nil {
		t.Fatalf("after entry 1 was applied: %v", err)
	}

	commitIdx.Store(2)
	start := time.Now()
	if err := c.WaitCommitted(ctx); !errors.Is(err, store.ErrTimeoutWaitAppliedIndex) {
		t.Fatalf("entry 2 never applied: %v, want %v", err, store.ErrTimeoutWaitAppliedIndex)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("gave up after %v, want a second", d)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.WaitCommitted(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v, want %v", err, context.Canceled)
	}
}

// stalledRaft is a raft whose clock may have stopped: it reports leader
// and ticking as set, counts ReadIndex calls and answers them with
// readErr (or, with hang, never); after a read index round, the leader is
// then's.
type stalledRaft struct {
	nopRaft
	ticking bool
	readErr error
	reads   *atomic.Int32
	leader  *atomic.Uint64
	then    uint64
	// hang: ReadIndex waits for its context to end, as on a member whose
	// raft actor is stuck in a log write.
	hang bool
}

func (r stalledRaft) Ticking() bool { return r.ticking }
func (r stalledRaft) Status() raftnode.Status {
	return raftnode.Status{ID: 1, Leader: r.leader.Load()}
}
func (r stalledRaft) ReadIndex(ctx context.Context) (uint64, error) {
	r.reads.Add(1)
	if r.hang {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	r.leader.Store(r.then)
	return 0, r.readErr
}

// TestConfirmLeader: a leader whose raft clock moves is taken at its word
// without a read index round; one whose clock stalled is confirmed only
// if a read index round succeeds and it still leads after it, as etcd's
// ensureLeadership.
func TestConfirmLeader(t *testing.T) {
	tests := []struct {
		name      string
		ticking   bool
		readErr   error
		then      uint64
		want      bool
		wantReads int32
	}{
		{name: "ticking", ticking: true, then: 1, want: true},
		{name: "stalled, confirmed", then: 1, want: true, wantReads: 1},
		{name: "stalled, no quorum answers", readErr: raftnode.ErrStopped, then: 1, wantReads: 1},
		{name: "stalled, replaced meanwhile", then: 2, wantReads: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reads atomic.Int32
			var leader atomic.Uint64
			leader.Store(1)
			r := stalledRaft{ticking: tt.ticking, readErr: tt.readErr, reads: &reads, leader: &leader, then: tt.then}
			c := startOnRaft(t, r, store.Config{MemberID: 1})
			if got := c.ConfirmLeader(context.Background()); got != tt.want {
				t.Errorf("ConfirmLeader = %v, want %v", got, tt.want)
			}
			if n := reads.Load(); n != tt.wantReads {
				t.Errorf("%d read index rounds, want %d", n, tt.wantReads)
			}
		})
	}
}

// TestConfirmLeaderGivesUpAfterTwoElectionTimeouts: a leader whose raft
// actor is stuck answers that it cannot confirm its leadership after two
// election timeouts, by when the others have elected a leader, not after
// the request timeout: a client can then renew elsewhere sooner.
func TestConfirmLeaderGivesUpAfterTwoElectionTimeouts(t *testing.T) {
	var reads atomic.Int32
	var leader atomic.Uint64
	leader.Store(1)
	r := stalledRaft{reads: &reads, leader: &leader, then: 1, hang: true}
	c := startOnRaft(t, r, store.Config{MemberID: 1, ElectionTimeout: 50 * time.Millisecond, RequestTimeout: time.Minute})
	done := make(chan bool, 1)
	go func() { done <- c.ConfirmLeader(context.Background()) }()
	select {
	case ok := <-done:
		if ok {
			t.Fatal("confirmed a leader whose read index never came")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still waiting after 30s, with an election timeout of 50ms")
	}
}
