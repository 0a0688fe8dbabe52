package store

import (
	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// The store actor's messages.
type (
	// proposeMsg asks the actor to propose data and call reply once the
	// entry carrying request id has been applied (or rejected).
	proposeMsg struct {
		id    uint64
		data  []byte
		reply func(result)
	}
	// forgetMsg drops the waiter of a request whose caller gave up.
	forgetMsg struct{ id uint64 }
	// rejectMsg fails a proposal raft refused.
	rejectMsg struct {
		id  uint64
		err error
	}
	// applyMsg carries committed entries from raft, in log order.
	applyMsg struct{ ents []*raftpb.Entry }
	// checkpointDone reports a finished engine checkpoint at index.
	checkpointDone struct {
		index uint64
		err   error
	}
)

// storeActor owns the write side of the MVCC state and the table of
// requests waiting for their entries to be applied.
type storeActor struct {
	c  *Client
	lg *zap.Logger

	waiters       map[uint64]func(result)
	lastSnap      uint64
	checkpointing bool
}

func (a *storeActor) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case proposeMsg:
		a.propose(m)
	case applyMsg:
		a.apply(m.ents)
	case rejectMsg:
		a.reject(m.id, m.err)
	case forgetMsg:
		delete(a.waiters, m.id)
	case checkpointDone:
		a.checkpointed(m)
	case *actor.Stopped:
		a.failAll()
	}
}

func (a *storeActor) propose(m proposeMsg) {
	a.waiters[m.id] = m.reply
	a.c.raft.Propose(m.data, func(err error) {
		a.c.ref.Send(rejectMsg{id: m.id, err: mapRaftErr(err)})
	})
}

func (a *storeActor) reject(id uint64, err error) {
	if w, ok := a.waiters[id]; ok {
		delete(a.waiters, id)
		w(result{err: err})
	}
}

func (a *storeActor) failAll() {
	for id, w := range a.waiters {
		w(result{err: ErrStopped})
		delete(a.waiters, id)
	}
}

// apply applies committed entries in order. Entries at or below the MVCC
// applied index were applied before a restart and are skipped, so replay
// never applies an entry twice.
func (a *storeActor) apply(ents []*raftpb.Entry) {
	kv := a.c.kv
	last := uint64(0)
	for _, e := range ents {
		index := e.GetIndex()
		last = index
		if index <= kv.AppliedIndex() {
			continue
		}
		if e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
			// Leader no-ops and configuration changes carry no KV change.
			if err := kv.SetApplied(index); err != nil {
				a.lg.Fatal("failed to record applied index", zap.Uint64("index", index), zap.Error(err))
			}
			continue
		}
		r := &pb.InternalRaftRequest{}
		if err := proto.Unmarshal(e.GetData(), r); err != nil {
			a.lg.Fatal("corrupt raft entry", zap.Uint64("index", index), zap.Error(err))
		}
		res := a.applyRequest(index, r)
		if r.Header != nil {
			if w, ok := a.waiters[r.Header.ID]; ok {
				delete(a.waiters, r.Header.ID)
				w(res)
			}
		}
	}
	if last > 0 {
		a.c.applied.advance(last)
		a.maybeCheckpoint(last)
	}
}

func (a *storeActor) applyRequest(index uint64, r *pb.InternalRaftRequest) result {
	kv := a.c.kv
	var res result
	switch {
	case r.Put != nil:
		res.resp, _, res.err = kv.Put(index, r.Put)
	case r.DeleteRange != nil:
		res.resp, _, res.err = kv.DeleteRange(index, r.DeleteRange)
	case r.Txn != nil:
		res.resp, _, res.err = kv.Txn(index, r.Txn)
	case r.Compaction != nil:
		done, err := kv.Compact(index, r.Compaction.Revision)
		res.resp, res.err = compactResult{rev: kv.Rev(), done: done}, err
	default:
		// A request kind this version does not know: record it as applied
		// so the log can move on, and fail the caller.
		a.lg.Warn("unknown request in raft entry", zap.Uint64("index", index))
		if err := kv.SetApplied(index); err != nil {
			a.lg.Fatal("failed to record applied index", zap.Uint64("index", index), zap.Error(err))
		}
		res.err = errUnknownRequest
	}
	return res
}

// maybeCheckpoint makes the engine durable up to index in the background
// once SnapshotCount entries have been applied since the last time; raft
// may then drop the log behind it.
func (a *storeActor) maybeCheckpoint(index uint64) {
	if a.checkpointing || a.c.cfg.SnapshotCount == 0 || index-a.lastSnap < a.c.cfg.SnapshotCount {
		return
	}
	a.checkpointing = true
	engine, ref := a.c.cfg.Engine, a.c.ref
	go func() {
		err := engine.Checkpoint()
		ref.Send(checkpointDone{index: index, err: err})
	}()
}

func (a *storeActor) checkpointed(m checkpointDone) {
	a.checkpointing = false
	if m.err != nil {
		a.lg.Warn("engine checkpoint failed; raft log kept", zap.Error(m.err))
		return
	}
	a.lastSnap = m.index
	a.c.raft.Compact(m.index)
	a.lg.Info("saved snapshot", zap.Uint64("snapshot-index", m.index))
}
