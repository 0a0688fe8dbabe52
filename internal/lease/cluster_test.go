package lease

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

func (s *fakeStore) setLeader(v bool) {
	s.mu.Lock()
	s.leader = v
	s.mu.Unlock()
}

// TestNewLeaderRestartsLeaseClocks: a lease whose TTL ran out by the
// follower's clock (its holder renewed it on the old leader) is not
// revoked when the follower becomes leader: the new leader gives every
// lease its TTL plus Extend from the moment it takes office, as etcd's
// does.
func TestNewLeaderRestartsLeaseClocks(t *testing.T) {
	_, st := start(t, Config{
		Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 1}},
		Tick:   20 * time.Millisecond,
		Extend: 300 * time.Millisecond,
	}, false)
	time.Sleep(1500 * time.Millisecond) // lease 1 is past its TTL here
	st.setLeader(true)
	time.Sleep(900 * time.Millisecond) // < TTL + Extend after promotion
	if got := st.revokedIDs(); len(got) != 0 {
		t.Fatalf("revoked %v right after promotion", got)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(st.revokedIDs()) == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := st.revokedIDs(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("revoked %v, want [1] once TTL + Extend passed", got)
	}
}

// TestResetReplacesLeases: after Reset the lessor tracks exactly the
// leases given: one it knew and that is gone is no longer renewable, one
// it did not know is.
func TestResetReplacesLeases(t *testing.T) {
	ctx := context.Background()
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 60}}, Tick: 20 * time.Millisecond}, true)
	st.mu.Lock()
	st.leases[2] = 30
	st.mu.Unlock()
	l.Reset([]mvcc.LeaseInfo{{ID: 2, TTL: 30, Remaining: 10}})
	if _, err := l.Renew(ctx, 1); err == nil {
		t.Error("lease 1 renewed after a reset without it")
	}
	ttl, err := l.Renew(ctx, 2)
	if err != nil || ttl != 30 {
		t.Errorf("renew of lease 2: %d, %v", ttl, err)
	}
}

// forwardTo answers as a leader would.
type forwardTo struct{ renewed []int64 }

func (f *forwardTo) Renew(_ context.Context, id int64) (int64, error) {
	f.renewed = append(f.renewed, id)
	return 42, nil
}

func (f *forwardTo) TimeToLive(_ context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: 41, GrantedTTL: 42}, nil
}

// TestFollowerForwardsToLeader: keep-alives and TimeToLive of a follower
// are the leader's answers; the leader answers them itself.
func TestFollowerForwardsToLeader(t *testing.T) {
	ctx := context.Background()
	f := &forwardTo{}
	l, st := start(t, Config{Leases: []mvcc.LeaseInfo{{ID: 1, TTL: 60}}, Forwarder: f}, false)
	if ttl, err := l.Renew(ctx, 1); err != nil || ttl != 42 {
		t.Errorf("follower renew: %d, %v; want the leader's 42", ttl, err)
	}
	if r, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1}); err != nil || r.TTL != 41 {
		t.Errorf("follower time to live: %v, %v; want the leader's 41", r, err)
	}
	st.setLeader(true)
	if ttl, err := l.Renew(ctx, 1); err != nil || ttl != 60 {
		t.Errorf("leader renew: %d, %v; want its own 60", ttl, err)
	}
	if len(f.renewed) != 1 {
		t.Errorf("forwarded %v, want one renewal", f.renewed)
	}
}

// TestGrantBeforeFirstTickNotExtended: a member sees that it leads only
// at its next tick; a lease granted while it already led, before that
// tick, keeps its TTL and gets no election timeout on top, as with etcd,
// whose leader takes office before it grants.
func TestGrantBeforeFirstTickNotExtended(t *testing.T) {
	ctx := context.Background()
	l, _ := start(t, Config{Tick: 300 * time.Millisecond, Extend: 3 * time.Second}, true)
	if _, err := l.Grant(ctx, &pb.LeaseGrantRequest{ID: 7, TTL: 10}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond) // the promoting tick has passed
	r, err := l.TimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 7})
	if err != nil || r.TTL > 10 {
		t.Errorf("lease granted by the leader before its first tick: %v, %v; want TTL <= 10", r, err)
	}
}
