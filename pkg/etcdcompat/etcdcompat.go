// Package etcdcompat serves etcd's v3 gRPC API (KV, Watch, Lease, Maintenance, Cluster, Auth)
// over Cairn's store. It translates between etcd's protocol and the store's
// client and maps errors to etcd's exact status codes and messages; it holds
// no state of its own.
package etcdcompat

import (
	"context"
	"math"
	"runtime"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"

	"github.com/cairn-kv/cairn/internal/watch"
)

// Store is the store as the etcd API needs it; *store.Client implements it.
type Store interface {
	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)
	Status(ctx context.Context) (*pb.StatusResponse, error)
	Defragment(ctx context.Context) error
	// HashKV is etcd's Maintenance.HashKV of this member's state at rev (0:
	// the current revision); errors are mvcc.ErrCompacted and ErrFutureRev.
	HashKV(ctx context.Context, rev int64) (*pb.HashKVResponse, error)
	// Hash is Maintenance.Hash: a hash of this member's whole state.
	Hash(ctx context.Context) (*pb.HashResponse, error)
	// Alarm is Maintenance.Alarm, applied through raft (GET included).
	Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error)
	// Alarms lists the active alarms as this member last applied them.
	Alarms() []*pb.AlarmMember
	// Downgrade validates, enables or cancels a downgrade of the cluster
	// version, as etcd's.
	Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error)
	// Linearize returns once the member has applied everything committed
	// before the call, as a linearizable read waits.
	Linearize(ctx context.Context) error
	// Header is a response header at the current revision.
	Header() *pb.ResponseHeader
	// ClusterHeader is a response header without a revision, for the
	// Cluster service.
	ClusterHeader() *pb.ResponseHeader
	// StampHeader sets the cluster, member and raft term of h, keeping its
	// revision: a watch response's header, made by the watch package with
	// the revision alone, is completed in place before it is sent.
	StampHeader(h *pb.ResponseHeader)

	// The auth checks of the caller in ctx (auth.WithToken, auth.WithUser)
	// that etcd makes before it serves a request; all pass while auth is
	// disabled. Errors are package auth's sentinels.

	// CheckAdmin passes only a user with the root role.
	CheckAdmin(ctx context.Context) error
	// RequireIdentity passes any user, but not nobody.
	RequireIdentity(ctx context.Context) error
	// CheckWatch passes a user allowed to read [key, end) (end as in
	// Range).
	CheckWatch(ctx context.Context, key, end []byte) error
}

// Cluster is the membership, for the Cluster service. Errors are the
// store's sentinels.
type Cluster interface {
	// Members lists every member with its published name and client URLs.
	Members() []*pb.Member
	// AddMember adds a member (a learner if asked) with peerURLs and
	// returns it once the change is applied on this member.
	AddMember(ctx context.Context, peerURLs []string, learner bool) (*pb.Member, error)
	RemoveMember(ctx context.Context, id uint64) error
	UpdateMember(ctx context.Context, id uint64, peerURLs []string) error
	PromoteMember(ctx context.Context, id uint64) error
}

// Options configures the gRPC server.
type Options struct {
	// MaxRequestBytes is etcd's --max-request-bytes; the gRPC receive limit
	// is this plus etcd's 512 KiB allowance for framing.
	MaxRequestBytes int
	// Watch serves the Watch service; without it the service is not
	// registered.
	Watch *watch.Hub
	// Lease serves the Lease service; without it the service is not
	// registered.
	Lease Lessor
	// Self makes a client of this member for the lock and election
	// services; without it they are not registered.
	Self SelfClient
	// Leadership serves Maintenance.MoveLeader and the hasleader request
	// metadata; without it MoveLeader is unimplemented and hasleader is
	// not checked.
	Leadership Leadership
	// Snapshots serves Maintenance.Snapshot; without it the RPC is
	// unimplemented.
	Snapshots Snapshotter
	// ElectionTimeout is raft's election timeout: a stream opened with
	// hasleader is ended with "no leader" once the member has known no
	// leader at three checks this far apart, as etcd does. Zero means
	// one second, etcd's default.
	ElectionTimeout time.Duration
	// ClientCertAuth is --client-cert-auth: a call without a token is
	// then made as the user its verified client certificate's common name
	// names, as in etcd.
	ClientCertAuth bool
	// MaxConcurrentStreams is etcd's --max-concurrent-streams, the most
	// calls a client connection may have open at once; 0 means no limit
	// (etcd's default, math.MaxUint32).
	MaxConcurrentStreams uint32
	// WarningUnaryRequestDuration is etcd's
	// --warning-unary-request-duration: a unary call slower than this is
	// logged as "request stats". Nil means etcd's default,
	// DefaultWarningUnaryRequestDuration.
	WarningUnaryRequestDuration *time.Duration
	// Keepalive is etcd's --grpc-keepalive-* settings; nil means etcd's
	// defaults (DefaultKeepalive).
	Keepalive *Keepalive
	// Requests counts the calls by their client's API version; nil
	// counts nothing.
	Requests *RequestMetrics
	Logger   *zap.Logger
	// ServerOptions are added after the server's own, so their
	// interceptors run inside its (the metrics' interceptors, as in etcd).
	ServerOptions []grpc.ServerOption
}

// Keepalive is how the server keeps its client connections alive, etcd's
// --grpc-keepalive-min-time, -interval and -timeout.
type Keepalive struct {
	// MinTime is the shortest interval between a client's pings that the
	// server accepts; a client that pings more often is sent away. Zero
	// leaves gRPC's policy (five minutes), as etcd does.
	MinTime time.Duration
	// Interval is how long a connection may be idle before the server
	// pings it, and Timeout how long it then waits for the answer before
	// closing it. If either is zero, gRPC's own (two hours, 20 s) apply,
	// as in etcd.
	Interval, Timeout time.Duration
}

// DefaultKeepalive is etcd's default keepalive: pings no more often than
// every 5 s, a ping after two idle hours, 20 s for its answer.
var DefaultKeepalive = Keepalive{MinTime: 5 * time.Second, Interval: 2 * time.Hour, Timeout: 20 * time.Second}

// warnUnary is o.WarningUnaryRequestDuration, or etcd's default.
func (o Options) warnUnary() time.Duration {
	if o.WarningUnaryRequestDuration == nil {
		return DefaultWarningUnaryRequestDuration
	}
	return *o.WarningUnaryRequestDuration
}

// maxStreams is o.MaxConcurrentStreams, no limit for 0.
func (o Options) maxStreams() uint32 {
	if o.MaxConcurrentStreams == 0 {
		return math.MaxUint32
	}
	return o.MaxConcurrentStreams
}

// keepalive returns the server options of o.Keepalive, as etcd sets them.
func (o Options) keepalive() []grpc.ServerOption {
	k := DefaultKeepalive
	if o.Keepalive != nil {
		k = *o.Keepalive
	}
	var opts []grpc.ServerOption
	if k.MinTime > 0 {
		opts = append(opts, grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: k.MinTime}))
	}
	if k.Interval > 0 && k.Timeout > 0 {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: k.Interval, Timeout: k.Timeout}))
	}
	return opts
}

// Snapshotter streams a point-in-time copy of the member's state in
// etcd's snapshot format, one Maintenance.Snapshot message at a time.
type Snapshotter interface {
	Snapshot(ctx context.Context, send func(*pb.SnapshotResponse) error) error
}

// Leadership is the raft leadership as the etcd API needs it;
// *store.Client implements it.
type Leadership interface {
	// Leader is the ID of the member known to lead, 0 if none.
	Leader() uint64
	// IsLearner reports whether this member is a learner, which serves
	// only Status and serializable ranges.
	IsLearner() bool
	// MoveLeader hands leadership to member target and returns once it
	// leads; errors are the store's sentinels.
	MoveLeader(ctx context.Context, target uint64) error
}

// grpcOverheadBytes is the slack etcd adds to --max-request-bytes for the
// gRPC receive limit, so an oversized request reaches the server and gets
// etcd's "request is too large" rather than a transport error.
const grpcOverheadBytes = 512 * 1024

// RegisterLease serves etcd's Lease service from le on srv. Besides the
// client server, members register it on their peer server (made with
// PeerServerOptions), where a follower sends its keep-alives to the
// leader as etcd's do.
func RegisterLease(srv *grpc.Server, le Lessor) {
	pb.RegisterLeaseServer(srv, &leaseServer{le: le})
}

// RegisterCluster serves etcd's Cluster service on a member's peer server
// (made with PeerServerOptions), where a joining member learns its ID and
// a follower sends a promotion to the leader. Its MemberList needs no
// user, as etcd's peer member list does not: a joining member has none.
func RegisterCluster(srv *grpc.Server, st Store, cl Cluster) {
	pb.RegisterClusterServer(srv, &clusterServer{st: st, cl: cl, peer: true})
}

// NewServer returns a gRPC server with etcd's services registered and
// etcd's server options (message sizes, keepalive enforcement). The Auth
// service is registered when st implements Auth too, as *store.Client
// does; every call's caller (its token, or its certificate's user) is
// handed to the store in its context (see identity.go).
func NewServer(st Store, cl Cluster, opts Options) *grpc.Server {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	who := identity{certAuth: opts.ClientCertAuth, selfKey: newSelfKey()}
	failures := &streamFailures{lg: opts.Logger, m: opts.Requests}
	srv := grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(opts.maxStreams()),
		// Calls run on long-lived workers whose stacks have grown to what
		// a call needs; a goroutine per call would grow its stack anew
		// every time (13% of the CPU of a range benchmark). gRPC starts a
		// goroutine for a call that finds every worker busy.
		grpc.NumStreamWorkers(uint32(max(64, 8*runtime.GOMAXPROCS(0)))),
		grpc.ChainUnaryInterceptor(requestStats(opts.Logger, opts.warnUnary()), requireLeaderUnary(opts.Leadership, opts.Requests), who.unary),
		grpc.ChainStreamInterceptor(requireLeaderStream(opts.Leadership, opts.ElectionTimeout, opts.Requests), who.stream),
	}, append(opts.keepalive(), opts.ServerOptions...)...)...)
	pb.RegisterKVServer(srv, &kvServer{st: st})
	if a, ok := st.(Auth); ok {
		pb.RegisterAuthServer(srv, &authServer{a: a})
	}
	if opts.Self != nil {
		self := &onceClient{new: opts.Self, key: who.selfKey}
		v3lockpb.RegisterLockServer(srv, &lockServer{c: self})
		v3electionpb.RegisterElectionServer(srv, &electionServer{c: self})
	}
	pb.RegisterMaintenanceServer(srv, &maintenanceServer{st: st, lead: opts.Leadership, snap: opts.Snapshots})
	pb.RegisterClusterServer(srv, &clusterServer{st: st, cl: cl})
	if opts.Watch != nil {
		pb.RegisterWatchServer(srv, &watchServer{st: st, hub: opts.Watch, failures: failures})
	}
	if opts.Lease != nil {
		pb.RegisterLeaseServer(srv, &leaseServer{le: opts.Lease, failures: failures})
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}
