package etcdcompat

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// RequestMetrics are etcd's series about the calls clients make:
// etcd_server_client_requests_total, by kind of call ("unary" or
// "stream") and the API version the client declares in its
// client-api-version metadata ("unknown" without). One member's gRPC
// server has one; a nil *RequestMetrics counts nothing.
type RequestMetrics struct {
	requests *prometheus.CounterVec
	// streamFailures counts the watch and keep-alive streams that failed
	// to receive or send for another reason than their client going away
	// (etcd_network_server_stream_failures_total).
	streamFailures *prometheus.CounterVec
	// byVersion keeps each version's counters ([0] unary, [1] stream)
	// once first counted, so that a call pays a map read rather than the
	// vector's hashing and locking.
	mu        sync.RWMutex
	byVersion map[string]*[2]atomic.Pointer[prometheus.Counter]
}

// NewRequestMetrics returns the client request series, under etcd's name.
func NewRequestMetrics() *RequestMetrics {
	return &RequestMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_client_requests_total",
			Help: "The total number of client requests per client version.",
		}, []string{"type", "client_api_version"}),
		streamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_network_server_stream_failures_total",
			Help: "The total number of stream failures from the local server.",
		}, []string{"Type", "API"}),
		byVersion: make(map[string]*[2]atomic.Pointer[prometheus.Counter]),
	}
}

// Collectors returns the series, for the caller to register.
func (m *RequestMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.requests, m.streamFailures}
}

// maxClientVersions bounds the versions that get series of their own:
// a client chooses its version string, and each new one would otherwise
// cost the member a series for as long as it runs. Calls of versions past
// the bound count as "unknown".
const maxClientVersions = 64

// count counts one call, a stream or not, from a client of API version
// ver. Only the versions clients send become series, as in etcd.
func (m *RequestMetrics) count(stream bool, ver string) {
	if m == nil {
		return
	}
	m.mu.RLock()
	byKind := m.byVersion[ver]
	m.mu.RUnlock()
	if byKind == nil {
		m.mu.Lock()
		if len(m.byVersion) >= maxClientVersions && m.byVersion[ver] == nil {
			ver = "unknown"
		}
		if byKind = m.byVersion[ver]; byKind == nil {
			byKind = new([2]atomic.Pointer[prometheus.Counter])
			m.byVersion[ver] = byKind
		}
		m.mu.Unlock()
	}
	i, typ := 0, "unary"
	if stream {
		i, typ = 1, "stream"
	}
	c := byKind[i].Load()
	if c == nil {
		made := m.requests.WithLabelValues(typ, ver)
		c = &made
		byKind[i].Store(c)
	}
	(*c).Inc()
}
