package store

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// applyMetrics are etcd's series of the request path: the time each
// applied request took, by kind and outcome; the requests slower than the
// warning threshold, reads served without raft included, as etcd counts
// them; the time each request took from the member's point of view
// (proposed and applied, or read), by kind and outcome; and the time of
// each MVCC range read.
type applyMetrics struct {
	slow      prometheus.Counter
	durations *prometheus.HistogramVec
	requests  *prometheus.HistogramVec
	ranges    *prometheus.HistogramVec

	// byKind and rangesBy keep the requests' and the range reads' series
	// once first observed, so that a request pays a map read rather than
	// the vector's hashing and locking twice (a tenth of a microsecond
	// each, on ranges that take twenty); they appear only once observed,
	// as etcd's do.
	mu       sync.RWMutex
	byKind   map[string]*outcomes
	rangesBy outcomes
}

// outcomes are a histogram's series for a failure ([0]) and a success
// ([1]), each resolved on first use.
type outcomes [2]atomic.Pointer[prometheus.Observer]

// get returns the series for success ok, made with labels by the first
// call.
func (o *outcomes) get(ok bool, labels func(success string) prometheus.Observer) prometheus.Observer {
	i := 0
	if ok {
		i = 1
	}
	if obs := o[i].Load(); obs != nil {
		return *obs
	}
	obs := labels(strconv.FormatBool(ok))
	o[i].Store(&obs)
	return obs
}

func newApplyMetrics() *applyMetrics {
	return &applyMetrics{
		slow: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_slow_apply_total",
			Help: "The total number of slow apply requests (likely overloaded from slow disk).",
		}),
		// etcd's buckets: 0.1 ms to about 52 s.
		durations: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_server_apply_duration_seconds",
			Help:    "The latency distributions of v2 apply called by backend.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
		}, []string{"version", "op", "success"}),
		// etcd's buckets: 1 ms to about 8 s.
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_server_request_duration_seconds",
			Help:    "Response latency distribution in seconds for each type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"type", "success"}),
		ranges: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "etcd_server_range_duration_seconds",
			Help:    "The latency distributions of txn.Range",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 20),
		}, []string{"success"}),
		byKind: make(map[string]*outcomes),
	}
}

// request observes a request of kind typ (etcd's names: applyOp's, and
// "ReadonlyTxn") that started at start and ended with err.
func (m *applyMetrics) request(typ string, start time.Time, err error) {
	m.mu.RLock()
	o := m.byKind[typ]
	m.mu.RUnlock()
	if o == nil {
		m.mu.Lock()
		if o = m.byKind[typ]; o == nil {
			o = new(outcomes)
			m.byKind[typ] = o
		}
		m.mu.Unlock()
	}
	obs := o.get(err == nil, func(success string) prometheus.Observer { return m.requests.WithLabelValues(typ, success) })
	obs.Observe(time.Since(start).Seconds())
}

// ranged observes an MVCC range read that started at start and ended with
// err, to the microsecond as etcd observes it.
func (m *applyMetrics) ranged(start time.Time, err error) {
	obs := m.rangesBy.get(err == nil, func(success string) prometheus.Observer { return m.ranges.WithLabelValues(success) })
	obs.Observe(float64(time.Since(start).Microseconds()) / 1e6)
}

// Collectors returns the store's series of the request path, for the
// caller to register.
func (c *Client) Collectors() []prometheus.Collector {
	m := c.applyMetrics
	return []prometheus.Collector{m.slow, m.durations, m.requests, m.ranges}
}

// applyOp names the kind of an applied request as etcd's apply duration
// histogram does.
func applyOp(r *pb.InternalRaftRequest) string {
	switch {
	case r.Range != nil:
		return "Range"
	case r.Put != nil:
		return "Put"
	case r.DeleteRange != nil:
		return "DeleteRange"
	case r.Txn != nil:
		return "Txn"
	case r.Compaction != nil:
		return "Compaction"
	case r.LeaseGrant != nil:
		return "LeaseGrant"
	case r.LeaseRevoke != nil:
		return "LeaseRevoke"
	case r.LeaseCheckpoint != nil:
		return "LeaseCheckpoint"
	case r.Alarm != nil:
		return "Alarm"
	case r.ClusterVersionSet != nil:
		return "ClusterVersionSet"
	case r.ClusterMemberAttrSet != nil:
		return "ClusterMemberAttrSet"
	case r.DowngradeInfoSet != nil:
		return "DowngradeInfoSet"
	case r.Authenticate != nil:
		return "Authenticate"
	case r.AuthEnable != nil:
		return "AuthEnable"
	case r.AuthDisable != nil:
		return "AuthDisable"
	case r.AuthUserAdd != nil:
		return "AuthUserAdd"
	case r.AuthUserDelete != nil:
		return "AuthUserDelete"
	case r.AuthUserChangePassword != nil:
		return "AuthUserChangePassword"
	case r.AuthUserGrantRole != nil:
		return "AuthUserGrantRole"
	case r.AuthUserGet != nil:
		return "AuthUserGet"
	case r.AuthUserRevokeRole != nil:
		return "AuthUserRevokeRole"
	case r.AuthRoleAdd != nil:
		return "AuthRoleAdd"
	case r.AuthRoleGrantPermission != nil:
		return "AuthRoleGrantPermission"
	case r.AuthRoleGet != nil:
		return "AuthRoleGet"
	case r.AuthRoleRevokePermission != nil:
		return "AuthRoleRevokePermission"
	case r.AuthRoleDelete != nil:
		return "AuthRoleDelete"
	case r.AuthUserList != nil:
		return "AuthUserList"
	case r.AuthRoleList != nil:
		return "AuthRoleList"
	}
	return "unknown"
}

// observeApply records the apply of r, which began at start and ended
// with res: its duration, and, past the warning threshold, a warning and
// the slow counter. A compacted revision counts as a success, as in etcd.
func (a *storeActor) observeApply(r *pb.InternalRaftRequest, res result, start time.Time) {
	took := time.Since(start)
	ok := res.err == nil || errors.Is(res.err, mvcc.ErrCompacted)
	a.c.applyMetrics.durations.WithLabelValues("v3", applyOp(r), strconv.FormatBool(ok)).Observe(float64(took.Microseconds()) / 1e6)
	slow := took > a.c.cfg.WarningApplyDuration
	if !slow && ok {
		return
	}
	resp := ""
	// etcd's membership and version entries answer nothing, nor does a
	// request that failed.
	member := r.ClusterMemberAttrSet != nil || r.ClusterVersionSet != nil || r.DowngradeInfoSet != nil
	if msg, isMsg := res.resp.(proto.Message); isMsg && msg != nil && !member && res.err == nil {
		resp = "size:" + strconv.Itoa(proto.Size(msg))
	}
	if slow {
		a.c.warnSlow(took, "", describeRequest(r), resp, res.err)
	}
	if !ok {
		// As etcd does, every member logs a request that failed to apply
		// (a compacted revision is no failure).
		a.c.cfg.Logger.Warn("failed to apply request",
			zap.Duration("took", took),
			zap.String("request", describeRequest(r)),
			zap.String("response", resp),
			zap.Error(res.err))
	}
}

// warnSlow logs a request that took longer than the warning threshold, in
// etcd's words and fields, and counts it.
func (c *Client) warnSlow(took time.Duration, prefix, request, response string, err error) {
	c.cfg.Logger.Warn("apply request took too long",
		zap.Duration("took", took),
		zap.Duration("expected-duration", c.cfg.WarningApplyDuration),
		zap.String("prefix", prefix),
		zap.String("request", request),
		zap.String("response", response),
		zap.Error(err))
	c.applyMetrics.slow.Inc()
}

// warnSlowRead warns of a range or read-only txn, served without raft,
// that took longer than the warning threshold since start, as etcd does.
func (c *Client) warnSlowRead(start time.Time, req proto.Message, resp proto.Message, err error) {
	took := time.Since(start)
	if took <= c.cfg.WarningApplyDuration {
		return
	}
	var prefix, desc string
	switch r := resp.(type) {
	case *pb.RangeResponse:
		prefix = "read-only range "
		if r != nil {
			desc = fmt.Sprintf("range_response_count:%d size:%d", len(r.Kvs), proto.Size(r))
		}
	case *pb.TxnResponse:
		prefix = "read-only txn "
		if r != nil {
			desc = fmt.Sprintf("responses:%d size:%d", len(r.Responses), proto.Size(r))
		}
	}
	c.warnSlow(took, prefix, describeRead(req), desc, err)
}

// describeRequest describes an applied request for a log line, keys but
// no values, as etcd's request stringer leaves values out.
func describeRequest(r *pb.InternalRaftRequest) string {
	switch {
	case r.Put != nil:
		return fmt.Sprintf("put:<key:%q value_size:%d lease:%d>", r.Put.Key, len(r.Put.Value), r.Put.Lease)
	case r.DeleteRange != nil:
		return fmt.Sprintf("delete_range:<key:%q range_end:%q>", r.DeleteRange.Key, r.DeleteRange.RangeEnd)
	case r.Txn != nil:
		return fmt.Sprintf("txn:<compare:%d success:%d failure:%d>", len(r.Txn.Compare), len(r.Txn.Success), len(r.Txn.Failure))
	case r.Compaction != nil:
		return fmt.Sprintf("compaction:<revision:%d>", r.Compaction.Revision)
	case r.LeaseGrant != nil:
		return fmt.Sprintf("lease_grant:<ID:%d TTL:%d>", r.LeaseGrant.ID, r.LeaseGrant.TTL)
	case r.LeaseRevoke != nil:
		return fmt.Sprintf("lease_revoke:<ID:%d>", r.LeaseRevoke.ID)
	}
	return applyOp(r)
}

// describeRead describes a range or read-only txn request for a log line.
func describeRead(req proto.Message) string {
	switch r := req.(type) {
	case *pb.RangeRequest:
		return fmt.Sprintf("key:%q range_end:%q limit:%d serializable:%t", r.Key, r.RangeEnd, r.Limit, r.Serializable)
	case *pb.TxnRequest:
		return fmt.Sprintf("compare:%d success:%d failure:%d", len(r.Compare), len(r.Success), len(r.Failure))
	}
	return ""
}
