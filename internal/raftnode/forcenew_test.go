package raftnode

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
)

// applyLog collects what a node commits.
type applyLog struct {
	mu   sync.Mutex
	data []string
	ccs  []string
}

func (c *applyLog) commit(ents []*raftpb.Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range ents {
		switch e.GetType() {
		case raftpb.EntryNormal:
			if len(e.GetData()) > 0 {
				c.data = append(c.data, string(e.GetData()))
			}
		case raftpb.EntryConfChange:
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err == nil {
				c.ccs = append(c.ccs, cc.GetType().String())
			}
		}
	}
}

func (c *applyLog) has(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Contains(c.data, s)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("after 10s: %s", what)
}

// TestForceNewClusterLeavesALoneLeader: the log of one member of three,
// rewritten by ForceNewCluster, restarts as a cluster of one that elects
// itself and commits, with the data committed before.
func TestForceNewClusterLeavesALoneLeader(t *testing.T) {
	net := &memNet{nodes: make(map[uint64]*Node)}
	ids := []uint64{1, 2, 3}
	dirs := make(map[uint64]string)
	var nodes []*Node
	var logs []*filelog.Log
	seen := &applyLog{}
	for _, id := range ids {
		dirs[id] = filepath.Join(t.TempDir(), "raft")
		l, err := filelog.Open(dirs[id], nil)
		if err != nil {
			t.Fatal(err)
		}
		commit := func([]*raftpb.Entry) {}
		if id == 1 {
			commit = seen.commit
		}
		n, err := Start(actors.NewSystem(), Config{
			ID: id, Peers: ids, Log: l, TickInterval: 10 * time.Millisecond,
			Transport: memTransport{net: net, from: id}, Commit: commit,
		})
		if err != nil {
			t.Fatal(err)
		}
		net.mu.Lock()
		net.nodes[id] = n
		net.mu.Unlock()
		nodes, logs = append(nodes, n), append(logs, l)
	}
	follower(t, nodes)
	for _, v := range []string{"a", "b", "c"} {
		nodes[0].Propose([]byte(v), func(err error) { t.Errorf("proposal %s rejected: %v", v, err) })
	}
	waitUntil(t, "member 1 committed a, b and c", func() bool { return seen.has("a") && seen.has("b") && seen.has("c") })
	for i, n := range nodes {
		n.Stop()
		logs[i].Close()
	}

	l, err := filelog.Open(dirs[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	removed, err := ForceNewCluster(l, 1, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []uint64{2, 3}) {
		t.Fatalf("removed %v, want [2 3]", removed)
	}
	hs, _, _ := l.InitialState()
	if last, _ := l.LastIndex(); hs.GetCommit() != last {
		t.Fatalf("commit %d, last index %d: the removals must be committed", hs.GetCommit(), last)
	}

	again := &applyLog{}
	n, err := Start(actors.NewSystem(), Config{ID: 1, Log: l, TickInterval: 10 * time.Millisecond, Commit: again.commit})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	waitUntil(t, "the lone member leads", func() bool { return n.Status().Leader == 1 })
	n.Propose([]byte("d"), func(err error) { t.Errorf("proposal d rejected: %v", err) })
	waitUntil(t, "the lone member commits d", func() bool { return again.has("d") })
	for _, v := range []string{"a", "b", "c"} {
		if !again.has(v) {
			t.Errorf("%s, committed before, is not replayed after the rewrite", v)
		}
	}
	again.mu.Lock()
	ccs := again.ccs
	again.mu.Unlock()
	if n := len(ccs); n < 2 || ccs[n-2] != "ConfChangeRemoveNode" || ccs[n-1] != "ConfChangeRemoveNode" {
		t.Errorf("conf changes applied on restart: %v, want the bootstrap ones then two removals", ccs)
	}
}
