package server

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cairn-kv/cairn/internal/store"
)

// registerMetrics exposes the member's state under etcd's metric names, so
// existing dashboards and alerts keep working. Values are read at scrape
// time from the store's status.
func registerMetrics(reg *prometheus.Registry, st *store.Client, leaderChanges func() uint64) {
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
