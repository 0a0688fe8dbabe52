package lease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
)

// fakeStore records revokes and applies them at once, as the store would
// after the raft entry commits.
type fakeStore struct {
	mu      sync.Mutex
	l       *Lessor
	leases  map[int64]int64
	revoked []int64
	leader  bool
	// checkpoints is each lease's last checkpointed remaining TTL;
	// cpLog every checkpoint proposed, in order.
	checkpoints map[int64]int64
	cpLog       []*pb.LeaseCheckpoint
	// waits counts WaitCommitted calls, which answer waitErr.
	waits   int
	waitErr error
	// unconfirmed makes ConfirmLeader fail; confirms counts its calls.
	unconfirmed bool
	confirms    int
	// denied is what the auth checks answer; revokedAs the user each
	// revoke was made as.
	denied    error
	revokedAs []string
}

func (s *fakeStore) deny() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.denied
}

func (s *fakeStore) CheckLease(context.Context, int64, bool) error { return s.deny() }
func (s *fakeStore) CheckLeases(context.Context) error             { return s.deny() }
func (s *fakeStore) RequireIdentity(context.Context) error         { return s.deny() }

func (s *fakeStore) LeaseCheckpoint(_ context.Context, r *pb.LeaseCheckpointRequest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cp := range r.Checkpoints {
		s.checkpoints[cp.ID] = cp.Remaining_TTL
		s.cpLog = append(s.cpLog, cp)
	}
	return nil
}

func (s *fakeStore) LeaseCheckpointed(id int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkpoints[id]
}

func (s *fakeStore) checkpointLog() []*pb.LeaseCheckpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*pb.LeaseCheckpoint(nil), s.cpLog...)
}

func (s *fakeStore) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	s.mu.Lock()
	s.leases[r.ID] = r.TTL
	s.mu.Unlock()
	s.l.Applied(r.ID, r.TTL)
	return &pb.LeaseGrantResponse{ID: r.ID, TTL: r.TTL}, nil
}

func (s *fakeStore) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	s.mu.Lock()
	s.revokedAs = append(s.revokedAs, auth.UserFrom(ctx))
	_, ok := s.leases[r.ID]
	delete(s.leases, r.ID)
	if ok {
		s.revoked = append(s.revoked, r.ID)
	}
	s.mu.Unlock()
	if !ok {
		return nil, ErrLeaseNotFound
	}
	s.l.Applied(r.ID, 0)
	return &pb.LeaseRevokeResponse{}, nil
}

func (s *fakeStore) Lease(id int64, _ bool) (int64, [][]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ttl, ok := s.leases[id]
	return ttl, nil, ok
}

func (s *fakeStore) Leases() []mvcc.LeaseInfo { return nil }

func (s *fakeStore) IsLeader() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leader
}

func (s *fakeStore) Header() *pb.ResponseHeader { return &pb.ResponseHeader{} }

func (s *fakeStore) ConfirmLeader(context.Context) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.confirms++
	return !s.unconfirmed
}

// setUnconfirmed makes ConfirmLeader fail (true) or succeed.
func (s *fakeStore) setUnconfirmed(v bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unconfirmed = v
}

// confirmCalls is how many times ConfirmLeader was asked.
func (s *fakeStore) confirmCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.confirms
}

// WaitCommitted: the fake applies every request as it is made, so it
// only counts the waits and answers waitErr.
func (s *fakeStore) WaitCommitted(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.waits++
	return s.waitErr
}

func (s *fakeStore) revokedIDs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.revoked...)
}

func start(t *testing.T, cfg Config, leader bool) (*Lessor, *fakeStore) {
	t.Helper()
	sys := actors.NewSystem()
	l := Start(sys, cfg)
	st := &fakeStore{l: l, leases: make(map[int64]int64), leader: leader, checkpoints: make(map[int64]int64)}
	for _, li := range cfg.Leases {
		st.leases[li.ID] = li.TTL
		st.checkpoints[li.ID] = li.Remaining
	}
	l.Attach(st)
	l.Ready()
	t.Cleanup(l.Stop)
	return l, st
}

// TestUnconfirmedLeaderDoesNotRevoke: an expired lease is revoked only by
// a leader that confirms it still leads (etcd issue 15247: a leader
// stalled on its disk revoked, once it resumed, leases its successor
// kept alive). Once leadership is confirmed, the leases are revoked within
// the second their retry waits.
func TestUnconfirmedLeaderDoesNotRevoke(t *testing.T) {
	var leases []mvcc.LeaseInfo
	for id := range int64(5) {
		leases = append(leases, mvcc.LeaseInfo{ID: id + 1, TTL: 1})
	}
	l, st := start(t, Config{Leases: leases, Tick: 20 * time.Millisecond}, true)
	st.setUnconfirmed(true)
	time.Sleep(1500 * time.Millisecond)
	if ids := st.revokedIDs(); len(ids) != 0 {
		t.Fatalf("an unconfirmed leader revoked %v", ids)
	}
	// The five expired at once: leadership is asked once for them all,
	// as etcd asks once per batch of expired leases.
	if n := st.confirmCalls(); n == 0 || n > 2 {
		t.Errorf("leadership asked %d times for one batch of expired leases, want once", n)
	}
	st.setUnconfirmed(false)
	deadline := time.Now().Add(3 * time.Second)
	for len(st.revokedIDs()) < len(leases) {
		if time.Now().After(deadline) {
			t.Fatalf("revoked %v once leadership was confirmed, want all %d expired leases", st.revokedIDs(), len(leases))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := l.Renew(context.Background(), 1); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("keep-alive after the revoke: %v, want %v", err, ErrLeaseNotFound)
	}
}

// TestLeaderAgainResumesUnrevokedLease: a lease this member found expired
// while leading, but could not revoke (leadership unconfirmed), lives on
// with the next leader. When this member leads again it gives the lease a
// new expiry, as every other, instead of revoking it at once.
func TestLeaderAgainResumesUnrevokedLease(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 1}}, Tick: 20 * time.Millisecond}, true)
	set := func(leader, unconfirmed bool) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.leader, st.unconfirmed = leader, unconfirmed
	}
	set(true, true)
	time.Sleep(1500 * time.Millisecond) // expired here, revoke unconfirmed
	set(false, false)
	time.Sleep(200 * time.Millisecond) // the lessor sees it no longer leads
	set(true, false)
	time.Sleep(200 * time.Millisecond) // and that it leads again
	if ids := st.revokedIDs(); len(ids) != 0 {
		t.Fatalf("leading again, the member revoked %v at once", ids)
	}
	if ttl, err := l.Renew(ctx, 1); err != nil || ttl != 1 {
		t.Fatalf("keep-alive once leading again: %d, %v; want 1, nil", ttl, err)
	}
}

// TestExpiredOnUnconfirmedLeader: a keep-alive, forwarded by a follower,
// of a lease that a leader whose leadership cannot be confirmed found
// expired is answered "not a primary lessor", so that the follower asks
// the next leader, with which the lease may live on; once leadership is
// confirmed, the answer is "not found".
func TestExpiredOnUnconfirmedLeader(t *testing.T) {
	fwd := WithForwarded(context.Background())
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 1}}, Tick: 20 * time.Millisecond}, true)
	st.setUnconfirmed(true)
	time.Sleep(1500 * time.Millisecond)
	if _, err := l.Renew(fwd, 1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("forwarded keep-alive of a lease expired on an unconfirmed leader: %v, want %v", err, ErrNotPrimary)
	}
	if _, err := l.Renew(fwd, 2); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("forwarded keep-alive of an unknown lease: %v, want %v", err, ErrLeaseNotFound)
	}
	st.setUnconfirmed(false)
	if _, err := l.Renew(fwd, 1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("forwarded keep-alive of the expired lease, leadership confirmed: %v, want %v", err, ErrLeaseNotFound)
	}
}

func TestExpiryRevokes(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 1}}, Tick: 20 * time.Millisecond}, true)
	if _, err := l.Grant(ctx, &pb.LeaseGrantRequest{ID: 2, TTL: 1}); err != nil {
		t.Fatal(err)
	}
	// Renewing lease 2 every 300ms keeps it alive while lease 1 expires.
	deadline := time.Now().Add(1800 * time.Millisecond)
	for time.Now().Before(deadline) {
		if ttl, err := l.Renew(ctx, 2); err != nil || ttl != 1 {
			t.Fatalf("renew: %d, %v", ttl, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if got := st.revokedIDs(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("revoked %v, want [1]", got)
	}
	if _, err := l.Renew(ctx, 1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("renew of the expired lease: %v", err)
	}
	r, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 2})
	if err != nil || r.TTL > 1 || r.GrantedTTL != 1 {
		t.Fatalf("time to live: %v, %v", r, err)
	}
	if _, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1}); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("time to live of the revoked lease: %v", err)
	}
}

// TestAuthChecks: keep-alives, TimeToLive and Leases are refused as the
// store's auth checks answer, before anything else (forwarding included),
// and expired leases are revoked as root, whom no permission stops.
func TestAuthChecks(t *testing.T) {
	ctx := context.Background()
	fwd := &forwardTo{}
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 1}}, Tick: 20 * time.Millisecond, Forwarder: fwd}, true)
	st.mu.Lock()
	st.denied = auth.ErrPermissionDenied
	st.mu.Unlock()
	if _, err := l.Renew(ctx, 1); !errors.Is(err, auth.ErrPermissionDenied) {
		t.Fatalf("renew: %v", err)
	}
	st.setLeader(false)
	if _, err := l.Renew(ctx, 1); !errors.Is(err, auth.ErrPermissionDenied) {
		t.Fatalf("renew on a follower: %v", err)
	}
	if _, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1, Keys: true}); !errors.Is(err, auth.ErrPermissionDenied) {
		t.Fatalf("time to live: %v", err)
	}
	if len(fwd.renewed) != 0 {
		t.Fatalf("refused keep-alives were forwarded: %v", fwd.renewed)
	}
	if _, err := l.Leases(ctx); !errors.Is(err, auth.ErrPermissionDenied) {
		t.Fatalf("leases: %v", err)
	}
	st.setLeader(true)
	deadline := time.Now().Add(5 * time.Second)
	for len(st.revokedIDs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.revokedAs) == 0 || st.revokedAs[0] != auth.RootUser {
		t.Fatalf("expired lease revoked as %q, want root", st.revokedAs)
	}
}

func TestRevokeRateLimit(t *testing.T) {
	var ls []mvcc.LeaseInfo
	for i := int64(1); i <= 40; i++ {
		ls = append(ls, mvcc.LeaseInfo{ID: i, TTL: 1})
	}
	// 50 revokes a second, checked every 200ms: 10 per tick.
	_, st := start(t, Config{Leases: ls, RevokeRate: 50, Tick: 200 * time.Millisecond}, true)
	time.Sleep(1300 * time.Millisecond) // expiry at 1s; at most two ticks since
	if n := len(st.revokedIDs()); n > 20 {
		t.Fatalf("%d revoked within 300ms of expiry, want at most 20", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(st.revokedIDs()) < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of 40 revoked", len(st.revokedIDs()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestFollowerDoesNotRevoke(t *testing.T) {
	_, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 1}}, Tick: 20 * time.Millisecond}, false)
	time.Sleep(1300 * time.Millisecond)
	if got := st.revokedIDs(); len(got) != 0 {
		t.Fatalf("a follower revoked %v", got)
	}
}

// TestCheckpoints: the leader checkpoints a lease once its remaining TTL is
// below the granted one, never at its whole TTL; a renewal clears the
// checkpoint before renewing.
func TestCheckpoints(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Checkpoint: true, CheckpointInterval: 300 * time.Millisecond, Tick: 20 * time.Millisecond}, true)
	for _, g := range []*pb.LeaseGrantRequest{{ID: 1, TTL: 3}, {ID: 2, TTL: 100}} {
		if _, err := l.Grant(ctx, g); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.LeaseCheckpointed(1) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lease 1 never checkpointed; checkpoints %v", st.checkpointLog())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := st.LeaseCheckpointed(1); r < 1 || r > 2 {
		t.Errorf("lease 1 checkpointed with %d s left of 3, want 1 or 2", r)
	}
	if _, err := l.Renew(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if r := st.LeaseCheckpointed(1); r != 0 {
		t.Errorf("after a renewal lease 1 has checkpoint %d, want it cleared", r)
	}
	for _, cp := range st.checkpointLog() {
		if cp.ID == 2 && cp.Remaining_TTL >= 100 {
			t.Errorf("lease 2 checkpointed at its whole TTL: %v", cp)
		}
	}
}

// TestResumeFromCheckpoint: a lease with a checkpoint starts with the
// remaining TTL recorded, not its granted one, and expires by it.
func TestResumeFromCheckpoint(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 100, Remaining: 1}, {ID: 2, TTL: 100}}, Tick: 20 * time.Millisecond}, true)
	r, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1})
	if err != nil || r.TTL > 1 || r.GrantedTTL != 100 {
		t.Fatalf("time to live of the checkpointed lease: %v, %v", r, err)
	}
	if r, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 2}); err != nil || r.TTL < 99 {
		t.Fatalf("time to live of the lease without a checkpoint: %v, %v", r, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(st.revokedIDs()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the checkpointed lease did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := st.revokedIDs(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("revoked %v, want [1]", got)
	}
}

// TestExtendAtStart: leases found at start get Extend on top of their
// remaining TTL, as etcd's new leader gives them its election timeout.
func TestExtendAtStart(t *testing.T) {
	ctx := context.Background()
	l, _ := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 10}, {ID: 2, TTL: 100, Remaining: 5}}, Extend: 3 * time.Second}, true)
	for _, c := range []struct{ id, min, max int64 }{{1, 12, 13}, {2, 7, 8}} {
		r, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: c.id})
		if err != nil {
			t.Fatal(err)
		}
		if r.TTL < c.min || r.TTL > c.max {
			t.Errorf("lease %d: TTL %d after start, want %d..%d", c.id, r.TTL, c.min, c.max)
		}
	}
	// A lease granted later gets no extension.
	if _, err := l.Grant(ctx, &pb.LeaseGrantRequest{ID: 3, TTL: 10}); err != nil {
		t.Fatal(err)
	}
	if r, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 3}); err != nil || r.TTL > 10 {
		t.Errorf("a lease granted after start: %v, %v", r, err)
	}
}

// TestKeepAlivesRaceExpiry: keep-alives renew a lease's clock while the
// actor checks expiry every few milliseconds. A lease renewed well within
// its TTL is never revoked, whichever of a renewal and an expiry check
// comes first; one nobody renews is; and once its keep-alives stop, the
// renewed lease expires a TTL after the last of them and cannot be
// renewed again.
func TestKeepAlivesRaceExpiry(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 1}, {ID: 2, TTL: 1}}, Tick: 2 * time.Millisecond}, true)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last time.Time
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if ttl, err := l.Renew(ctx, 1); err != nil || ttl != 1 {
					t.Errorf("renew of lease 1: %d, %v", ttl, err)
					return
				}
				mu.Lock()
				last = time.Now()
				mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	time.Sleep(2500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if got := st.revokedIDs(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("revoked %v while lease 1 was kept alive, want [2]", got)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(st.revokedIDs()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	revokedAt := time.Now()
	if got := st.revokedIDs(); len(got) != 2 || got[1] != 1 {
		t.Fatalf("revoked %v after the keep-alives stopped, want [2 1]", got)
	}
	mu.Lock()
	lived := revokedAt.Sub(last)
	mu.Unlock()
	if lived < time.Second {
		t.Errorf("lease 1 revoked %v after its last keep-alive, before its TTL of 1s", lived)
	}
	if _, err := l.Renew(ctx, 1); !errors.Is(err, ErrLeaseNotFound) {
		t.Errorf("renew after the revoke: %v, want %v", err, ErrLeaseNotFound)
	}
}

// BenchmarkRenew is one keep-alive of a lease on the leader, from
// parallel callers, auth off.
func BenchmarkRenew(b *testing.B) {
	ctx := context.Background()
	sys := actors.NewSystem()
	l := Start(sys, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 60}}})
	st := &fakeStore{l: l, leases: map[int64]int64{1: 60}, leader: true, checkpoints: make(map[int64]int64)}
	l.Attach(st)
	l.Ready()
	defer l.Stop()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Renew(ctx, 1); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLeaderConfirmsBeforeRenewing: a leader renews a client's keep-alive
// only once the store confirms that it still leads (etcd's
// ensureLeadership); when it cannot, the keep-alive fails with "not a
// primary lessor" and the lease's clock stays where it was. A keep-alive
// another member forwarded is renewed without asking, and a follower
// forwards without asking.
func TestLeaderConfirmsBeforeRenewing(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 60}}}, true)
	if _, err := l.Renew(ctx, 1); err != nil || st.confirmCalls() != 1 {
		t.Fatalf("keep-alive on a confirmed leader: %v, %d confirmations, want one", err, st.confirmCalls())
	}
	st.setUnconfirmed(true)
	before := l.clock(1).at.Load()
	time.Sleep(5 * time.Millisecond)
	if ttl, err := l.Renew(ctx, 1); !errors.Is(err, ErrNotPrimary) || ttl != 0 {
		t.Fatalf("keep-alive on an unconfirmed leader: %d, %v, want %v", ttl, err, ErrNotPrimary)
	}
	if after := l.clock(1).at.Load(); after != before {
		t.Errorf("an unconfirmed leader moved the lease's expiry by %v", time.Duration(after-before))
	}
	// A renewal another member forwards is not held up: that member
	// forwards elsewhere once it learns of a new leader.
	if _, err := l.Renew(WithForwarded(ctx), 1); err != nil || st.confirmCalls() != 2 || l.clock(1).at.Load() <= before {
		t.Fatalf("forwarded keep-alive on an unconfirmed leader: %v, %d confirmations, expiry moved %v; want renewed without asking",
			err, st.confirmCalls(), time.Duration(l.clock(1).at.Load()-before))
	}
	before = l.clock(1).at.Load()
	time.Sleep(5 * time.Millisecond)
	st.setUnconfirmed(false)
	if _, err := l.Renew(ctx, 1); err != nil || l.clock(1).at.Load() <= before {
		t.Fatalf("keep-alive once confirmed again: %v, expiry moved %v", err, time.Duration(l.clock(1).at.Load()-before))
	}

	fl, fst := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 60}}, Forwarder: &forwardTo{}}, false)
	fst.setUnconfirmed(true)
	if _, err := fl.Renew(ctx, 1); err != nil {
		t.Fatalf("keep-alive on a follower: %v", err)
	}
	if n := fst.confirmCalls(); n != 0 {
		t.Errorf("a follower asked for confirmation %d times, want none: it forwards", n)
	}
}

// TestLeaderWaitsForCommitted: as etcd's leader does, a TimeToLive waits
// until everything committed is applied before it answers, and so does a
// keep-alive of a lease the leader does not know (it may be a grant not
// yet applied); a keep-alive of a known lease does not wait. A follower
// forwards both instead of waiting.
func TestLeaderWaitsForCommitted(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 60}}}, true)
	waits := func() int {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.waits
	}
	if _, err := l.Renew(ctx, 1); err != nil || waits() != 0 {
		t.Fatalf("keep-alive of a known lease: %v, %d waits, want none", err, waits())
	}
	if _, err := l.Renew(ctx, 2); !errors.Is(err, ErrLeaseNotFound) || waits() != 1 {
		t.Fatalf("keep-alive of an unknown lease: %v, %d waits, want not found after one", err, waits())
	}
	if _, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1}); err != nil || waits() != 2 {
		t.Fatalf("TimeToLive: %v, %d waits, want 2", err, waits())
	}
	timedOut := errors.New("waiting for the applied index took too long")
	st.mu.Lock()
	st.waitErr = timedOut
	st.mu.Unlock()
	if _, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1}); !errors.Is(err, timedOut) {
		t.Fatalf("TimeToLive when the wait times out: %v, want %v", err, timedOut)
	}
	if _, err := l.Renew(ctx, 2); !errors.Is(err, timedOut) {
		t.Fatalf("keep-alive of an unknown lease when the wait times out: %v, want %v", err, timedOut)
	}

	fl, fst := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 60}}, Forwarder: &forwardTo{}}, false)
	if _, err := fl.Renew(ctx, 2); err != nil {
		t.Fatalf("keep-alive on a follower: %v", err)
	}
	fst.mu.Lock()
	defer fst.mu.Unlock()
	if fst.waits != 0 {
		t.Errorf("a follower waited %d times, want none: it forwards", fst.waits)
	}
}
