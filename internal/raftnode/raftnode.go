// Package raftnode is the raft actor: it owns a raft.RawNode and the durable
// raft log, turns proposals into committed entries and answers ReadIndex
// requests for linearizable reads.
//
// Everything that touches the RawNode runs on the actor's goroutine. A Ready
// is processed by a message the actor sends itself, so proposals that queue
// up while the log is being fsynced are appended together by the next Ready:
// one fsync covers every proposal that arrived during the previous one.
package raftnode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/raftlog"
)

// ErrNoLeader is returned when a proposal or read cannot be served because
// the group has no leader.
var ErrNoLeader = errors.New("raftnode: no leader")

// ErrLeaderChanged fails a linearizable read whose ReadIndex round was
// asked of a leader that another has replaced, as etcd's read loop does:
// the old leader will not answer, and the caller may retry.
var ErrLeaderChanged = errors.New("raftnode: leader changed")

// ErrStopped is returned for requests that were pending when the node
// stopped, or that arrive after.
var ErrStopped = errors.New("raftnode: stopped")

// Transport delivers raft messages to other members. Send is called from the
// raft actor's goroutine and must not block on the network; messages it
// cannot deliver are dropped, and raft retries.
type Transport interface {
	Send(msgs []*raftpb.Message)
}

// Config configures a raft node.
type Config struct {
	// ID is this member's raft ID; never zero.
	ID uint64
	// Peers are the voters of a cluster being bootstrapped. They are used
	// only when Log is empty; none means this member joins a running
	// cluster, whose leader sends it the log.
	Peers []uint64
	// PeerContexts, if set, is the context of each peer's bootstrap
	// configuration change (the member's record, for the state machine
	// to learn the initial membership from the log, as etcd's does).
	PeerContexts map[uint64][]byte
	// Log is the durable log; the node owns it from Start until Stop.
	Log raftlog.Log
	// TickInterval is etcd's heartbeat interval (default 100ms).
	TickInterval time.Duration
	// ElectionTicks is the election timeout in ticks (default 10).
	ElectionTicks int
	// NoPreVote turns off raft's pre-vote (etcd's --pre-vote=false), which
	// otherwise keeps a member rejoining after a partition from disrupting
	// the leader.
	NoPreVote bool
	// AdvanceTicks fast-forwards this many ticks at start (etcd's
	// --initial-election-tick-advance), so a fresh member does not wait a
	// whole election timeout before its first election.
	AdvanceTicks int
	// SnapshotCatchUpEntries is how many entries are kept behind a snapshot
	// so slow followers can catch up without one (default 5000).
	SnapshotCatchUpEntries uint64
	// SnapshotCatchUpBytes bounds the entries kept behind a snapshot by the
	// size of their encoding, on top of SnapshotCatchUpEntries (default
	// DefaultSnapshotCatchUpBytes).
	SnapshotCatchUpBytes int
	// Commit receives committed entries in log order, on the raft actor's
	// goroutine. It must hand them off quickly (the store actor applies
	// them). Configuration changes have already been applied to raft when it
	// is called.
	Commit func(ents []*raftpb.Entry)
	// Transport sends messages to peers; nil for a single-member cluster.
	Transport Transport
	// Logger receives raft's and the node's logs.
	Logger *zap.Logger
}

// maxReadiesPerTurn bounds the Readies handled for one ready message.
const maxReadiesPerTurn = 4

// maxWaitingProposals bounds the proposals held while there is no leader;
// beyond it proposals fail with ErrNoLeader at once.
const maxWaitingProposals = 4096

// Proposals that reach the actor between two Readies are stepped into raft
// as one MsgProp. Raft's leader sends every follower an append for each
// MsgProp it steps, and each append is acknowledged, so proposals stepped
// one by one cost a message each way per follower and proposal; batched,
// one per batch. A follower forwards a batch to the leader as one
// message. A batch is stepped once it holds maxBatchProposals proposals or
// maxBatchBytes of data, or at the next Ready.
const (
	maxBatchProposals = 256
	maxBatchBytes     = 256 << 10
)

// Node is the client of the raft actor. Its methods are safe for concurrent
// use.
type Node struct {
	ref *actors.Ref
	id  uint64

	term   atomic.Uint64
	leader atomic.Uint64
	commit atomic.Uint64
	// becameLeader is when this node last became leader, in Unix
	// nanoseconds; zero if it never led.
	becameLeader atomic.Int64
	// leaderChanges counts the leaders this node has seen take office.
	leaderChanges atomic.Uint64
	// readsFailed counts the ReadIndex rounds failed by a change of
	// leader; readsSlow the answers that came after their round was
	// served or failed, and the reads whose deadline passed first.
	readsFailed, readsSlow atomic.Uint64
	// lateHeartbeats counts the heartbeats this node, leading, sent to a
	// follower more than two heartbeat intervals after the previous one.
	lateHeartbeats atomic.Uint64
	// lastTick is when the actor last handled a tick, in Unix
	// nanoseconds; tickInterval is the time between two.
	lastTick     atomic.Int64
	tickInterval time.Duration
	lg           *zap.Logger
	// timeoutLogged is when a read's timeout was last logged (Unix
	// nanoseconds): at most one a second, since a client's deadlines,
	// however short, end reads.
	timeoutLogged atomic.Int64

	stopTick chan struct{}
	// done is closed once the actor has stopped. The actor drops messages
	// still queued when it stops, so a read queued then is never answered.
	done    chan struct{}
	stopped atomic.Bool
}

// Start restores (or bootstraps) the raft node and starts its actor and
// ticker.
func Start(sys *actors.System, cfg Config) (*Node, error) {
	if cfg.ID == 0 {
		return nil, errors.New("raftnode: member ID must not be zero")
	}
	if cfg.TickInterval == 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.ElectionTicks == 0 {
		cfg.ElectionTicks = 10
	}
	if cfg.SnapshotCatchUpEntries == 0 {
		cfg.SnapshotCatchUpEntries = 5000
	}
	if cfg.SnapshotCatchUpBytes == 0 {
		cfg.SnapshotCatchUpBytes = DefaultSnapshotCatchUpBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	rc := &raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             1,
		Storage:                   cfg.Log,
		MaxSizePerMsg:             1 << 20,
		MaxInflightMsgs:           512,
		MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum:               true,
		PreVote:                   !cfg.NoPreVote,
		Logger:                    &zapRaftLogger{cfg.Logger.Sugar()},
	}
	rn, err := raft.NewRawNode(rc)
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	last, err := cfg.Log.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	// A member joining an existing cluster starts with no peers and no
	// log: the leader sends it the configuration with everything else.
	if last == 0 && len(cfg.Peers) > 0 {
		peers := make([]raft.Peer, 0, len(cfg.Peers))
		for _, id := range cfg.Peers {
			peers = append(peers, raft.Peer{ID: id, Context: cfg.PeerContexts[id]})
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("raftnode: bootstrap: %w", err)
		}
	}
	snap, err := cfg.Log.Snapshot()
	if err != nil {
		return nil, fmt.Errorf("raftnode: %w", err)
	}
	a := &raftActor{
		cfg:        cfg,
		rn:         rn,
		lg:         cfg.Logger,
		confState:  snap.GetMetadata().GetConfState(),
		inflight:   make(map[uint64]*readRound),
		heartbeats: make(map[uint64]time.Time),
	}
	n := &Node{id: cfg.ID, tickInterval: cfg.TickInterval, lg: cfg.Logger, stopTick: make(chan struct{}), done: make(chan struct{})}
	n.lastTick.Store(time.Now().UnixNano())
	a.node = n
	n.ref = sys.Spawn("raft", 0, a.receive)
	a.self = n.ref
	for range min(cfg.AdvanceTicks, cfg.ElectionTicks-1) {
		n.ref.Send(tickMsg{})
	}
	go n.tick(cfg.TickInterval)
	n.ref.Send(campaignMsg{})
	return n, nil
}

// ProposeConfChange submits a membership change. Like Propose it does not
// wait: the entry reaches Config.Commit once committed (after raft has
// applied it), and rejected is called only if it is refused.
func (n *Node) ProposeConfChange(cc *raftpb.ConfChange, rejected func(error)) {
	if n.stopped.Load() {
		rejected(ErrStopped)
		return
	}
	n.ref.Send(proposeMsg{cc: cc, rejected: rejected})
}

// TransferLeadership asks raft to hand leadership to member to; it does not
// wait. Only a leader acts on it.
func (n *Node) TransferLeadership(to uint64) { n.ref.Send(transferMsg{to: to}) }

// Progress returns how far member id's log matches the leader's, and the
// leader's last index; ok is false unless this member leads and tracks id.
func (n *Node) Progress(id uint64) (match, last uint64, ok bool) {
	ch := make(chan [3]uint64, 1)
	n.ref.Send(progressMsg{id: id, reply: ch})
	select {
	case r := <-ch:
		return r[0], r[1], r[2] == 1
	case <-n.done:
		return 0, 0, false
	}
}

// Propose submits data to be appended to the log. It does not wait: the
// entry reaches Config.Commit once committed. While there is no leader the
// proposal waits for one. rejected is called (from the raft goroutine) only
// when the proposal is refused: too many are waiting for a leader, raft
// dropped it, or the node stopped.
func (n *Node) Propose(data []byte, rejected func(error)) {
	if n.stopped.Load() {
		rejected(ErrStopped)
		return
	}
	n.ref.Send(proposeMsg{data: data, rejected: rejected})
}

// ReadIndex returns a commit index that is at least as new as every write
// acknowledged before the call: once the state machine has applied it, a
// local read is linearizable.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.stopped.Load() {
		return 0, ErrStopped
	}
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return 0, n.readEnded(err, start)
	}
	ch := make(chan readResult, 1)
	n.ref.Send(readIndexMsg{reply: func(idx uint64, err error) { ch <- readResult{idx, err} }})
	select {
	case r := <-ch:
		return r.index, r.err
	case <-n.done:
		return 0, ErrStopped
	case <-ctx.Done():
		return 0, n.readEnded(ctx.Err(), start)
	}
}

// readEnded returns err, the end of a read's context, counting the read,
// asked at start, as slow if its deadline passed, and logging it as etcd
// does when its request timeout passes first; at most once a second,
// since a client's deadline may be as short as it likes.
func (n *Node) readEnded(err error, start time.Time) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	n.readsSlow.Add(1)
	now := time.Now()
	if last := n.timeoutLogged.Load(); now.UnixNano()-last >= int64(time.Second) && n.timeoutLogged.CompareAndSwap(last, now.UnixNano()) {
		n.lg.Warn("timed out waiting for read index response (local node might have slow network)",
			zap.Duration("timeout", now.Sub(start)))
	}
	return err
}

// ReadIndexStats returns how many ReadIndex rounds failed because the
// leader changed, and how many reads were slow: an answer that came after
// its round was over, or a deadline that passed first. They are etcd's
// etcd_server_read_indexes_failed_total and _slow_read_indexes_total.
func (n *Node) ReadIndexStats() (failed, slow uint64) {
	return n.readsFailed.Load(), n.readsSlow.Load()
}

// LateHeartbeats returns how many heartbeats this node sent, as leader,
// more than two heartbeat intervals after the previous one to the same
// follower: etcd's etcd_server_heartbeat_send_failures_total, the sign of
// a leader overloaded, most often by a slow disk.
func (n *Node) LateHeartbeats() uint64 { return n.lateHeartbeats.Load() }

// Step delivers a message received from a peer by the transport.
func (n *Node) Step(m *raftpb.Message) { n.ref.Send(stepMsg{m: m}) }

// ReportUnreachable tells raft that the last messages to peer id may not
// have arrived, so it stops sending appends optimistically; the transport
// calls it when a peer's stream fails.
func (n *Node) ReportUnreachable(id uint64) { n.ref.Send(reportMsg{peer: id, unreachable: true}) }

// ReportSnapshot tells raft whether the snapshot sent to peer id was
// delivered and restored, so it resumes replication from it or retries.
func (n *Node) ReportSnapshot(id uint64, failed bool) {
	n.ref.Send(reportMsg{peer: id, snapshot: true, failed: failed})
}

// Compact records a raft snapshot at applied, whose state the state machine
// has made durable, and truncates the log behind it (keeping
// SnapshotCatchUpEntries).
func (n *Node) Compact(applied uint64) { n.ref.Send(compactMsg{applied: applied}) }

// Status is a point-in-time view of the node.
type Status struct {
	ID, Leader, Term, Commit uint64
	// BecameLeader is when this node last became leader; zero if never.
	BecameLeader time.Time
	// LeaderChanges counts the leaders this node has seen take office
	// since it started (etcd's etcd_server_leader_changes_seen_total).
	LeaderChanges uint64
}

// Status returns the node's last observed leader, term and commit index.
func (n *Node) Status() Status {
	st := Status{ID: n.id, Leader: n.leader.Load(), Term: n.term.Load(), Commit: n.commit.Load(),
		LeaderChanges: n.leaderChanges.Load()}
	if t := n.becameLeader.Load(); t != 0 {
		st.BecameLeader = time.Unix(0, t)
	}
	return st
}

// Ticking reports whether the actor has handled a tick within the last
// three tick intervals, as etcd's isActive does. It stops ticking while a
// write to the raft log is stuck or its mailbox is flooded; raft then
// cannot tell, from its own clock, that followers have stopped answering,
// so it may believe it leads when the others have elected another leader.
func (n *Node) Ticking() bool {
	return time.Since(time.Unix(0, n.lastTick.Load())) < 3*n.tickInterval
}

// Stop stops the ticker and the actor; pending reads fail with ErrStopped.
// It does not close the log.
func (n *Node) Stop() {
	if n.stopped.Swap(true) {
		return
	}
	close(n.stopTick)
	n.ref.Stop()
	close(n.done)
}

func (n *Node) tick(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			n.ref.Send(tickMsg{})
		case <-n.stopTick:
			return
		}
	}
}

type readResult struct {
	index uint64
	err   error
}

type readWaiter func(index uint64, err error)

// readRound is one ReadIndex request in flight and the reads it serves.
type readRound struct {
	ctx     []byte
	waiters []readWaiter
	sent    time.Time
	lead    uint64 // the leader it was asked of
}

// readRetry is how long a ReadIndex round waits for its answer before it
// is asked again, as etcd does: the request, or the answer, may have been
// dropped on the way to or from the leader (a stream not up yet, a leader
// change), and nothing else would ever resend it.
const readRetry = 500 * time.Millisecond

// The actor's messages.
type (
	// proposeMsg carries data, or a membership change when cc is set.
	proposeMsg struct {
		data     []byte
		cc       *raftpb.ConfChange
		rejected func(error)
	}
	readIndexMsg struct{ reply readWaiter }
	compactMsg   struct{ applied uint64 }
	tickMsg      struct{}
	campaignMsg  struct{}
	readyMsg     struct{}
	stepMsg      struct{ m *raftpb.Message }
	transferMsg  struct{ to uint64 }
	progressMsg  struct {
		id    uint64
		reply chan<- [3]uint64
	}
	reportMsg struct {
		peer                          uint64
		unreachable, snapshot, failed bool
	}
)

type raftActor struct {
	cfg  Config
	rn   *raft.RawNode
	lg   *zap.Logger
	node *Node
	self *actors.Ref

	confState       *raftpb.ConfState
	readyScheduled  bool
	campaignPending bool

	// waitingProposals wait for a leader to be known.
	waitingProposals []proposeMsg
	// batch holds the data proposals not yet stepped into raft, batchBytes
	// the size of their data (see maxBatchProposals).
	batch      []proposeMsg
	batchBytes int

	pendingReads []readWaiter
	readSeq      uint64
	inflight     map[uint64]*readRound

	// heartbeats is when a heartbeat last went to each follower, to tell
	// late ones (see sent); cleared when the raft state changes.
	heartbeats map[uint64]time.Time
}

func (a *raftActor) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case proposeMsg:
		a.propose(m)
	case readIndexMsg:
		a.readIndex(m)
	case readyMsg:
		a.handleReady()
	case tickMsg:
		a.rn.Tick()
		a.node.lastTick.Store(time.Now().UnixNano())
		a.retryReads()
		a.scheduleReady()
	case stepMsg:
		a.step(m.m)
	case campaignMsg:
		a.campaign()
	case compactMsg:
		a.compact(m.applied)
	case reportMsg:
		a.report(m)
	case progressMsg:
		a.progress(m)
	case transferMsg:
		a.rn.TransferLeader(m.to)
		a.scheduleReady()
	case *actor.Stopped:
		a.stop()
	}
}

// retryReads asks again for the ReadIndex rounds unanswered for longer
// than readRetry, with the same context, so whichever answer comes first
// serves them.
func (a *raftActor) retryReads() {
	if len(a.inflight) == 0 || a.rn.BasicStatus().Lead == raft.None {
		return
	}
	now := time.Now()
	for seq, r := range a.inflight {
		if now.Sub(r.sent) >= readRetry {
			a.lg.Warn("waiting for ReadIndex response took too long, retrying",
				zap.Uint64("sent-request-id", seq), zap.Duration("retry-timeout", readRetry))
			r.sent = now
			a.rn.ReadIndex(r.ctx)
		}
	}
}

func (a *raftActor) report(m reportMsg) {
	switch {
	case m.unreachable:
		a.rn.ReportUnreachable(m.peer)
	case m.snapshot && m.failed:
		a.rn.ReportSnapshot(m.peer, raft.SnapshotFailure)
	case m.snapshot:
		a.rn.ReportSnapshot(m.peer, raft.SnapshotFinish)
	}
	a.scheduleReady()
}

func (a *raftActor) scheduleReady() {
	if !a.readyScheduled {
		a.readyScheduled = true
		a.self.Send(readyMsg{})
	}
}

func (a *raftActor) propose(m proposeMsg) {
	if a.rn.BasicStatus().Lead == raft.None {
		a.waitForLeader(m)
		return
	}
	if m.cc == nil {
		a.batch = append(a.batch, m)
		a.batchBytes += len(m.data)
		if len(a.batch) >= maxBatchProposals || a.batchBytes >= maxBatchBytes {
			a.stepBatch()
		}
		a.scheduleReady()
		return
	}
	// A membership change goes after the data proposed before it.
	a.stepBatch()
	if err := a.rn.ProposeConfChange(m.cc); err != nil {
		m.rejected(proposeError(err))
		return
	}
	a.scheduleReady()
}

// stepBatch steps the batched data proposals into raft as one MsgProp, in
// the order they came; if raft drops it, each is rejected. If the leader
// was lost since they were batched, they wait for one as propose has them
// do.
func (a *raftActor) stepBatch() {
	if len(a.batch) == 0 {
		return
	}
	if a.rn.BasicStatus().Lead == raft.None {
		for _, m := range a.batch {
			a.waitForLeader(m)
		}
		a.resetBatch()
		return
	}
	ents := make([]*raftpb.Entry, len(a.batch))
	for i, m := range a.batch {
		ents[i] = &raftpb.Entry{Data: m.data}
	}
	err := a.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(a.cfg.ID), Entries: ents})
	if err != nil {
		err = proposeError(err)
		for _, m := range a.batch {
			m.rejected(err)
		}
	}
	a.resetBatch()
}

// waitForLeader holds m until a leader is known: like etcd, a proposal
// without a leader waits rather than failing at once, its caller's
// deadline bounding the wait, unless maxWaitingProposals already wait.
func (a *raftActor) waitForLeader(m proposeMsg) {
	if len(a.waitingProposals) >= maxWaitingProposals {
		m.rejected(ErrNoLeader)
		return
	}
	a.waitingProposals = append(a.waitingProposals, m)
}

func (a *raftActor) resetBatch() {
	clear(a.batch)
	a.batch = a.batch[:0]
	a.batchBytes = 0
}

// proposeError is the error a proposal raft refused is rejected with.
func proposeError(err error) error {
	if errors.Is(err, raft.ErrProposalDropped) {
		return ErrNoLeader
	}
	return err
}

func (a *raftActor) progress(m progressMsg) {
	st := a.rn.Status()
	pr, ok := st.Progress[m.id]
	if st.RaftState != raft.StateLeader || !ok {
		m.reply <- [3]uint64{}
		return
	}
	m.reply <- [3]uint64{pr.Match, a.lastIndex(), 1}
}

func (a *raftActor) lastIndex() uint64 {
	last, _ := a.cfg.Log.LastIndex()
	return last
}

func (a *raftActor) readIndex(m readIndexMsg) {
	a.pendingReads = append(a.pendingReads, m.reply)
	a.scheduleReady()
}

func (a *raftActor) step(m *raftpb.Message) {
	if err := a.rn.Step(m); err != nil {
		a.lg.Debug("raft step failed", zap.Error(err))
	}
	a.scheduleReady()
}

// campaign makes a sole voter leader at once instead of after an election
// timeout; in a larger cluster the election runs as usual. Raft refuses to
// campaign while configuration changes are committed but not yet applied
// (a fresh bootstrap), so the attempt waits for them, retried after each
// Ready.
func (a *raftActor) campaign() {
	st := a.rn.Status()
	voters := st.Config.Voters.IDs()
	if _, self := voters[a.cfg.ID]; len(voters) != 1 || !self || st.Lead != raft.None {
		a.campaignPending = false
		return
	}
	if st.Applied < st.GetCommit() {
		a.campaignPending = true
		a.scheduleReady()
		return
	}
	a.campaignPending = false
	if err := a.rn.Campaign(); err != nil {
		a.lg.Warn("campaign failed", zap.Error(err))
	}
	a.scheduleReady()
}

func (a *raftActor) handleReady() {
	a.readyScheduled = false
	a.stepBatch()
	if len(a.pendingReads) > 0 && a.rn.BasicStatus().Lead != raft.None {
		// One ReadIndex round serves every read that queued since the last.
		// Without a leader the reads wait for one, as proposals do.
		// The leader keys pending reads by their context, so it is unique
		// across members: this member's ID, then a sequence number.
		a.readSeq++
		rctx := make([]byte, 16)
		binary.BigEndian.PutUint64(rctx[:8], a.cfg.ID)
		binary.BigEndian.PutUint64(rctx[8:], a.readSeq)
		a.inflight[a.readSeq] = &readRound{ctx: rctx, waiters: a.pendingReads, sent: time.Now(), lead: a.rn.BasicStatus().Lead}
		a.pendingReads = nil
		a.rn.ReadIndex(rctx)
	}
	// Persisting entries lets raft advance the commit index at once (a
	// sole voter acknowledges its own append), which shows as a second
	// Ready; handling it here rather than behind the mailbox saves a hop
	// on every write. The bound keeps the mailbox from starving.
	for i := 0; i < maxReadiesPerTurn && a.rn.HasReady(); i++ {
		a.processReady()
	}
	if a.campaignPending {
		a.campaign()
	}
	if len(a.waitingProposals) > 0 && a.rn.BasicStatus().Lead != raft.None {
		waiting := a.waitingProposals
		a.waitingProposals = nil
		for _, m := range waiting {
			a.propose(m)
		}
	}
	if a.rn.HasReady() || len(a.pendingReads) > 0 && a.rn.BasicStatus().Lead != raft.None {
		a.scheduleReady()
	}
}

// processReady persists, sends and hands off one Ready.
func (a *raftActor) processReady() {
	// A leader sends its appends before it persists them, so the round
	// trip to the followers overlaps its own fsync (raft's documented
	// optimisation, which etcd uses): it counts its own vote for an entry
	// only once the entry is persisted. Everyone else's messages (votes,
	// append acknowledgements) promise what is on disk, so they wait.
	leader := a.rn.BasicStatus().RaftState == raft.StateLeader
	rd := a.rn.Ready()
	if rd.SoftState != nil {
		// A new term or role: heartbeats of an earlier leadership are
		// no measure of this one's.
		clear(a.heartbeats)
	}
	if leader {
		a.send(rd.Messages)
	}
	if err := a.cfg.Log.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		// The log can no longer promise durability; continuing could
		// acknowledge writes that a restart loses.
		a.lg.Fatal("failed to persist raft log", zap.Error(err))
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		// A snapshot from the leader: the state machine restored it
		// before raft took it (see Step), and its membership is now ours.
		a.confState = rd.Snapshot.GetMetadata().GetConfState()
	}
	if !leader {
		a.send(rd.Messages)
	}
	if rd.SoftState != nil {
		lead := rd.SoftState.Lead
		if prev := a.node.leader.Swap(lead); lead != raft.None && lead != prev {
			a.node.leaderChanges.Add(1)
			if lead == a.cfg.ID {
				a.node.becameLeader.Store(time.Now().UnixNano())
			}
			// A read asked of a replaced leader gets no answer: fail it,
			// as etcd does, with an error the client retries. Without a
			// leader, reads wait (asked again every readRetry) for one.
			a.failReadsNotAskedOf(lead)
		}
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		a.node.term.Store(rd.HardState.GetTerm())
		a.node.commit.Store(rd.HardState.GetCommit())
	}
	for _, rs := range rd.ReadStates {
		if len(rs.RequestCtx) != 16 || binary.BigEndian.Uint64(rs.RequestCtx[:8]) != a.cfg.ID {
			continue
		}
		seq := binary.BigEndian.Uint64(rs.RequestCtx[8:])
		r := a.inflight[seq]
		if r == nil {
			// The answer to a round asked again, or failed, before it came.
			a.node.readsSlow.Add(1)
			a.lg.Warn("ignored out-of-date read index response; local node read indexes queueing up and waiting to be in sync with leader",
				zap.Uint64("received-request-id", seq))
			continue
		}
		for _, w := range r.waiters {
			w(rs.Index, nil)
		}
		delete(a.inflight, seq)
	}
	if n := len(rd.CommittedEntries); n > 0 {
		a.applyConfChanges(rd.CommittedEntries)
		a.cfg.Commit(rd.CommittedEntries)
		a.cfg.Log.Handed(rd.CommittedEntries[n-1].GetIndex())
	}
	a.rn.Advance(rd)
}

func (a *raftActor) send(msgs []*raftpb.Message) {
	if len(msgs) > 0 && a.cfg.Transport != nil {
		a.sent(msgs)
		a.cfg.Transport.Send(msgs)
	}
}

// sent notes when the heartbeats among msgs leave. A leader sends one to
// every follower each heartbeat interval; one that leaves more than two
// intervals after the previous to the same follower means the leader's
// loop was held up (a slow log write, most often), long enough for the
// follower to start doubting it. As etcd does, it is counted and logged.
func (a *raftActor) sent(msgs []*raftpb.Message) {
	now := time.Now()
	limit := 2 * a.cfg.TickInterval
	for _, m := range msgs {
		if m.GetType() != raftpb.MsgHeartbeat {
			continue
		}
		to := m.GetTo()
		last, ok := a.heartbeats[to]
		a.heartbeats[to] = now
		if exceeded := now.Sub(last) - limit; ok && exceeded > 0 {
			a.node.lateHeartbeats.Add(1)
			a.lg.Warn("leader failed to send out heartbeat on time; took too long, leader is overloaded likely from slow disk",
				zap.String("to", fmt.Sprintf("%x", to)),
				zap.Duration("heartbeat-interval", a.cfg.TickInterval),
				zap.Duration("expected-duration", limit),
				zap.Duration("exceeded-duration", exceeded))
		}
	}
}

func (a *raftActor) applyConfChanges(ents []*raftpb.Entry) {
	for _, e := range ents {
		var cc raftpb.ConfChangeI
		switch e.GetType() {
		case raftpb.EntryConfChange:
			c := &raftpb.ConfChange{}
			if err := proto.Unmarshal(e.GetData(), c); err != nil {
				a.lg.Fatal("corrupt conf change entry", zap.Uint64("index", e.GetIndex()), zap.Error(err))
			}
			if c.GetType() == raftpb.ConfChangeAddLearnerNode && a.isMember(c.GetNodeId()) {
				// The store refuses it too (a learner's addition proposed
				// twice); a node ID of zero is raft's way to skip a change.
				c.NodeId = proto.Uint64(raft.None)
			}
			cc = c
		case raftpb.EntryConfChangeV2:
			c := &raftpb.ConfChangeV2{}
			if err := proto.Unmarshal(e.GetData(), c); err != nil {
				a.lg.Fatal("corrupt conf change entry", zap.Uint64("index", e.GetIndex()), zap.Error(err))
			}
			cc = c
		default:
			continue
		}
		a.confState = a.rn.ApplyConfChange(cc)
	}
}

// isMember reports whether id is a voter or learner of the configuration.
func (a *raftActor) isMember(id uint64) bool {
	cs := a.confState
	return slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id) ||
		slices.Contains(cs.GetVotersOutgoing(), id) || slices.Contains(cs.GetLearnersNext(), id)
}

func (a *raftActor) compact(applied uint64) {
	snap, err := a.cfg.Log.Snapshot()
	if err != nil || applied <= snap.GetMetadata().GetIndex() {
		return
	}
	compactTo := a.compactIndex(applied)
	start := time.Now()
	if _, err := a.cfg.Log.CreateSnapshot(applied, a.confState, nil, compactTo); err != nil {
		a.lg.Warn("failed to create raft snapshot", zap.Uint64("index", applied), zap.Error(err))
		return
	}
	a.lg.Info("compacted raft log", zap.Uint64("snapshot-index", applied), zap.Uint64("compact-index", compactTo),
		zap.Duration("took", time.Since(start)))
}

// DefaultSnapshotCatchUpBytes is the default Config.SnapshotCatchUpBytes.
// etcd's 5000 catch-up entries of 1 MiB each would be 5 GB of log that
// every compaction copies; a follower further behind than what is kept
// gets a snapshot, as one behind the entry count does.
const DefaultSnapshotCatchUpBytes = 64 << 20

// compactIndex is where a compaction at applied may cut the log: after it
// come the last SnapshotCatchUpEntries entries up to applied, or fewer if
// their encoding is larger than SnapshotCatchUpBytes.
func (a *raftActor) compactIndex(applied uint64) uint64 {
	compactTo := uint64(0)
	if applied > a.cfg.SnapshotCatchUpEntries {
		compactTo = applied - a.cfg.SnapshotCatchUpEntries
	}
	first, err := a.cfg.Log.FirstIndex()
	if err != nil || first > applied {
		return compactTo
	}
	size := 0
	for i := applied; i >= max(compactTo+1, first); i-- {
		n, err := a.cfg.Log.EntrySize(i)
		if err != nil {
			return compactTo
		}
		if size += n; size > a.cfg.SnapshotCatchUpBytes {
			return i
		}
	}
	return compactTo
}

// stop fails everything still waiting on the node.
func (a *raftActor) stop() {
	for _, w := range a.pendingReads {
		w(0, ErrStopped)
	}
	a.pendingReads = nil
	for _, m := range a.waitingProposals {
		m.rejected(ErrStopped)
	}
	a.waitingProposals = nil
	for _, m := range a.batch {
		m.rejected(ErrStopped)
	}
	a.batch = nil
	a.failInflightReads(ErrStopped)
}

// failReadsNotAskedOf fails with ErrLeaderChanged the rounds in flight that
// were asked of another leader than lead.
func (a *raftActor) failReadsNotAskedOf(lead uint64) {
	for seq, r := range a.inflight {
		if r.lead == lead {
			continue
		}
		for _, w := range r.waiters {
			w(0, ErrLeaderChanged)
		}
		delete(a.inflight, seq)
		a.node.readsFailed.Add(1)
	}
}

func (a *raftActor) failInflightReads(err error) {
	for seq, r := range a.inflight {
		for _, w := range r.waiters {
			w(0, err)
		}
		delete(a.inflight, seq)
	}
}
