package etcdcompat

import (
	"context"
	"errors"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
)

// SelfClient returns an etcd client connected to this member. The lock and
// election services are built, as in etcd, from the client-side recipes of
// clientv3/concurrency run against the member's own KV, Lease and Watch
// services; the client is made on first use, once the member serves.
type SelfClient func() (*clientv3.Client, error)

// errMissingLeaderKey is etcd's error for Proclaim and Resign without a
// leader key.
var errMissingLeaderKey = errors.New(`"leader" field must be provided`)

// onceClient caches the first successful SelfClient call.
type onceClient struct {
	mu  sync.Mutex
	cli *clientv3.Client
	new SelfClient
	// key is the secret by which the member tells its own client's calls
	// (see identity.go).
	key string
}

// as returns ctx set to make the client's calls as the caller of the
// request in ctx, so that its permissions apply to every call the
// request makes, as etcd's lock and election services act as their
// caller.
func (o *onceClient) as(ctx context.Context) context.Context { return asCaller(ctx, o.key) }

func (o *onceClient) get() (*clientv3.Client, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cli != nil {
		return o.cli, nil
	}
	cli, err := o.new()
	if err != nil {
		return nil, err
	}
	o.cli = cli
	return cli, nil
}

// noLease is the lease of a session that only reads (Leader, Observe): any
// non-zero ID stops NewSession from granting a lease, and the session is
// orphaned, so nothing is kept alive or revoked.
const noLease = -1

// session wraps an existing lease in a concurrency session that does not
// keep it alive: the lease belongs to the caller.
func (o *onceClient) session(ctx context.Context, lease int64) (*concurrency.Session, error) {
	cli, err := o.get()
	if err != nil {
		return nil, err
	}
	s, err := concurrency.NewSession(cli, concurrency.WithLease(clientv3.LeaseID(lease)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	s.Orphan()
	return s, nil
}

// lockServer implements the v3lock service (etcdctl lock).
type lockServer struct {
	v3lockpb.UnimplementedLockServer
	c *onceClient
}

// Lock waits until the named lock is held under the caller's lease and
// returns the key that holds it.
func (l *lockServer) Lock(ctx context.Context, req *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	ctx = l.c.as(ctx)
	s, err := l.c.session(ctx, req.Lease)
	if err != nil {
		return nil, toGRPCError(err)
	}
	m := concurrency.NewMutex(s, string(req.Name))
	if err := m.Lock(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	return &v3lockpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

// Unlock releases a lock by deleting its key.
func (l *lockServer) Unlock(ctx context.Context, req *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	ctx = l.c.as(ctx)
	cli, err := l.c.get()
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := cli.Delete(ctx, string(req.Key))
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &v3lockpb.UnlockResponse{Header: resp.Header}, nil
}

// electionServer implements the v3election service (etcdctl elect).
type electionServer struct {
	v3electionpb.UnimplementedElectionServer
	c *onceClient
}

// Campaign waits until the caller leads the election under its lease.
func (e *electionServer) Campaign(ctx context.Context, req *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	ctx = e.c.as(ctx)
	s, err := e.c.session(ctx, req.Lease)
	if err != nil {
		return nil, toGRPCError(err)
	}
	el := concurrency.NewElection(s, string(req.Name))
	if err := el.Campaign(ctx, string(req.Value)); err != nil {
		return nil, toGRPCError(err)
	}
	return &v3electionpb.CampaignResponse{
		Header: el.Header(),
		Leader: &v3electionpb.LeaderKey{Name: req.Name, Key: []byte(el.Key()), Rev: el.Rev(), Lease: req.Lease},
	}, nil
}

// resume rebuilds the election a leader key stands for.
func (e *electionServer) resume(ctx context.Context, lk *v3electionpb.LeaderKey) (*concurrency.Election, error) {
	if lk == nil {
		return nil, errMissingLeaderKey
	}
	s, err := e.c.session(ctx, lk.Lease)
	if err != nil {
		return nil, err
	}
	return concurrency.ResumeElection(s, string(lk.Name), string(lk.Key), lk.Rev), nil
}

// Proclaim sets the leader's value, if the caller still leads.
func (e *electionServer) Proclaim(ctx context.Context, req *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	ctx = e.c.as(ctx)
	el, err := e.resume(ctx, req.Leader)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if err := el.Proclaim(ctx, string(req.Value)); err != nil {
		return nil, toGRPCError(err)
	}
	return &v3electionpb.ProclaimResponse{Header: el.Header()}, nil
}

// Resign gives up leadership.
func (e *electionServer) Resign(ctx context.Context, req *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	ctx = e.c.as(ctx)
	el, err := e.resume(ctx, req.Leader)
	if err != nil {
		return nil, toGRPCError(err)
	}
	if err := el.Resign(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	return &v3electionpb.ResignResponse{Header: el.Header()}, nil
}

// Leader returns the current leader's key-value.
func (e *electionServer) Leader(ctx context.Context, req *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	ctx = e.c.as(ctx)
	s, err := e.c.session(ctx, noLease)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp, err := concurrency.NewElection(s, string(req.Name)).Leader(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}, nil
}

// Observe streams every change of leader.
func (e *electionServer) Observe(req *v3electionpb.LeaderRequest, stream v3electionpb.Election_ObserveServer) error {
	ctx := e.c.as(stream.Context())
	s, err := e.c.session(ctx, noLease)
	if err != nil {
		return toGRPCError(err)
	}
	for resp := range concurrency.NewElection(s, string(req.Name)).Observe(ctx) {
		if err := stream.Send(&v3electionpb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}); err != nil {
			return err
		}
	}
	return stream.Context().Err()
}
