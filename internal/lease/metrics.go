package lease

import "github.com/prometheus/client_golang/prometheus"

// metrics are the lessor's series, under etcd's names: grants and revokes
// as every member applies them, renewals as the leader makes them, the
// granted TTLs, and the expired leases the leader revoked. Each Lessor has
// its own; Collectors hands them to the member's registry.
type metrics struct {
	granted, revoked, renewed, expired prometheus.Counter
	ttls                               prometheus.Histogram
}

func newMetrics() *metrics {
	return &metrics{
		granted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_debugging_lease_granted_total",
			Help: "The total number of granted leases.",
		}),
		revoked: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_debugging_lease_revoked_total",
			Help: "The total number of revoked leases.",
		}),
		renewed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_debugging_lease_renewed_total",
			Help: "The number of renewed leases seen by the leader.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_debugging_server_lease_expired_total",
			Help: "The total number of expired leases.",
		}),
		// etcd's buckets: 1 second to about three months.
		ttls: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "etcd_debugging_lease_ttl_total",
			Help:    "Bucketed histogram of lease TTLs.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 24),
		}),
	}
}

// Collectors returns the lessor's metrics, for the caller to register.
func (l *Lessor) Collectors() []prometheus.Collector {
	m := l.metrics
	return []prometheus.Collector{m.granted, m.revoked, m.renewed, m.expired, m.ttls}
}
