package test

// Durability: whatever a member acknowledged survives kill -9, on both
// engines, with its value and revisions, whether the member recovers from
// its raft log alone or from an engine checkpoint (snapshot) plus the log
// tail.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// acked is what the member acknowledged for one key: its value and mod
// revision, or deleted at rev.
type acked struct {
	value   string
	rev     int64
	deleted bool
}

// ledger records acknowledged writes from concurrent writers.
type ledger struct {
	mu     sync.Mutex
	keys   map[string]acked
	maxRev int64
}

func newLedger() *ledger { return &ledger{keys: map[string]acked{}} }

func (l *ledger) record(key string, a acked) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.keys[key] = a
	l.maxRev = max(l.maxRev, a.rev)
}

// writeKeys puts n distinct keys prefix000… with `writers` concurrent
// clients and records each acknowledged put. If stopAfter > 0, the writers
// stop at their first error, and kill is called once stopAfter puts have
// been acknowledged, so that the member dies with writes in flight; the
// keys that were not acknowledged are returned.
func writeKeys(t *testing.T, cli *clientv3.Client, l *ledger, prefix string, n, writers, stopAfter int, kill func()) (unacked []string) {
	t.Helper()
	var (
		wg       sync.WaitGroup
		acks     atomic.Int64
		killOnce sync.Once
		mu       sync.Mutex
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			failed := false
			for i := w; i < n; i += writers {
				key, value := fmt.Sprintf("%s%03d", prefix, i), fmt.Sprintf("value-%s%03d", prefix, i)
				if failed {
					mu.Lock()
					unacked = append(unacked, key)
					mu.Unlock()
					continue
				}
				c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				resp, err := cli.Put(c, key, value)
				cancel()
				if err != nil {
					if stopAfter == 0 {
						t.Errorf("put %s: %v", key, err)
					}
					failed = true
					mu.Lock()
					unacked = append(unacked, key)
					mu.Unlock()
					continue
				}
				l.record(key, acked{value: value, rev: resp.Header.Revision})
				if stopAfter > 0 && acks.Add(1) == int64(stopAfter) {
					killOnce.Do(kill)
				}
			}
		}()
	}
	wg.Wait()
	return unacked
}

// verify checks that the member holds every acknowledged write under
// prefix and nothing acknowledged as deleted, and that its revision is at
// least the highest acknowledged one. It returns the current revision.
func (l *ledger) verify(t *testing.T, cli *clientv3.Client, prefix string, unacked []string) int64 {
	t.Helper()
	resp, err := cli.Get(ctx(t), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*mvccpb.KeyValue{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = kv
	}
	maybe := map[string]bool{}
	for _, k := range unacked {
		maybe[k] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	for k, a := range l.keys {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		kv := got[k]
		switch {
		case a.deleted && kv != nil:
			t.Errorf("%s was deleted at revision %d (acknowledged) but is back: %q at %d", k, a.rev, kv.Value, kv.ModRevision)
		case a.deleted:
		case kv == nil:
			lost++
			if lost <= 10 {
				t.Errorf("acknowledged %s = %q at revision %d is lost", k, a.value, a.rev)
			}
		case string(kv.Value) != a.value || kv.ModRevision != a.rev:
			t.Errorf("acknowledged %s = %q at revision %d, now %q at %d", k, a.value, a.rev, kv.Value, kv.ModRevision)
		}
	}
	if lost > 10 {
		t.Errorf("… %d acknowledged keys lost in all", lost)
	}
	for k, kv := range got {
		if _, ok := l.keys[k]; !ok && !maybe[k] {
			t.Errorf("unexpected key %s = %q at %d", k, kv.Value, kv.ModRevision)
		}
	}
	if resp.Header.Revision < l.maxRev {
		t.Errorf("revision %d after restart, but revision %d was acknowledged", resp.Header.Revision, l.maxRev)
	}
	return resp.Header.Revision
}

// crash kills the member with SIGKILL and starts it again on the same data
// directory, returning a client for the new process.
func crash(t *testing.T, m *member) *clientv3.Client {
	t.Helper()
	if m.cmd != nil {
		m.kill9()
	}
	m.startServing(t)
	return m.client(t)
}

func TestDurabilityKill9(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		cli := m.client(t)
		l := newLedger()

		// Round 1: 300 puts from 6 clients and some deletes, all
		// acknowledged before the kill.
		writeKeys(t, cli, l, "d/", 300, 6, 0, nil)
		for i := 0; i < 300; i += 10 {
			key := fmt.Sprintf("d/%03d", i)
			resp, err := cli.Delete(ctx(t), key)
			if err != nil || resp.Deleted != 1 {
				t.Fatalf("delete %s: %v, deleted %v", key, err, resp)
			}
			l.record(key, acked{rev: resp.Header.Revision, deleted: true})
		}
		if t.Failed() {
			t.FailNow()
		}
		cli = crash(t, m)
		if rev := l.verify(t, cli, "d/", nil); rev != l.maxRev {
			t.Errorf("revision %d after an idle kill, want the last acknowledged %d", rev, l.maxRev)
		}

		// Round 2: killed with writes in flight.
		unacked := writeKeys(t, cli, l, "e/", 300, 6, 150, func() { m.kill9() })
		t.Logf("%d of 300 puts were not acknowledged when the member was killed", len(unacked))
		cli = crash(t, m)
		l.verify(t, cli, "d/", nil)
		rev := l.verify(t, cli, "e/", unacked)

		// The member goes on from where it was: no revision is reused.
		p, err := cli.Put(ctx(t), "after", "restart")
		if err != nil {
			t.Fatal(err)
		}
		if p.Header.Revision != rev+1 {
			t.Errorf("first put after restart got revision %d, want %d", p.Header.Revision, rev+1)
		}
	})
}

func TestDurabilityAfterSnapshot(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine, "--snapshot-count", "50")
		cli := m.client(t)
		l := newLedger()

		// First versions of 100 keys, then 300 more puts overwriting
		// them, so the history spans several snapshots.
		first := map[string]int64{}
		for i := range 100 {
			key := fmt.Sprintf("s/%03d", i%100)
			p, err := cli.Put(ctx(t), key, "first")
			if err != nil {
				t.Fatal(err)
			}
			first[key] = p.Header.Revision
		}
		writeKeys(t, cli, l, "s/", 100, 4, 0, nil)
		writeKeys(t, cli, l, "t/", 200, 4, 0, nil)
		// A compaction must survive too.
		compactAt := first["s/050"]
		if _, err := cli.Compact(ctx(t), compactAt); err != nil {
			t.Fatal(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		// The point of this test: the kill comes after the member has
		// checkpointed its engine and compacted its raft log, so that it
		// recovers from the checkpoint plus the log tail.
		if logs := m.logs(); !strings.Contains(logs, "saved snapshot") || !strings.Contains(logs, "compacted raft log") {
			t.Errorf("after %d writes with --snapshot-count 50 the member has logged no %q and %q; recovery from a snapshot is not tested", l.maxRev, "saved snapshot", "compacted raft log")
		}

		for round := 1; round <= 2; round++ {
			cli = crash(t, m)
			l.verify(t, cli, "s/", nil)
			if rev := l.verify(t, cli, "t/", nil); rev != l.maxRev {
				t.Errorf("round %d: revision %d after an idle kill, want the last acknowledged %d", round, rev, l.maxRev)
			}
			// History at and after the compaction is still there; before
			// it, reads are refused as compacted.
			for _, key := range []string{"s/050", "s/099"} {
				r, err := cli.Get(ctx(t), key, clientv3.WithRev(first[key]))
				if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "first" || r.Kvs[0].ModRevision != first[key] {
					t.Errorf("round %d: %s at revision %d: %v, %v; want \"first\"", round, key, first[key], r, err)
				}
			}
			if _, err := cli.Get(ctx(t), "s/000", clientv3.WithRev(compactAt-1)); !errors.Is(err, rpctypes.ErrCompacted) {
				t.Errorf("round %d: read at revision %d below the compaction at %d: %v, want %v", round, compactAt-1, compactAt, err, rpctypes.ErrCompacted)
			}
			// More writes between the two kills, overwriting t/.
			writeKeys(t, cli, l, "t/", 100, 4, 0, nil)
		}
		cli = crash(t, m)
		l.verify(t, cli, "t/", nil)
	})
}
