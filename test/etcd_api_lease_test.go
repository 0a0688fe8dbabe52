package test

// Differential tests of etcd's Lease service: one script of grants,
// revokes, keep-alives, lease-bound puts and watches runs on a real etcd
// and on Cairn (both engines), and the transcripts must match. Generated
// lease IDs are normalised, and remaining TTLs are compared as "within a
// second or two of the granted TTL", since they depend on timing.

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseScript runs the scenario on cli and returns its transcript.
func leaseScript(t *testing.T, cli *clientv3.Client) []string {
	t.Helper()
	c := ctx(t)
	le := pb.NewLeaseClient(cli.ActiveConnection())
	kv := pb.NewKVClient(cli.ActiveConnection())
	var out []string
	logf := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	errText := func(err error) string {
		if err == nil {
			return "ok"
		}
		return err.Error()
	}
	base := func() int64 {
		r, err := kv.Range(c, &pb.RangeRequest{Key: b("nokey")})
		if err != nil {
			t.Fatal(err)
		}
		return r.Header.Revision
	}()
	rev := func(h *pb.ResponseHeader) int64 { return h.Revision - base }
	generated := map[int64]string{}
	id := func(v int64) string {
		if s, ok := generated[v]; ok {
			return s
		}
		return fmt.Sprint(v)
	}

	grant := func(reqID, ttl int64) int64 {
		r, err := le.LeaseGrant(c, &pb.LeaseGrantRequest{ID: reqID, TTL: ttl})
		if err != nil {
			logf("grant id=%d ttl=%d: %v", reqID, ttl, errText(err))
			return 0
		}
		if reqID == 0 {
			if r.ID <= 0 {
				t.Fatalf("generated lease ID %d is not positive", r.ID)
			}
			generated[r.ID] = fmt.Sprintf("gen%d", len(generated))
		}
		logf("grant id=%d ttl=%d: id=%s ttl=%d rev=%d err=%q", reqID, ttl, id(r.ID), r.TTL, rev(r.Header), r.Error)
		return r.ID
	}
	put := func(key string, lease int64) {
		r, err := kv.Put(c, &pb.PutRequest{Key: b(key), Value: b("v"), Lease: lease})
		if err != nil {
			logf("put %s lease=%s: %v", key, id(lease), errText(err))
			return
		}
		logf("put %s lease=%s: rev=%d", key, id(lease), rev(r.Header))
	}
	ttl := func(lease int64, keys bool) {
		r, err := le.LeaseTimeToLive(c, &pb.LeaseTimeToLiveRequest{ID: lease, Keys: keys})
		if err != nil {
			logf("timetolive %s: %v", id(lease), errText(err))
			return
		}
		var ks []string
		for _, k := range r.Keys {
			ks = append(ks, string(k))
		}
		sort.Strings(ks)
		fresh := r.TTL <= r.GrantedTTL && r.TTL >= r.GrantedTTL-2
		logf("timetolive %s keys=%v: id=%s fresh=%v ttl<0=%v granted=%d keys=%v rev=%d",
			id(lease), keys, id(r.ID), fresh, r.TTL < 0, r.GrantedTTL, ks, rev(r.Header))
	}
	keepAliveOnce := func(lease int64) {
		s, err := le.LeaseKeepAlive(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&pb.LeaseKeepAliveRequest{ID: lease}); err != nil {
			t.Fatal(err)
		}
		r, err := s.Recv()
		if err != nil {
			logf("keepalive %s: %v", id(lease), errText(err))
			return
		}
		_ = s.CloseSend()
		logf("keepalive %s: id=%s ttl=%d rev=%d", id(lease), id(r.ID), r.TTL, rev(r.Header))
	}
	leases := func() {
		r, err := le.LeaseLeases(c, &pb.LeaseLeasesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, l := range r.Leases {
			ids = append(ids, id(l.ID))
		}
		sort.Strings(ids)
		logf("leases: %v rev=%d", ids, rev(r.Header))
	}
	revoke := func(lease int64) {
		r, err := le.LeaseRevoke(c, &pb.LeaseRevokeRequest{ID: lease})
		if err != nil {
			logf("revoke %s: %v", id(lease), errText(err))
			return
		}
		logf("revoke %s: rev=%d", id(lease), rev(r.Header))
	}
	keys := func() {
		r, err := kv.Range(c, &pb.RangeRequest{Key: b("\x00"), RangeEnd: b("\x00")})
		if err != nil {
			t.Fatal(err)
		}
		var ks []string
		for _, x := range r.Kvs {
			ks = append(ks, fmt.Sprintf("%s@%d/lease=%s", x.Key, x.ModRevision-base, id(x.Lease)))
		}
		logf("keys: %v rev=%d", ks, rev(r.Header))
	}

	grant(100, 60)
	grant(100, 30) // duplicate
	gen := grant(0, 1)
	grant(200, 9000000000)
	grant(201, 9000000001)
	grant(202, -5)
	put("foo", 100)
	put("bar", 100)
	put("baz", 100)
	put("baz", 0) // a put without a lease detaches
	put("qux", gen)
	put("qux", 100) // moves qux from gen to 100
	put("nope", 999)
	ttl(100, true)
	ttl(100, false)
	ttl(gen, true)
	ttl(999, true)
	keepAliveOnce(100)
	keepAliveOnce(999)
	leases()

	wch := cli.Watch(c, "\x00", clientv3.WithRange("\x00"), clientv3.WithRev(base+1))
	revoke(100)
	revoke(100)
	revoke(999)
	revoke(gen)
	revoke(200)
	revoke(201)
	revoke(202)
	keys()
	leases()
	// The DELETEs of the revoke, all at one revision.
	var dels []string
	for len(dels) < 3 {
		select {
		case wr := <-wch:
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					dels = append(dels, fmt.Sprintf("%s@%d", ev.Kv.Key, ev.Kv.ModRevision-base))
				}
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("watcher saw only %v", dels)
		}
	}
	logf("deletes: %v", dels)
	return out
}

func TestEtcdAPILeaseDifferential(t *testing.T) {
	want := leaseScript(t, startEtcd(t))
	forEachEngine(t, func(t *testing.T, engine string) {
		got := leaseScript(t, startMember(t, engine).client(t))
		if g, w := strings.Join(got, "\n"), strings.Join(want, "\n"); g != w {
			t.Errorf("transcripts differ\n--- cairn:\n%s\n--- etcd:\n%s", g, w)
		}
	})
}

// expiryScenario grants a 2 s lease (etcd's minimum with the default raft
// timing), puts bar with it and waits for a watcher to see bar's DELETE.
func expiryScenario(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	c := ctx(t)
	g, err := cli.Grant(c, 2)
	if err != nil {
		t.Fatal(err)
	}
	if g.TTL != 2 {
		t.Fatalf("granted TTL %d, want 2", g.TTL)
	}
	p, err := cli.Put(c, "bar", "v", clientv3.WithLease(g.ID))
	if err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(c, "bar", clientv3.WithRev(p.Header.Revision+1))
	start := time.Now()
	select {
	case wr := <-wch:
		if len(wr.Events) != 1 || wr.Events[0].Type != mvccpb.DELETE {
			t.Fatalf("watch response %v, want one DELETE", wr.Events)
		}
	case <-time.After(8 * time.Second):
		t.Fatal("no DELETE within 8s of a 2s lease")
	}
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("lease expired after %v, before its TTL", d)
	}
	r, err := cli.Get(c, "bar")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 0 {
		t.Fatalf("bar still there: %v", r.Kvs)
	}
	ttl, err := cli.TimeToLive(c, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL != -1 {
		t.Fatalf("TimeToLive of the expired lease: TTL %d, want -1", ttl.TTL)
	}
}

func TestEtcdAPILeaseExpiry(t *testing.T) {
	t.Run("etcd", func(t *testing.T) { expiryScenario(t, startEtcd(t)) })
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Parallel()
		expiryScenario(t, startMember(t, engine).client(t))
	})
}

// TestLeaseRestart checks that leases and their keys survive a restart,
// that each lease gets its full TTL back, and that expiry goes on after it.
func TestLeaseRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Parallel()
		m := startMember(t, engine)
		cli := m.client(t)
		c := ctx(t)
		if _, err := cli.Grant(c, 60); err != nil { // a generated ID
			t.Fatal(err)
		}
		long, err := cli.Lease.Grant(c, 60)
		if err != nil {
			t.Fatal(err)
		}
		short, err := cli.Grant(c, 2)
		if err != nil {
			t.Fatal(err)
		}
		for k, id := range map[string]clientv3.LeaseID{"a": long.ID, "b": long.ID, "s": short.ID} {
			if _, err := cli.Put(c, k, "v", clientv3.WithLease(id)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Put(c, "b", "v"); err != nil { // detached
			t.Fatal(err)
		}
		m.restart()
		cli = m.client(t)
		c = ctx(t)
		ls, err := cli.Leases(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(ls.Leases) != 3 {
			t.Fatalf("after restart %d leases, want 3", len(ls.Leases))
		}
		ttl, err := cli.TimeToLive(c, long.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		if ttl.GrantedTTL != 60 || ttl.TTL < 58 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "a" {
			t.Fatalf("after restart: TTL %d granted %d keys %q, want about 60, 60, [a]", ttl.TTL, ttl.GrantedTTL, ttl.Keys)
		}
		if ka, err := cli.KeepAliveOnce(c, long.ID); err != nil || ka.TTL != 60 {
			t.Fatalf("keep-alive after restart: %v, %v", ka, err)
		}
		deadline := time.Now().Add(8 * time.Second)
		for {
			r, err := cli.Get(c, "s")
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Kvs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the 2s lease's key survived 8s after restart")
			}
			time.Sleep(200 * time.Millisecond)
		}
		r, err := cli.Get(c, "", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) != 2 {
			t.Fatalf("after expiry %d keys, want a and b", len(r.Kvs))
		}
	})
}

// TestLeaseCheckpointRestart: with etcd's LeaseCheckpoint feature gate the
// remaining TTL survives kill -9 (the lease resumes from its last
// checkpoint, not from its whole TTL, and expires by it), and a keep-alive
// clears the checkpoint so the renewed TTL is what survives.
func TestLeaseCheckpointRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		t.Parallel()
		m := startMember(t, engine, "--feature-gates=LeaseCheckpoint=true,LeaseCheckpointPersist=true", "--lease-checkpoint-interval=1s")
		cli := m.client(t)
		c := ctx(t)
		aging, err := cli.Grant(c, 12)
		if err != nil {
			t.Fatal(err)
		}
		renewed, err := cli.Grant(c, 30)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(c, "k", "v", clientv3.WithLease(aging.ID)); err != nil {
			t.Fatal(err)
		}
		// Checkpoints are due every second; on a loaded machine they lag,
		// but several are taken before the kill.
		time.Sleep(5500 * time.Millisecond)
		if ka, err := cli.KeepAliveOnce(c, renewed.ID); err != nil || ka.TTL != 30 {
			t.Fatalf("keep-alive: %v, %v", ka, err)
		}
		m.kill9()
		m.restart()
		cli = m.client(t)
		c = ctx(t)
		ttl, err := cli.TimeToLive(c, aging.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		// As in etcd, the member that becomes leader gives the lease its
		// checkpointed remaining TTL plus one election timeout (1 s): 7-8 s
		// on an idle machine, at most 11 s if only the first checkpoints
		// were taken. Without a checkpoint it would be back at 12 + 1 s.
		if ttl.GrantedTTL != 12 || ttl.TTL > 11 || ttl.TTL < 4 || len(ttl.Keys) != 1 {
			t.Fatalf("after restart: TTL %d of %d, keys %q; want the checkpointed remaining TTL plus 1 s, at most 11 s", ttl.TTL, ttl.GrantedTTL, ttl.Keys)
		}
		if ttl, err := cli.TimeToLive(c, renewed.ID); err != nil || ttl.TTL < 28 {
			t.Fatalf("the renewed lease after restart: %v, %v; want about 30 s left", ttl, err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			r, err := cli.Get(c, "k")
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Kvs) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the checkpointed lease's key outlived its remaining TTL")
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
}
