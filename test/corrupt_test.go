package test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
	"github.com/cairn-kv/cairn/internal/storage/rocksdb"
)

// The corruption checks, as etcd 3.7 runs them: a member whose data was
// changed behind raft's back is found by the leader's periodic check
// (--corrupt-check-time) or its compaction hash check (CompactHashCheck),
// which raise the CORRUPT alarm and so stop every write; with the
// InitialCorruptCheck gate the member refuses to start instead.

// corruptTarget is the key whose stored value the tests change.
const corruptTarget = "corrupt/target"

// writeForCorruption writes the target key and enough others that the
// memory engine checkpoints past it (--snapshot-count 10): what it keeps
// of the target is in its state file, not only in the raft log.
func writeForCorruption(t *testing.T, c *cluster) {
	t.Helper()
	cli := c.members[0].client(t)
	if _, err := cli.Put(ctx(t), corruptTarget, "good value"); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := cli.Put(ctx(t), fmt.Sprintf("corrupt/other/%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
}

// plantCorruption changes, in stopped member m's storage engine, the value
// of the latest revision of corruptTarget, as a disk fault or a bug might,
// leaving the key and the revision as they were.
func plantCorruption(t *testing.T, m *member) {
	t.Helper()
	dir := filepath.Join(m.dataDir, m.engine)
	var e storage.Engine
	var err error
	if m.engine == "memory" {
		e, err = memory.Open(dir)
	} else {
		e, err = rocksdb.Open(dir, rocksdb.Options{Logger: zap.NewNop()})
	}
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	}()
	var revKey []byte
	var kv mvccpb.KeyValue
	err = e.Iterate(storage.KV, nil, nil, false, func(k, v []byte) bool {
		// A put's key is main '_' sub (17 bytes); a tombstone's adds 't'.
		var rec mvccpb.KeyValue
		if len(k) == 17 && proto.Unmarshal(v, &rec) == nil && string(rec.Key) == corruptTarget {
			revKey = bytes.Clone(k)
			proto.Reset(&kv)
			proto.Merge(&kv, &rec)
		}
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if revKey == nil {
		t.Fatalf("no revision of %q in %s's %s engine", corruptTarget, m.name, m.engine)
	}
	kv.Value = []byte("bad value")
	v, err := proto.Marshal(&kv)
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBatch()
	b.Put(storage.KV, revKey, v)
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatal(err)
	}
}

// memberID is m's member ID, as it reports it.
func memberID(t *testing.T, m *member) uint64 {
	t.Helper()
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	return st.Header.MemberId
}

// waitCorruptAlarm waits for the CORRUPT alarm and returns the members
// it is raised for.
func waitCorruptAlarm(t *testing.T, cli *clientv3.Client, within time.Duration) []uint64 {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var ids []uint64
		if list, err := cli.AlarmList(ctx(t)); err == nil {
			for _, a := range list.Alarms {
				if a.Alarm == pb.AlarmType_CORRUPT {
					ids = append(ids, a.MemberID)
				}
			}
		}
		if len(ids) > 0 {
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("no CORRUPT alarm within %v", within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkWritesRefused checks that a write fails as etcd's do under CORRUPT.
func checkWritesRefused(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	_, err := cli.Put(ctx(t), "after", "alarm")
	if err == nil || !strings.Contains(err.Error(), "etcdserver: corrupt cluster") {
		t.Errorf("Put under CORRUPT: %v, want etcdserver: corrupt cluster", err)
	}
}

// TestCorruptionPeriodicAndInitialCheck: a follower with a changed value
// refuses to start with the InitialCorruptCheck gate; started without it,
// the leader's periodic check raises CORRUPT for it, and writes stop. A
// healthy follower restarted with the gate passes its check.
func TestCorruptionPeriodicAndInitialCheck(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3, "--corrupt-check-time", "1s", "--snapshot-count", "10")
		writeForCorruption(t, c)
		fs := c.followers()
		healthy, bad := fs[0], fs[1]
		badID := memberID(t, bad)

		healthy.stop()
		healthy.args = append(slices.Clip(healthy.args), "--feature-gates=InitialCorruptCheck=true")
		healthy.start()
		if !strings.Contains(healthy.logs(), "initial corruption checking passed; no corruption") {
			t.Errorf("healthy member's log has no passed initial check:\n%s", healthy.logs())
		}

		bad.stop()
		plantCorruption(t, bad)
		plain := bad.args
		bad.args = append(slices.Clip(plain), "--feature-gates=InitialCorruptCheck=true")
		err := bad.launch()
		want := fmt.Sprintf("%x found data inconsistency with peers", badID)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "found different hash values from remote peer") {
			t.Fatalf("corrupted member started with InitialCorruptCheck: %v; want it to refuse with %q", err, want)
		}
		bad.cmd = nil

		bad.args = plain
		bad.start()
		cli := c.leader().client(t)
		if got := waitCorruptAlarm(t, cli, 20*time.Second); !slices.Equal(got, []uint64{badID}) {
			t.Errorf("CORRUPT raised for %x, want only the corrupted member %x", got, badID)
		}
		if l := c.leader().logs(); !strings.Contains(l, "same compact revision then hashes must match") {
			t.Errorf("leader's log does not tell the mismatch:\n%s", l)
		}
		checkWritesRefused(t, cli)
		checkWritesRefused(t, bad.client(t))
	})
}

// TestCorruptionCompactHashCheck: with the CompactHashCheck gate, the
// leader compares the hashes a compaction computed on each member and
// raises CORRUPT for the one outside the majority.
func TestCorruptionCompactHashCheck(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3, "--feature-gates=CompactHashCheck=true", "--compact-hash-check-time", "1s", "--snapshot-count", "10")
		writeForCorruption(t, c)
		bad := c.followers()[0]
		badID := memberID(t, bad)
		bad.stop()
		plantCorruption(t, bad)
		bad.start()
		cli := c.leader().client(t)
		resp, err := cli.Put(ctx(t), "corrupt/last", "v")
		if err != nil {
			t.Fatal(err)
		}
		// Each member computes the compaction's hash as it compacts, so
		// the corrupted one must have caught up by then.
		waitRevision(t, bad, resp.Header.Revision)
		if _, err := cli.Compact(ctx(t), resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
		if got := waitCorruptAlarm(t, cli, 20*time.Second); !slices.Equal(got, []uint64{badID}) {
			t.Errorf("CORRUPT raised for %x, want only the corrupted member %x", got, badID)
		}
		if l := c.leader().logs(); !strings.Contains(l, "Detected compaction hash mismatch") {
			t.Errorf("leader's log does not tell the mismatch:\n%s", l)
		}
		checkWritesRefused(t, cli)
	})
}

// waitRevision waits until m has applied revision rev.
func waitRevision(t *testing.T, m *member, rev int64) {
	t.Helper()
	cli := m.client(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := cli.Get(ctx(t), "corrupt/last", clientv3.WithSerializable())
		if err == nil && r.Header.Revision >= rev {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has not reached revision %d: %v", m.name, rev, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCorruptionChecksHealthy: with every check on, a healthy cluster
// raises nothing through mixed traffic and a compaction, and the leader's
// checks report what they compared.
func TestCorruptionChecksHealthy(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3, "--corrupt-check-time", "1s",
			"--feature-gates=CompactHashCheck=true,InitialCorruptCheck=true", "--compact-hash-check-time", "1s")
		cli := c.members[0].client(t)
		lease, err := cli.Grant(ctx(t), 60)
		if err != nil {
			t.Fatal(err)
		}
		var last int64
		for i := range 40 {
			key := fmt.Sprintf("healthy/%d", i%7)
			var err error
			switch i % 4 {
			case 0:
				var r *clientv3.PutResponse
				r, err = cli.Put(ctx(t), key, fmt.Sprint(i))
				if err == nil {
					last = r.Header.Revision
				}
			case 1:
				_, err = cli.Delete(ctx(t), key)
			case 2:
				_, err = cli.Txn(ctx(t)).If(clientv3.Compare(clientv3.Version(key), ">", 0)).
					Then(clientv3.OpPut(key, "txn")).Else(clientv3.OpPut(key+"/else", "txn")).Commit()
			case 3:
				_, err = cli.Put(ctx(t), key+"/leased", "v", clientv3.WithLease(lease.ID))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Compact(ctx(t), last, clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "healthy/after", "v"); err != nil {
			t.Fatal(err)
		}
		l := c.leader()
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(l.logs(), "successfully checked hash on whole cluster") {
			if time.Now().After(deadline) {
				t.Fatalf("the leader's compaction hash check never compared the whole cluster:\n%s", l.logs())
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		if !strings.Contains(l.logs(), `"number-of-peers-checked":2`) {
			t.Errorf("the leader's periodic check never compared both peers:\n%s", l.logs())
		}
		for _, m := range c.members {
			if lg := m.logs(); strings.Contains(lg, "Detected compaction hash mismatch") || strings.Contains(lg, "hashes must match") || strings.Contains(lg, "found hash mismatch") {
				t.Errorf("%s logged a mismatch:\n%s", m.name, lg)
			}
		}
		list, err := cli.AlarmList(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Alarms) > 0 {
			t.Errorf("alarms %v on a healthy cluster", list.Alarms)
		}
		// A restart with the initial check passes.
		f := c.followers()[0]
		f.restart()
		if !strings.Contains(f.logs(), "initial corruption checking passed; no corruption") {
			t.Errorf("restarted member's log has no passed initial check:\n%s", f.logs())
		}
		if _, err := cli.Put(ctx(t), "healthy/end", "v"); err != nil {
			t.Error(err)
		}
	})
}
