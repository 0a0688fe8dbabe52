package transport

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// peerMetrics are the transport's series, under etcd's rafthttp names and
// labels (the peer's member ID in hex), so that etcd's dashboards read
// them. Each Transport has its own; Collectors hands them to the member's
// registry.
type peerMetrics struct {
	// sentBytes and receivedBytes count the protobuf payloads of the peer
	// calls: raft messages, snapshot chunks and probes.
	sentBytes     *prometheus.CounterVec
	receivedBytes *prometheus.CounterVec
	// sentFailures counts messages that did not leave: dropped for a
	// stream that is down or a full queue, failed sends, and failed
	// snapshot sends.
	sentFailures *prometheus.CounterVec
	// receivedFailures counts what came from a peer and could not be
	// taken: a message that did not decode or was too large, one not
	// from or not to whom its stream says, a snapshot that did not start
	// with its MsgSnap.
	receivedFailures *prometheus.CounterVec
	// rtt is the time of a probe call to the peer and back.
	rtt *prometheus.HistogramVec
	// activePeers is 1 while the stream to a peer is up, 0 after it went
	// down; disconnectedPeers counts the times it went down. Both are
	// labelled with the local and the remote member ID, as etcd's.
	activePeers       *prometheus.GaugeVec
	disconnectedPeers *prometheus.CounterVec
	// snapSent, snapSending, snapSendFailed and snapSendTime count and
	// time the snapshots sent to each peer (successes, in flight,
	// failures); snapReceived and the others the same for those received,
	// a receive being a success once the snapshot is restored.
	snapSent, snapSendFailed        *prometheus.CounterVec
	snapSending                     *prometheus.GaugeVec
	snapSendTime                    *prometheus.HistogramVec
	snapReceived, snapReceiveFailed *prometheus.CounterVec
	snapReceiving                   *prometheus.GaugeVec
	snapReceiveTime                 *prometheus.HistogramVec
}

func newPeerMetrics() *peerMetrics {
	return &peerMetrics{
		sentBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_peer_sent_bytes_total",
			Help: "The total number of bytes sent to peers.",
		}, []string{"To"}),
		receivedBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_peer_received_bytes_total",
			Help: "The total number of bytes received from peers.",
		}, []string{"From"}),
		sentFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_peer_sent_failures_total",
			Help: "The total number of send failures to peers.",
		}, []string{"To"}),
		receivedFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_peer_received_failures_total",
			Help: "The total number of receive failures from peers.",
		}, []string{"From"}),
		// etcd's buckets: 0.1 ms to about 3.3 s.
		rtt: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_network_peer_round_trip_time_seconds",
			Help:    "Round-Trip-Time histogram between peers.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"To"}),
		activePeers: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_network_active_peers",
			Help: "The current number of active peer connections.",
		}, []string{"Local", "Remote"}),
		disconnectedPeers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_disconnected_peers_total",
			Help: "The total number of disconnected peers.",
		}, []string{"Local", "Remote"}),
		snapSent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_snapshot_send_success",
			Help: "Total number of successful snapshot sends",
		}, []string{"To"}),
		snapSending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_network_snapshot_send_inflights_total",
			Help: "Total number of inflight snapshot sends",
		}, []string{"To"}),
		snapSendFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_snapshot_send_failures",
			Help: "Total number of snapshot send failures",
		}, []string{"To"}),
		snapSendTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_network_snapshot_send_total_duration_seconds",
			Help:    "Total latency distributions of v3 snapshot sends",
			Buckets: snapshotBuckets,
		}, []string{"To"}),
		snapReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_snapshot_receive_success",
			Help: "Total number of successful snapshot receives",
		}, []string{"From"}),
		snapReceiving: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_network_snapshot_receive_inflights_total",
			Help: "Total number of inflight snapshot receives",
		}, []string{"From"}),
		snapReceiveFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_snapshot_receive_failures",
			Help: "Total number of snapshot receive failures",
		}, []string{"From"}),
		snapReceiveTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_network_snapshot_receive_total_duration_seconds",
			Help:    "Total latency distributions of v3 snapshot receives",
			Buckets: snapshotBuckets,
		}, []string{"From"}),
	}
}

// snapshotBuckets are etcd's for its snapshot transfer histograms: 100 ms
// to about 51 s.
var snapshotBuckets = prometheus.ExponentialBuckets(0.1, 2, 10)

// Collectors returns the transport's metrics, for the caller to register.
func (t *Transport) Collectors() []prometheus.Collector {
	m := t.metrics
	return []prometheus.Collector{m.sentBytes, m.receivedBytes, m.sentFailures, m.receivedFailures, m.rtt, m.activePeers, m.disconnectedPeers,
		m.snapSent, m.snapSending, m.snapSendFailed, m.snapSendTime, m.snapReceived, m.snapReceiving, m.snapReceiveFailed, m.snapReceiveTime}
}

// forget drops the series of a removed peer; local is this member's ID.
func (m *peerMetrics) forget(local, id uint64) {
	hex := hexID(id)
	m.activePeers.DeleteLabelValues(hexID(local), hex)
	m.disconnectedPeers.DeleteLabelValues(hexID(local), hex)
	m.sentBytes.DeleteLabelValues(hex)
	m.receivedBytes.DeleteLabelValues(hex)
	m.sentFailures.DeleteLabelValues(hex)
	m.receivedFailures.DeleteLabelValues(hex)
	m.rtt.DeleteLabelValues(hex)
	for _, v := range []interface{ DeleteLabelValues(...string) bool }{
		m.snapSent, m.snapSending, m.snapSendFailed, m.snapSendTime,
		m.snapReceived, m.snapReceiving, m.snapReceiveFailed, m.snapReceiveTime,
	} {
		v.DeleteLabelValues(hex)
	}
}

// sentStats is the stats handler of the connection to one peer: it counts
// the payload bytes of every message sent on it.
type sentStats struct{ sent prometheus.Counter }

func (s sentStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (s sentStats) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (s sentStats) HandleConn(context.Context, stats.ConnStats) {}
func (s sentStats) HandleRPC(_ context.Context, st stats.RPCStats) {
	if p, ok := st.(*stats.OutPayload); ok {
		s.sent.Add(float64(p.Length))
	}
}

const (
	// probeInterval is the time between two probes of a peer, as etcd's
	// prober's; probeTimeout bounds one.
	probeInterval = 4 * time.Second
	probeTimeout  = 5 * time.Second
	// probeWait is how often a peer whose stream is down is checked.
	probeWait = 200 * time.Millisecond
)

// probe measures the round trip to the peer with a Probe call every
// probeInterval while the stream is up, until stop; the first comes as soon
// as the stream is. A peer that does not know the call (an older member)
// is not probed again.
func (p *peer) probe() {
	rtt := p.t.metrics.rtt.WithLabelValues(hexID(p.id))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-timer.C:
		case <-p.ctx.Done():
			return
		}
		if p.active.Load() == 0 {
			timer.Reset(probeWait)
			continue
		}
		ctx, cancel := context.WithTimeout(p.ctx, probeTimeout)
		start := time.Now()
		err := p.conn.Invoke(p.outgoing(ctx), probeMethod, &emptypb.Empty{}, &emptypb.Empty{})
		took := time.Since(start)
		cancel()
		switch {
		case err == nil && p.ctx.Err() == nil:
			rtt.Observe(took.Seconds())
		case status.Code(err) == codes.Unimplemented:
			return
		}
		timer.Reset(probeInterval)
	}
}
