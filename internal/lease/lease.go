// Package lease is the lease actor and its client: etcd's Lease service
// over the store.
//
// The lease table itself (which leases exist, their granted TTLs, the keys
// attached to each) is replicated state: grants and revokes are raft
// entries that the store applies, and mvcc keeps the table in the engine's
// Lease bucket. What is not replicated is each lease's expiry: the leader
// keeps it in memory, here. Each lease's expiry is a clock shared by the
// actor and the keep-alives: a keep-alive moves it forward in place,
// without a message to the actor, so keep-alives neither queue behind one
// another nor flood the actor's mailbox, and the actor looks at the clock
// when the lease comes due. When the expiry passes, the actor proposes a
// revoke through the store, at most RevokeRate per second so that a storm
// of expiring leases becomes a bounded stream of raft entries.
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
	"cmp"
	"container/heap"
	"context"
	"errors"
	"math"
	"slices"
	"sync"
	"sync/atomic"
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

// ErrNotPrimary: this member found itself leader but could not confirm
// that it still leads, so it does not renew; the client should try
// another member. etcd's text, which it sends with code Unknown.
var ErrNotPrimary = errors.New("not a primary lessor")

// forwardedKey marks the context of a request another member forwarded.
type forwardedKey struct{}

// WithForwarded marks ctx as the context of a request that another member
// forwarded to this one, which it names leader (see Renew).
func WithForwarded(ctx context.Context) context.Context {
	return context.WithValue(ctx, forwardedKey{}, true)
}

func isForwarded(ctx context.Context) bool {
	v, _ := ctx.Value(forwardedKey{}).(bool)
	return v
}

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
	// ConfirmLeader reports whether a member that found itself leader
	// still leads, asking a quorum when its raft clock has stalled (see
	// store.Client.ConfirmLeader).
	ConfirmLeader(ctx context.Context) bool
	// WaitCommitted returns once the member has applied every entry it
	// knew committed when called (see store.Client.WaitCommitted).
	WaitCommitted(ctx context.Context) error
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
	// epoch is when the lessor started; clocks count from it, on the
	// monotonic clock.
	epoch time.Time
	// clocks maps a lease ID to its *clock, for every lease the actor
	// tracks. The actor adds and removes them; keep-alives and readers
	// look them up.
	clocks  sync.Map
	metrics *metrics
}

// clock is one lease's expiry, shared by the lease actor and keep-alives.
type clock struct {
	// ttl is the lease's granted TTL.
	ttl time.Duration
	// at is when the lease expires, in nanoseconds since the lessor's
	// epoch, or revoking once the actor has found it expired (or the
	// lease is gone). Keep-alives only move it forward, by compare and
	// swap, and never from revoking; only a member that becomes leader
	// restarts a revoking clock whose lease still exists (promote).
	at atomic.Int64
	// own: at was last set (granted or renewed) while this member led,
	// so promote leaves it alone. A member sees that it leads only at its
	// next tick, and a lease granted or renewed in between must not get an
	// election timeout more than etcd's leader would give it.
	own atomic.Bool
}

// revoking is a clock's at once its lease can no longer be renewed.
const revoking = math.MinInt64

// renew restarts the clock at now if it has not expired.
func (c *clock) renew(now int64) bool {
	for {
		at := c.at.Load()
		if at == revoking || now >= at {
			return false
		}
		if c.at.CompareAndSwap(at, addClamped(now, c.ttl)) {
			return true
		}
	}
}

// expire marks the clock revoking if it has expired by now, and reports
// whether it has; false means a keep-alive has moved it past now.
func (c *clock) expire(now int64) bool {
	for {
		at := c.at.Load()
		if at == revoking {
			return true
		}
		if at > now {
			return false
		}
		if c.at.CompareAndSwap(at, revoking) {
			return true
		}
	}
}

// restart sets the clock to at unless it is revoking or its member set it
// while leading (see own); it reports whether it did.
func (c *clock) restart(at int64) bool {
	for {
		cur := c.at.Load()
		if cur == revoking || c.own.Load() {
			return false
		}
		if c.at.CompareAndSwap(cur, at) {
			return true
		}
	}
}

// addClamped is t+d, at most math.MaxInt64: etcd's largest TTL is close
// to the range of a Duration.
func addClamped(t int64, d time.Duration) int64 {
	if int64(d) > math.MaxInt64-t {
		return math.MaxInt64
	}
	return t + int64(d)
}

// now is the lessor's clock reading: nanoseconds since its epoch.
func (l *Lessor) now() int64 { return int64(time.Since(l.epoch)) }

// clock returns lease id's clock, nil if the actor does not track it.
func (l *Lessor) clock(id int64) *clock {
	c, ok := l.clocks.Load(id)
	if !ok {
		return nil
	}
	return c.(*clock)
}

// The lease actor's messages.
type (
	// appliedMsg: lease id was granted with clock, or revoked (nil).
	appliedMsg struct {
		id    int64
		clock *clock
	}
	// resetMsg: the leases are exactly clocks, their checkpoints due
	// from from on.
	resetMsg struct {
		clocks map[int64]*clock
		from   int64
	}
	readyMsg struct{}
	tickMsg  struct{}
)

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
	l := &Lessor{cfg: cfg, stop: make(chan struct{}), epoch: time.Now(), metrics: newMetrics()}
	a := &lessorActor{l: l, leases: make(map[int64]*entry)}
	a.reset(l.resetClocks(cfg.Leases))
	// Unbounded: it is fed by the store actor, which must never block,
	// and by its own ticker; keep-alives do not send it anything.
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
// blocks. Like Applied, it changes the clocks keep-alives see before it
// returns; call it from the goroutine that calls Applied.
func (l *Lessor) Reset(leases []mvcc.LeaseInfo) { l.ref.Send(l.resetClocks(leases)) }

// resetClocks makes the clocks keep-alives see those of exactly leases,
// keeping the clock of a lease that stays (a keep-alive may hold it), and
// tells what the actor is to track.
func (l *Lessor) resetClocks(leases []mvcc.LeaseInfo) resetMsg {
	m := resetMsg{clocks: make(map[int64]*clock, len(leases)), from: addClamped(l.now(), l.cfg.Extend)}
	for _, li := range leases {
		left := li.TTL
		if li.Remaining > 0 {
			left = li.Remaining
		}
		c := l.clock(li.ID)
		if c == nil || c.ttl != seconds(li.TTL) {
			if c != nil {
				c.at.Store(revoking)
			}
			c = &clock{ttl: seconds(li.TTL)}
		}
		c.own.Store(false)
		c.at.Store(addClamped(m.from, seconds(left)))
		m.clocks[li.ID] = c
		l.clocks.Store(li.ID, c)
	}
	l.clocks.Range(func(id, c any) bool {
		if m.clocks[id.(int64)] == nil {
			c.(*clock).at.Store(revoking)
			l.clocks.Delete(id)
		}
		return true
	})
	return m
}

// Applied tells the lessor of an applied grant (ttl > 0) or revoke (ttl
// == 0); it is the store's LeaseApplied hook and never blocks. The
// lease's clock is made (or stopped) before it returns, so a keep-alive
// sent after the grant's response finds the lease, and one after the
// revoke's does not.
func (l *Lessor) Applied(id, ttl int64) {
	var c *clock
	if old := l.clock(id); old != nil {
		if ttl > 0 && old.ttl == seconds(ttl) {
			c = old
		} else {
			old.at.Store(revoking)
			l.clocks.CompareAndDelete(id, old)
		}
	}
	if ttl > 0 {
		if c == nil {
			c = &clock{ttl: seconds(ttl)}
		}
		c.at.Store(addClamped(l.now(), c.ttl))
		l.clocks.Store(id, c)
		l.metrics.granted.Inc()
		l.metrics.ttls.Observe(float64(ttl))
	} else {
		l.metrics.revoked.Inc()
	}
	l.ref.Send(appliedMsg{id: id, clock: c})
}

// Grant grants a lease through raft (see store.Client.LeaseGrant).
func (l *Lessor) Grant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return l.st.LeaseGrant(ctx, r)
}

// Revoke revokes a lease through raft, deleting its keys.
func (l *Lessor) Revoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return l.st.LeaseRevoke(ctx, r)
}

// Renew restarts lease id's TTL and returns it; ErrLeaseNotFound if the
// lease does not exist or has expired, ErrNotPrimary if this member found
// itself leader but could not confirm it. A checkpointed remaining TTL is
// cleared through raft first, as etcd does, so that a restart after the
// renewal does not resume from the older checkpoint. With auth enabled
// the caller must be root or allowed to write every key of the lease,
// checked here before a follower forwards the request, and again by the
// leader, which the forwarder tells who the caller is.
func (l *Lessor) Renew(ctx context.Context, id int64) (int64, error) {
	if err := l.st.CheckLease(ctx, id, true); err != nil {
		return 0, err
	}
	leader := l.st.IsLeader()
	if f := l.cfg.Forwarder; f != nil && !leader {
		return f.Renew(ctx, id)
	}
	// A leader whose raft clock has stalled may have been replaced without
	// knowing it; renewing here would not stop the new leader expiring
	// the lease, and a client talking to this member alone would never
	// learn. A renewal a follower forwards needs no confirmation (etcd's
	// leader does not ask either): the follower forwards to the new leader
	// within an election timeout, which the new leader adds to every lease
	// when it takes office.
	confirmed := false
	if leader && !isForwarded(ctx) {
		if !l.st.ConfirmLeader(ctx) {
			return 0, ErrNotPrimary
		}
		confirmed = true
	}
	if l.st.LeaseCheckpointed(id) > 0 {
		cp := &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: id}}}
		if err := l.st.LeaseCheckpoint(ctx, cp); err != nil {
			return 0, err
		}
	}
	select {
	case <-l.stop:
		return 0, ErrStopped
	default:
	}
	c := l.clock(id)
	if c == nil && leader {
		// It may be a grant this leader has committed but not applied
		// yet: wait for that before answering that it does not exist,
		// as etcd's leader does (FastLeaseKeepAlive, on by default).
		if err := l.st.WaitCommitted(ctx); err != nil {
			return 0, err
		}
		c = l.clock(id)
	}
	if c == nil || !c.renew(l.now()) {
		// A leader whose raft clock stalled finds leases expired that
		// live on with the leader elected meanwhile, and does not revoke
		// them (see revoke). Unless it still leads, it says so, as etcd's
		// lessor does once it steps down, and the follower that forwarded
		// the keep-alive asks the next leader.
		if c != nil && leader && !confirmed && !l.st.ConfirmLeader(ctx) {
			return 0, ErrNotPrimary
		}
		return 0, ErrLeaseNotFound
	}
	if leader {
		l.metrics.renewed.Inc()
	}
	c.own.Store(leader)
	return int64(c.ttl / time.Second), nil
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
	leader := l.st.IsLeader()
	if f := l.cfg.Forwarder; f != nil && !leader {
		return f.TimeToLive(ctx, r)
	}
	// The leader answers with what it has committed, as etcd's does: a
	// revoke or grant answered by another member may not be applied here
	// yet.
	if leader {
		if err := l.st.WaitCommitted(ctx); err != nil {
			return nil, err
		}
	}
	granted, keys, ok := l.st.Lease(r.ID, r.Keys)
	if !ok {
		return nil, ErrLeaseNotFound
	}
	ttl := granted
	if c := l.clock(r.ID); c != nil {
		ttl = 0
		if at := c.at.Load(); at != revoking {
			ttl = int64(max(time.Duration(at-l.now()), 0).Seconds())
		}
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
		// A lease being revoked sorts first, as in etcd, where its
		// expiry has passed.
		expiry := make(map[int64]int64, len(ls))
		for _, li := range ls {
			if c := l.clock(li.ID); c != nil {
				expiry[li.ID] = c.at.Load()
			}
		}
		slices.SortStableFunc(ls, func(a, b mvcc.LeaseInfo) int { return cmp.Compare(expiry[a.ID], expiry[b.ID]) })
	}
	out := make([]*pb.LeaseStatus, len(ls))
	for i, li := range ls {
		out[i] = &pb.LeaseStatus{ID: li.ID}
	}
	return &pb.LeaseLeasesResponse{Header: l.st.Header(), Leases: out}, nil
}

// Header is a response header at the current revision.
func (l *Lessor) Header() *pb.ResponseHeader { return l.st.Header() }

// entry is a lease as the actor sees it.
type entry struct {
	clock *clock
	// queued is when its live item in the expiry heap is due; its other
	// items there are stale and skipped when popped.
	queued int64
	// checkpointAt is when its next checkpoint is due; zero if none is.
	checkpointAt int64
}

type item struct {
	id int64
	at int64
}

// expiryHeap orders items by time, earliest first.
type expiryHeap []item

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(item)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// lessorActor tracks every lease's clock. Its heap holds, per lease, a
// time at or before the lease's expiry: keep-alives move a clock forward
// without touching the heap, and a lease found renewed when its item
// comes due is queued again at its new expiry.
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
		a.reset(m)
	case readyMsg:
		a.ready = true
	case tickMsg:
		if !a.ready {
			return
		}
		now := a.l.now()
		a.promote(now)
		a.expire(now)
		a.checkpoint(now)
	}
}

// reset tracks exactly m's leases, from now on.
func (a *lessorActor) reset(m resetMsg) {
	a.leases, a.heap, a.checkpoints = make(map[int64]*entry, len(m.clocks)), nil, nil
	for id, c := range m.clocks {
		a.track(id, c, m.from)
	}
}

// promote restarts every lease's clock when this member becomes leader, as
// etcd's new leader does: renewals went to the old leader, so the
// follower's own expiries mean nothing. Each lease gets its checkpointed
// remaining TTL, or its whole TTL, plus Config.Extend (an election
// timeout), so no lease expires before its holder could reach the new
// leader. That includes a lease this member found expired while it led
// before: its revoke was not proposed (this member could not confirm that
// it led) or did not apply, and the lease lives on, renewed with the
// leader of the meantime.
func (a *lessorActor) promote(now int64) {
	st := a.l.st
	leader := a.leads()
	defer func() { a.leader = leader }()
	if !leader {
		if a.leader {
			for _, e := range a.leases {
				e.clock.own.Store(false)
			}
		}
		return
	}
	if a.leader {
		return
	}
	from := addClamped(now, a.l.cfg.Extend)
	for id, e := range a.leases {
		left := seconds(st.LeaseCheckpointed(id))
		if left <= 0 {
			left = e.clock.ttl
		}
		at := addClamped(from, left)
		if e.clock.restart(at) || a.l.clock(id) == e.clock && e.clock.at.CompareAndSwap(revoking, at) {
			a.queue(id, e, at)
		}
	}
}

// leads reports whether this member leads now.
func (a *lessorActor) leads() bool {
	st := a.l.st
	return st != nil && st.IsLeader()
}

// seconds converts a TTL in seconds to a Duration, clamped to its range.
func seconds(s int64) time.Duration {
	if s > math.MaxInt64/int64(time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s) * time.Second
}

// track tracks lease id on clock c, its first checkpoint due an
// interval after from.
func (a *lessorActor) track(id int64, c *clock, from int64) {
	e := &entry{clock: c}
	a.leases[id] = e
	if at := c.at.Load(); at != revoking {
		a.queue(id, e, at)
	}
	if iv := a.l.cfg.CheckpointInterval; a.l.cfg.Checkpoint && c.ttl > iv {
		e.checkpointAt = addClamped(from, iv)
		heap.Push(&a.checkpoints, item{id: id, at: e.checkpointAt})
	}
}

// queue makes at the time lease id's expiry is next looked at.
func (a *lessorActor) queue(id int64, e *entry, at int64) {
	e.queued = at
	heap.Push(&a.heap, item{id: id, at: at})
}

func (a *lessorActor) applied(m appliedMsg) {
	delete(a.leases, m.id)
	if m.clock != nil {
		m.clock.own.Store(a.leads())
		a.track(m.id, m.clock, a.l.now())
	}
}

// expire proposes revokes for the leases whose expiry has passed, at most
// RevokeRate per second, earliest first. A proposed lease is checked again
// a second later, so a revoke that failed (no leader, timeout) is retried;
// one that succeeded removes the lease through Applied first.
func (a *lessorActor) expire(now int64) {
	l := a.l
	if l.st == nil || !l.st.IsLeader() {
		return
	}
	budget := l.perTick()
	var expired []int64
	for budget > 0 && len(a.heap) > 0 && a.heap[0].at <= now {
		it := heap.Pop(&a.heap).(item)
		e := a.leases[it.id]
		if e == nil || e.queued != it.at {
			continue // revoked, or queued again since
		}
		if !e.clock.expire(now) {
			// Renewed since it was queued: look again at its new expiry,
			// which is after now.
			a.queue(it.id, e, e.clock.at.Load())
			continue
		}
		budget--
		// Expired for good: renewals fail from now on, and the lease
		// comes back in a second to retry if the revoke does not apply.
		a.queue(it.id, e, addClamped(now, time.Second))
		expired = append(expired, it.id)
	}
	if len(expired) > 0 {
		go a.revokeExpired(expired)
	}
}

// checkpoint proposes, in batches, the remaining TTLs of the leases whose
// checkpoint is due, at most RevokeRate leases a second, and schedules
// each one's next checkpoint. A lease is not checkpointed while its
// remaining TTL is still its whole TTL, nor once it has expired.
func (a *lessorActor) checkpoint(now int64) {
	l := a.l
	if !l.cfg.Checkpoint || l.st == nil || !l.st.IsLeader() {
		return
	}
	budget := l.perTick()
	var cps []*pb.LeaseCheckpoint
	for budget > 0 && len(a.checkpoints) > 0 && a.checkpoints[0].at <= now {
		it := heap.Pop(&a.checkpoints).(item)
		e := a.leases[it.id]
		if e == nil || e.checkpointAt != it.at {
			continue
		}
		at := e.clock.at.Load()
		if at == revoking || now >= at {
			continue
		}
		budget--
		e.checkpointAt = addClamped(now, l.cfg.CheckpointInterval)
		heap.Push(&a.checkpoints, item{id: it.id, at: e.checkpointAt})
		left := int64(math.Ceil(time.Duration(at - now).Seconds()))
		if left >= int64(e.clock.ttl/time.Second) {
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
	if !l.st.ConfirmLeader(ctx) {
		l.cfg.Logger.Warn("ignored the lease checkpoint because this member could not confirm that it leads",
			zap.Int("leases", len(cps)))
		return
	}
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

// revokeExpired revokes the leases of one expiry check, each on its own
// goroutine, once this member has confirmed that it leads: a leader whose
// raft clock stalled (a stuck disk write) still believes it leads while
// the leases' holders renew with a new leader. Its revokes, proposed now,
// would reach the new leader once it steps down and revoke live leases
// (etcd issue 15247). Like etcd, it confirms once for the whole batch.
// Unconfirmed, the leases come back in a second, by which time this member
// has stepped down or shown that it still leads.
func (a *lessorActor) revokeExpired(ids []int64) {
	l := a.l
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.RevokeTimeout)
	ok := l.st.ConfirmLeader(ctx)
	cancel()
	if !ok {
		l.cfg.Logger.Warn("ignored the lease revokes because this member could not confirm that it leads",
			zap.Int("leases", len(ids)))
		return
	}
	for _, id := range ids {
		go a.revoke(id)
	}
}

// revoke revokes an expired lease as root, as etcd's lessor does, so
// that auth never keeps a lease alive.
func (a *lessorActor) revoke(id int64) {
	l := a.l
	ctx, cancel := context.WithTimeout(auth.WithUser(context.Background(), auth.RootUser), l.cfg.RevokeTimeout)
	defer cancel()
	_, err := l.st.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
	switch {
	case err == nil:
		l.metrics.expired.Inc()
	case !errors.Is(err, ErrLeaseNotFound):
		l.cfg.Logger.Warn("failed to revoke expired lease", zap.Int64("lease", id), zap.Error(err))
	}
}
