package store

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

// fatalLog is what a Fatal of the store actor's logger panics with in the
// fuzz target, instead of exiting the process.
type fatalLog struct{ msg string }

type panicOnFatal struct{}

func (panicOnFatal) OnWrite(ce *zapcore.CheckedEntry, _ []zapcore.Field) {
	panic(fatalLog{ce.Message})
}

// FuzzApplyEntry applies a committed raft entry whose data (and type) are
// arbitrary, between two ordinary puts, through the store actor's apply
// path: decoding into an InternalRaftRequest and dispatch to MVCC. Data
// that does not decode must take the documented way out, a Fatal "corrupt
// raft entry" (the member stops rather than skip an entry); anything else
// must apply without a panic or Fatal, and the state machine must go on:
// the applied index covers the entry, and the next entry applies and is
// readable.
func FuzzApplyEntry(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, typ byte) {
		e, err := memory.Open("")
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		kv, err := mvcc.Open(e, mvcc.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer kv.Close()
		lg := zap.New(zapcore.NewNopCore(), zap.WithFatalHook(panicOnFatal{}))
		as, err := auth.Open(e, auth.Options{})
		if err != nil {
			t.Fatal(err)
		}
		c := &Client{cfg: Config{Engine: e, KV: kv, Logger: lg}, kv: kv, auth: as, applied: &appliedWait{}, applyMetrics: newApplyMetrics()}
		a := &storeActor{c: c, lg: lg, waiters: map[uint64]func(result){}, auth: as.NewApplier()}

		entryType := raftpb.EntryType(int32(typ % 3))
		put := func(index uint64, key string) *raftpb.Entry {
			b, err := proto.Marshal(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(key), Value: []byte("v")}})
			if err != nil {
				t.Fatal(err)
			}
			return &raftpb.Entry{Index: new(index), Term: new(uint64(1)), Type: raftpb.EntryNormal.Enum(), Data: b}
		}
		a.apply([]*raftpb.Entry{put(1, "before")})

		corrupt, want := false, ""
		switch entryType {
		case raftpb.EntryNormal:
			corrupt, want = len(data) > 0 && proto.Unmarshal(data, &pb.InternalRaftRequest{}) != nil, "corrupt raft entry"
		case raftpb.EntryConfChange:
			corrupt, want = proto.Unmarshal(data, &raftpb.ConfChange{}) != nil, "corrupt conf change entry"
		}
		fatal := applyRecovering(a, &raftpb.Entry{Index: new(uint64(2)), Term: new(uint64(1)), Type: entryType.Enum(), Data: data})
		switch {
		case corrupt && fatal == want:
			return
		case corrupt:
			t.Fatalf("undecodable %v data %q: Fatal %q, want Fatal %q", entryType, data, fatal, want)
		case fatal != "":
			var r pb.InternalRaftRequest
			_ = proto.Unmarshal(data, &r)
			t.Fatalf("%v entry %v: Fatal %q", entryType, &r, fatal)
		}
		if got := kv.AppliedIndex(); got != 2 {
			t.Fatalf("applied index %d after entry 2", got)
		}
		// An alarm may refuse the put after it, by design: drop it.
		a.alarms = nil
		a.apply([]*raftpb.Entry{put(3, "after")})
		if got := kv.AppliedIndex(); got != 3 {
			t.Fatalf("applied index %d after entry 3", got)
		}
		resp, err := kv.Range(&pb.RangeRequest{Key: []byte("after")})
		if err != nil || len(resp.GetKvs()) != 1 {
			t.Fatalf("the put after the entry reads as %v, %v", resp, err)
		}
	})
}

// applyRecovering applies ent and returns the message of the Fatal it
// caused, or "". Any other panic is re-raised.
func applyRecovering(a *storeActor, ent *raftpb.Entry) (fatal string) {
	defer func() {
		if v := recover(); v != nil {
			f, ok := v.(fatalLog)
			if !ok {
				panic(fmt.Sprintf("applying %v: %v", ent, v))
			}
			fatal = f.msg
		}
	}()
	a.apply([]*raftpb.Entry{ent})
	return ""
}
