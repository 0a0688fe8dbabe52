// Package lease is the lease actor and its client: etcd's Lease service
// over the store.
//
// The lease table itself (which leases exist, their granted TTLs, the keys
// attached to each) is replicated state: grants and revokes are raft
// entries that the store applies, and mvcc keeps the table in the engine's
// Lease bucket. What is not replicated is each lease's expiry: the leader
// keeps it in memory, here. Keep-alives renew it; when it passes, the actor
// proposes a revoke through the store, at most RevokeRate per second so that
// a storm of expiring leases becomes a bounded stream of raft entries.
//
// As in etcd without lease checkpoints, a restart forgets the remaining
// TTLs: every lease starts again with its full granted TTL (plus Extend, an
// election timeout, as etcd's new leader adds), so a lease outlives its TTL
// by at most the downtime plus one TTL and one election timeout. A lease granted
// with a key never loses the key early. With checkpoints (etcd's
// LeaseCheckpoint feature), the leader records each long-lived lease's
// remaining TTL through raft every checkpoint interval, and a restart
// resumes from the last one instead; a keep-alive clears the checkpoint,
// through raft too, before it renews.
package lease

import (
	"container/heap"
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// ErrLeaseNotFound: the lease does not exist (or has expired and is being
// revoked). It is mvcc's sentinel, so the front ends map one error.
var ErrLeaseNotFound = mvcc.ErrLeaseNotFound

// ErrStopped: the lessor has stopped.
var ErrStopped = errors.New("lease: lessor stopped")

// DefaultRevokeRate is etcd's leaseRevokeRate: expired leases revoked per
// second at most.
const DefaultRevokeRate = 1000

// Store is what the lessor needs from the store; *store.Client implements
// it. Its methods are called from any goroutine.
type Store interface {
	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// LeaseCheckpoint records remaining TTLs through raft.
	LeaseCheckpoint(ctx context.Context, r *pb.LeaseCheckpointRequest) error
	// Lease, LeaseCheckpointed and Leases read the applied lease table.
	Lease(id int64, withKeys bool) (ttl int64, keys [][]byte, ok bool)
	LeaseCheckpointed(id int64) int64
	Leases() []mvcc.LeaseInfo
	// IsLeader reports whether this member decides expiry.
	IsLeader() bool
	// CheckLease, CheckLeases and RequireIdentity are the auth checks of
	// the caller in ctx (see store.Client): of a keep-alive (write) or a
	// TimeToLive with keys (read) of one lease, of LeaseLeases, and of the
	// requests anyone but nobody may make.
	CheckLease(ctx context.Context, id int64, write bool) error
	CheckLeases(ctx context.Context) error
	RequireIdentity(ctx context.Context) error
	// Header is a response header at the current revision.
	Header() *pb.ResponseHeader
}

// Config configures a Lessor.
type Config struct {
	// Leases are the leases that exist when the lessor starts (from the
	// KV just opened); each gets its checkpointed remaining TTL if it has
	// one, its full TTL otherwise.
	Leases []mvcc.LeaseInfo
	// Checkpoint turns lease checkpoints on, every CheckpointInterval
	// (5 minutes when 0) for each lease whose TTL is longer than that.
	Checkpoint         bool
	CheckpointInterval time.Duration
	// Extend is added to the TTL of every lease in Leases, as etcd's
	// leader adds its election timeout to every lease when it takes
	// office, so that a restart or an election cannot expire a lease
	// whose holder had no chance to renew it.
	Extend time.Duration
	// RevokeRate bounds the revokes proposed per second;
	// DefaultRevokeRate when 0.
	RevokeRate int
	// Tick is how often expiry is checked; 500ms when 0 (etcd checks
	// every 500ms too).
	Tick time.Duration
	// RevokeTimeout bounds one revoke proposal; after it fails the lease
	// is tried again a second later. 5s when 0.
	RevokeTimeout time.Duration
	// Forwarder, if set, answers keep-alives and TimeToLive while this
	// member is not the leader: the leader's expiries are the ones that
	// count, so a follower asks it rather than its own clock.
	Forwarder Forwarder
	Logger    *zap.Logger
}

// Forwarder sends lease requests to the leader. Its methods are called
// from request goroutines.
type Forwarder interface {
	// Renew renews lease id on the leader and returns its TTL.
	Renew(ctx context.Context, id int64) (int64, error)
	// TimeToLive asks the leader for a lease's remaining TTL.
	TimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
}

// Lessor is the lease actor's front door. Its methods are safe for
// concurrent use once Attach has been called.
type Lessor struct {
	cfg  Config
	ref  *actors.Ref
	st   Store
	stop chan struct{}
}

// The lease actor's messages.
type (
	appliedMsg struct{ id, ttl int64 }
	resetMsg   struct{ leases []mvcc.LeaseInfo }
	readyMsg   struct{}
	renewMsg   struct {
		id    int64
		reply chan<- renewResult
	}
	remainingMsg struct {
		id    int64
		reply chan<- time.Duration // negative: unknown to the actor
	}
	// expiriesMsg asks for the expiry of every lease the actor knows.
	expiriesMsg struct{ reply chan<- map[int64]time.Time }
	tickMsg     struct{}
)

type renewResult struct {
	ttl int64
	err error
}

// Start spawns the lease actor. Expiry is not checked until Attach.
func Start(sys *actors.System, cfg Config) *Lessor {
	if cfg.RevokeRate <= 0 {
		cfg.RevokeRate = DefaultRevokeRate
	}
	if cfg.Tick <= 0 {
		cfg.Tick = 500 * time.Millisecond
	}
	if cfg.RevokeTimeout <= 0 {
		cfg.RevokeTimeout = 5 * time.Second
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	l := &Lessor{cfg: cfg, stop: make(chan struct{})}
	a := &lessorActor{l: l, leases: make(map[int64]*entry)}
	a.reset(cfg.Leases)
	// Unbounded: it is fed by the store actor, which must never block, and
	// by keep-alives, one message each.
	l.ref = sys.Spawn("lease", 0, a.receive)
	return l
}

// Attach gives the lessor its store and starts expiry checks. Call it
// once, before any other method but Applied.
func (l *Lessor) Attach(st Store) {
	l.st = st
	go l.tick()
}

// Stop stops the expiry checks and the actor.
func (l *Lessor) Stop() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	l.ref.Stop()
}

func (l *Lessor) tick() {
	t := time.NewTicker(l.cfg.Tick)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.ref.Send(tickMsg{})
		case <-l.stop:
			return
		}
	}
}

// Ready tells the lessor that the member has applied the entries its log
// held at start: until then it neither takes office as leader (see
// promote) nor expires leases, since replayed grants and checkpoints are
// still changing the leases under it.
func (l *Lessor) Ready() { l.ref.Send(readyMsg{}) }

// Reset replaces every lease the lessor tracks with leases, those of a
// state just restored from a leader's snapshot; each gets its remaining
// (checkpointed) or full TTL plus Config.Extend, as at start. It never
// blocks.
func (l *Lessor) Reset(leases []mvcc.LeaseInfo) { l.ref.Send(resetMsg{leases: leases}) }

// Applied tells the lessor of an applied grant (ttl > 0) or revoke (ttl
// == 0); it is the store's LeaseApplied hook and never blocks.
func (l *Lessor) Applied(id, ttl int64) { l.ref.Send(appliedMsg{id: id, ttl: ttl}) }

// Grant grants a lease through raft (see store.Client.LeaseGrant).
func (l *Lessor) Grant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return l.st.LeaseGrant(ctx, r)
}

// Revoke revokes a lease through raft, deleting its keys.
func (l *Lessor) Revoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return l.st.LeaseRevoke(ctx, r)
}

// Renew restarts lease id's TTL and returns it; ErrLeaseNotFound if the
// lease does not exist or has expired. A checkpointed remaining TTL is
// cleared through raft first, as etcd does, so that a restart after the
// renewal does not resume from the older checkpoint. With auth enabled
// the caller must be root or allowed to write every key of the lease,
// checked here before a follower forwards the request, and again by the
// leader, which the forwarder tells who the caller is.
func (l *Lessor) Renew(ctx context.Context, id int64) (int64, error) {
	if err := l.st.CheckLease(ctx, id, true); err != nil {
		return 0, err
	}
	if f := l.cfg.Forwarder; f != nil && !l.st.IsLeader() {
		return f.Renew(ctx, id)
	}
	if l.st.LeaseCheckpointed(id) > 0 {
		cp := &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: id}}}
		if err := l.st.LeaseCheckpoint(ctx, cp); err != nil {
			return 0, err
		}
	}
	ch := make(chan renewResult, 1)
	l.ref.Send(renewMsg{id: id, reply: ch})
	select {
	case r := <-ch:
		return r.ttl, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-l.stop:
		return 0, ErrStopped
	}
}

// TimeToLive answers etcd's LeaseTimeToLive; ErrLeaseNotFound for an
// unknown lease. With auth enabled the caller must be someone, and to
// list the keys, root or allowed to read every one of them (checked as
// Renew's check is).
func (l *Lessor) TimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	if err := l.st.RequireIdentity(ctx); err != nil {
		return nil, err
	}
	if r.Keys {
		if err := l.st.CheckLease(ctx, r.ID, false); err != nil {
			return nil, err
		}
	}
	if f := l.cfg.Forwarder; f != nil && !l.st.IsLeader() {
		return f.TimeToLive(ctx, r)
	}
	granted, keys, ok := l.st.Lease(r.ID, r.Keys)
	if !ok {
		return nil, ErrLeaseNotFound
	}
	ch := make(chan time.Duration, 1)
	l.ref.Send(remainingMsg{id: r.ID, reply: ch})
	var left time.Duration
	select {
	case left = <-ch:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-l.stop:
		return nil, ErrStopped
	}
	ttl := granted
	if left >= 0 {
		ttl = int64(left.Seconds())
	}
	return &pb.LeaseTimeToLiveResponse{Header: l.st.Header(), ID: r.ID, TTL: ttl, GrantedTTL: granted, Keys: keys}, nil
}

// Leases lists the granted leases. On the leader they come in etcd's
// order, soonest to expire first (ties by ID); elsewhere, where etcd's
// order is arbitrary (no member but the leader counts down), in ID order.
// With auth enabled the caller must be root or allowed to read every key
// attached to a lease.
func (l *Lessor) Leases(ctx context.Context) (*pb.LeaseLeasesResponse, error) {
	if err := l.st.CheckLeases(ctx); err != nil {
		return nil, err
	}
	ls := l.st.Leases()
	if l.st.IsLeader() {
		ch := make(chan map[int64]time.Time, 1)
		l.ref.Send(expiriesMsg{reply: ch})
		var expiry map[int64]time.Time
		select {
		case expiry = <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-l.stop:
			return nil, ErrStopped
		}
		slices.SortStableFunc(ls, func(a, b mvcc.LeaseInfo) int { return expiry[a.ID].Compare(expiry[b.ID]) })
	}
	out := make([]*pb.LeaseStatus, len(ls))
	for i, li := range ls {
		out[i] = &pb.LeaseStatus{ID: li.ID}
	}
	return &pb.LeaseLeasesResponse{Header: l.st.Header(), Leases: out}, nil
}

// Header is a response header at the current revision.
func (l *Lessor) Header() *pb.ResponseHeader { return l.st.Header() }

// entry is a lease as the actor sees it. Its position in the heap is
// found by id; stale heap items (renewed since) are skipped when popped.
type entry struct {
	ttl    time.Duration
	expiry time.Time
	// expired: its revoke has been proposed; it cannot be renewed.
	expired bool
	// checkpointAt is when its next checkpoint is due; zero if none is.
	checkpointAt time.Time
	// ownClock: its expiry was set (granted or renewed) while this member
	// led, so promote leaves it alone. A member sees that it leads only at
	// its next tick, and a lease granted in between must not get an
	// election timeout more than etcd's leader would give it.
	ownClock bool
}

type item struct {
	id     int64
	expiry time.Time
}

// expiryHeap orders items by expiry, earliest first.
type expiryHeap []item

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(item)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// lessorActor owns every lease's expiry.
type lessorActor struct {
	l      *Lessor
	leases map[int64]*entry
	heap   expiryHeap
	// checkpoints holds, per lease longer than the checkpoint interval, when
	// its next checkpoint is due; stale items (revoked leases) are skipped.
	checkpoints expiryHeap
	// leader is whether the member was leader at the last tick.
	leader bool
	// ready is set by Ready: the log replayed at start has been applied.
	ready bool
}

// maxCheckpointBatch is how many leases one checkpoint entry carries at
// most (etcd's maxLeaseCheckpointBatchSize).
const maxCheckpointBatch = 1000

func (a *lessorActor) receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case appliedMsg:
		a.applied(m)
	case resetMsg:
		a.reset(m.leases)
	case readyMsg:
		a.ready = true
	case renewMsg:
		a.renew(m)
	case remainingMsg:
		a.remaining(m)
	case expiriesMsg:
		out := make(map[int64]time.Time, len(a.leases))
		for id, e := range a.leases {
			out[id] = e.expiry
		}
		m.reply <- out
	case tickMsg:
		if !a.ready {
			return
		}
		now := time.Now()
		a.promote(now)
		a.expire(now)
		a.checkpoint(now)
	}
}

// reset tracks exactly leases, from now on.
func (a *lessorActor) reset(leases []mvcc.LeaseInfo) {
	a.leases, a.heap, a.checkpoints = make(map[int64]*entry, len(leases)), nil, nil
	from := time.Now().Add(a.l.cfg.Extend)
	for _, li := range leases {
		left := li.TTL
		if li.Remaining > 0 {
			left = li.Remaining
		}
		a.grant(li.ID, li.TTL, left, from)
	}
}

// promote restarts every lease's clock when this member becomes leader, as
// etcd's new leader does: renewals went to the old leader, so the
// follower's own expiries mean nothing. Each lease gets its checkpointed
// remaining TTL, or its whole TTL, plus Config.Extend (an election
// timeout), so no lease expires before its holder could reach the new
// leader.
func (a *lessorActor) promote(now time.Time) {
	st := a.l.st
	leader := a.leads()
	defer func() { a.leader = leader }()
	if !leader {
		if a.leader {
			for _, e := range a.leases {
				e.ownClock = false
			}
		}
		return
	}
	if a.leader {
		return
	}
	from := now.Add(a.l.cfg.Extend)
	for id, e := range a.leases {
		if e.expired || e.ownClock {
			continue
		}
		left := time.Duration(st.LeaseCheckpointed(id)) * time.Second
		if left <= 0 {
			left = e.ttl
		}
		a.schedule(id, e, from.Add(left))
	}
}

// leads reports whether this member leads now.
func (a *lessorActor) leads() bool {
	st := a.l.st
	return st != nil && st.IsLeader()
}

// grant tracks lease id of ttl seconds, left of which remain from time
// from on.
func (a *lessorActor) grant(id, ttl, left int64, from time.Time) {
	e := &entry{ttl: time.Duration(ttl) * time.Second}
	a.leases[id] = e
	a.schedule(id, e, from.Add(time.Duration(left)*time.Second))
	if iv := a.l.cfg.CheckpointInterval; a.l.cfg.Checkpoint && e.ttl > iv {
		e.checkpointAt = from.Add(iv)
		heap.Push(&a.checkpoints, item{id: id, expiry: e.checkpointAt})
	}
}

func (a *lessorActor) schedule(id int64, e *entry, at time.Time) {
	e.expiry = at
	heap.Push(&a.heap, item{id: id, expiry: at})
}

func (a *lessorActor) applied(m appliedMsg) {
	if m.ttl > 0 {
		a.grant(m.id, m.ttl, m.ttl, time.Now())
		a.leases[m.id].ownClock = a.leads()
		return
	}
	delete(a.leases, m.id)
}

func (a *lessorActor) renew(m renewMsg) {
	e := a.leases[m.id]
	now := time.Now()
	if e == nil || e.expired || !now.Before(e.expiry) {
		m.reply <- renewResult{err: ErrLeaseNotFound}
		return
	}
	a.schedule(m.id, e, now.Add(e.ttl))
	e.ownClock = a.leads()
	m.reply <- renewResult{ttl: int64(e.ttl / time.Second)}
}

func (a *lessorActor) remaining(m remainingMsg) {
	e := a.leases[m.id]
	if e == nil {
		m.reply <- -1
		return
	}
	if e.expired {
		m.reply <- 0
		return
	}
	m.reply <- max(time.Until(e.expiry), 0)
}

// expire proposes revokes for the leases whose expiry has passed, at most
// RevokeRate per second, earliest first. A proposed lease is checked again
// a second later, so a revoke that failed (no leader, timeout) is retried;
// one that succeeded removes the lease through Applied first.
func (a *lessorActor) expire(now time.Time) {
	l := a.l
	if l.st == nil || !l.st.IsLeader() {
		return
	}
	budget := l.perTick()
	for budget > 0 && len(a.heap) > 0 && !a.heap[0].expiry.After(now) {
		it := heap.Pop(&a.heap).(item)
		e := a.leases[it.id]
		if e == nil || !e.expiry.Equal(it.expiry) {
			continue // revoked, or renewed since this item was pushed
		}
		budget--
		// Expired for good: renewals fail from now on, and the item comes
		// back in a second to retry if the revoke does not apply.
		heap.Push(&a.heap, item{id: it.id, expiry: now.Add(time.Second)})
		e.expiry = now.Add(time.Second)
		e.expired = true
		go a.revoke(it.id)
	}
}

// checkpoint proposes, in batches, the remaining TTLs of the leases whose
// checkpoint is due, at most RevokeRate leases a second, and schedules
// each one's next checkpoint. A lease is not checkpointed while its
// remaining TTL is still its whole TTL, nor once it has expired.
func (a *lessorActor) checkpoint(now time.Time) {
	l := a.l
	if !l.cfg.Checkpoint || l.st == nil || !l.st.IsLeader() {
		return
	}
	budget := l.perTick()
	var cps []*pb.LeaseCheckpoint
	for budget > 0 && len(a.checkpoints) > 0 && !a.checkpoints[0].expiry.After(now) {
		it := heap.Pop(&a.checkpoints).(item)
		e := a.leases[it.id]
		if e == nil || !e.checkpointAt.Equal(it.expiry) || e.expired || !now.Before(e.expiry) {
			continue
		}
		budget--
		e.checkpointAt = now.Add(l.cfg.CheckpointInterval)
		heap.Push(&a.checkpoints, item{id: it.id, expiry: e.checkpointAt})
		left := int64(math.Ceil(e.expiry.Sub(now).Seconds()))
		if left >= int64(e.ttl/time.Second) {
			continue
		}
		cps = append(cps, &pb.LeaseCheckpoint{ID: it.id, Remaining_TTL: left})
		if len(cps) == maxCheckpointBatch {
			go a.propose(cps)
			cps = nil
		}
	}
	if len(cps) > 0 {
		go a.propose(cps)
	}
}

func (a *lessorActor) propose(cps []*pb.LeaseCheckpoint) {
	l := a.l
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RevokeTimeout)
	defer cancel()
	if err := l.st.LeaseCheckpoint(ctx, &pb.LeaseCheckpointRequest{Checkpoints: cps}); err != nil {
		l.cfg.Logger.Warn("failed to checkpoint leases", zap.Int("leases", len(cps)), zap.Error(err))
	}
}

// perTick is how many leases one tick may revoke, or checkpoint: RevokeRate
// a second (etcd's leaseRevokeRate and leaseCheckpointRate are both 1000),
// at least one.
func (l *Lessor) perTick() int {
	return max(1, int(int64(l.cfg.RevokeRate)*int64(l.cfg.Tick)/int64(time.Second)))
}

// revoke revokes an expired lease as root, as etcd's lessor does, so
// that auth never keeps a lease alive.
func (a *lessorActor) revoke(id int64) {
	l := a.l
	ctx, cancel := context.WithTimeout(auth.WithUser(context.Background(), auth.RootUser), l.cfg.RevokeTimeout)
	defer cancel()
	if _, err := l.st.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id}); err != nil && !errors.Is(err, ErrLeaseNotFound) {
		l.cfg.Logger.Warn("failed to revoke expired lease", zap.Int64("lease", id), zap.Error(err))
	}
}
