package lease

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/actors"
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
}

func (s *fakeStore) LeaseGrant(_ context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	s.mu.Lock()
	s.leases[r.ID] = r.TTL
	s.mu.Unlock()
	s.l.Applied(r.ID, r.TTL)
	return &pb.LeaseGrantResponse{ID: r.ID, TTL: r.TTL}, nil
}

func (s *fakeStore) LeaseRevoke(_ context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	s.mu.Lock()
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

func (s *fakeStore) revokedIDs() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int64(nil), s.revoked...)
}

func start(t *testing.T, cfg Config, leader bool) (*Lessor, *fakeStore) {
	t.Helper()
	sys := actors.NewSystem()
	l := Start(sys, cfg)
	st := &fakeStore{l: l, leases: make(map[int64]int64), leader: leader}
	for _, li := range cfg.Leases {
		st.leases[li.ID] = li.TTL
	}
	l.Attach(st)
	t.Cleanup(l.Stop)
	return l, st
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
