package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/store"
)

// startWithQuota starts member 1, a cluster of its own, with a backend
// quota.
func startWithQuota(t *testing.T, open opener, dir string, quota int64) *member {
	t.Helper()
	e, l := open(t, dir)
	kv, err := mvcc.Open(e, mvcc.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sys := actors.NewSystem()
	c, err := store.Start(sys, store.Config{
		Engine: e, KV: kv, ClusterID: 7, MemberID: 1,
		MaxRequestBytes: 1 << 20, MaxTxnOps: 128, QuotaBackendBytes: quota,
		StartRaft: func(commit func([]*raftpb.Entry)) (store.Raft, error) {
			return raftnode.Start(sys, raftnode.Config{ID: 1, Peers: []uint64{1}, Log: l, TickInterval: 10 * time.Millisecond, Commit: commit})
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &member{engine: e, log: l, kv: kv, c: c}
}

func alarm(t *testing.T, c *store.Client, action pb.AlarmRequest_AlarmAction, member uint64, typ pb.AlarmType) []*pb.AlarmMember {
	t.Helper()
	resp, err := c.Alarm(context.Background(), &pb.AlarmRequest{Action: action, MemberID: member, Alarm: typ})
	if err != nil {
		t.Fatalf("alarm %v %x %v: %v", action, member, typ, err)
	}
	return resp.Alarms
}

// alarmList renders alarms as "member:TYPE" words, for comparisons.
func alarmList(as []*pb.AlarmMember) string {
	var w []string
	for _, a := range as {
		w = append(w, fmt.Sprintf("%x:%v", a.MemberID, a.Alarm))
	}
	return strings.Join(w, " ")
}

// growing are the requests an active NOSPACE alarm refuses; shrinking
// those it lets through, as etcd's.
func growing(bg context.Context, c *store.Client) map[string]error {
	put := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("t"), Value: []byte("v")}}}
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("u")}}}
	nested := &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{put}}}}
	out := map[string]error{}
	_, out["put"] = c.Put(bg, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
	_, out["lease grant"] = c.LeaseGrant(bg, &pb.LeaseGrantRequest{TTL: 60})
	// The put is in the branch not taken: etcd refuses it all the same.
	_, out["txn with a put on failure"] = c.Txn(bg, &pb.TxnRequest{Success: []*pb.RequestOp{del}, Failure: []*pb.RequestOp{put}})
	_, out["txn with a nested put"] = c.Txn(bg, &pb.TxnRequest{Success: []*pb.RequestOp{del, nested}})
	return out
}

func shrinking(bg context.Context, c *store.Client) map[string]error {
	del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("t")}}}
	out := map[string]error{}
	_, out["delete"] = c.DeleteRange(bg, &pb.DeleteRangeRequest{Key: []byte("nothing")})
	_, out["range"] = c.Range(bg, &pb.RangeRequest{Key: []byte("k")})
	_, out["txn that deletes"] = c.Txn(bg, &pb.TxnRequest{Success: []*pb.RequestOp{del}})
	_, out["compact"] = c.Compact(bg, &pb.CompactionRequest{Revision: 1})
	return out
}

// TestNoSpaceAlarmOnQuota: a put that would exceed the quota is refused
// and raises this member's NOSPACE alarm; the alarm then refuses whatever
// grows the database even once the size falls, until it is disarmed.
func TestNoSpaceAlarmOnQuota(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		bg := context.Background()
		const quota = 256 << 10
		m := startWithQuota(t, open, t.TempDir(), quota)
		defer m.stop()
		value := bytes.Repeat([]byte("x"), 4<<10)
		var err error
		for i := 0; err == nil; i++ {
			if i > 1000 {
				t.Fatal("no put refused")
			}
			if _, err = m.c.Status(bg); err != nil { // refreshes the size sample
				t.Fatal(err)
			}
			_, err = m.c.Put(bg, &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", i), Value: value})
		}
		if !errors.Is(err, store.ErrNoSpace) {
			t.Fatalf("put over the quota: %v, want ErrNoSpace", err)
		}
		if got := alarmList(m.c.Alarms()); got != "1:NOSPACE" {
			t.Fatalf("alarms once refused: %q, want 1:NOSPACE", got)
		}
		if got := alarmList(alarm(t, m.c, pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)); got != "1:NOSPACE" {
			t.Fatalf("alarm GET: %q", got)
		}
		st, err := m.c.Status(bg)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Errors) != 1 || !strings.Contains(st.Errors[0], "alarm:") || !strings.Contains(st.Errors[0], "NOSPACE") {
			t.Fatalf("status errors %q", st.Errors)
		}
		for what, err := range growing(bg, m.c) {
			if !errors.Is(err, store.ErrNoSpace) {
				t.Errorf("%s with NOSPACE active: %v, want ErrNoSpace", what, err)
			}
		}
		// Free the space: delete everything, compact, defragment.
		if _, err := m.c.DeleteRange(bg, &pb.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}); err != nil {
			t.Fatal(err)
		}
		if _, err := m.c.Compact(bg, &pb.CompactionRequest{Revision: m.kv.Rev(), Physical: true}); err != nil {
			t.Fatal(err)
		}
		if err := m.c.Defragment(bg); err != nil {
			t.Fatal(err)
		}
		st, _ = m.c.Status(bg)
		t.Logf("size %d after compaction and defragmentation (quota %d)", st.DbSize, quota)
		if st.DbSize < quota/2 {
			// The size fell (the memory engine's always does): writes stay
			// refused all the same.
			if _, err := m.c.Put(bg, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}); !errors.Is(err, store.ErrNoSpace) {
				t.Fatalf("put under the quota with NOSPACE active: %v, want ErrNoSpace", err)
			}
		}
		if got := alarmList(alarm(t, m.c, pb.AlarmRequest_DEACTIVATE, 1, pb.AlarmType_NOSPACE)); got != "1:NOSPACE" {
			t.Fatalf("DEACTIVATE answers %q", got)
		}
		if len(m.c.Alarms()) != 0 {
			t.Fatalf("alarms after the disarm: %v", m.c.Alarms())
		}
		_, err = m.c.Put(bg, &pb.PutRequest{Key: []byte("k"), Value: []byte("v")})
		switch {
		case st.DbSize < quota/2 && err != nil:
			t.Fatalf("put after the disarm: %v", err)
		case err != nil && !errors.Is(err, store.ErrNoSpace):
			t.Fatalf("put after the disarm, still over the quota: %v", err)
		}
	})
}

// TestNoSpaceAlarmWhateverTheSize: an active NOSPACE alarm, even one a
// client raised for another member, refuses puts, txns with puts and
// lease grants on a member with no quota at all, and lets deletes, reads,
// txns without puts and compactions through; DEACTIVATE lifts it.
func TestNoSpaceAlarmWhateverTheSize(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		bg := context.Background()
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		put(t, m.c, "k", "v")
		if got := alarmList(alarm(t, m.c, pb.AlarmRequest_ACTIVATE, 9, pb.AlarmType_NOSPACE)); got != "9:NOSPACE" {
			t.Fatalf("ACTIVATE answers %q", got)
		}
		for what, err := range growing(bg, m.c) {
			if !errors.Is(err, store.ErrNoSpace) {
				t.Errorf("%s with NOSPACE active: %v, want ErrNoSpace", what, err)
			}
		}
		for what, err := range shrinking(bg, m.c) {
			if err != nil {
				t.Errorf("%s with NOSPACE active: %v", what, err)
			}
		}
		alarm(t, m.c, pb.AlarmRequest_DEACTIVATE, 9, pb.AlarmType_NOSPACE)
		for what, err := range growing(bg, m.c) {
			if err != nil {
				t.Errorf("%s after the disarm: %v", what, err)
			}
		}
	})
}

// TestAlarmRequests: etcd's answers to each action, filters and edge
// cases.
func TestAlarmRequests(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		for _, tc := range []struct {
			action pb.AlarmRequest_AlarmAction
			member uint64
			typ    pb.AlarmType
			want   string
		}{
			{pb.AlarmRequest_GET, 0, pb.AlarmType_NONE, ""},
			{pb.AlarmRequest_ACTIVATE, 5, pb.AlarmType_NONE, ""}, // raises nothing
			{pb.AlarmRequest_ACTIVATE, 5, pb.AlarmType_CORRUPT, "5:CORRUPT"},
			{pb.AlarmRequest_ACTIVATE, 5, pb.AlarmType_CORRUPT, "5:CORRUPT"}, // already active
			{pb.AlarmRequest_ACTIVATE, 3, pb.AlarmType_NOSPACE, "3:NOSPACE"},
			{pb.AlarmRequest_ACTIVATE, 5, pb.AlarmType_NOSPACE, "5:NOSPACE"},
			{pb.AlarmRequest_GET, 0, pb.AlarmType_NONE, "3:NOSPACE 5:NOSPACE 5:CORRUPT"},
			{pb.AlarmRequest_GET, 0, pb.AlarmType_NOSPACE, "3:NOSPACE 5:NOSPACE"},
			{pb.AlarmRequest_GET, 3, pb.AlarmType_CORRUPT, "5:CORRUPT"}, // the member is not a filter
			{pb.AlarmRequest_DEACTIVATE, 3, pb.AlarmType_CORRUPT, ""},   // not active
			{pb.AlarmRequest_DEACTIVATE, 5, pb.AlarmType_NONE, ""},
			{pb.AlarmRequest_DEACTIVATE, 5, pb.AlarmType_CORRUPT, "5:CORRUPT"},
			{pb.AlarmRequest_DEACTIVATE, 5, pb.AlarmType_CORRUPT, ""},
			{pb.AlarmRequest_GET, 0, pb.AlarmType_NONE, "3:NOSPACE 5:NOSPACE"},
		} {
			if got := alarmList(alarm(t, m.c, tc.action, tc.member, tc.typ)); got != tc.want {
				t.Errorf("%v member %x %v: %q, want %q", tc.action, tc.member, tc.typ, got, tc.want)
			}
		}
		if got := alarmList(m.c.Alarms()); got != "3:NOSPACE 5:NOSPACE" {
			t.Errorf("Alarms: %q", got)
		}
	})
}

// TestCorruptAlarm: while CORRUPT is active, writes, compactions and
// lease changes fail with ErrCorrupt; reads are served.
func TestCorruptAlarm(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		bg := context.Background()
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		put(t, m.c, "k", "v")
		l, err := m.c.LeaseGrant(bg, &pb.LeaseGrantRequest{TTL: 60})
		if err != nil {
			t.Fatal(err)
		}
		alarm(t, m.c, pb.AlarmRequest_ACTIVATE, 1, pb.AlarmType_CORRUPT)
		del := &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}}}
		refused := map[string]error{}
		_, refused["put"] = m.c.Put(bg, &pb.PutRequest{Key: []byte("k")})
		_, refused["delete"] = m.c.DeleteRange(bg, &pb.DeleteRangeRequest{Key: []byte("k")})
		_, refused["txn"] = m.c.Txn(bg, &pb.TxnRequest{Success: []*pb.RequestOp{del}})
		_, refused["compact"] = m.c.Compact(bg, &pb.CompactionRequest{Revision: 1})
		_, refused["lease grant"] = m.c.LeaseGrant(bg, &pb.LeaseGrantRequest{TTL: 60})
		_, refused["lease revoke"] = m.c.LeaseRevoke(bg, &pb.LeaseRevokeRequest{ID: l.ID})
		for what, err := range refused {
			if !errors.Is(err, store.ErrCorrupt) {
				t.Errorf("%s with CORRUPT active: %v, want ErrCorrupt", what, err)
			}
		}
		if r := get(t, m.c, "k", false); len(r.Kvs) != 1 {
			t.Errorf("range with CORRUPT active: %v", r)
		}
		get := &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k")}}}
		if _, err := m.c.Txn(bg, &pb.TxnRequest{Success: []*pb.RequestOp{get}}); err != nil {
			t.Errorf("read-only txn with CORRUPT active: %v", err)
		}
		alarm(t, m.c, pb.AlarmRequest_DEACTIVATE, 1, pb.AlarmType_CORRUPT)
		put(t, m.c, "k", "after")
	})
}

// TestAlarmsSurviveRestart: the alarms are read back from the engine and
// the replayed log, and still enforced.
func TestAlarmsSurviveRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		bg := context.Background()
		dir := t.TempDir()
		// A snapshot count of 1 checkpoints the engine after every batch,
		// so that both the engine and the log's replay are exercised.
		for _, snapshotCount := range []uint64{0, 1} {
			m := start(t, open, dir, snapshotCount)
			alarm(t, m.c, pb.AlarmRequest_ACTIVATE, 1, pb.AlarmType_NOSPACE)
			m.stop()
			m = start(t, open, dir, snapshotCount)
			if err := m.c.WaitReady(bg); err != nil {
				t.Fatal(err)
			}
			if got := alarmList(m.c.Alarms()); got != "1:NOSPACE" {
				t.Errorf("snapshot count %d: alarms after a restart: %q", snapshotCount, got)
			}
			if _, err := m.c.Put(bg, &pb.PutRequest{Key: []byte("k")}); !errors.Is(err, store.ErrNoSpace) {
				t.Errorf("snapshot count %d: put after a restart: %v, want ErrNoSpace", snapshotCount, err)
			}
			alarm(t, m.c, pb.AlarmRequest_DEACTIVATE, 1, pb.AlarmType_NOSPACE)
			m.stop()
		}
	})
}

// TestRestoreCarriesAlarms: a member that restores another's snapshot
// takes its alarms, and drops those the snapshot does not hold.
func TestRestoreCarriesAlarms(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		bg := context.Background()
		src := start(t, open, t.TempDir(), 0)
		alarm(t, src.c, pb.AlarmRequest_ACTIVATE, 1, pb.AlarmType_NOSPACE)
		alarm(t, src.c, pb.AlarmRequest_ACTIVATE, 4, pb.AlarmType_CORRUPT)
		var snap bytes.Buffer
		if err := src.engine.WriteSnapshot(&snap); err != nil {
			t.Fatal(err)
		}
		if got := alarmList(store.AlarmsOf(src.engine)); got != "1:NOSPACE 4:CORRUPT" {
			t.Errorf("AlarmsOf: %q", got)
		}
		srcApplied := src.kv.AppliedIndex()
		src.stop()

		restored := make(chan struct{}, 1)
		dst := startAs(t, 2, open, t.TempDir(), 0, func() { restored <- struct{}{} })
		defer dst.stop()
		alarm(t, dst.c, pb.AlarmRequest_ACTIVATE, 2, pb.AlarmType_NOSPACE)
		for dst.kv.AppliedIndex() <= srcApplied+2 {
			alarm(t, dst.c, pb.AlarmRequest_GET, 0, pb.AlarmType_NONE)
		}
		if err := dst.c.Restore(bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatal(err)
		}
		<-restored
		if got := alarmList(dst.c.Alarms()); got != "1:NOSPACE 4:CORRUPT" {
			t.Errorf("alarms after the restore: %q", got)
		}
		if _, err := dst.c.DeleteRange(bg, &pb.DeleteRangeRequest{Key: []byte("k")}); !errors.Is(err, store.ErrCorrupt) {
			t.Errorf("delete after restoring a CORRUPT alarm: %v", err)
		}
		st, err := dst.c.Status(bg)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Errors) != 2 || !slices.ContainsFunc(st.Errors, func(s string) bool { return strings.Contains(s, "CORRUPT") }) {
			t.Errorf("status errors after the restore: %q", st.Errors)
		}
	})
}
