package test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestClusterKeepAlivesAcrossLeaderMoves: clientv3's keep-alive loop,
// talking to one member, keeps a lease alive while leadership moves
// round the cluster, each new leader taking over the lease's expiry;
// once the keep-alives stop the lease expires on whichever member leads
// then, with its key, and a lease nobody kept alive has expired too.
func TestClusterKeepAlivesAcrossLeaderMoves(t *testing.T) {
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		const ttl = 3 // seconds; etcd's least for the default election timeout is 2
		c := startCluster(t, engine, 3)
		cli := c.followers()[0].client(t)
		kept, err := cli.Grant(ctx(t), ttl)
		if err != nil {
			t.Fatal(err)
		}
		dropped, err := cli.Grant(ctx(t), ttl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "kept", "v", clientv3.WithLease(kept.ID)); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "dropped", "v", clientv3.WithLease(dropped.ID)); err != nil {
			t.Fatal(err)
		}
		kactx, stopKeepAlive := context.WithCancel(context.Background())
		defer stopKeepAlive()
		kas, err := cli.KeepAlive(kactx, kept.ID)
		if err != nil {
			t.Fatal(err)
		}
		renewals := make(chan int, 1)
		go func() {
			n := 0
			for ka := range kas {
				if ka.TTL != ttl {
					t.Errorf("keep-alive answered TTL %d, want %d", ka.TTL, ttl)
				}
				n++
			}
			renewals <- n
		}()

		// Three moves 1.5 s apart: 4.5 s, longer than the TTL.
		for range 3 {
			time.Sleep(1500 * time.Millisecond)
			leader := c.leader()
			target := c.followers()[0]
			if _, err := leader.client(t).MoveLeader(ctx(t), target.statusID(t)); err != nil {
				t.Fatalf("move leader to %s: %v", target.name, err)
			}
		}
		if r, err := c.leader().client(t).Get(ctx(t), "kept"); err != nil || len(r.Kvs) != 1 {
			t.Fatalf("the kept-alive lease's key after the moves: %v %v", r, err)
		}

		// The lease nobody renews: each new leader gave it its TTL plus an
		// election timeout again, as etcd's does; now that leadership
		// stays put, it expires.
		waitGone(t, cli, "dropped", dropped.ID, 10*time.Second)

		stopKeepAlive()
		if n := <-renewals; n < 3 {
			t.Errorf("%d keep-alive responses over the moves, want at least 3", n)
		}
		if r, err := cli.Get(ctx(t), "kept"); err != nil || len(r.Kvs) != 1 {
			t.Fatalf("the kept-alive lease's key right after the keep-alives stopped: %v %v", r, err)
		}
		waitGone(t, cli, "kept", kept.ID, 10*time.Second)
	})
}

// waitGone waits up to limit for key to be deleted with its lease id, and
// for the lease to answer TimeToLive with TTL -1 (etcd's "not found").
func waitGone(t *testing.T, cli *clientv3.Client, key string, id clientv3.LeaseID, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r, err := cli.Get(ctx(t), key)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there %v after its lease should have expired", key, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ttl, err := cli.TimeToLive(ctx(t), id)
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("TimeToLive of the expired lease behind %s: %+v %v, want TTL -1", key, ttl, err)
	}
}
