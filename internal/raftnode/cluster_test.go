package raftnode

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
)

// memNet connects nodes in memory. Messages are delivered on their own
// goroutine, in order per sender; drop, if set, discards the messages it
// matches. committed holds the data of the normal entries each node
// committed, in order.
type memNet struct {
	mu    sync.Mutex
	nodes map[uint64]*Node
	logs  map[uint64]*stuckLog
	// logged holds what every node logged.
	logged    *observer.ObservedLogs
	drop      func(m *raftpb.Message) bool
	committed map[uint64][]string
}

type memTransport struct {
	net  *memNet
	from uint64
}

func (t memTransport) Send(msgs []*raftpb.Message) {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	for _, m := range msgs {
		if t.net.drop != nil && t.net.drop(m) {
			continue
		}
		if n := t.net.nodes[m.GetTo()]; n != nil {
			n.Step(m)
		}
	}
}

func (n *memNet) setDrop(f func(m *raftpb.Message) bool) {
	n.mu.Lock()
	n.drop = f
	n.mu.Unlock()
}

// startCluster starts nodes 1..size over net, ticking every 10 ms.
func startCluster(t *testing.T, size int) (*memNet, []*Node) {
	t.Helper()
	return startClusterTicking(t, size, 10*time.Millisecond)
}

// startClusterTicking starts nodes 1..size over net, ticking every tick;
// their logs are in net.logs, to hold their writes.
func startClusterTicking(t *testing.T, size int, tick time.Duration) (*memNet, []*Node) {
	t.Helper()
	core, logged := observer.New(zapcore.InfoLevel)
	net := &memNet{nodes: make(map[uint64]*Node), logs: make(map[uint64]*stuckLog), logged: logged, committed: make(map[uint64][]string)}
	var ids []uint64
	for i := 1; i <= size; i++ {
		ids = append(ids, uint64(i))
	}
	var nodes []*Node
	for _, id := range ids {
		fl, err := filelog.Open(filepath.Join(t.TempDir(), "raft"), nil)
		if err != nil {
			t.Fatal(err)
		}
		l := &stuckLog{Log: fl}
		n, err := Start(actors.NewSystem(), Config{
			ID: id, Peers: ids, Log: l, TickInterval: tick, Logger: zap.New(core),
			Transport: memTransport{net: net, from: id}, Commit: func(ents []*raftpb.Entry) {
				net.mu.Lock()
				defer net.mu.Unlock()
				for _, e := range ents {
					if e.GetType() == raftpb.EntryNormal && len(e.GetData()) > 0 {
						net.committed[id] = append(net.committed[id], string(e.GetData()))
					}
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		net.mu.Lock()
		net.nodes[id] = n
		net.logs[id] = l
		net.mu.Unlock()
		nodes = append(nodes, n)
		t.Cleanup(func() { n.Stop(); l.Close() })
	}
	return net, nodes
}

// follower waits for a leader and returns a node that is not it.
func follower(t *testing.T, nodes []*Node) *Node {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, n := range nodes {
			if st := n.Status(); st.Leader != 0 && st.Leader != st.ID {
				return n
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no leader after 10s")
	return nil
}

// TestLateHeartbeatsCounted: a leader whose log write holds its loop for
// three heartbeat intervals sends its next heartbeats late, which it
// counts once per follower, as etcd counts
// etcd_server_heartbeat_send_failures_total; followers, which send none,
// count nothing.
func TestLateHeartbeatsCounted(t *testing.T) {
	// Ticks of 50 ms and an election timeout of 500 ms: the hold stays
	// well within it, so the leader keeps its office.
	net, nodes := startClusterTicking(t, 3, 50*time.Millisecond)
	lead := nodes[follower(t, nodes).Status().Leader-1]
	// Once a proposal has committed everywhere and a few intervals have
	// passed, the leader is sending heartbeats at its pace.
	propose(t, lead, payloads("warm", 1))
	waitCommitted(t, net, "warm-000")
	time.Sleep(200 * time.Millisecond)
	before := lead.LateHeartbeats()
	l := net.logs[lead.Status().ID]
	hold := make(chan struct{})
	l.mu.Lock()
	l.hold = hold
	l.mu.Unlock()
	propose(t, lead, payloads("a", 1))
	time.Sleep(150 * time.Millisecond)
	l.mu.Lock()
	l.hold = nil
	l.mu.Unlock()
	close(hold)
	deadline := time.Now().Add(5 * time.Second)
	for lead.LateHeartbeats() < before+2 {
		if time.Now().After(deadline) {
			t.Fatalf("late heartbeats %d after a 150 ms hold of the leader's log write, want %d or more (one per follower)", lead.LateHeartbeats(), before+2)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, n := range nodes {
		if st := n.Status(); st.ID != lead.Status().ID && st.Leader == lead.Status().ID && n.LateHeartbeats() != 0 {
			t.Errorf("follower %x counted %d late heartbeats, want 0", st.ID, n.LateHeartbeats())
		}
	}
}

// waitCommitted waits until every node has committed data.
func waitCommitted(t *testing.T, net *memNet, data string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		net.mu.Lock()
		all := len(net.committed) == len(net.nodes)
		for _, c := range net.committed {
			all = all && slices.Contains(c, data)
		}
		net.mu.Unlock()
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not committed on every node after 5s", data)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFollowerReadIndexIsRetried: a follower's ReadIndex request that is
// lost on its way to the leader is asked again; without the retry the read
// waited for ever (a member starting up waited on one such read).
func TestFollowerReadIndexIsRetried(t *testing.T) {
	net, nodes := startCluster(t, 3)
	f := follower(t, nodes)
	dropped := 0
	net.setDrop(func(m *raftpb.Message) bool {
		if m.GetType() == raftpb.MsgReadIndex && dropped == 0 {
			dropped++
			return true
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := f.ReadIndex(ctx); err != nil {
		t.Fatalf("ReadIndex after its request was dropped: %v", err)
	}
	if dropped != 1 {
		t.Fatalf("dropped %d ReadIndex requests, want the first", dropped)
	}
	if net.logged.FilterMessage("waiting for ReadIndex response took too long, retrying").Len() == 0 {
		t.Fatal("the read index round asked again without etcd's warning")
	}
}

// TestConcurrentReadsOnEveryMember: reads from every member at once all
// complete; the leader keys pending reads by context, so contexts must not
// repeat across members.
func TestConcurrentReadsOnEveryMember(t *testing.T) {
	_, nodes := startCluster(t, 3)
	follower(t, nodes)
	var wg sync.WaitGroup
	errs := make(chan error, 3*20)
	for _, n := range nodes {
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if _, err := n.ReadIndex(ctx); err != nil {
					errs <- err
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestReadFailsWhenLeaderChanges: a read whose ReadIndex round was asked
// of a leader that another replaced fails with ErrLeaderChanged, as etcd's
// read loop answers, rather than waiting out its deadline.
func TestReadFailsWhenLeaderChanges(t *testing.T) {
	net, nodes := startCluster(t, 3)
	f := follower(t, nodes)
	old := f.Status().Leader
	net.setDrop(func(m *raftpb.Message) bool {
		return m.GetType() == raftpb.MsgReadIndex && m.GetFrom() == f.Status().ID
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		_, err := f.ReadIndex(ctx)
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // the round is asked of the old leader
	for _, n := range nodes {
		if n.Status().ID == old {
			n.TransferLeadership(f.Status().ID)
		}
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrLeaderChanged) {
			t.Fatalf("read across a change of leader: %v, want ErrLeaderChanged", err)
		}
	case <-ctx.Done():
		t.Fatal("the read waited out its deadline")
	}
	if st := f.Status(); st.Leader != st.ID || st.BecameLeader.IsZero() {
		t.Fatalf("status after the transfer: %+v", st)
	}
	if failed, _ := f.ReadIndexStats(); failed != 1 {
		t.Fatalf("read index rounds failed: %d, want 1", failed)
	}
}

// TestProposalsBatchIntoFewAppends: proposals that reach the leader
// together are stepped into raft as one, so a follower gets a few appends
// for them rather than one each (and acknowledges a few), and every member
// commits each proposal once, in the order proposed.
func TestProposalsBatchIntoFewAppends(t *testing.T) {
	net, nodes := startCluster(t, 3)
	f := follower(t, nodes)
	fid, lead := f.Status().ID, f.Status().Leader
	var appends atomic.Int64
	net.setDrop(func(m *raftpb.Message) bool {
		if m.GetType() == raftpb.MsgApp && m.GetTo() == fid && len(m.GetEntries()) > 0 {
			appends.Add(1)
		}
		return false
	})
	const n = 500
	leader := nodes[lead-1]
	for i := range n {
		leader.Propose([]byte(strconv.Itoa(i)), func(err error) { t.Errorf("proposal %d rejected: %v", i, err) })
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		net.mu.Lock()
		done := len(net.committed[1]) >= n && len(net.committed[2]) >= n && len(net.committed[3]) >= n
		net.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("proposals not committed on every member after 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	net.mu.Lock()
	defer net.mu.Unlock()
	for id, got := range net.committed {
		if len(got) != n {
			t.Fatalf("member %d committed %d entries, want %d", id, len(got), n)
		}
		for i, d := range got {
			if d != strconv.Itoa(i) {
				t.Fatalf("member %d committed %q at %d, want %d", id, d, i, i)
			}
		}
	}
	if got := appends.Load(); got > n/10 {
		t.Fatalf("follower got %d appends for %d proposals, want at most %d", got, n, n/10)
	}
	t.Logf("follower got %d appends for %d proposals", appends.Load(), n)
}
