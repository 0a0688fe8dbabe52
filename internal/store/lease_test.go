package store_test

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
)

func TestMinLeaseTTL(t *testing.T) {
	for _, c := range []struct {
		heartbeat, election time.Duration
		want                int64
	}{
		{100 * time.Millisecond, time.Second, 2}, // etcd's defaults: 1.5s rounds up
		{100 * time.Millisecond, 2 * time.Second, 3},
		{time.Second, 5 * time.Second, 7},
		{10 * time.Millisecond, 100 * time.Millisecond, 1},
	} {
		if got := store.MinLeaseTTL(c.heartbeat, c.election); got != c.want {
			t.Errorf("MinLeaseTTL(%v, %v) = %d, want %d", c.heartbeat, c.election, got, c.want)
		}
	}
}

// TestLeaseThroughRaft grants and revokes through the log and checks that
// the lease table and the key it holds survive a restart that replays the
// log.
func TestLeaseThroughRaft(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		dir := filepath.Join(t.TempDir(), "m")
		m := start(t, open, dir, 0)
		c := m.c
		ctx := t.Context()
		g, err := c.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 30})
		if err != nil || g.ID <= 0 || g.TTL != 30 {
			t.Fatalf("grant: %v, %v", g, err)
		}
		if _, err := c.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: g.ID, TTL: 5}); !errors.Is(err, mvcc.ErrLeaseExist) {
			t.Fatalf("duplicate grant: %v", err)
		}
		if _, err := c.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 5, TTL: store.MaxLeaseTTL + 1}); !errors.Is(err, store.ErrLeaseTTLTooLarge) {
			t.Fatalf("grant above the maximum: %v", err)
		}
		if _, err := c.Put(ctx, &pb.PutRequest{Key: []byte("k"), Lease: g.ID}); err != nil {
			t.Fatal(err)
		}
		short, err := c.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 9, TTL: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Put(ctx, &pb.PutRequest{Key: []byte("s"), Lease: short.ID}); err != nil {
			t.Fatal(err)
		}
		r, err := c.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: short.ID})
		if err != nil || r.Header.Revision != 4 {
			t.Fatalf("revoke: %v, %v", r, err)
		}
		if _, err := c.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: short.ID}); !errors.Is(err, mvcc.ErrLeaseNotFound) {
			t.Fatalf("second revoke: %v", err)
		}
		m.stop()
		m = start(t, open, dir, 0)
		defer m.stop()
		if err := m.c.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		ttl, keys, ok := m.c.Lease(g.ID, true)
		if !ok || ttl != 30 || len(keys) != 1 || string(keys[0]) != "k" {
			t.Fatalf("after restart: %d %q %v", ttl, keys, ok)
		}
		if _, _, ok := m.c.Lease(short.ID, false); ok {
			t.Fatal("the revoked lease is back after restart")
		}
		if got := get(t, m.c, "s", false); len(got.Kvs) != 0 {
			t.Fatalf("the revoked lease's key is back: %v", got.Kvs)
		}
	})
}
