package etcdcompat

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// HealthMetrics are etcd's series about its health endpoints, and their
// logs: the answers of /health, and the outcome of each check /livez and
// /readyz run. One member's endpoints share one; a nil *HealthMetrics
// counts and logs nothing.
type HealthMetrics struct {
	lg                *zap.Logger
	success, failures prometheus.Counter
	// check is 1 if a check last succeeded, 0 if it failed; checks counts
	// the runs of each check by outcome ("success" or "error").
	check  *prometheus.GaugeVec
	checks *prometheus.CounterVec
}

// NewHealthMetrics returns the health series, under etcd's names, whose
// failures are logged to lg (nil logs nothing) with etcd's messages.
func NewHealthMetrics(lg *zap.Logger) *HealthMetrics {
	if lg == nil {
		lg = zap.NewNop()
	}
	return &HealthMetrics{
		lg: lg,
		success: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_success",
			Help: "The total number of successful health checks",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "etcd_server_health_failures",
			Help: "The total number of failed health checks",
		}),
		check: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "etcd_server_healthcheck",
			Help: "The result of each kind of healthcheck.",
		}, []string{"type", "name"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "etcd_server_healthchecks_total",
			Help: "The total number of each kind of healthcheck.",
		}, []string{"type", "name", "status"}),
	}
}

// Collectors returns the series, for the caller to register.
func (m *HealthMetrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.success, m.failures, m.check, m.checks}
}

// health counts one answer of /health.
func (m *HealthMetrics) health(ok bool) {
	switch {
	case m == nil:
	case ok:
		m.success.Inc()
	default:
		m.failures.Inc()
	}
}

// ran records one run of check name of /livez or /readyz (typ).
func (m *HealthMetrics) ran(typ, name string, err error) {
	if m == nil {
		return
	}
	status, v := "success", 1.0
	if err != nil {
		status, v = "error", 0
	}
	m.check.WithLabelValues(typ, name).Set(v)
	m.checks.WithLabelValues(typ, name, status).Inc()
}

// logger is where the endpoints log: nowhere for a nil *HealthMetrics.
func (m *HealthMetrics) logger() *zap.Logger {
	if m == nil {
		return zap.NewNop()
	}
	return m.lg
}
