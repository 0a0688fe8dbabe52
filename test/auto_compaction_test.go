package test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// TestAutoCompaction: with --auto-compaction-mode periodic and a retention
// of 2s (etcd takes durations that short), the leader samples the revision
// every 200ms and compacts, on its own, to the revision it saw a retention
// ago: old revisions become unreadable within seconds, as after an
// `etcdctl compaction`, while revisions younger than the retention stay.
// The same scenario runs against an embedded etcd configured alike.
func TestAutoCompaction(t *testing.T) {
	t.Run("etcd", func(t *testing.T) {
		cli := startEtcd(t, func(c *embed.Config) {
			c.AutoCompactionMode, c.AutoCompactionRetention = "periodic", "2s"
		})
		autoCompactionScenario(t, cli, func() string { return "" })
	})
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine, "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s")
		autoCompactionScenario(t, m.client(t), m.logs)
		if !strings.Contains(m.logs(), "completed auto periodic compaction") {
			t.Errorf("no \"completed auto periodic compaction\" in the log:\n%s", m.logs())
		}
	})
}

// autoCompactionScenario writes revisions 2 to 6, waits for revision 2 to
// be compacted, then checks that a revision written a second ago is kept.
func autoCompactionScenario(t *testing.T, cli *clientv3.Client, logs func() string) {
	t.Helper()
	first, err := cli.Put(ctx(t), "k", "v")
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cli.Get(ctx(t), "k", clientv3.WithRev(first.Header.Revision))
		if errors.Is(err, rpctypes.ErrCompacted) {
			if !strings.Contains(err.Error(), "etcdserver: mvcc: required revision has been compacted") {
				t.Fatalf("error %q, want etcd's text", err)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %d still readable 10s after the writes:\n%s", first.Header.Revision, logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Revisions younger than the retention are kept: the first of these
	// could only be compacted away once the second, written after it, has
	// been sampled and a retention has passed.
	var revs []int64
	for range 2 {
		resp, err := cli.Put(ctx(t), "k", "v")
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, resp.Header.Revision)
	}
	time.Sleep(time.Second)
	if _, err := cli.Get(ctx(t), "k", clientv3.WithRev(revs[0])); err != nil {
		t.Fatalf("revision %d, written 1s ago, is not readable: %v", revs[0], err)
	}
}
