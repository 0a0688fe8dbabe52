package raftnode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
)

// committed collects what the node hands to Config.Commit.
type committed struct {
	mu      sync.Mutex
	all     []uint64 // index of every entry, of any type, in delivery order
	indexes []uint64 // index of each normal entry with data
	data    []string
}

func (c *committed) commit(ents []*raftpb.Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range ents {
		c.all = append(c.all, e.GetIndex())
		if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
			c.indexes = append(c.indexes, e.GetIndex())
			c.data = append(c.data, string(e.GetData()))
		}
	}
}

func (c *committed) snapshot() (indexes []uint64, data []string, all []uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.indexes...), append([]string(nil), c.data...), append([]uint64(nil), c.all...)
}

func (c *committed) waitFor(t *testing.T, n int) ([]uint64, []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		idx, data, _ := c.snapshot()
		if len(data) >= n {
			return idx, data
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d payloads committed after 10s, want %d", len(data), n)
		}
		time.Sleep(time.Millisecond)
	}
}

type member struct {
	node *Node
	log  raftlog.Log
	got  *committed
	// logs holds what the node logged.
	logs *observer.ObservedLogs
}

// start opens the log in dir and starts a single-member node on it.
func start(t *testing.T, dir string, catchUp uint64) *member {
	t.Helper()
	return startBounded(t, dir, catchUp, 0)
}

// startBounded is start with a bound on the catch-up bytes (0: default).
func startBounded(t *testing.T, dir string, catchUp uint64, catchUpBytes int) *member {
	t.Helper()
	l, err := filelog.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := &committed{}
	core, logs := observer.New(zapcore.InfoLevel)
	n, err := Start(actors.NewSystem(), Config{
		ID:                     1,
		Peers:                  []uint64{1},
		Log:                    l,
		TickInterval:           10 * time.Millisecond,
		SnapshotCatchUpEntries: catchUp,
		SnapshotCatchUpBytes:   catchUpBytes,
		Commit:                 got.commit,
		Logger:                 zap.New(zapcore.NewTee(core, zaptest.NewLogger(t).Core())),
	})
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	m := &member{node: n, log: l, got: got, logs: logs}
	t.Cleanup(m.stop)
	return m
}

func (m *member) stop() {
	m.node.Stop()
	m.log.Close()
}

func payloads(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// propose proposes each payload in turn; the test fails if any is rejected.
func propose(t *testing.T, n *Node, ps []string) {
	t.Helper()
	for _, p := range ps {
		n.Propose([]byte(p), func(err error) { t.Errorf("proposal %q rejected: %v", p, err) })
	}
}

func checkOnceInOrder(t *testing.T, idx []uint64, data, want []string) {
	t.Helper()
	if len(data) != len(want) {
		t.Fatalf("committed %d payloads %q, want %d", len(data), data, len(want))
	}
	for i := range want {
		if data[i] != want[i] {
			t.Fatalf("payload %d committed = %q, want %q (order or duplicates)", i, data[i], want[i])
		}
		if i > 0 && idx[i] != idx[i-1]+1 {
			t.Fatalf("payload %d at index %d follows index %d, want consecutive", i, idx[i], idx[i-1])
		}
	}
}

func readIndex(t *testing.T, n *Node) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		t.Fatalf("ReadIndex: %v", err)
	}
	return idx
}

func TestProposeCommitsInOrderOnce(t *testing.T) {
	m := start(t, t.TempDir(), 0)
	want := payloads("p", 50)
	propose(t, m.node, want)
	m.got.waitFor(t, len(want))
	// Give a redelivery bug a chance to show.
	time.Sleep(100 * time.Millisecond)
	idx, data, all := m.got.snapshot()
	checkOnceInOrder(t, idx, data, want)
	for i := 1; i < len(all); i++ {
		if all[i] != all[i-1]+1 {
			t.Fatalf("Commit saw index %d after %d, want every index once, in order", all[i], all[i-1])
		}
	}
	if len(all) == 0 || all[0] != 1 {
		t.Errorf("first committed index = %v, want 1 (the bootstrap entry)", all[:min(1, len(all))])
	}
}

func TestProposeBeforeLeaderWaits(t *testing.T) {
	// Proposals sent right after Start reach the mailbox before the node
	// has campaigned; they wait for the leader instead of failing.
	m := start(t, t.TempDir(), 0)
	want := payloads("early", 5)
	propose(t, m.node, want)
	idx, data := m.got.waitFor(t, len(want))
	checkOnceInOrder(t, idx, data, want)
}

func TestReadIndex(t *testing.T) {
	m := start(t, t.TempDir(), 0)
	if got := readIndex(t, m.node); got < 1 {
		t.Errorf("ReadIndex on a fresh node = %d, want >= 1", got)
	}
	want := payloads("r", 10)
	propose(t, m.node, want)
	idx, _ := m.got.waitFor(t, len(want))
	last := idx[len(idx)-1]
	if got := readIndex(t, m.node); got < last {
		t.Errorf("ReadIndex = %d, want >= %d, the last committed proposal", got, last)
	}

	// Concurrent reads are batched; each still gets a valid index.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := m.node.ReadIndex(ctx)
			if err != nil || got < last {
				t.Errorf("concurrent ReadIndex = %d, %v; want >= %d", got, err, last)
			}
		})
	}
	wg.Wait()
}

func TestReadIndexContextDone(t *testing.T) {
	m := start(t, t.TempDir(), 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// A context that ended before the call asks nothing of raft.
	if _, err := m.node.ReadIndex(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ReadIndex(cancelled ctx) = %v, want context.Canceled", err)
	}
}

// TestReadIndexDeadlineCountsSlow: a read whose deadline passes before its
// round is answered counts as slow, as etcd's timed-out read index does; a
// cancelled one does not.
func TestReadIndexDeadlineCountsSlow(t *testing.T) {
	m := start(t, t.TempDir(), 0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m.node.ReadIndex(ctx)
	if _, slow := m.node.ReadIndexStats(); slow != 0 {
		t.Fatalf("slow reads after a cancelled one: %d, want 0", slow)
	}
	ctx, cancel = context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := m.node.ReadIndex(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ReadIndex(expired ctx) = %v, want %v", err, context.DeadlineExceeded)
	}
	if _, slow := m.node.ReadIndexStats(); slow != 1 {
		t.Fatalf("slow reads after an expired one: %d, want 1", slow)
	}
	if n := m.logs.FilterMessage("timed out waiting for read index response (local node might have slow network)").Len(); n != 1 {
		t.Fatalf("read timeout warnings after one expired read and one cancelled: %d, want 1", n)
	}
	// More in the same second are counted, not logged.
	for range 3 {
		m.node.ReadIndex(ctx)
	}
	if _, slow := m.node.ReadIndexStats(); slow != 4 {
		t.Fatalf("slow reads after four expired ones: %d, want 4", slow)
	}
	if n := m.logs.FilterMessage("timed out waiting for read index response (local node might have slow network)").Len(); n != 1 {
		t.Fatalf("read timeout warnings after four expired reads within a second: %d, want 1", n)
	}
}

func TestStatus(t *testing.T) {
	m := start(t, t.TempDir(), 0)
	want := payloads("s", 3)
	propose(t, m.node, want)
	idx, _ := m.got.waitFor(t, len(want))
	last := idx[len(idx)-1]
	deadline := time.Now().Add(10 * time.Second)
	var st Status
	for {
		st = m.node.Status()
		if st.Leader == 1 && st.Commit >= last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status = %+v, want leader 1 and commit >= %d", st, last)
		}
		time.Sleep(time.Millisecond)
	}
	if st.ID != 1 || st.Term == 0 {
		t.Errorf("Status = %+v, want ID 1 and a term > 0", st)
	}
}

// stuckLog is a raft log whose Save blocks while hold is set, as a disk
// stuck in fsync would.
type stuckLog struct {
	raftlog.Log
	mu   sync.Mutex
	hold chan struct{} // nil: Save goes through
}

func (l *stuckLog) Save(st *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	l.mu.Lock()
	hold := l.hold
	l.mu.Unlock()
	if hold != nil {
		<-hold
	}
	return l.Log.Save(st, ents, snap)
}

// TestTickingStopsWhileLogWriteStuck: a node ticks while its log writes
// go through; while one is stuck its clock stops and Ticking says so, and
// it ticks again once the write completes.
func TestTickingStopsWhileLogWriteStuck(t *testing.T) {
	fl, err := filelog.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	l := &stuckLog{Log: fl}
	got := &committed{}
	n, err := Start(actors.NewSystem(), Config{ID: 1, Peers: []uint64{1}, Log: l, TickInterval: 10 * time.Millisecond,
		Commit: got.commit, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{node: n, log: fl, got: got}
	t.Cleanup(m.stop)
	propose(t, n, payloads("a", 1))
	got.waitFor(t, 1)
	if !n.Ticking() {
		t.Fatal("a node whose log writes go through is not ticking")
	}

	hold := make(chan struct{})
	l.mu.Lock()
	l.hold = hold
	l.mu.Unlock()
	propose(t, n, payloads("b", 1))
	deadline := time.Now().Add(5 * time.Second)
	for n.Ticking() {
		if time.Now().After(deadline) {
			t.Fatal("still ticking 5s into a stuck log write")
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.mu.Lock()
	l.hold = nil
	l.mu.Unlock()
	close(hold)
	got.waitFor(t, 2)
	for !n.Ticking() {
		if time.Now().After(deadline) {
			t.Fatal("not ticking again after the log write completed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStop(t *testing.T) {
	m := start(t, t.TempDir(), 0)
	readIndex(t, m.node)
	m.node.Stop()
	m.node.Stop() // idempotent

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.node.ReadIndex(ctx); !errors.Is(err, ErrStopped) {
		t.Errorf("ReadIndex after Stop = %v, want ErrStopped", err)
	}
	rejected := make(chan error, 1)
	m.node.Propose([]byte("late"), func(err error) { rejected <- err })
	select {
	case err := <-rejected:
		if !errors.Is(err, ErrStopped) {
			t.Errorf("Propose after Stop rejected with %v, want ErrStopped", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Propose after Stop was never rejected")
	}
	time.Sleep(50 * time.Millisecond)
	if _, data, _ := m.got.snapshot(); len(data) != 0 {
		t.Errorf("committed %q after Stop, want nothing", data)
	}
}

// TestStopFailsReadsInFlight checks the contract that reads pending when
// the node stops fail with ErrStopped, including reads whose request is
// still queued in the actor's mailbox.
func TestStopFailsReadsInFlight(t *testing.T) {
	m := start(t, t.TempDir(), 0)
	readIndex(t, m.node)
	const readers = 16
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		wg      sync.WaitGroup
		started = make(chan struct{}, readers)
		errs    = make(chan error, readers)
	)
	for range readers {
		wg.Go(func() {
			started <- struct{}{}
			for {
				if _, err := m.node.ReadIndex(ctx); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for range readers {
		<-started
	}
	time.Sleep(20 * time.Millisecond)
	stopped := time.Now()
	m.node.Stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("ReadIndex calls still blocked 10s after Stop")
	}
	close(errs)
	for err := range errs {
		if !errors.Is(err, ErrStopped) {
			t.Errorf("ReadIndex during Stop = %v after %v, want ErrStopped", err, time.Since(stopped))
		}
	}
}

// TestRestartRedelivers checks that a node restarted on the same log hands
// every committed entry to Commit again, in order: Config has no applied
// index, so raft replays from the start of the log.
func TestRestartRedelivers(t *testing.T) {
	dir := t.TempDir()
	m := start(t, dir, 0)
	want := payloads("d", 20)
	propose(t, m.node, want)
	idx1, _ := m.got.waitFor(t, len(want))
	term1 := m.node.Status().Term
	m.stop()

	m2 := start(t, dir, 0)
	idx2, data2 := m2.got.waitFor(t, len(want))
	checkOnceInOrder(t, idx2, data2, want)
	for i := range idx1 {
		if idx2[i] != idx1[i] {
			t.Fatalf("after restart payload %d is at index %d, was %d", i, idx2[i], idx1[i])
		}
	}

	// The restarted node leads again and takes new proposals after the old.
	more := payloads("after", 3)
	propose(t, m2.node, more)
	idx3, data3 := m2.got.waitFor(t, len(want)+len(more))
	checkOnceInOrder(t, idx3[len(want):], data3[len(want):], more)
	if idx3[len(want)] <= idx1[len(idx1)-1] {
		t.Errorf("new proposal at index %d, want after %d", idx3[len(want)], idx1[len(idx1)-1])
	}
	if st := m2.node.Status(); st.Term <= term1 || st.Leader != 1 {
		t.Errorf("Status after restart = %+v, want leader 1 in a term after %d", st, term1)
	}
}

func TestCompact(t *testing.T) {
	const catchUp = 5
	tests := []struct {
		name      string
		proposals int
		// catchUpBytes bounds the bytes kept (0: the default).
		catchUpBytes int
		// compactAt picks the applied index to compact at from the indexes
		// of the committed proposals.
		compactAt func(idx []uint64) uint64
		wantFirst func(applied uint64) uint64
	}{
		{
			name:      "more entries than catch-up",
			proposals: 30,
			compactAt: func(idx []uint64) uint64 { return idx[19] },
			wantFirst: func(applied uint64) uint64 { return applied - catchUp + 1 },
		},
		{
			name:      "all applied",
			proposals: 30,
			compactAt: func(idx []uint64) uint64 { return idx[len(idx)-1] },
			wantFirst: func(applied uint64) uint64 { return applied - catchUp + 1 },
		},
		{
			// Payloads are 5 bytes ("c-019"), entries encode in 11 to 13
			// bytes: 30 bytes keep the last two.
			name:         "catch-up bounded by bytes",
			proposals:    30,
			catchUpBytes: 30,
			compactAt:    func(idx []uint64) uint64 { return idx[19] },
			wantFirst:    func(applied uint64) uint64 { return applied - 1 },
		},
		{
			name:         "bytes bound above the entries kept",
			proposals:    30,
			catchUpBytes: 1000,
			compactAt:    func(idx []uint64) uint64 { return idx[19] },
			wantFirst:    func(applied uint64) uint64 { return applied - catchUp + 1 },
		},
		{
			name:      "fewer entries than catch-up",
			proposals: 2,
			compactAt: func(idx []uint64) uint64 { return idx[len(idx)-1] },
			wantFirst: func(uint64) uint64 { return 1 },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			m := startBounded(t, dir, catchUp, tt.catchUpBytes)
			want := payloads("c", tt.proposals)
			propose(t, m.node, want)
			idx, _ := m.got.waitFor(t, len(want))
			applied := tt.compactAt(idx)
			wantFirst := tt.wantFirst(applied)
			m.node.Compact(applied)
			// The actor handles messages in order: once this read is answered,
			// the Compact has been handled.
			readIndex(t, m.node)
			first, err := m.log.FirstIndex()
			if err != nil {
				t.Fatal(err)
			}
			if first != wantFirst {
				t.Errorf("FirstIndex after Compact(%d) = %d, want %d", applied, first, wantFirst)
			}

			// An older index changes nothing.
			m.node.Compact(applied - 1)
			readIndex(t, m.node)
			m.stop()
			if f, _ := m.log.FirstIndex(); f != first {
				t.Errorf("FirstIndex after a stale Compact = %d, want %d", f, first)
			}
			// Log.Snapshot is read only once the node has stopped: filelog's
			// Save and CreateSnapshot call raft.MemoryStorage.InitialState,
			// which reads without the lock that Snapshot writes under.
			snap, err := m.log.Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if got := snap.GetMetadata().GetIndex(); got != applied {
				t.Errorf("snapshot index = %d, want %d", got, applied)
			}
			if got := snap.GetMetadata().GetConfState().GetVoters(); len(got) != 1 || got[0] != 1 {
				t.Errorf("snapshot conf state voters = %v, want [1]", got)
			}

			// After a restart the log is replayed from its first entry.
			m2 := start(t, dir, catchUp)
			var wantReplayed []string
			for i, ix := range idx {
				if ix >= first {
					wantReplayed = append(wantReplayed, want[i])
				}
			}
			idx2, data2 := m2.got.waitFor(t, len(wantReplayed))
			checkOnceInOrder(t, idx2, data2, wantReplayed)
			time.Sleep(50 * time.Millisecond)
			if _, data, all := m2.got.snapshot(); len(data) != len(wantReplayed) || len(all) > 0 && all[0] < first {
				t.Errorf("after restart committed %q from index %v, want %q from %d", data, all[:min(1, len(all))], wantReplayed, first)
			}
		})
	}
}

func TestStartRejectsZeroID(t *testing.T) {
	l, err := filelog.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Start(actors.NewSystem(), Config{Log: l, Commit: func([]*raftpb.Entry) {}}); err == nil {
		t.Error("Start with ID 0 succeeded, want an error")
	}
}
