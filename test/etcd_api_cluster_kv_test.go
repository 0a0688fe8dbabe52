package test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestClusterWriteAnywhereReadEverywhere: a write through any member is
// read, linearizably, through every other; a watcher on a follower sees
// writes made through another member; every member reports the same
// membership and leader.
func TestClusterWriteAnywhereReadEverywhere(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		f := c.followers()
		watchCli := f[0].client(t)
		wctx, cancel := context.WithCancel(ctx(t))
		defer cancel()
		wch := watchCli.Watch(wctx, "k/", clientv3.WithPrefix())

		for i, m := range c.members {
			key := fmt.Sprintf("k/%d", i)
			if _, err := m.client(t).Put(ctx(t), key, m.name); err != nil {
				t.Fatalf("put through %s: %v", m.name, err)
			}
			for _, other := range c.members {
				resp, err := other.client(t).Get(ctx(t), key)
				if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != m.name {
					t.Fatalf("get %s through %s after a put through %s: %v %v", key, other.name, m.name, resp, err)
				}
			}
		}
		var seen []string
		for len(seen) < len(c.members) {
			select {
			case wr := <-wch:
				for _, ev := range wr.Events {
					seen = append(seen, string(ev.Kv.Key))
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("watcher on follower %s saw %v, want 3 puts", f[0].name, seen)
			}
		}
		if want := []string{"k/0", "k/1", "k/2"}; !reflect.DeepEqual(seen, want) {
			t.Errorf("watcher on a follower saw %v, want %v", seen, want)
		}

		var lists [][]uint64
		leader := c.leader()
		for _, m := range c.members {
			resp, err := m.client(t).MemberList(ctx(t))
			if err != nil {
				t.Fatal(err)
			}
			var ids []uint64
			for _, mm := range resp.Members {
				ids = append(ids, mm.ID)
			}
			lists = append(lists, ids)
			st, err := m.status()
			if err != nil || st.Leader != leader.statusID(t) || st.RaftTerm == 0 {
				t.Errorf("%s status: %+v %v", m.name, st, err)
			}
		}
		if len(lists[0]) != 3 || !reflect.DeepEqual(lists[0], lists[1]) || !reflect.DeepEqual(lists[0], lists[2]) {
			t.Errorf("member lists differ or are not 3: %v", lists)
		}
	})
}

// statusID is the member's own ID, from its status.
func (m *member) statusID(t *testing.T) uint64 {
	t.Helper()
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	return st.Header.MemberId
}

// TestClusterLeaderKillLosesNoAcknowledgedWrite: kill -9 of the leader
// while clients write through every member: a new leader is elected, and
// every write acknowledged before or after is there with its revision.
func TestClusterLeaderKillLosesNoAcknowledgedWrite(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		cli := clientOf(t, c.endpoints())
		var (
			mu    sync.Mutex
			acked = map[string]int64{}
			wg    sync.WaitGroup
			stop  = make(chan struct{})
		)
		for w := 0; w < 4; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("w%d/%d", w, i)
					pctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					resp, err := cli.Put(pctx, key, "v")
					cancel()
					if err == nil {
						mu.Lock()
						acked[key] = resp.Header.Revision
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(time.Second)
		old := c.leader()
		old.kill9()
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()
		newLeader := c.leader()
		if newLeader == old {
			t.Fatal("the killed member is still reported leader")
		}
		c.launch(old)
		mu.Lock()
		defer mu.Unlock()
		if len(acked) < 10 {
			t.Fatalf("only %d writes acknowledged", len(acked))
		}
		for _, m := range c.members {
			mc := m.client(t)
			for key, rev := range acked {
				resp, err := mc.Get(ctx(t), key)
				if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision != rev {
					t.Fatalf("%s: acknowledged %s at revision %d, got %v %v", m.name, key, rev, resp, err)
				}
			}
		}
	})
}

// clientOf is a client over several endpoints, closed at test end.
func clientOf(t *testing.T, eps []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestClusterFollowerCatchesUpBySnapshot: a follower stopped while the
// others write far past the log they keep is sent the leader's state and
// ends with exactly the same keys, revisions and leases.
func TestClusterFollowerCatchesUpBySnapshot(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3, "--snapshot-count", "100", "--snapshot-catchup-entries", "10")
		lagging := c.followers()[0]
		cli := clientOf(t, []string{c.leader().clientEP})
		lease, err := cli.Grant(ctx(t), 600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "leased", "v", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
		lagging.stop()
		for i := 0; i < 400; i++ {
			if _, err := cli.Put(ctx(t), fmt.Sprintf("s/%03d", i%150), fmt.Sprint(i)); err != nil {
				t.Fatal(err)
			}
		}
		c.launch(lagging)
		if !waitFor(20*time.Second, func() bool { return lagging.logContains("restored a snapshot") }) {
			t.Fatalf("%s did not restore a snapshot:\n%s", lagging.name, lagging.logs())
		}
		want := dumpSerializable(t, c.leader())
		if !waitFor(20*time.Second, func() bool { return reflect.DeepEqual(dumpSerializable(t, lagging), want) }) {
			t.Fatalf("%s after catch-up:\n got %v\nwant %v", lagging.name, dumpSerializable(t, lagging), want)
		}
		ttl, err := lagging.client(t).TimeToLive(ctx(t), lease.ID, clientv3.WithAttachedKeys())
		if err != nil || ttl.TTL <= 0 || len(ttl.Keys) != 1 {
			t.Errorf("lease through the caught-up member: %+v %v", ttl, err)
		}
		checkSnapshotSeries(t, c.leader(), lagging)
	})
}

// checkSnapshotSeries: the snapshot from to was counted, timed and is no
// longer in flight on both sides, under etcd's names, types and labels
// (rafthttp's and etcd_server_snapshot_apply_in_progress_total).
func checkSnapshotSeries(t *testing.T, from, to *member) {
	t.Helper()
	fromID, toID := strconv.FormatUint(from.statusID(t), 16), strconv.FormatUint(to.statusID(t), 16)
	sides := []struct {
		m      *member
		label  string
		types  map[string]string
		counts []string
		zero   []string
	}{
		{from, fmt.Sprintf("{To=%q}", toID), map[string]string{
			"etcd_network_snapshot_send_success":         "counter",
			"etcd_network_snapshot_send_inflights_total": "gauge", "etcd_network_snapshot_send_total_duration_seconds": "histogram",
		}, []string{"etcd_network_snapshot_send_success", "etcd_network_snapshot_send_total_duration_seconds_count"},
			[]string{"etcd_network_snapshot_send_inflights_total"}},
		{to, fmt.Sprintf("{From=%q}", fromID), map[string]string{
			"etcd_network_snapshot_receive_success": "counter", "etcd_network_snapshot_receive_inflights_total": "gauge",
			"etcd_network_snapshot_receive_total_duration_seconds": "histogram", "etcd_server_snapshot_apply_in_progress_total": "gauge",
		}, []string{"etcd_network_snapshot_receive_success", "etcd_network_snapshot_receive_total_duration_seconds_count"},
			[]string{"etcd_network_snapshot_receive_inflights_total"}},
	}
	for _, side := range sides {
		url := "http://" + side.m.clientEP + "/metrics"
		page := scrapePage(t, url)
		for n, typ := range side.types {
			if page.types[n] != typ {
				t.Errorf("%s on %s: type %q, want %q", n, side.m.name, page.types[n], typ)
			}
		}
		values := labelledValues(t, url, slices.Concat(side.counts, side.zero)...)
		for _, n := range side.counts {
			if v := values[n+side.label]; v < 1 {
				t.Errorf("%s%s on %s = %v, want at least 1", n, side.label, side.m.name, v)
			}
		}
		for _, n := range side.zero {
			if v, ok := values[n+side.label]; !ok || v != 0 {
				t.Errorf("%s%s on %s = %v (present %v), want 0", n, side.label, side.m.name, v, ok)
			}
		}
	}
	if v := scrapePage(t, "http://"+to.clientEP+"/metrics").values["etcd_server_snapshot_apply_in_progress_total"]; v != 0 {
		t.Errorf("snapshot apply in progress on %s after the restore: %v", to.name, v)
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return cond()
}

func (m *member) logContains(s string) bool {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return strings.Contains(m.log.String(), s)
}

// dumpSerializable is every key of a member, read locally, with its
// revisions, and the member's revision.
func dumpSerializable(t *testing.T, m *member) []string {
	t.Helper()
	resp, err := m.client(t).Get(ctx(t), "\x00", clientv3.WithFromKey(), clientv3.WithSerializable())
	if err != nil {
		t.Fatal(err)
	}
	out := []string{fmt.Sprint("rev ", resp.Header.Revision)}
	for _, kv := range resp.Kvs {
		out = append(out, fmt.Sprintf("%s=%s c%d m%d v%d l%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
	}
	return out
}

// TestClusterLoneMemberServesOnlySerializableReads: with two members of
// three gone, the last one has no leader: writes and linearizable reads
// fail, serializable reads are served, and requests that require a leader
// get etcd's "no leader".
func TestClusterLoneMemberServesOnlySerializableReads(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3, "--election-timeout", "500", "--heartbeat-interval", "50")
		cli := clientOf(t, []string{c.members[0].clientEP})
		if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
		// A watch that asks for a leader ends, as etcd's does, once its
		// member has gone three election timeouts without one.
		wch := cli.Watch(clientv3.WithRequireLeader(ctx(t)), "k")
		c.members[1].kill9()
		c.members[2].kill9()
		short := func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 3*time.Second)
		}
		pctx, cancel := short()
		_, err := cli.Put(pctx, "k", "v2")
		cancel()
		if err == nil {
			t.Error("a lone member of three accepted a write")
		}
		gctx, cancel := short()
		_, err = cli.Get(gctx, "k")
		cancel()
		if err == nil {
			t.Error("a lone member of three served a linearizable read")
		}
		resp, err := cli.Get(ctx(t), "k", clientv3.WithSerializable())
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Errorf("serializable read: %v %v", resp, err)
		}
		// Once it knows it has no leader, a request that requires one is
		// refused with etcd's error, serializable or not.
		if !waitFor(10*time.Second, func() bool {
			_, err := cli.Get(clientv3.WithRequireLeader(ctx(t)), "k", clientv3.WithSerializable())
			return rpctypes.ErrorDesc(err) == rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader)
		}) {
			_, err := cli.Get(clientv3.WithRequireLeader(ctx(t)), "k", clientv3.WithSerializable())
			t.Errorf("require-leader read without a leader: %v, want %v", err, rpctypes.ErrGRPCNoLeader)
		}
		// Its status and /health say why, in etcd's words; a serializable
		// health check passes.
		st, err := cli.Status(ctx(t), c.members[0].clientEP)
		if err != nil || st.Leader != 0 || !slices.Equal(st.Errors, []string{"etcdserver: no leader"}) {
			t.Errorf("status without a leader: %+v %v, want errors [etcdserver: no leader]", st, err)
		}
		for path, want := range map[string]httpAnswer{
			"/health":                   {Status: 503, Body: `{"health":"false","reason":"RAFT NO LEADER"}` + "\n"},
			"/health?serializable=true": {Status: 200, Body: `{"health":"true","reason":""}`},
		} {
			if a := httpAsk(t, "GET", "http://"+c.members[0].clientEP+path); a.Status != want.Status || a.Body != want.Body {
				t.Errorf("%s without a leader: %d %q, want %d %q", path, a.Status, a.Body, want.Status, want.Body)
			}
		}
		select {
		case wr := <-wch:
			if rpctypes.ErrorDesc(wr.Err()) != rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader) {
				t.Errorf("require-leader watch without a leader: %v (%d events), want %v", wr.Err(), len(wr.Events), rpctypes.ErrGRPCNoLeader)
			}
		case <-time.After(10 * time.Second):
			t.Error("a require-leader watch still runs 10s after its member lost the leader")
		}
	})
}

// TestClusterMoveLeader: the leader hands leadership to a follower and
// answers once it leads; a follower asked to move it answers etcd's "not
// leader", and an unknown target is etcd's "bad leader transferee".
func TestClusterMoveLeader(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		// A member whose stream to the new leader is still in its retry
		// backoff after start (a peer that started after it) drops the put
		// it forwards there, as etcd's would: wait for every stream.
		for _, m := range c.members {
			m.waitPeersActive(t, 2)
		}
		leader := c.leader()
		target := c.followers()[0]
		targetID := target.statusID(t)
		if _, err := leader.client(t).MoveLeader(ctx(t), targetID); err != nil {
			t.Fatalf("move leader to %s: %v", target.name, err)
		}
		if st, err := target.status(); err != nil || st.Leader != targetID {
			t.Fatalf("after the move %s reports leader %x (%v), want itself %x", target.name, st.Leader, err, targetID)
		}
		if _, err := leader.client(t).MoveLeader(ctx(t), targetID); rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCNotLeader) {
			t.Errorf("move leader asked of a follower: %v, want %v", err, rpctypes.ErrGRPCNotLeader)
		}
		if _, err := target.client(t).MoveLeader(ctx(t), 0x1234); rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCBadLeaderTransferee) {
			t.Errorf("move leader to an unknown member: %v, want %v", err, rpctypes.ErrGRPCBadLeaderTransferee)
		}
		// A proposal forwarded to the old leader while it hands over can
		// be dropped (in etcd too), so the put waits until every member
		// knows the new leader.
		if l := c.leader(); l != target {
			t.Fatalf("members agree that %s leads, want %s", l.name, target.name)
		}
		if _, err := clientOf(t, c.endpoints()).Put(ctx(t), "after", "move"); err != nil {
			t.Errorf("put after the move: %v", err)
		}
	})
}
