// Package transport carries raft messages between the members of a Cairn
// cluster over their peer URLs (--listen-peer-urls / --initial-advertise-peer-urls).
//
// # Wire protocol
//
// One gRPC service, cairn.peer.v1.Raft, defined by hand (no protoc), with four
// methods. Every call carries the sender's member ID, the receiver's member
// ID and the cluster ID, in hex, as the metadata cairn-from-id, cairn-to-id
// and cairn-cluster-id. The receiver refuses a call from another cluster, for
// another member (FailedPrecondition), or from a member it does not know
// (PermissionDenied), before reading anything.
//
//   - /cairn.peer.v1.Raft/Stream is a long-lived stream from one member to
//     another carrying raftpb.Message values in send order. The receiver
//     sends the header cairn-accepted once it has checked the metadata, and
//     never a message; the stream ends with the status of the refusal or
//     failure. Every message type but MsgSnap travels here. Each member opens
//     one stream to each peer, so a pair of members has two, one each way.
//   - /cairn.peer.v1.Raft/Probe is a unary call of google.protobuf.Empty,
//     answered Empty once the metadata is checked: each member times it to
//     each peer every few seconds for etcd_network_peer_round_trip_time_seconds.
//     A member without it answers Unimplemented and is not probed again.
//   - /cairn.peer.v1.Raft/Snapshot is a client stream of
//     google.protobuf.BytesValue: the first carries the marshalled MsgSnap,
//     the rest carry the sender's state-machine snapshot in chunks of at
//     most 256 KiB. The receiver answers google.protobuf.Empty once the state
//     is restored and the MsgSnap handed to raft, or an error status.
//   - /cairn.peer.v1.Raft/HashKV is a unary call of google.protobuf.Int64Value
//     (a revision) answered with etcd's HashKVResponse (see ServeHashKV):
//     the corruption checks compare the members' hashes with it, as etcd's
//     do over its peer URLs' /members/hashkv. A member without it answers
//     Unimplemented.
//
// The protocol is Cairn's own and is not wire-compatible with etcd's
// rafthttp: a Cairn member cannot join an etcd cluster or the reverse.
//
// # Routes considered
//
// etcd's rafthttp (HTTP/1.1 long-polling streams plus a POST pipeline, and a
// separate snapshot POST) would have meant reimplementing its framing and
// version negotiation for no interoperability gain, since Cairn's entries
// and snapshots differ from etcd's anyway. Raw HTTP/2 streams would need our
// own framing, flow control and reconnection. gRPC streams give framing,
// per-stream flow control (so a snapshot never sits whole in memory),
// connection management with backoff, keepalives and TLS (Config.TLS for
// https:// peers, the peer server's listener for the receiving side), and
// raftpb messages are already protobuf messages.
//
// # Delivery
//
// Send never blocks: each peer has a bounded queue drained by one goroutine
// onto its stream, so messages to one peer leave in order. A message is
// dropped when its peer is unknown, its stream is down, or its queue is
// full; raft retries. The Handler learns of failures through
// ReportUnreachable and ReportSnapshot, as raft requires. A stream that fails
// is reopened every 100 ms, as etcd's stream readers redial, so that a
// member that restarts hears from its peers within a heartbeat or two; a
// peer that refuses the stream (another cluster, a removed member) is asked
// again with a backoff from 100 ms doubling to 2 s.
package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Handler is the receiving side of the transport: the local member's raft
// node and state machine.
//
// Its methods are called from the transport's goroutines, several at a
// time, and ReportUnreachable also from within Send (so on the raft
// goroutine). None may block for long, and none may call back into the
// Transport synchronously; Snapshot alone may take as long as the restore
// takes. No method is called after Stop returns.
type Handler interface {
	// Step delivers a message from a peer; never a MsgSnap. Messages from
	// one peer arrive in the order that peer sent them, though some may be
	// missing.
	Step(m *raftpb.Message)

	// Snapshot is called for an incoming MsgSnap with the stream of the
	// sender's state-machine snapshot. It returns once that state is
	// restored, or failed; a non-nil error is reported to the sender, whose
	// raft retries. data fails with an error if the sender goes away or the
	// transport stops. On success the transport then calls Step(m).
	Snapshot(m *raftpb.Message, data io.Reader) error

	// ReportUnreachable tells raft that messages to peer id were lost: its
	// stream failed or its queue overflowed. It is called once per failure,
	// not once per lost message.
	ReportUnreachable(id uint64)

	// ReportSnapshot tells raft the outcome of sending a MsgSnap to peer
	// id; failed is true if the peer did not restore it.
	ReportSnapshot(id uint64, failed bool)
}

// SnapshotSource writes the local state-machine snapshot to w: the sending
// side of a MsgSnap. It is called off the raft goroutine, once per MsgSnap,
// and may be slow and large; w sends as it is written, so nothing needs to
// be held whole in memory. The state written must be at least as new as the
// MsgSnap's snapshot index. If a Write fails (the peer went away, the
// transport stopped) the source should return that error promptly.
type SnapshotSource func(w io.Writer) error

// Config configures a Transport.
type Config struct {
	// ID is the local member's ID; never zero.
	ID uint64
	// ClusterID is the cluster's ID; streams from another cluster are
	// refused.
	ClusterID uint64
	// Handler receives messages and reports; required.
	Handler Handler
	// Snapshots writes the state-machine snapshot for an outgoing MsgSnap.
	// If nil, every MsgSnap fails (ReportSnapshot with failed set).
	Snapshots SnapshotSource
	// AcceptUnknownPeers accepts streams and messages from members that
	// were never added with AddPeer, as etcd does for a member that
	// learns of another's addition late, but never from a member removed
	// with RemovePeer. If false (the default) only added peers are heard.
	AcceptUnknownPeers bool
	// Removed, if set, is called once when a peer answers that this member
	// was removed from the cluster: the member must stop, as etcd's does.
	Removed func()
	// Logger receives the transport's logs; nil discards them.
	Logger *zap.Logger
	// TLS is the client configuration for dialling peers whose URLs are
	// https:// (Go's defaults if nil); peers at http:// URLs are dialled
	// in plain text, as etcd dials them. A peer's certificate is verified
	// under its URL's host name.
	TLS *tls.Config
}

const (
	// queueSize bounds each peer's queue of outgoing messages, as etcd's
	// streamBufSize does.
	queueSize = 4096
	// chunkSize bounds the snapshot data in one Snapshot message.
	chunkSize = 256 << 10
	// MaxMessageSize is the largest raft message a member accepts. Server
	// options from ServerOptions set it; raft's MsgApp is bounded by
	// raftnode's MaxSizePerMsg plus one entry.
	MaxMessageSize = 64 << 20

	// streamWindow and connWindow are the receiver's fixed HTTP/2 flow
	// control windows. They bound what an incoming stream can buffer in
	// the receiver's memory (gRPC's dynamic windows grow to 16 MiB), at the
	// cost of capping one stream at streamWindow per round trip: 40 MiB/s
	// at 50 ms.
	streamWindow = 2 << 20
	connWindow   = 4 << 20

	// retryDelay is the time between two attempts to open a stream to a
	// peer that cannot be reached, and between two connection attempts.
	// etcd's stream readers redial every 100 ms; with a backoff that grew
	// to seconds while a member was down, its peers would take that long
	// to reach it once it is back, and it would call elections meanwhile.
	retryDelay = 100 * time.Millisecond
	// maxRefusedDelay bounds the backoff, doubling from retryDelay, between
	// attempts that the peer refuses: those repeat until an operator acts.
	maxRefusedDelay = 2 * time.Second
	// acceptTimeout bounds the wait for the receiver's cairn-accepted
	// header on a new stream.
	acceptTimeout = 5 * time.Second
	// keepaliveTime is how long a connection may be silent before the
	// client pings; keepaliveTimeout is how long it then waits for the
	// answer before dropping the connection. Without them a peer whose
	// host vanished would hold a stream until TCP gives up.
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
)

// ServerOptions returns the options the caller's peer gRPC server must be
// created with, in addition to its own (credentials, for instance): the
// message size limit, fixed flow control windows that bound the memory an
// incoming stream can hold, and a keepalive policy that allows the
// transport's client pings (gRPC's default policy closes connections that
// ping more often than every five minutes).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMessageSize),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveTime / 2,
			PermitWithoutStream: true,
		}),
	}
}

// Transport sends raft messages to peers and serves the peer service that
// receives theirs. Its methods are safe for concurrent use.
type Transport struct {
	cfg       Config
	lg        *zap.Logger
	dialOpts  []grpc.DialOption // all but the credentials
	queueSize int
	// removedOnce calls Config.Removed once.
	removedOnce sync.Once

	// ctx is cancelled by Stop; every outgoing stream derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	// done is closed by Stop; incoming calls return when it is.
	done chan struct{}

	mu      sync.RWMutex
	stopped bool
	peers   map[uint64]*peer
	removed map[uint64]bool
	// refusals remembers the refusals already logged, so that a
	// misconfigured peer retrying every two seconds is logged once.
	refusals map[string]bool
	// wg counts every goroutine the transport starts; Stop waits for it.
	wg sync.WaitGroup
	// metrics are the transport's Prometheus series (see Collectors).
	metrics *peerMetrics
	// hashKV answers peers' HashKV calls; see ServeHashKV.
	hashKV atomic.Pointer[hashKVFunc]
}

// hashKVFunc answers a peer's HashKV call; see ServeHashKV.
type hashKVFunc func(ctx context.Context, rev int64) (*pb.HashKVResponse, error)

// ServeHashKV sets the function that answers peers' HashKV calls with the
// local member's HashKV at rev (see HashKV); until it is set, they are
// answered Unimplemented. It may be called at any time. f is
// called on the gRPC server's goroutines, several at a time, and may take
// as long as hashing the history takes; its error reaches the caller as
// it is, so it should be a gRPC status.
func (t *Transport) ServeHashKV(f func(ctx context.Context, rev int64) (*pb.HashKVResponse, error)) {
	h := hashKVFunc(f)
	t.hashKV.Store(&h)
}

// New returns a Transport with no peers. Call Register before the peer
// server serves, and AddPeer for each other member.
func New(cfg Config) (*Transport, error) {
	if cfg.ID == 0 {
		return nil, errors.New("transport: member ID must not be zero")
	}
	if cfg.Handler == nil {
		return nil, errors.New("transport: Handler is required")
	}
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	opts := []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  retryDelay,
				Multiplier: 1,
				Jitter:     0.2,
				MaxDelay:   retryDelay,
			},
			MinConnectTimeout: acceptTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: true,
		}),
	}
	return &Transport{
		cfg:       cfg,
		lg:        lg.With(zap.String("local-member-id", hexID(cfg.ID))),
		dialOpts:  opts,
		queueSize: queueSize,
		ctx:       ctx,
		cancel:    cancel,
		done:      make(chan struct{}),
		peers:     make(map[uint64]*peer),
		removed:   make(map[uint64]bool),
		refusals:  make(map[string]bool),
		metrics:   newPeerMetrics(),
	}, nil
}

// ErrStopped is returned by AddPeer and UpdatePeer after Stop.
var ErrStopped = errors.New("transport: stopped")

// AddPeer starts sending to member id at urls, all http:// or all
// https:// (dialled with Config.TLS). The connection is tried in the
// background: messages are dropped until the stream is up. Adding a known
// peer updates its URLs; its scheme stays the one it was added with.
func (t *Transport) AddPeer(id uint64, urls []string) error {
	addrs, secure, err := peerAddrs(urls)
	if err != nil {
		return err
	}
	if id == t.cfg.ID {
		return errors.New("transport: cannot add the local member as a peer")
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return ErrStopped
	}
	if p, ok := t.peers[id]; ok {
		p.update(addrs)
		return nil
	}
	p, err := newPeer(t, id, addrs, secure)
	if err != nil {
		return err
	}
	delete(t.removed, id)
	t.peers[id] = p
	t.goLocked(p.run)
	t.goLocked(p.probe)
	t.lg.Info("added remote peer", zap.String("remote-peer-id", hexID(id)), zap.Strings("remote-peer-urls", urls))
	return nil
}

// UpdatePeer replaces the URLs of member id; an unknown id is added.
func (t *Transport) UpdatePeer(id uint64, urls []string) error {
	return t.AddPeer(id, urls)
}

// RemovePeer stops sending to member id and, unless it is added again,
// refuses its streams and messages from now on (a stream already open is
// closed at its next message). An unknown id is only marked removed.
func (t *Transport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.removed[id] = true
	t.mu.Unlock()
	if p != nil {
		p.stop()
		t.lg.Info("removed remote peer", zap.String("remote-peer-id", hexID(id)))
	}
	t.metrics.forget(t.cfg.ID, id)
}

// ActiveSince returns when the stream to member id last came up, or the
// zero time if it is down or id is unknown.
func (t *Transport) ActiveSince(id uint64) time.Time {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return time.Time{}
	}
	return p.activeSince()
}

// Send queues msgs for their peers and returns at once; it implements
// raftnode.Transport and is meant to be called from the raft goroutine.
// Messages to unknown peers or to peers whose stream is down are dropped
// (a MsgSnap to an unknown peer is reported failed); a message that finds
// its peer's queue full is dropped and the peer reported unreachable, once
// until the queue moves again. Each MsgSnap starts its own snapshot send, at most
// one per peer at a time (another is refused with ReportSnapshot failed).
// The messages must not be modified afterwards.
func (t *Transport) Send(msgs []*raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.stopped {
		return
	}
	for _, m := range msgs {
		p := t.peers[m.GetTo()]
		if p == nil {
			t.lg.Debug("dropped message to unknown peer",
				zap.String("remote-peer-id", hexID(m.GetTo())), zap.Stringer("type", m.GetType()))
			if m.GetType() == raftpb.MsgSnap {
				// Raft waits in StateSnapshot for a report.
				t.cfg.Handler.ReportSnapshot(m.GetTo(), true)
			}
			continue
		}
		if m.GetType() == raftpb.MsgSnap {
			p.startSnapshot(m)
			continue
		}
		p.enqueue(m)
	}
}

// HashKV asks member id, a peer added with AddPeer, for its HashKV at
// revision rev over the peer connection, and returns its answer or its
// error status (Unimplemented if it does not serve HashKV). An unknown id
// fails with ErrUnknownPeer. It may be called from any goroutine. A
// connection still being made is waited for until ctx ends; one whose
// last attempt failed fails the call at once (gRPC's fail-fast).
func (t *Transport) HashKV(ctx context.Context, id uint64, rev int64) (*pb.HashKVResponse, error) {
	t.mu.RLock()
	p := t.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return nil, ErrUnknownPeer
	}
	resp := &pb.HashKVResponse{}
	if err := p.conn.Invoke(p.outgoing(ctx), hashKVMethod, &wrapperspb.Int64Value{Value: rev}, resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// ErrUnknownPeer is returned by HashKV for a member that is not a peer.
var ErrUnknownPeer = errors.New("transport: unknown peer")

// Stop closes every stream, incoming and outgoing, and returns once every
// goroutine the transport started has ended; an incoming snapshot whose
// Handler.Snapshot is still restoring is waited for. Incoming calls are
// refused from then on. Stop does not stop the gRPC server.
func (t *Transport) Stop() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	t.stopped = true
	peers := t.peers
	t.peers = nil
	close(t.done)
	t.cancel()
	t.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	t.wg.Wait()
}

// goLocked runs f on a goroutine counted by wg. t.mu must be held, for
// reading or writing, and t.stopped be false: Stop sets stopped under the
// write lock before it Waits, so no Add can race with the Wait.
func (t *Transport) goLocked(f func()) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		f()
	}()
}

// goTracked runs f like goLocked, unless the transport has stopped.
func (t *Transport) goTracked(f func()) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	t.goLocked(f)
	return true
}

func (t *Transport) isStopped() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// wasRemoved reports whether member id was removed with RemovePeer and
// not added again.
func (t *Transport) wasRemoved(id uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, known := t.peers[id]
	return !known && t.removed[id]
}

// heard reports whether messages from member id are accepted.
func (t *Transport) heard(id uint64) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if _, ok := t.peers[id]; ok {
		return true
	}
	return t.cfg.AcceptUnknownPeers && !t.removed[id]
}

// logOnce logs msg at level the first time key is seen, at debug level
// after. The set is bounded so garbage from a misbehaving peer cannot grow
// it without limit.
func (t *Transport) logOnce(level zapcore.Level, key, msg string, fields ...zap.Field) {
	t.mu.Lock()
	seen := t.refusals[key]
	if !seen && len(t.refusals) < 1024 {
		t.refusals[key] = true
	}
	t.mu.Unlock()
	if seen {
		t.lg.Debug(msg, fields...)
		return
	}
	t.lg.Log(level, msg, fields...)
}

// forgetRefusals lets the refusals whose key starts with prefix be logged
// again: a stream with that peer has been accepted since.
func (t *Transport) forgetRefusals(prefix string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k := range t.refusals {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			delete(t.refusals, k)
		}
	}
}

// peerAddrs turns peer URLs into gRPC addresses (host:port, with the host
// name a certificate must be valid for), and reports whether they are
// https://.
func peerAddrs(urls []string) (addrs []resolver.Address, secure bool, err error) {
	if len(urls) == 0 {
		return nil, false, errors.New("transport: a peer needs at least one URL")
	}
	addrs = make([]resolver.Address, 0, len(urls))
	for i, s := range urls {
		u, err := url.Parse(s)
		if err != nil {
			return nil, false, fmt.Errorf("transport: peer URL %q: %w", s, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.Port() == "" {
			return nil, false, fmt.Errorf("transport: peer URL %q: want http://host:port or https://host:port", s)
		}
		if i == 0 {
			secure = u.Scheme == "https"
		} else if secure != (u.Scheme == "https") {
			return nil, false, fmt.Errorf("transport: peer URLs %q mix http:// and https://", urls)
		}
		addrs = append(addrs, resolver.Address{Addr: u.Host, ServerName: u.Hostname()})
	}
	return addrs, secure, nil
}

// hexID formats a member ID as etcd does (types.ID.String).
func hexID(id uint64) string { return strconv.FormatUint(id, 16) }
