// Package store is the store actor and its client: the one place where
// requests from every front end meet the raft log and the MVCC state.
//
// A write travels: Client (validate, encode) → store actor (register the
// waiter, propose) → raft actor (append, fsync, commit) → store actor (apply
// to MVCC in log order, answer the waiter). Reads do not queue behind
// writes: serializable reads run on the caller's goroutine against MVCC's
// concurrent read path, and linearizable reads first obtain a ReadIndex from
// raft and wait until the store has applied it.
package store

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/storage"
)

// Version is the etcd version Cairn's API is compatible with; it is what
// clients see in Status and /version.
const Version = "3.7.3"

// maxApplyLag is how far the applied index may trail the commit index
// before proposals are refused with ErrTooManyRequests (etcd's limit).
const maxApplyLag = 5000

// Raft is what the store needs from the raft node; *raftnode.Node
// implements it.
type Raft interface {
	Propose(data []byte, rejected func(error))
	ProposeConfChange(cc *raftpb.ConfChange, rejected func(error))
	// Progress is how far member id matches the leader's log of last
	// entries; ok only on the leader.
	Progress(id uint64) (match, last uint64, ok bool)
	// TransferLeadership asks the leader to hand over to member to.
	TransferLeadership(to uint64)
	ReadIndex(ctx context.Context) (uint64, error)
	Compact(applied uint64)
	Status() raftnode.Status
	// Ticking reports whether raft's clock has moved within the last
	// three ticks (see raftnode.Node.Ticking).
	Ticking() bool
	Stop()
}

// Config configures the store.
type Config struct {
	// Engine is the member's storage engine; KV is the MVCC state over it.
	Engine storage.Engine
	KV     *mvcc.KV
	// StartRaft starts the raft node, wiring commit (which the store
	// provides) as its commit callback.
	StartRaft func(commit func([]*raftpb.Entry)) (Raft, error)
	// ClusterID and MemberID fill response headers.
	ClusterID, MemberID uint64
	// MaxRequestBytes bounds an encoded request (etcd's --max-request-bytes).
	MaxRequestBytes int
	// MaxTxnOps bounds the operations of one txn branch (--max-txn-ops).
	MaxTxnOps int
	// QuotaBackendBytes is the size past which requests that grow the
	// database are refused and this member raises its NOSPACE alarm (0: no
	// quota; see alarm.go).
	QuotaBackendBytes int64
	// SnapshotCount is the number of applied entries after which the engine
	// is checkpointed and the raft log truncated (--snapshot-count).
	SnapshotCount uint64
	// RequestTimeout bounds a request whose context has no deadline, and
	// every proposal's wait whatever its context (etcd's ReqTimeout).
	RequestTimeout time.Duration
	// ElectionTimeout is raft's election timeout (--election-timeout); a
	// proposal that times out within two of them before this member was
	// elected reports the previous leader's failure, as etcd's does.
	ElectionTimeout time.Duration
	// ActiveSince reports since when the stream to member id has been up,
	// zero if it is down: the connectivity behind etcd's "connection
	// lost" timeouts and the strict reconfiguration check. Nil counts
	// every member as connected for ever.
	ActiveSince func(id uint64) time.Time
	// Publish, if set, receives the events of every engine commit, in
	// revision order, from the store actor right after the commit and
	// before the waiters are answered. It must not block.
	Publish func(events []*mvccpb.Event)
	// LeaseApplied, if set, learns of every applied lease grant (ttl > 0,
	// the granted TTL) and revoke (ttl == 0), from the store actor after
	// the commit that made it visible. It must not block.
	LeaseApplied func(id, ttl int64)
	// Restored, if set, is called from the store actor after the state was
	// replaced by a leader's snapshot (see Client.Restore), so that what is
	// derived from it (lease expiries, watchers) is rebuilt. It must not
	// block.
	Restored func()
	// Auth is the auth state the store applies auth entries to and checks
	// requests against; nil opens one on Engine with default options.
	Auth *auth.Store
	// MembersChanged, if set, is called from the store actor after a
	// membership change was applied, with the change. It must not block.
	MembersChanged func(cc *raftpb.ConfChange)
	// MaxLearners bounds the learners MemberAdd accepts (--max-learners).
	MaxLearners int
	// StrictReconfigCheck refuses membership changes that would leave
	// fewer started voters than a quorum (--strict-reconfig-check).
	StrictReconfigCheck bool
	// MinLeaseTTL is the smallest TTL a grant gets, in seconds; shorter
	// requests are raised to it, as etcd does (see MinLeaseTTL).
	MinLeaseTTL int64
	// VersionMonitorInterval is how often the leader checks whether the
	// cluster version must follow a downgrade (see downgrade.go); zero
	// means etcd's 4 s.
	VersionMonitorInterval time.Duration
	// WarningApplyDuration is the time past which an applied request, or
	// a read served without raft, is logged and counted as slow (etcd's
	// --warning-apply-duration, whose 100ms the server passes by default;
	// 0 makes every request slow, as in etcd).
	WarningApplyDuration time.Duration
	// MailboxSize bounds the store actor's mailbox (backpressure).
	MailboxSize int
	Logger      *zap.Logger
}

// Client is the store's front door, used by every front end. Its methods
// are safe for concurrent use.
type Client struct {
	cfg     Config
	kv      *mvcc.KV
	auth    *auth.Store
	raft    Raft
	ref     *actors.Ref
	applied *appliedWait
	// checkpoints counts the engine checkpoints running in the
	// background; Stop waits for them, so that the engine can be closed.
	checkpoints sync.WaitGroup
	nextID      atomic.Uint64
	// dbSize is the engine's size as last sampled, and grown the quota
	// cost (etcd's estimate) of the requests applied since: the quota
	// check reads their sum, so writes in quick succession cannot pass
	// the quota between two samples.
	dbSize, grown atomic.Int64
	// learner is whether this member is a learner, as last applied.
	learner atomic.Bool
	// alarms is the active alarm list as last applied (see alarm.go);
	// raising is closed once this member's NOSPACE proposal in flight, if
	// any, is done.
	alarms  atomic.Pointer[[]*pb.AlarmMember]
	raiseMu sync.Mutex
	raising chan struct{}
	// versions is the cluster version and downgrade state as last applied
	// (see downgrade.go).
	versions atomic.Pointer[versionState]
	// sizeMu orders the size samples of refreshSize.
	sizeMu  sync.Mutex
	stop    chan struct{}
	stopped atomic.Bool
	// proposalsFailed counts proposals raft refused or that timed out.
	proposalsFailed atomic.Uint64
	applyMetrics    *applyMetrics
}

// ProposalsFailed is the number of proposals that failed: refused by raft
// (no leader, dropped) or not applied in time, as etcd counts in
// etcd_server_proposals_failed_total.
func (c *Client) ProposalsFailed() uint64 { return c.proposalsFailed.Load() }

// Start spawns the store actor, then the raft node, and returns the client.
// Entries committed before the last shutdown but not yet applied are
// replayed by raft and applied before any new request is answered.
func Start(sys *actors.System, cfg Config) (*Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 7 * time.Second
	}
	if cfg.MailboxSize == 0 {
		cfg.MailboxSize = 4096
	}
	if cfg.VersionMonitorInterval == 0 {
		cfg.VersionMonitorInterval = versionMonitorInterval
	}
	if cfg.Auth == nil {
		as, err := auth.Open(cfg.Engine, auth.Options{Logger: cfg.Logger})
		if err != nil {
			return nil, err
		}
		cfg.Auth = as
	}
	c := &Client{
		cfg:     cfg,
		kv:      cfg.KV,
		auth:    cfg.Auth,
		applied: &appliedWait{applied: cfg.KV.AppliedIndex()},
		stop:    make(chan struct{}),

		applyMetrics: newApplyMetrics(),
	}
	// IDs are unique per member and increase across restarts, as etcd's
	// idutil generator does: member ID bits on top, time below.
	c.nextID.Store(cfg.MemberID<<48 | uint64(time.Now().UnixMilli())<<8)
	a := &storeActor{
		c:        c,
		lg:       cfg.Logger,
		waiters:  make(map[uint64]func(result)),
		lastSnap: cfg.KV.AppliedIndex(),
		auth:     cfg.Auth.NewApplier(),
	}
	c.refreshLearner()
	a.loadAlarms()
	a.loadVersions()
	c.ref = sys.Spawn("store", cfg.MailboxSize, a.receive)
	r, err := cfg.StartRaft(func(ents []*raftpb.Entry) { c.ref.Send(applyMsg{ents: ents}) })
	if err != nil {
		c.ref.Stop()
		return nil, err
	}
	c.raft = r
	c.ref.Send(raftStartedMsg{})
	c.dbSize.Store(cfg.Engine.Stats().SizeBytes)
	go c.watchSize()
	go c.monitorVersions()
	return c, nil
}

// Restore replaces the whole state with an engine snapshot read from r
// (the leader's, when this member has fallen too far behind for the log),
// in order with the entries being applied, and returns once the restored
// state is durable and served. On storage.ErrCorruptSnapshot nothing
// changed. r is read on the store actor, so it should be local (a file),
// not a network stream.
func (c *Client) Restore(r io.Reader) error {
	reply := make(chan error, 1)
	c.ref.Send(restoreMsg{r: r, reply: reply})
	select {
	case err := <-reply:
		return err
	case <-c.stop:
		return ErrStopped
	}
}

// Stop stops raft, then the store actor. Requests in flight fail with
// ErrStopped.
func (c *Client) Stop() {
	select {
	case <-c.stop:
		return
	default:
	}
	c.stopped.Store(true)
	close(c.stop)
	c.raft.Stop()
	c.ref.Stop()
	c.checkpoints.Wait()
}

// watchSize refreshes the cached engine size used by the quota check and
// Status, so requests never wait on engine statistics.
func (c *Client) watchSize() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			c.refreshSize()
		case <-c.stop:
			return
		}
	}
}

// header returns a response header for rev.
func (c *Client) header(rev int64) *pb.ResponseHeader {
	h := &pb.ResponseHeader{Revision: rev}
	c.StampHeader(h)
	return h
}

// StampHeader sets h's cluster ID, member ID and raft term, keeping its
// revision.
func (c *Client) StampHeader(h *pb.ResponseHeader) {
	h.ClusterId = c.cfg.ClusterID
	h.MemberId = c.cfg.MemberID
	h.RaftTerm = c.raft.Status().Term
}

func (c *Client) fillHeader(h **pb.ResponseHeader) {
	rev := int64(0)
	if *h != nil {
		rev = (*h).Revision
	}
	*h = c.header(rev)
}

// withTimeout applies the request timeout to contexts without a deadline.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.RequestTimeout)
}

// linearize waits until every write acknowledged before the call is
// visible to local reads.
func (c *Client) linearize(ctx context.Context) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	idx, err := c.raft.ReadIndex(ctx)
	if err != nil {
		return mapRaftErr(err)
	}
	if err := c.applied.wait(ctx, idx); err != nil {
		return mapCtxErr(err)
	}
	return nil
}

// linearizeFor is linearize for a client's read, which a learner refuses:
// only serializable reads are served by learners, as in etcd.
func (c *Client) linearizeFor(ctx context.Context) error {
	if c.learner.Load() {
		return ErrNotSupportedForLearner
	}
	return c.linearize(ctx)
}

// Linearize returns once this member has applied everything committed
// before the call, as a linearizable read waits, without reading; a
// learner refuses it as it refuses such reads.
func (c *Client) Linearize(ctx context.Context) error { return c.linearizeFor(ctx) }

// applyWaitTimeout bounds WaitCommitted, as etcd's applyTimeout bounds
// its leader's wait.
const applyWaitTimeout = time.Second

// WaitCommitted returns once this member has applied every entry it knew
// to be committed when called: etcd's leader waits so before it answers a
// lease lookup, so that a grant or revoke it has committed is seen. After
// a second it gives up with ErrTimeoutWaitAppliedIndex.
func (c *Client) WaitCommitted(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, applyWaitTimeout)
	defer cancel()
	if err := c.applied.wait(wctx, c.raft.Status().Commit); err != nil {
		if ctx.Err() != nil {
			return mapCtxErr(ctx.Err())
		}
		return ErrTimeoutWaitAppliedIndex
	}
	return nil
}

// IsLearner reports whether this member is a learner, as last applied.
func (c *Client) IsLearner() bool { return c.learner.Load() }

// refreshLearner records whether this member is a learner, from the
// applied membership.
func (c *Client) refreshLearner() {
	m := c.member(c.cfg.MemberID)
	c.learner.Store(m != nil && m.IsLearner)
}

// WaitReady returns once the member has a leader and has applied every
// entry committed before it started, so that it serves current data. A
// read failed by a change of leader is asked again.
func (c *Client) WaitReady(ctx context.Context) error {
	for {
		err := c.linearize(ctx)
		if !errors.Is(err, ErrLeaderChanged) || ctx.Err() != nil {
			return err
		}
	}
}

// Range reads keys, linearizably unless req.Serializable. With auth
// enabled the caller (the token in ctx, see auth.WithToken) must be
// allowed to read the whole range, checked here after the linearizable
// wait as etcd does, and the auth state must not change during the read.
func (c *Client) Range(ctx context.Context, req *pb.RangeRequest) (resp *pb.RangeResponse, err error) {
	if err := mvcc.ValidateRange(req); err != nil {
		return nil, err
	}
	defer func(start time.Time) {
		c.warnSlowRead(start, req, resp, err)
		c.applyMetrics.request("Range", start, err)
	}(time.Now())
	if !req.Serializable {
		if err := c.linearizeFor(ctx); err != nil {
			return nil, err
		}
	}
	id, err := c.identify(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.auth.Current().CheckRange(id, req.Key, req.RangeEnd); err != nil {
		return nil, err
	}
	resp, err = c.rangeRead(req)
	if serr := c.auth.Current().CheckStale(id); serr != nil {
		return nil, serr
	}
	if err != nil {
		return nil, err
	}
	c.fillHeader(&resp.Header)
	return resp, nil
}

// Put writes one key through raft. The caller's identity travels in the
// entry, whose permission is checked when it is applied.
func (c *Client) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutResponse, error) {
	if err := mvcc.ValidatePut(req); err != nil {
		return nil, err
	}
	res, err := c.propose(ctx, &pb.InternalRaftRequest{Put: req})
	if err != nil {
		return nil, err
	}
	resp := res.(*pb.PutResponse)
	c.fillHeader(&resp.Header)
	return resp, nil
}

// DeleteRange deletes keys through raft.
func (c *Client) DeleteRange(ctx context.Context, req *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := mvcc.ValidateDeleteRange(req); err != nil {
		return nil, err
	}
	res, err := c.propose(ctx, &pb.InternalRaftRequest{DeleteRange: req})
	if err != nil {
		return nil, err
	}
	resp := res.(*pb.DeleteRangeResponse)
	c.fillHeader(&resp.Header)
	return resp, nil
}

// Txn runs a transaction. Read-only transactions are served like
// linearizable ranges, without a raft entry, as etcd does, permissions
// included; others are checked when applied, every compare and operation
// of both branches.
func (c *Client) Txn(ctx context.Context, req *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := mvcc.ValidateTxn(req, c.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	var resp *pb.TxnResponse
	if mvcc.IsTxnReadOnly(req) {
		r, err := c.txnRead(ctx, req)
		if err != nil {
			return nil, err
		}
		resp = r
	} else {
		res, err := c.propose(ctx, &pb.InternalRaftRequest{Txn: req})
		if err != nil {
			return nil, err
		}
		resp = res.(*pb.TxnResponse)
	}
	c.fillHeader(&resp.Header)
	return resp, nil
}

// txnRead serves a read-only txn without raft. As etcd does, it times the
// txn from the end of the linearizable wait.
func (c *Client) txnRead(ctx context.Context, req *pb.TxnRequest) (resp *pb.TxnResponse, err error) {
	if err := c.linearizeFor(ctx); err != nil {
		return nil, err
	}
	defer func(start time.Time) {
		c.warnSlowRead(start, req, resp, err)
		c.applyMetrics.request("ReadonlyTxn", start, err)
	}(time.Now())
	id, err := c.identify(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.auth.Current().CheckTxn(id, req, c.leaseKeys); err != nil {
		return nil, err
	}
	r, err := c.kv.TxnRead(req)
	if serr := c.auth.Current().CheckStale(id); serr != nil {
		return nil, serr
	}
	return r, err
}

// Compact compacts the MVCC history up to req.Revision; with req.Physical
// it returns only after old revisions are removed from the engine. With
// auth enabled only root may compact.
func (c *Client) Compact(ctx context.Context, req *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	id, err := c.identify(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.auth.Current().CheckAdmin(id); err != nil {
		return nil, err
	}
	res, err := c.propose(ctx, &pb.InternalRaftRequest{Compaction: req})
	if err != nil {
		return nil, err
	}
	cr := res.(compactResult)
	if req.Physical {
		select {
		case <-cr.done:
		case <-ctx.Done():
			return nil, mapCtxErr(ctx.Err())
		}
	}
	return &pb.CompactionResponse{Header: c.header(cr.rev)}, nil
}

// Status reports what etcd's Maintenance.Status reports.
func (c *Client) Status(ctx context.Context) (*pb.StatusResponse, error) {
	st := c.raft.Status()
	// Asked of the engine, not the sample kept for the quota check, which
	// may be up to a second old: a fresh member would report 0.
	size := c.refreshSize()
	vs := c.versionState()
	return &pb.StatusResponse{
		Header:           c.header(c.kv.Rev()),
		Version:          Version,
		DbSize:           size,
		DbSizeInUse:      size,
		Leader:           st.Leader,
		RaftIndex:        st.Commit,
		RaftTerm:         st.Term,
		RaftAppliedIndex: c.kv.AppliedIndex(),
		IsLearner:        c.learner.Load(),
		StorageVersion:   c.StorageVersion(),
		DbSizeQuota:      c.cfg.QuotaBackendBytes,
		DowngradeInfo:    &pb.DowngradeInfo{Enabled: vs.enabled, TargetVersion: vs.target},
		Errors:           c.statusErrors(st.Leader),
	}, nil
}

// statusErrors are what Status lists as errors, as etcd lists them: that
// the member knows no leader, then the active alarms.
func (c *Client) statusErrors(leader uint64) []string {
	alarms := c.alarmErrors()
	if leader != 0 {
		return alarms
	}
	return append([]string{"etcdserver: no leader"}, alarms...)
}

// Defragment reclaims the engine's free space while requests go on (etcd's
// Maintenance.Defragment, without its stop-the-world pause).
func (c *Client) Defragment(ctx context.Context) error {
	done := make(chan error, 1)
	go func() {
		err := c.cfg.Engine.Defragment()
		c.refreshSize()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return mapCtxErr(ctx.Err())
	}
}

// Header returns a response header at the current revision, for front-end
// services (Maintenance) that answer without touching the store.
func (c *Client) Header() *pb.ResponseHeader { return c.header(c.kv.Rev()) }

// ClusterHeader returns a header without a revision, as etcd's Cluster
// service sends.
func (c *Client) ClusterHeader() *pb.ResponseHeader { return c.header(0) }

// result is the outcome of applying one proposal.
type result struct {
	resp any
	err  error
}

type compactResult struct {
	rev  int64
	done <-chan struct{}
}

// propose sends r through raft and waits for the result of applying it.
// Once it passes the checks made before a proposal, it is timed in
// etcd_server_request_duration_seconds, as etcd times its raft requests.
func (c *Client) propose(ctx context.Context, r *pb.InternalRaftRequest) (resp any, err error) {
	// A learner proposes nothing on a client's behalf, as in etcd; it
	// still publishes its own attributes.
	if c.learner.Load() && r.ClusterMemberAttrSet == nil {
		return nil, ErrNotSupportedForLearner
	}
	// As in etcd, only requests that grow the database are refused over
	// the quota, and the refusal raises this member's NOSPACE alarm:
	// deletes, revokes, txns without puts and compactions go through.
	if c.overQuota(quotaCost(r)) {
		return nil, c.refuseNoSpace(ctx)
	}
	// Like etcd, refuse new proposals while the state machine lags far
	// behind the log: queueing more would only grow the backlog.
	if commit, applied := c.raft.Status().Commit, c.kv.AppliedIndex(); commit > applied+maxApplyLag {
		return nil, ErrTooManyRequests
	}
	// The sender's identity travels in the entry: KV writes and auth
	// management are checked against it when applied, as in etcd.
	var who auth.Identity
	if r.Authenticate == nil {
		if who, err = c.identify(ctx); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	defer func() { c.applyMetrics.request(applyOp(r), start, err) }()
	id := c.nextID.Add(1)
	r.Header = &pb.RequestHeader{ID: id, Username: who.User, AuthRevision: who.Revision}
	data, err := proto.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(data) > c.cfg.MaxRequestBytes {
		return nil, ErrRequestTooLarge
	}
	if c.stopped.Load() {
		return nil, ErrStopped
	}
	// The request timeout bounds the wait, even under a caller's later
	// deadline, as etcd bounds every proposal: a proposal a leader
	// dropped (one forwarded while leadership moves) is answered "request
	// timed out" then, not at the client's deadline. A pooled timer does
	// that without allocating, where a derived context would cost every
	// write a context, a timer, a done channel and an entry in its
	// parent's children.
	t := startTimer(c.cfg.RequestTimeout)
	defer stopTimer(t)
	timeout := t.C
	// The wait selects on per-request channels only: a channel shared by
	// every request (such as a stop channel) would be locked by each
	// select and become a point of contention. On Stop the store actor
	// fails every registered waiter with ErrStopped.
	ch := make(chan result, 1)
	c.ref.Send(proposeMsg{id: id, data: data, reply: func(res result) { ch <- res }})
	var ended error
	select {
	case res := <-ch:
		return res.resp, res.err
	case <-ctx.Done():
		ended = ctx.Err()
	case <-timeout:
		ended = context.DeadlineExceeded
	}
	c.ref.Send(forgetMsg{id: id})
	c.proposalsFailed.Add(1)
	return nil, c.proposalCtxErr(ended, start)
}

// timers holds stopped timers for reuse by proposals' waits.
var timers sync.Pool

// startTimer returns a timer that fires once after d.
func startTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// stopTimer stops t and keeps it for reuse. Since Go 1.23 a stopped
// timer's channel holds no stale tick, so a reused timer fires only for
// its new duration.
func stopTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// proposalCtxErr is etcd's reading of a proposal, sent at start, whose
// context ended: a deadline is a timeout, told apart by its likely cause
// (a leader that failed just before this member took over; no connection
// to the leader, or for a leader to a quorum, for the whole request).
func (c *Client) proposalCtxErr(err error, start time.Time) error {
	if !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	st := c.raft.Status()
	if elected := st.BecameLeader; !elected.IsZero() &&
		start.After(elected.Add(-2*c.cfg.ElectionTimeout)) && start.Before(elected) {
		return ErrTimeoutDueToLeaderFail
	}
	switch st.Leader {
	case 0:
	case c.cfg.MemberID:
		if members := c.Members(); len(members) > 0 && c.connectedSince(start, members) < len(members)/2+1 {
			return ErrTimeoutDueToConnectionLost
		}
	default:
		if !c.isConnectedSince(st.Leader, start) {
			return ErrTimeoutDueToConnectionLost
		}
	}
	return ErrTimeout
}

// isConnectedSince reports whether the stream to member id has been up
// since before since; this member always is.
func (c *Client) isConnectedSince(id uint64, since time.Time) bool {
	if id == c.cfg.MemberID || c.cfg.ActiveSince == nil {
		return true
	}
	t := c.cfg.ActiveSince(id)
	return !t.IsZero() && t.Before(since)
}

// connectedSince counts the members connected since before since.
func (c *Client) connectedSince(since time.Time, members []*pb.Member) int {
	n := 0
	for _, m := range members {
		if c.isConnectedSince(m.ID, since) {
			n++
		}
	}
	return n
}

func mapCtxErr(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return ErrTimeout
	}
	return err
}

func mapRaftErr(err error) error {
	switch {
	case errors.Is(err, raftnode.ErrNoLeader):
		return ErrNoLeader
	case errors.Is(err, raftnode.ErrLeaderChanged):
		return ErrLeaderChanged
	case errors.Is(err, raftnode.ErrStopped):
		return ErrStopped
	}
	return mapCtxErr(err)
}
