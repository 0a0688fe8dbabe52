package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// peer is the sending side towards one member: a connection, a queue, the
// goroutine (run) that keeps a stream open and drains the queue onto it,
// and at most one snapshot send at a time.
type peer struct {
	t     *Transport
	id    uint64
	lg    *zap.Logger
	res   *manual.Resolver
	conn  *grpc.ClientConn
	queue chan *raftpb.Message
	// failures is etcd_network_peer_sent_failures_total for this peer.
	failures prometheus.Counter

	// ctx is cancelled by stop; the stream and snapshot sends derive from
	// it.
	ctx    context.Context
	cancel context.CancelFunc
	exited chan struct{} // closed when run returns

	// active is when the current stream came up (Unix nanoseconds), or 0
	// while there is none.
	active atomic.Int64
	// overflowed is set when a message is dropped for a full queue and
	// cleared when the stream takes a message, so an overflow is reported
	// once, not once per dropped message.
	overflowed   atomic.Bool
	snapshotting atomic.Bool
}

// resolverScheme names the per-peer manual resolver through which
// UpdatePeer changes a connection's addresses without tearing it down.
const resolverScheme = "cairn-peer"

func newPeer(t *Transport, id uint64, addrs []resolver.Address, secure bool) (*peer, error) {
	res := manual.NewBuilderWithScheme(resolverScheme)
	res.InitialState(resolver.State{Addresses: addrs})
	creds := insecure.NewCredentials()
	if secure {
		creds = credentials.NewTLS(t.cfg.TLS)
	}
	opts := append(slices.Clone(t.dialOpts), grpc.WithResolvers(res), grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(sentStats{sent: t.metrics.sentBytes.WithLabelValues(hexID(id))}))
	conn, err := grpc.NewClient(resolverScheme+":///"+hexID(id), opts...)
	if err != nil {
		return nil, fmt.Errorf("transport: peer %s: %w", hexID(id), err)
	}
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:      t,
		id:     id,
		lg:     t.lg.With(zap.String("remote-peer-id", hexID(id))),
		res:    res,
		conn:   conn,
		queue:  make(chan *raftpb.Message, t.queueSize),
		ctx:    ctx,
		cancel: cancel,
		exited: make(chan struct{}),

		failures: t.metrics.sentFailures.WithLabelValues(hexID(id)),
	}, nil
}

// update switches the connection to addrs; gRPC reconnects if the address
// in use is gone.
func (p *peer) update(addrs []resolver.Address) { p.res.UpdateState(resolver.State{Addresses: addrs}) }

// stop ends the stream and any snapshot send, waits for run to return and
// closes the connection.
func (p *peer) stop() {
	p.cancel()
	<-p.exited
	p.conn.Close()
}

func (p *peer) activeSince() time.Time {
	if ns := p.active.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// enqueue queues m for the stream without blocking. It runs under the
// transport's read lock.
func (p *peer) enqueue(m *raftpb.Message) {
	if p.active.Load() == 0 {
		// The failure was reported when the stream went down.
		p.failures.Inc()
		return
	}
	select {
	case p.queue <- m:
	default:
		p.failures.Inc()
		if !p.overflowed.Swap(true) {
			p.lg.Warn("dropped messages to remote peer: queue is full", zap.Int("queue-size", cap(p.queue)))
			p.t.cfg.Handler.ReportUnreachable(p.id)
		}
	}
}

// run keeps a stream to the peer open until stop, reopening it after each
// failure: every retryDelay while the peer cannot be reached, with a
// backoff while it refuses the stream.
func (p *peer) run() {
	defer close(p.exited)
	delay := retryDelay
	// reported is set once a failure has been reported and logged, until
	// a stream comes up again.
	reported := false
	for {
		up, err := p.stream()
		if p.ctx.Err() != nil {
			return
		}
		if up || !refused(err) {
			delay = retryDelay
		}
		if up {
			reported = false
		}
		p.failed(err, up, reported)
		reported = true
		p.drain()
		timer := time.NewTimer(delay)
		select {
		case <-timer.C:
		case <-p.ctx.Done():
			timer.Stop()
			return
		}
		if refused(err) {
			delay = min(2*delay, maxRefusedDelay)
		}
	}
}

// refused reports whether err is the peer's refusal of the stream, which
// repeats on every attempt until an operator (another cluster) or the peer
// (a member it has not added yet, or one it removed) acts.
func refused(err error) bool {
	switch status.Code(err) {
	case codes.FailedPrecondition, codes.PermissionDenied, codes.NotFound:
		return true
	}
	return false
}

// failed logs a failed stream or attempt and reports it to raft, once per
// failure: reported says whether an earlier attempt since the last stream
// was up (or since start) already did.
func (p *peer) failed(err error, wasUp, reported bool) {
	if status.Code(err) == codes.NotFound && p.t.cfg.Removed != nil {
		p.t.removedOnce.Do(p.t.cfg.Removed)
	}
	if refused(err) {
		// A refusal repeats on every attempt: log it once.
		level := zapcore.ErrorLevel
		if status.Code(err) == codes.PermissionDenied {
			level = zapcore.WarnLevel
		}
		p.t.logOnce(level, "out/"+hexID(p.id)+"/"+status.Convert(err).Message(),
			"remote peer refused the stream", zap.String("remote-peer-id", hexID(p.id)), zap.Error(err))
	} else if wasUp {
		p.lg.Warn("peer became inactive (message send to peer failed)", zap.Error(err))
	} else if !reported {
		p.lg.Warn("failed to reach remote peer; retrying", zap.Error(err))
	} else {
		p.lg.Debug("failed to reach remote peer; retrying", zap.Error(err))
	}
	if !reported && !p.t.isStopped() {
		p.t.cfg.Handler.ReportUnreachable(p.id)
	}
}

// drain drops the messages queued for a stream that failed: raft resends
// what matters, and stale votes and heartbeats are better not delivered
// late.
func (p *peer) drain() {
	for {
		select {
		case <-p.queue:
			p.failures.Inc()
		default:
			return
		}
	}
}

// outgoing adds the member and cluster IDs to ctx's metadata.
func (p *peer) outgoing(ctx context.Context) context.Context {
	return metadata.NewOutgoingContext(ctx, metadata.Pairs(
		keyFrom, hexID(p.t.cfg.ID),
		keyTo, hexID(p.id),
		keyCluster, hexID(p.t.cfg.ClusterID),
	))
}

// stream opens a stream, waits for the peer to accept it, then sends queued
// messages on it until it fails. up says whether it was accepted.
func (p *peer) stream() (up bool, err error) {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	s, err := p.conn.NewStream(p.outgoing(ctx), &streamDesc, streamMethod)
	if err != nil {
		return false, err
	}
	timer := time.AfterFunc(acceptTimeout, cancel)
	md, _ := s.Header()
	if !timer.Stop() {
		return false, errors.New("timed out waiting for the peer to accept the stream")
	}
	if len(md.Get(keyAccepted)) == 0 {
		// Header hides the failure; RecvMsg returns the status.
		err := s.RecvMsg(&emptypb.Empty{})
		if err == nil || err == io.EOF {
			err = errors.New("peer closed the stream without accepting it")
		}
		return false, err
	}

	p.active.Store(time.Now().UnixNano())
	active := p.t.metrics.activePeers.WithLabelValues(hexID(p.t.cfg.ID), hexID(p.id))
	active.Inc()
	defer func() {
		p.active.Store(0)
		active.Dec()
		p.t.metrics.disconnectedPeers.WithLabelValues(hexID(p.t.cfg.ID), hexID(p.id)).Inc()
	}()
	p.t.forgetRefusals("out/" + hexID(p.id) + "/")
	p.lg.Info("peer became active")

	// The receiver never sends a message: RecvMsg returns when the stream
	// ends, whichever side ends it.
	recvDone := make(chan struct{})
	var recvErr error
	go func() {
		defer close(recvDone)
		recvErr = s.RecvMsg(&emptypb.Empty{})
	}()
	defer func() {
		cancel()
		<-recvDone
	}()
	closedErr := func() error {
		<-recvDone
		if recvErr == nil || recvErr == io.EOF {
			return errors.New("peer closed the stream")
		}
		return recvErr
	}
	for {
		select {
		case m := <-p.queue:
			if err := s.SendMsg(m); err != nil {
				p.failures.Inc()
				if err == io.EOF {
					return true, closedErr()
				}
				return true, err
			}
			p.overflowed.Store(false)
		case <-recvDone:
			return true, closedErr()
		case <-ctx.Done():
			return true, ctx.Err()
		}
	}
}

// startSnapshot sends m, a MsgSnap, with the state-machine snapshot on its
// own goroutine. It runs under the transport's read lock.
func (p *peer) startSnapshot(m *raftpb.Message) {
	if !p.snapshotting.CompareAndSwap(false, true) {
		p.lg.Warn("dropped snapshot to remote peer: another is being sent",
			zap.Uint64("snapshot-index", m.GetSnapshot().GetMetadata().GetIndex()))
		p.t.cfg.Handler.ReportSnapshot(p.id, true)
		return
	}
	p.t.goLocked(func() { p.sendSnapshot(m) })
}

func (p *peer) sendSnapshot(m *raftpb.Message) {
	defer p.snapshotting.Store(false)
	index := m.GetSnapshot().GetMetadata().GetIndex()
	p.lg.Info("sending database snapshot", zap.Uint64("snapshot-index", index))
	start := time.Now()
	to, pm := hexID(p.id), p.t.metrics
	sending := pm.snapSending.WithLabelValues(to)
	sending.Inc()
	n, err := p.streamSnapshot(m)
	sending.Dec()
	if p.t.isStopped() {
		return
	}
	if err != nil {
		p.lg.Warn("failed to send database snapshot", zap.Uint64("snapshot-index", index),
			zap.Int64("bytes", n), zap.Error(err))
		p.failures.Inc()
		pm.snapSendFailed.WithLabelValues(to).Inc()
		p.t.cfg.Handler.ReportUnreachable(p.id)
		p.t.cfg.Handler.ReportSnapshot(p.id, true)
		return
	}
	took := time.Since(start)
	p.lg.Info("sent database snapshot", zap.Uint64("snapshot-index", index),
		zap.Int64("bytes", n), zap.Duration("took", took))
	pm.snapSent.WithLabelValues(to).Inc()
	pm.snapSendTime.WithLabelValues(to).Observe(took.Seconds())
	p.t.cfg.Handler.ReportSnapshot(p.id, false)
}

// streamSnapshot makes the Snapshot call and returns the bytes of snapshot
// data sent.
func (p *peer) streamSnapshot(m *raftpb.Message) (int64, error) {
	if p.t.cfg.Snapshots == nil {
		return 0, errors.New("no snapshot source configured")
	}
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	s, err := p.conn.NewStream(p.outgoing(ctx), &snapshotDesc, snapshotMethod)
	if err != nil {
		return 0, err
	}
	head, err := proto.Marshal(m)
	if err != nil {
		return 0, err
	}
	w := &chunkWriter{s: s}
	if err := w.send(head); err != nil {
		return 0, err
	}
	if err := p.t.cfg.Snapshots(w); err != nil {
		if w.err != nil {
			err = w.err
		}
		if err != errReceiverDone {
			return w.n, fmt.Errorf("snapshot source: %w", err)
		}
		return w.n, nil
	}
	if err := w.flush(); err != nil {
		if err == errReceiverDone {
			return w.n, nil
		}
		return w.n, err
	}
	if err := s.CloseSend(); err != nil {
		return w.n, err
	}
	return w.n, s.RecvMsg(&emptypb.Empty{})
}

// errReceiverDone means the receiver answered before the sender had sent
// everything: its Handler.Snapshot returned without reading the rest.
var errReceiverDone = errors.New("receiver finished early")

// chunkWriter sends what is written to it in BytesValue messages of at most
// chunkSize bytes. A chunk is a fresh slice each time because gRPC may keep
// a sent message past SendMsg.
type chunkWriter struct {
	s   grpc.ClientStream
	buf []byte
	n   int64 // bytes of data accepted by Write
	err error // the first send error, returned by every later Write
}

func (w *chunkWriter) Write(b []byte) (int, error) {
	written := 0
	for len(b) > 0 {
		if w.err != nil {
			return written, w.err
		}
		if w.buf == nil {
			w.buf = make([]byte, 0, chunkSize)
		}
		k := copy(w.buf[len(w.buf):cap(w.buf)], b)
		w.buf = w.buf[:len(w.buf)+k]
		b = b[k:]
		written += k
		w.n += int64(k)
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return written, err
			}
		}
	}
	return written, nil
}

// flush sends the buffered chunk, if any.
func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return w.err
	}
	err := w.send(w.buf)
	w.buf = nil
	return err
}

func (w *chunkWriter) send(b []byte) error {
	if w.err != nil {
		return w.err
	}
	if err := w.s.SendMsg(&wrapperspb.BytesValue{Value: b}); err != nil {
		if err == io.EOF {
			// The call has ended; RecvMsg says how.
			if err = w.s.RecvMsg(&emptypb.Empty{}); err == nil {
				err = errReceiverDone
			}
		}
		w.err = err
		return err
	}
	return nil
}
