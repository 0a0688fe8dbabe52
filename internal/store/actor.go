package store

import (
	"errors"
	"io"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
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
	// raftStartedMsg tells the actor that Start has assigned c.raft.
	raftStartedMsg struct{}
	// confChangeMsg asks the actor to propose a membership change and call
	// reply once it is applied (or rejected).
	confChangeMsg struct {
		id    uint64
		cc    *raftpb.ConfChange
		reply func(result)
	}
	// restoreMsg replaces the state with a snapshot read from r.
	restoreMsg struct {
		r     io.Reader
		reply chan<- error
	}
)

// storeActor owns the write side of the MVCC state and the table of
// requests waiting for their entries to be applied.
type storeActor struct {
	c  *Client
	lg *zap.Logger

	waiters       map[uint64]func(result)
	auth          *auth.Applier
	events        []*mvccpb.Event // of the entries staged since the last commit
	leaseOps      [][2]int64      // lease grants and revokes staged since the last commit
	lastSnap      uint64
	checkpointing bool
	// raftStarted is set by raftStartedMsg, once c.raft is assigned: the
	// raft node replays committed entries through the actor while it
	// starts, and a checkpoint finished before then leaves its log
	// compaction in compactTo.
	raftStarted bool
	compactTo   uint64
	// alarms is the active alarm list as staged, alarmsStaged whether it
	// changed since it was last published (see alarm.go).
	alarms       []*pb.AlarmMember
	alarmsStaged bool
	// versions is the cluster version and downgrade state as staged,
	// versionsStaged whether it changed since it was last published (see
	// downgrade.go).
	versions       versionState
	versionsStaged bool
	// decoded is the entry being applied, reused from one entry to the
	// next: decoding resets it, and nothing applied keeps a reference to
	// the wrapper itself (the requests it carries are decoded afresh).
	decoded pb.InternalRaftRequest
}

func (a *storeActor) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case proposeMsg:
		a.propose(m)
	case confChangeMsg:
		a.waiters[m.id] = m.reply
		a.c.raft.ProposeConfChange(m.cc, func(err error) {
			a.c.ref.Send(rejectMsg{id: m.id, err: mapRaftErr(err)})
		})
	case applyMsg:
		a.apply(m.ents)
	case rejectMsg:
		a.reject(m.id, m.err)
	case forgetMsg:
		delete(a.waiters, m.id)
	case checkpointDone:
		a.checkpointed(m)
	case raftStartedMsg:
		a.raftStarted = true
		if a.compactTo > 0 {
			a.c.raft.Compact(a.compactTo)
		}
	case restoreMsg:
		m.reply <- a.restore(m.r)
	case *actor.Stopped:
		a.failAll()
	}
}

func (a *storeActor) propose(m proposeMsg) {
	a.waiters[m.id] = m.reply
	a.c.raft.Propose(m.data, func(err error) {
		a.c.proposalsFailed.Add(1)
		a.c.ref.Send(rejectMsg{id: m.id, err: mapRaftErr(err)})
	})
}

// restore replaces the state with a leader's snapshot, between two
// batches of applied entries. The result is made durable before restore
// returns, because raft records the snapshot in its log next and drops the
// entries behind it: a crash must not find the log past the state. Raft
// then hands over the entries after its snapshot index; apply skips those
// the restored state already holds.
func (a *storeActor) restore(r io.Reader) error {
	kv := a.c.kv
	if err := kv.Restore(r); err != nil {
		return err
	}
	if err := a.c.auth.Load(a.c.cfg.Engine); err != nil {
		// The engine holds the snapshot already: serving the old auth
		// state over it would enforce permissions the cluster revoked.
		a.lg.Fatal("failed to load the auth state of a restored snapshot", zap.Error(err))
	}
	if err := a.c.cfg.Engine.Checkpoint(); err != nil {
		// The restored state is served already and raft will not send it
		// again: going on without it being durable risks losing it.
		a.lg.Fatal("failed to persist a restored snapshot", zap.Error(err))
	}
	applied := kv.AppliedIndex()
	a.lastSnap = applied
	a.c.refreshLearner()
	a.loadAlarms()
	a.loadVersions()
	a.c.applied.advance(applied)
	a.c.refreshSize()
	a.lg.Info("restored a snapshot", zap.Uint64("applied-index", applied), zap.Int64("revision", kv.Rev()))
	if f := a.c.cfg.Restored; f != nil {
		f()
	}
	return nil
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
//
// The entries are staged in one MVCC Applier and committed to the engine
// once, and only then are their waiters answered and the applied index
// advanced: no client learns of an entry that a read could not yet see. A
// compaction cannot join a batch (see mvcc.Applier), so it commits the
// entries before it and starts a new batch after it.
func (a *storeActor) apply(ents []*raftpb.Entry) {
	kv := a.c.kv
	ap := kv.BeginApply()
	var (
		replies     []pendingReply
		confChanges []*raftpb.ConfChange
	)
	last := uint64(0)
	for _, e := range ents {
		index := e.GetIndex()
		last = index
		if index <= kv.AppliedIndex() {
			continue
		}
		if e.GetType() == raftpb.EntryConfChange {
			cc := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), cc); err != nil {
				a.lg.Fatal("corrupt conf change entry", zap.Uint64("index", index), zap.Error(err))
			}
			res := a.applyConfChange(ap, index, cc)
			confChanges = append(confChanges, cc)
			if w, ok := a.waiters[cc.GetId()]; ok && cc.GetId() != 0 {
				delete(a.waiters, cc.GetId())
				replies = append(replies, pendingReply{reply: w, res: res})
			}
			continue
		}
		if e.GetType() != raftpb.EntryNormal || len(e.GetData()) == 0 {
			// Leader no-ops carry no change.
			ap.SetApplied(index)
			continue
		}
		r := &a.decoded
		if err := proto.Unmarshal(e.GetData(), r); err != nil {
			a.lg.Fatal("corrupt raft entry", zap.Uint64("index", index), zap.Error(err))
		}
		var res result
		start := time.Now()
		if r.Compaction != nil && a.alarmRefusal(r) == nil {
			replies = a.commit(ap, replies)
			start = time.Now()
			res = a.compact(index, r.Compaction)
			ap = kv.BeginApply()
		} else {
			res = a.stage(ap, index, r)
		}
		a.observeApply(r, res, start)
		if r.Header != nil {
			if w, ok := a.waiters[r.Header.ID]; ok {
				delete(a.waiters, r.Header.ID)
				replies = append(replies, pendingReply{reply: w, res: res})
			}
		}
	}
	a.commit(ap, replies)
	if f := a.c.cfg.MembersChanged; f != nil {
		for _, cc := range confChanges {
			f(cc)
		}
	}
	if last > 0 {
		a.c.applied.advance(last)
		a.maybeCheckpoint(last)
	}
}

// pendingReply is a waiter's answer, held back until its entry commits.
type pendingReply struct {
	reply func(result)
	res   result
}

// commit commits the staged entries, publishes their events to watchers,
// then answers their waiters. It
// returns replies emptied for reuse. An engine failure is fatal: the state
// machine cannot go on without the entries, nor skip them.
func (a *storeActor) commit(ap *mvcc.Applier, replies []pendingReply) []pendingReply {
	if err := ap.Commit(); err != nil {
		a.lg.Fatal("failed to apply committed entries", zap.Uint64("applied-index", a.c.kv.AppliedIndex()), zap.Error(err))
	}
	a.auth.Publish()
	a.publishAlarms()
	a.publishVersions()
	if len(a.events) > 0 && a.c.cfg.Publish != nil {
		a.c.cfg.Publish(a.events)
	}
	a.events = nil
	if f := a.c.cfg.LeaseApplied; f != nil {
		for _, op := range a.leaseOps {
			f(op[0], op[1])
		}
	}
	a.leaseOps = a.leaseOps[:0]
	for i, p := range replies {
		p.reply(p.res)
		replies[i] = pendingReply{}
	}
	return replies[:0]
}

// stage stages one request. An engine failure is not answered here: it
// poisons the Applier, and commit reports it.
func (a *storeActor) stage(ap *mvcc.Applier, index uint64, r *pb.InternalRaftRequest) result {
	var (
		res result
		evs []*mvccpb.Event
	)
	defer func() { a.events = append(a.events, evs...) }()
	if auth.IsRequest(r) {
		return a.stageAuth(ap, index, r)
	}
	if r.Alarm != nil {
		return a.stageAlarm(ap, index, r.Alarm)
	}
	if err := a.alarmRefusal(r); err != nil {
		ap.SetApplied(index)
		return result{err: err}
	}
	if err := a.authorize(r); err != nil {
		ap.SetApplied(index)
		return result{err: err}
	}
	overQuota := a.overQuotaAtApply(r)
	switch {
	case r.Put != nil:
		res.resp, evs, res.err = ap.Put(index, r.Put)
	case r.DeleteRange != nil:
		res.resp, evs, res.err = ap.DeleteRange(index, r.DeleteRange)
	case r.Txn != nil:
		// A txn nobody here waits for has no range results to compute,
		// as in etcd 3.7.
		if _, waited := a.waiters[r.GetHeader().GetID()]; waited {
			res.resp, evs, res.err = ap.Txn(index, r.Txn)
		} else {
			res.resp, evs, res.err = ap.TxnWithoutRanges(index, r.Txn)
		}
	case r.LeaseGrant != nil:
		g := r.LeaseGrant
		if res.err = ap.LeaseGrant(index, g.ID, g.TTL); res.err == nil {
			res.resp = &pb.LeaseGrantResponse{ID: g.ID, TTL: g.TTL}
			a.leaseOps = append(a.leaseOps, [2]int64{g.ID, g.TTL})
		}
	case r.LeaseRevoke != nil:
		if evs, res.err = ap.LeaseRevoke(index, r.LeaseRevoke.ID); res.err == nil {
			res.resp = &pb.LeaseRevokeResponse{}
			a.leaseOps = append(a.leaseOps, [2]int64{r.LeaseRevoke.ID, 0})
		}
	case r.ClusterMemberAttrSet != nil:
		a.setMemberAttrs(ap, index, r.ClusterMemberAttrSet)
		res.resp = &pb.MemberUpdateResponse{}
	case r.ClusterVersionSet != nil:
		res = a.setClusterVersion(ap, index, r.ClusterVersionSet)
	case r.DowngradeInfoSet != nil:
		res = a.setDowngrade(ap, index, r.DowngradeInfoSet)
	case r.LeaseCheckpoint != nil:
		if res.err = ap.LeaseCheckpoint(index, r.LeaseCheckpoint.Checkpoints); res.err == nil {
			res.resp = &pb.LeaseCheckpointResponse{}
		}
	default:
		// A request kind this version does not know: record it as applied
		// so the log can move on, and fail the caller.
		a.lg.Warn("unknown request in raft entry", zap.Uint64("index", index))
		ap.SetApplied(index)
		res.err = errUnknownRequest
	}
	if res.err == nil {
		a.c.grown.Add(quotaCost(r))
	}
	if overQuota && res.err == nil {
		res = result{err: ErrNoSpace}
		a.c.raiseNoSpace()
	}
	return res
}

// compact applies a compaction entry; no Applier may be open.
func (a *storeActor) compact(index uint64, c *pb.CompactionRequest) result {
	kv := a.c.kv
	done, err := kv.Compact(index, c.Revision)
	if err != nil && !errors.Is(err, mvcc.ErrCompacted) && !errors.Is(err, mvcc.ErrFutureRev) {
		a.lg.Fatal("failed to apply compaction", zap.Uint64("index", index), zap.Error(err))
	}
	a.c.refreshSizeAfter(done)
	return result{resp: compactResult{rev: kv.Rev(), done: done}, err: err}
}

// maybeCheckpoint makes the engine durable up to index in the background
// once SnapshotCount entries have been applied since the last time; raft
// may then drop the log behind it. Entries raft hands over again after a
// restart end at or below the last checkpoint, and count for nothing.
func (a *storeActor) maybeCheckpoint(index uint64) {
	if a.checkpointing || a.c.cfg.SnapshotCount == 0 || index <= a.lastSnap || index-a.lastSnap < a.c.cfg.SnapshotCount {
		return
	}
	a.checkpointing = true
	engine, ref := a.c.cfg.Engine, a.c.ref
	a.c.checkpoints.Add(1)
	go func() {
		defer a.c.checkpoints.Done()
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
	if a.raftStarted {
		a.c.raft.Compact(m.index)
	} else {
		a.compactTo = m.index
	}
	a.lg.Info("saved snapshot", zap.Uint64("snapshot-index", m.index))
}
