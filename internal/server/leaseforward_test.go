package server

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
)

// fakeLeader is a leader's lessor behind etcd's Lease service on a peer
// listener: each keep-alive or TimeToLive takes the next of answers (the
// last one repeats), an error or a TTL.
type fakeLeader struct {
	addr string

	mu      sync.Mutex
	answers []any // error or int64
	calls   int
}

func startFakeLeader(t *testing.T, answers ...any) *fakeLeader {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeLeader{addr: l.Addr().String(), answers: answers}
	srv := grpc.NewServer()
	etcdcompat.RegisterLease(srv, f)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return f
}

func (f *fakeLeader) next() (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a := f.answers[min(f.calls, len(f.answers)-1)]
	f.calls++
	if err, ok := a.(error); ok {
		return 0, err
	}
	return a.(int64), nil
}

func (f *fakeLeader) Renew(context.Context, int64) (int64, error) { return f.next() }

func (f *fakeLeader) TimeToLive(_ context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	ttl, err := f.next()
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{Header: f.Header(), ID: r.ID, TTL: ttl, GrantedTTL: 60}, nil
}

func (f *fakeLeader) Grant(context.Context, *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return nil, errors.New("not used")
}

func (f *fakeLeader) Revoke(context.Context, *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return nil, errors.New("not used")
}

func (f *fakeLeader) Leases(context.Context) (*pb.LeaseLeasesResponse, error) {
	return nil, errors.New("not used")
}

func (f *fakeLeader) Header() *pb.ResponseHeader { return &pb.ResponseHeader{} }

// deadAddr is an address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// testConns is a leaderConns whose leader is whatever *leader holds, a
// member ID whose peer URL is http://<the ID's address in addrs>.
func testConns(t *testing.T, leader *atomic.Uint64, addrs map[uint64]string) *leaderConns {
	t.Helper()
	c := &leaderConns{
		leaderID: leader.Load,
		peerURLs: func(id uint64) []string {
			if a, ok := addrs[id]; ok {
				return []string{"http://" + a}
			}
			return nil
		},
		creds:   tlsConfigs{}.peerCreds,
		conns:   make(map[uint64]*memberConn),
		removed: make(map[uint64]bool),
	}
	t.Cleanup(c.Close)
	return c
}

// TestLeaseForwarderReturnsSentinels: a follower's keep-alive or
// TimeToLive forwarded to the leader fails with the core packages'
// sentinels, as the lessor's own requests do, never with a gRPC status:
// the leader's own answer as the sentinel it was made from, etcd's
// "request timed out" for a leader that cannot be reached within the
// request timeout (etcd's followers retry until then), "no leader" when
// there is none. Answers that another leader may give otherwise (not
// leader, no leader, stopping) and a leader that cannot be reached are
// asked again, of whichever member leads by then.
func TestLeaseForwarderReturnsSentinels(t *testing.T) {
	const timeout = 400 * time.Millisecond
	for _, tc := range []struct {
		name    string
		leaders func(t *testing.T) (first uint64, addrs map[uint64]string)
		// then, if set, is the leader once the first has been asked.
		then    uint64
		wantTTL int64
		want    error
		minWait time.Duration // the forwarder retried until the timeout
	}{
		{name: "leader renews", wantTTL: 7, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, int64(7)).addr}
		}},
		{name: "lease unknown to the leader", want: mvcc.ErrLeaseNotFound, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, mvcc.ErrLeaseNotFound).addr}
		}},
		{name: "leader out of space", want: store.ErrNoSpace, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, store.ErrNoSpace).addr}
		}},
		{name: "leader's request timed out", want: store.ErrTimeout, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, store.ErrTimeout).addr}
		}},
		{name: "leader answers not leader, then renews", wantTTL: 7, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, store.ErrNotLeader, int64(7)).addr}
		}},
		{name: "leader's lessor stopping, then renews", wantTTL: 7, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, lease.ErrStopped, int64(7)).addr}
		}},
		{name: "leader cannot confirm it leads, then renews", wantTTL: 7, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, lease.ErrNotPrimary, int64(7)).addr}
		}},
		{name: "leader stays without a leader", want: store.ErrNoLeader, minWait: timeout, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: startFakeLeader(t, store.ErrNoLeader).addr}
		}},
		{name: "leader unreachable", want: store.ErrTimeout, minWait: timeout, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: deadAddr(t)}
		}},
		{name: "dead leader replaced", wantTTL: 7, then: 2, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{1: deadAddr(t), 2: startFakeLeader(t, int64(7)).addr}
		}},
		{name: "no leader", want: store.ErrNoLeader, minWait: timeout, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 0, nil
		}},
		{name: "leader has no peer URL", want: store.ErrNoLeader, minWait: timeout, leaders: func(t *testing.T) (uint64, map[uint64]string) {
			return 1, map[uint64]string{}
		}},
	} {
		for _, op := range []string{"Renew", "TimeToLive"} {
			t.Run(tc.name+"/"+op, func(t *testing.T) {
				first, addrs := tc.leaders(t)
				var leader atomic.Uint64
				leader.Store(first)
				if tc.then != 0 {
					go func() {
						time.Sleep(3 * forwardRetryInterval)
						leader.Store(tc.then)
					}()
				}
				f := leaseForwarder{conns: testConns(t, &leader, addrs), timeout: timeout}
				start := time.Now()
				var ttl int64
				var err error
				if op == "Renew" {
					ttl, err = f.Renew(context.Background(), 5)
				} else {
					var resp *pb.LeaseTimeToLiveResponse
					if resp, err = f.TimeToLive(context.Background(), &pb.LeaseTimeToLiveRequest{ID: 5}); resp != nil {
						ttl = resp.TTL
					}
				}
				elapsed := time.Since(start)
				if _, isStatus := status.FromError(err); err != nil && isStatus {
					t.Errorf("%s: gRPC status %v, want a sentinel error", op, err)
				}
				if !errors.Is(err, tc.want) {
					t.Errorf("%s: %v, want %v", op, err, tc.want)
				}
				if ttl != tc.wantTTL {
					t.Errorf("%s: TTL %d, want %d", op, ttl, tc.wantTTL)
				}
				if elapsed < tc.minWait || elapsed > timeout+time.Second {
					t.Errorf("%s answered after %v, want between %v and the timeout (%v)", op, elapsed, tc.minWait, timeout)
				}
			})
		}
	}
}

// TestLeaseForwarderEnds: a forwarded request ends with its caller, with
// the caller's error, and with the member, with store.ErrStopped.
func TestLeaseForwarderEnds(t *testing.T) {
	var leader atomic.Uint64
	leader.Store(1)
	conns := testConns(t, &leader, map[uint64]string{1: deadAddr(t)})
	f := leaseForwarder{conns: conns, timeout: time.Minute}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	go func() {
		time.Sleep(100 * time.Millisecond)
		cancel()
	}()
	if _, err := f.Renew(ctx, 5); !errors.Is(err, context.Canceled) {
		t.Errorf("caller gone: %v, want %v", err, context.Canceled)
	}

	go func() {
		time.Sleep(100 * time.Millisecond)
		conns.Close()
	}()
	start := time.Now()
	if _, err := f.TimeToLive(context.Background(), &pb.LeaseTimeToLiveRequest{ID: 5}); !errors.Is(err, store.ErrStopped) {
		t.Errorf("member stopping: %v, want %v", err, store.ErrStopped)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("member stopping: answered after %v", d)
	}
}
