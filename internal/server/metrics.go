package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/grpcmetrics"
	"github.com/cairn-kv/cairn/internal/pbwire"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
)

// memberMetrics is a member's Prometheus registry, served on /metrics, and
// the series the server feeds as things happen. Each member has its own
// registry, so that members sharing a process (in tests) do not mix their
// values. Series read at scrape time are added by registerMetrics.
type memberMetrics struct {
	reg *prometheus.Registry
	// grpc counts the client gRPC server's calls as etcd's interceptors
	// do.
	grpc *grpcmetrics.Server
	// grpcSent and grpcReceived count the payload bytes of the client
	// gRPC server's messages.
	grpcSent, grpcReceived prometheus.Counter
	// walFsync and walWrite time the raft log's fsyncs and appends;
	// walWritten counts the bytes appended (a gauge, as etcd declares it).
	walFsync, walWrite prometheus.Histogram
	walWritten         prometheus.Gauge
	// backend times the storage engine's commits, defragmentations and
	// snapshots.
	backend backendMetrics
	// snapshotApplying is 1 while a snapshot from the leader is restored.
	snapshotApplying prometheus.Gauge
	// health counts the answers of the health endpoints, on the client
	// and the metrics URLs alike.
	health *etcdcompat.HealthMetrics
	// requests counts the client calls by their client's API version.
	requests *etcdcompat.RequestMetrics
	// promoted and promoteFailed count the learner promotions this
	// member decided as leader, the failures by etcd's text of the reason.
	promoted      prometheus.Counter
	promoteFailed *prometheus.CounterVec
}

// newMemberMetrics makes the registry with Go's and the process's
// collectors, the actors' statistics and the series the server feeds.
// extensive is --metrics=extensive: it adds the gRPC handling-time
// histogram, as in etcd. The health endpoints log their failures to lg.
func newMemberMetrics(extensive bool, sys *actors.System, lg *zap.Logger) *memberMetrics {
	// etcd's disk buckets: 1 ms to about 8 s.
	diskBuckets := prometheus.ExponentialBuckets(0.001, 2, 14)
	m := &memberMetrics{
		reg:  prometheus.NewRegistry(),
		grpc: grpcmetrics.New(extensive),
		grpcSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_network_client_grpc_sent_bytes_total",
			Help: "The total number of bytes sent to grpc clients.",
		}),
		grpcReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_network_client_grpc_received_bytes_total",
			Help: "The total number of bytes received from grpc clients.",
		}),
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_disk_wal_fsync_duration_seconds",
			Help:    "The latency distributions of fsync called by WAL.",
			Buckets: diskBuckets,
		}),
		walWrite: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_disk_wal_write_duration_seconds",
			Help:    "The latency distributions of write called by WAL.",
			Buckets: diskBuckets,
		}),
		walWritten: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_disk_wal_write_bytes_total",
			Help: "Total number of bytes written in WAL.",
		}),
		backend: backendMetrics{
			commits: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "etcd_disk_backend_commit_duration_seconds",
				Help:    "The latency distributions of commit called by backend.",
				Buckets: diskBuckets,
			}),
			// etcd's buckets: 100 ms to about 410 s.
			defrags: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "etcd_disk_backend_defrag_duration_seconds",
				Help:    "The latency distribution of backend defragmentation.",
				Buckets: prometheus.ExponentialBuckets(.1, 2, 13),
			}),
			defragging: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "etcd_disk_defrag_inflight",
				Help: "Whether or not defrag is active on the member. 1 means active, 0 means not.",
			}),
			// etcd's buckets: 10 ms to about 655 s.
			snapshots: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "etcd_disk_backend_snapshot_duration_seconds",
				Help:    "The latency distribution of backend snapshots.",
				Buckets: prometheus.ExponentialBuckets(.01, 2, 17),
			}),
			running: new(atomic.Int32),
		},
		snapshotApplying: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "etcd_server_snapshot_apply_in_progress_total",
			Help: "1 if the server is applying the incoming snapshot. 0 if none.",
		}),
		health:   etcdcompat.NewHealthMetrics(lg),
		requests: etcdcompat.NewRequestMetrics(),
		promoted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_learner_promote_successes",
			Help: "The total number of successful learner promotions while this member is leader.",
		}),
		promoteFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_learner_promote_failures",
			Help: "The total number of failed learner promotions (likely learner not ready) while this member is leader.",
		}, []string{"Reason"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.grpc, m.grpcSent, m.grpcReceived, m.walFsync, m.walWrite, m.walWritten,
		m.backend.commits, m.backend.defrags, m.backend.defragging, m.backend.snapshots, m.snapshotApplying,
		m.promoted, m.promoteFailed,
		actorCollector{sys},
	)
	m.reg.MustRegister(m.health.Collectors()...)
	m.reg.MustRegister(m.requests.Collectors()...)
	return m
}

// handler serves the registry as /metrics.
func (m *memberMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// grpcServerOptions are the options that instrument the client gRPC
// server: etcd's per-method counters, after the server's own interceptors
// as in etcd, and the byte counters.
func (m *memberMetrics) grpcServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.grpc.Unary()),
		grpc.ChainStreamInterceptor(m.grpc.Stream()),
		grpc.ForceServerCodecV2(newCountingCodec(m.grpcSent, m.grpcReceived)),
	}
}

// raftLog is what the raft log reports to.
func (m *memberMetrics) raftLog() filelog.Metrics {
	return filelog.Metrics{
		Synced: func(d time.Duration) { m.walFsync.Observe(d.Seconds()) },
		Wrote: func(n int, took time.Duration) {
			m.walWritten.Add(float64(n))
			m.walWrite.Observe(took.Seconds())
		},
	}
}

// countingCodec is gRPC's proto codec counting the bytes of the messages a
// server receives and sends, as etcd's codec counts them: the marshalled
// messages, without framing or compression. (A stats handler would count
// the same, but gRPC copies every call's metadata for one.)
type countingCodec struct {
	encoding.CodecV2
	sent, received prometheus.Counter
}

func newCountingCodec(sent, received prometheus.Counter) countingCodec {
	return countingCodec{CodecV2: encoding.GetCodecV2(grpcproto.Name), sent: sent, received: received}
}

// Marshal encodes v; watch responses, which fan out to every watching
// stream, are written by pbwire rather than the protobuf runtime.
func (c countingCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(*pb.WatchResponse); ok {
		size := pbwire.SizeWatchResponse(r)
		c.sent.Add(float64(size))
		if mem.IsBelowBufferPoolingThreshold(size) {
			buf := make([]byte, size)
			pbwire.MarshalWatchResponse(buf, r)
			return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
		}
		pool := mem.DefaultBufferPool()
		buf := pool.Get(size)
		pbwire.MarshalWatchResponse(*buf, r)
		return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
	}
	out, err := c.CodecV2.Marshal(v)
	if err == nil {
		c.sent.Add(float64(out.Len()))
	}
	return out, err
}

func (c countingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	c.received.Add(float64(data.Len()))
	return c.CodecV2.Unmarshal(data, v)
}

// backendMetrics are etcd's backend series: every batch the member
// commits (the applied entries' above all), every defragmentation and
// every snapshot of the engine's state, streamed to a client or a peer.
type backendMetrics struct {
	commits, defrags, snapshots prometheus.Histogram
	defragging                  prometheus.Gauge
	// running counts the defragmentations under way, for defragging.
	running *atomic.Int32
}

// timedEngine is a storage engine that times its batch commits, its
// defragmentations and the snapshots it writes into m.
type timedEngine struct {
	storage.Engine
	m backendMetrics
}

func (e timedEngine) NewBatch() storage.Batch {
	return timedBatch{Batch: e.Engine.NewBatch(), commits: e.m.commits}
}

// Defragment is timed when it succeeds, as etcd times its own; the
// in-flight gauge is 1 while any runs.
func (e timedEngine) Defragment() error {
	e.m.running.Add(1)
	e.m.defragging.Set(1)
	defer func() {
		if e.m.running.Add(-1) == 0 {
			e.m.defragging.Set(0)
		}
	}()
	start := time.Now()
	err := e.Engine.Defragment()
	if err == nil {
		e.m.defrags.Observe(time.Since(start).Seconds())
	}
	return err
}

// WriteSnapshot writes the snapshot a peer is sent, timed from start to
// end whatever its outcome, as etcd times a snapshot until it is closed.
func (e timedEngine) WriteSnapshot(w io.Writer) error {
	defer since(e.m.snapshots, time.Now())
	return e.Engine.WriteSnapshot(w)
}

// since observes the seconds from start in h.
func since(h prometheus.Histogram, start time.Time) { h.Observe(time.Since(start).Seconds()) }

type timedBatch struct {
	storage.Batch
	commits prometheus.Histogram
}

func (b timedBatch) Commit(sync bool) error {
	start := time.Now()
	err := b.Batch.Commit(sync)
	if err == nil {
		b.commits.Observe(time.Since(start).Seconds())
	}
	return err
}

// actorCollector exports the actors' statistics, those of /debug/actors,
// summed by kind of actor: the watch streams' actors, one per stream, are
// "watch-stream" together. A kind's counters drop when some of its actors
// end, which rate() takes as a reset.
type actorCollector struct{ sys *actors.System }

var (
	actorCount = prometheus.NewDesc("cairn_actors",
		"Number of live actors of a kind.", []string{"actor"}, nil)
	actorMailbox = prometheus.NewDesc("cairn_actor_mailbox_depth",
		"Messages waiting in the mailboxes of a kind of actor.", []string{"actor"}, nil)
	actorProcessed = prometheus.NewDesc("cairn_actor_messages_processed_total",
		"Messages handled by the live actors of a kind.", []string{"actor"}, nil)
	actorHandling = prometheus.NewDesc("cairn_actor_handling_seconds_total",
		"Time the live actors of a kind spent handling messages.", []string{"actor"}, nil)
	actorMaxHandling = prometheus.NewDesc("cairn_actor_handling_max_seconds",
		"Longest handling of one message by a live actor of a kind.", []string{"actor"}, nil)
)

func (c actorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{actorCount, actorMailbox, actorProcessed, actorHandling, actorMaxHandling} {
		ch <- d
	}
}

func (c actorCollector) Collect(ch chan<- prometheus.Metric) {
	type sums struct {
		n, depth, processed int
		seconds, max        float64
	}
	kinds := map[string]*sums{}
	var order []string
	for _, a := range c.sys.Snapshot() {
		kind := strings.TrimRightFunc(a.Name, unicode.IsDigit)
		if kind != a.Name {
			kind = strings.TrimSuffix(kind, "-")
		}
		s := kinds[kind]
		if s == nil {
			s = &sums{}
			kinds[kind] = s
			order = append(order, kind)
		}
		s.n++
		s.depth += int(a.MailboxDepth)
		s.processed += int(a.Processed)
		s.seconds += a.MeanMicros * float64(a.Processed) / 1e6
		s.max = max(s.max, a.MaxMicros/1e6)
	}
	for _, kind := range order {
		s := kinds[kind]
		ch <- prometheus.MustNewConstMetric(actorCount, prometheus.GaugeValue, float64(s.n), kind)
		ch <- prometheus.MustNewConstMetric(actorMailbox, prometheus.GaugeValue, float64(s.depth), kind)
		ch <- prometheus.MustNewConstMetric(actorProcessed, prometheus.CounterValue, float64(s.processed), kind)
		ch <- prometheus.MustNewConstMetric(actorHandling, prometheus.CounterValue, s.seconds, kind)
		ch <- prometheus.MustNewConstMetric(actorMaxHandling, prometheus.GaugeValue, s.max, kind)
	}
}

// raftCollectors are etcd's series read from the raft node, once it runs
// (node returns nil before): the ReadIndex rounds of linearizable reads
// that a change of leader failed, and the slow ones (an answer that came
// after its round was over, a deadline that passed first); and the
// heartbeats the node, leading, sent late.
func raftCollectors(node func() *raftnode.Node) []prometheus.Collector {
	read := func(f func(n *raftnode.Node) uint64) func() float64 {
		return func() float64 {
			if n := node(); n != nil {
				return float64(f(n))
			}
			return 0
		}
	}
	return []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "etcd_server_read_indexes_failed_total",
			Help: "The total number of failed read indexes seen.",
		}, read(func(n *raftnode.Node) uint64 { failed, _ := n.ReadIndexStats(); return failed })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "etcd_server_slow_read_indexes_total",
			Help: "The total number of pending read indexes not in sync with leader's or timed out read index requests.",
		}, read(func(n *raftnode.Node) uint64 { _, slow := n.ReadIndexStats(); return slow })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "etcd_server_heartbeat_send_failures_total",
			Help: "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
		}, read((*raftnode.Node).LateHeartbeats)),
	}
}

// registerMetrics exposes the member's state under etcd's metric names, so
// existing dashboards and alerts keep working. Values are read at scrape
// time from the store's status.
func registerMetrics(reg *prometheus.Registry, st *store.Client, memberID uint64, leaderChanges func() uint64) {
	status := func(f func(s statusView) float64) func() float64 {
		return func() float64 {
			resp, err := st.Status(context.Background())
			if err != nil {
				return 0
			}
			return f(statusView{leader: resp.Leader, member: resp.Header.MemberId, term: resp.RaftTerm,
				commit: resp.RaftIndex, applied: resp.RaftAppliedIndex, size: resp.DbSize, inUse: resp.DbSizeInUse,
				quota: resp.DbSizeQuota, rev: resp.Header.Revision, learner: resp.IsLearner})
		}
	}
	gauge := func(name, help string, f func(s statusView) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, status(f)))
	}
	gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
		func(s statusView) float64 { return boolFloat(s.leader != 0) })
	gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
		func(s statusView) float64 { return boolFloat(s.leader != 0 && s.leader == s.member) })
	gauge("etcd_server_proposals_committed_total", "The total number of consensus proposals committed.",
		func(s statusView) float64 { return float64(s.commit) })
	gauge("etcd_server_proposals_applied_total", "The total number of consensus proposals applied.",
		func(s statusView) float64 { return float64(s.applied) })
	gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
		func(s statusView) float64 { return float64(s.commit - min(s.applied, s.commit)) })
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "etcd_server_proposals_failed_total", Help: "The total number of failed proposals seen.",
	}, func() float64 { return float64(st.ProposalsFailed()) }))
	gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
		func(s statusView) float64 { return boolFloat(s.learner) })
	gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
		func(s statusView) float64 { return float64(s.quota) })
	gauge("etcd_mvcc_db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.",
		func(s statusView) float64 { return float64(s.size) })
	gauge("etcd_mvcc_db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.",
		func(s statusView) float64 { return float64(s.inUse) })
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "etcd_server_leader_changes_seen_total", Help: "The number of leader changes seen.",
	}, func() float64 { return float64(leaderChanges()) }))
	gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.",
		func(s statusView) float64 { return float64(s.rev) })
	gauge("etcd_server_term", "The current term of this member.",
		func(s statusView) float64 { return float64(s.term) })
	version := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "etcd_server_version", Help: "Which version is running. 1 for 'server_version' label with current version."}, []string{"server_version"})
	version.WithLabelValues(store.Version).Set(1)
	reg.MustRegister(version)
	id := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "etcd_server_id", Help: "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID."}, []string{"server_id"})
	id.WithLabelValues(fmt.Sprintf("%x", memberID)).Set(1)
	reg.MustRegister(id)
	goVersion := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "etcd_server_go_version", Help: "Which Go version server is running with. 1 for 'server_go_version' label with current version."}, []string{"server_go_version"})
	goVersion.WithLabelValues(runtime.Version()).Set(1)
	reg.MustRegister(goVersion)
}

type statusView struct {
	leader, member, term, commit, applied uint64
	size, inUse, quota, rev               int64
	learner                               bool
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// promotion counts a learner promotion this member, leading, decided:
// a success, or a failure under etcd's text of its reason. etcd's reasons
// are its internal errors' texts, which for an unknown member and a
// member that is no learner differ from what its API answers.
func (m *memberMetrics) promotion(err error) {
	switch {
	case err == nil:
		m.promoted.Inc()
	case errors.Is(err, store.ErrMemberNotFound):
		m.promoteFailed.WithLabelValues("membership: ID not found").Inc()
	case errors.Is(err, store.ErrMemberNotLearner):
		m.promoteFailed.WithLabelValues("membership: can only promote a learner member").Inc()
	default:
		m.promoteFailed.WithLabelValues(etcdcompat.ErrorText(err)).Inc()
	}
}
