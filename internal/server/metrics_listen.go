package server

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
)

// instrumentStorage makes the raft log time its fsyncs and the engine its
// batch commits, defragmentations and snapshots into the member's metrics. It runs once storage is open,
// before anything writes.
func (s *Server) instrumentStorage() {
	if l, ok := s.rlog.(*filelog.Log); ok {
		l.SetMetrics(s.metrics.raftLog())
	}
	s.engine = timedEngine{Engine: s.engine, m: s.metrics.backend}
}

// metricsHandler registers the series read from the running member (the
// store's status, raft's leader changes, read index rounds and late
// heartbeats, the peer transport's, lessor's, MVCC store's and watch
// service's counters) and returns the handler of /metrics. It is called once, when the client
// listeners open.
func (s *Server) metricsHandler() http.Handler {
	registerMetrics(s.metrics.reg, s.store, s.selfID, func() uint64 {
		if n := s.peers.node.Load(); n != nil {
			return n.Status().LeaderChanges
		}
		return 0
	})
	s.metrics.reg.MustRegister(s.transport.Collectors()...)
	s.metrics.reg.MustRegister(s.lease.Collectors()...)
	s.metrics.reg.MustRegister(s.kv.Collectors()...)
	s.metrics.reg.MustRegister(s.store.Collectors()...)
	s.metrics.reg.MustRegister(s.watch.Collectors()...)
	s.metrics.reg.MustRegister(raftCollectors(s.peers.node.Load)...)
	s.metrics.reg.MustRegister(clusterCollector{st: s.store, engine: s.engine, self: s.selfID})
	s.metrics.reg.MustRegister(featureMetric(s.cfg.Features))
	return s.metrics.handler()
}

// errMetricsTLS is etcd's refusal of an https:// or unixs:// metrics URL
// without client certificates.
var errMetricsTLS = errors.New("client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url")

// serveMetricsURLs serves /metrics and the health endpoints, and nothing
// else, on every --listen-metrics-urls address, as etcd does: over TLS with
// the client certificate for https:// and unixs://.
func (s *Server) serveMetricsURLs() error {
	if len(s.cfg.ListenMetricsURLs) == 0 {
		return nil
	}
	for _, u := range s.cfg.ListenMetricsURLs {
		if isSecure(u) && s.tls.client == nil {
			return errMetricsTLS
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics.handler())
	etcdcompat.RegisterHealth(mux, s.store, s.metrics.health)
	for _, u := range s.cfg.ListenMetricsURLs {
		l, err := listenClient(s.cfg, u)
		if err != nil {
			return fmt.Errorf("listen on metrics URL %s: %w", u.String(), err)
		}
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		s.httpSrvs = append(s.httpSrvs, hs)
		if isSecure(u) {
			hs.TLSConfig = s.tls.client
			go func() { _ = hs.ServeTLS(l, "", "") }()
		} else {
			go func() { _ = hs.Serve(l) }()
		}
		s.lg.Info("serving metrics", zap.String("address", u.String()), zap.Stringer("bound", l.Addr()))
	}
	return nil
}
