package server

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/internal/transport"
)

func mustURLs(t *testing.T, s ...string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, x := range s {
		u, err := url.Parse(x)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

// TestInitialMembersHaveEtcdsIDs: the member and cluster IDs of a
// three-member --initial-cluster are etcd's. The expected values are what
// etcd 3.7.3 itself reported (etcdctl member list and endpoint status)
// for a cluster started with these names, peer URLs and token.
func TestInitialMembersHaveEtcdsIDs(t *testing.T) {
	cfg := &config.Config{
		Name:                     "b",
		InitialAdvertisePeerURLs: mustURLs(t, "http://127.0.0.1:22380"),
		InitialClusterToken:      "tok",
		InitialCluster: map[string][]url.URL{
			"a": mustURLs(t, "http://127.0.0.1:12380"),
			"b": mustURLs(t, "http://127.0.0.1:22380"),
			"c": mustURLs(t, "http://127.0.0.1:32380"),
		},
	}
	members, err := initialMembers(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"a": 0xd622127685879b3c, "b": 0x117b9266988c4966, "c": 0xca7a34e16cff9c1b}
	var ids []uint64
	for _, m := range members {
		if m.ID != want[m.Name] {
			t.Errorf("member %s: ID %x, want etcd's %x", m.Name, m.ID, want[m.Name])
		}
		ids = append(ids, m.ID)
	}
	if got := clusterIDOf(ids); got != 0xf7d1d29ba4cd2368 {
		t.Errorf("cluster ID %x, want etcd's f7d1d29ba4cd2368", got)
	}
}

// TestInitialMembersRefusesMisconfiguration: a name missing from
// --initial-cluster, or advertised peer URLs that differ from the ones
// --initial-cluster gives it, stop the member instead of forming a
// cluster of one.
func TestInitialMembersRefusesMisconfiguration(t *testing.T) {
	base := func() *config.Config {
		return &config.Config{
			Name:                     "a",
			InitialAdvertisePeerURLs: mustURLs(t, "http://127.0.0.1:12380"),
			InitialCluster: map[string][]url.URL{
				"a": mustURLs(t, "http://127.0.0.1:12380"),
				"b": mustURLs(t, "http://127.0.0.1:22380"),
			},
		}
	}
	c := base()
	c.Name = "z"
	if _, err := initialMembers(c); err == nil {
		t.Error("a name missing from --initial-cluster was accepted")
	}
	c = base()
	c.InitialAdvertisePeerURLs = mustURLs(t, "http://127.0.0.1:9999")
	if _, err := initialMembers(c); err == nil {
		t.Error("advertised peer URLs that differ from --initial-cluster were accepted")
	}
	c = base()
	c.InitialCluster["b"] = mustURLs(t, "http://127.0.0.1:12380")
	if _, err := initialMembers(c); err == nil {
		t.Error("two members with the same peer URLs were accepted")
	}
}

// TestRemovedMemberConnectionIsClosed: the connection a follower keeps to
// its leader for forwarded requests is closed when that member is removed
// from the cluster, and the removed member is not dialled again even while
// raft still names it. A member whose peer URL changes is dialled at the
// new one.
func TestRemovedMemberConnectionIsClosed(t *testing.T) {
	var leader atomic.Uint64
	leader.Store(0xa)
	a, b := startFakeLeader(t, int64(7)), startFakeLeader(t, int64(8))
	addrs := map[uint64]string{0xa: a.addr, 0xb: b.addr}
	conns := testConns(t, &leader, addrs)
	tr, err := transport.New(transport.Config{ID: 1, ClusterID: 1, Handler: &peerHandler{lg: zap.NewNop()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Stop)
	s := &Server{lg: zap.NewNop(), selfID: 1, transport: tr, leaderConns: conns, removed: make(chan struct{})}
	f := leaseForwarder{conns: conns, timeout: 300 * time.Millisecond}

	if ttl, err := f.Renew(context.Background(), 5); err != nil || ttl != 7 {
		t.Fatalf("renew on 0xa: %d %v", ttl, err)
	}
	leader.Store(0xb)
	if ttl, err := f.Renew(context.Background(), 5); err != nil || ttl != 8 {
		t.Fatalf("renew on 0xb: %d %v", ttl, err)
	}
	connA := conns.conns[0xa].conn

	s.membersChanged(&raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(0xa)})
	if st := connA.GetState(); st != connectivity.Shutdown {
		t.Errorf("connection to the removed member: %v, want %v", st, connectivity.Shutdown)
	}
	if _, kept := conns.conns[0xa]; kept {
		t.Error("the removed member's connection is still kept")
	}
	if _, kept := conns.conns[0xb]; !kept {
		t.Error("the remaining member's connection was dropped")
	}
	leader.Store(0xa) // raft has not caught up yet
	if _, err := conns.leader(); !errors.Is(err, store.ErrNoLeader) {
		t.Errorf("leader() naming the removed member: %v, want %v", err, store.ErrNoLeader)
	}
	if _, dialled := conns.conns[0xa]; dialled {
		t.Error("the removed member was dialled again")
	}

	// 0xb moves: its connection is replaced.
	leader.Store(0xb)
	connB := conns.conns[0xb].conn
	moved := startFakeLeader(t, int64(9))
	addrs[0xb] = moved.addr
	if ttl, err := f.Renew(context.Background(), 5); err != nil || ttl != 9 {
		t.Fatalf("renew on 0xb at its new peer URL: %d %v", ttl, err)
	}
	if st := connB.GetState(); st != connectivity.Shutdown {
		t.Errorf("connection to the old peer URL: %v, want %v", st, connectivity.Shutdown)
	}
	if got := conns.conns[0xb].target; got != moved.addr {
		t.Errorf("connection to 0xb at %s, want %s", got, moved.addr)
	}
	if n := len(conns.conns); n != 1 {
		t.Errorf("%d connections kept, want 1: %v", n, fmt.Sprint(conns.conns))
	}
}
