// Package grpcmetrics counts a gRPC server's calls and messages as etcd's
// interceptors (go-grpc-middleware's Prometheus provider) do, under the same
// names, help texts and labels: grpc_server_started_total,
// grpc_server_handled_total, grpc_server_msg_received_total,
// grpc_server_msg_sent_total and, when asked for, grpc_server_handling_seconds.
// Like etcd's, every message a handler sends or receives counts, failed ones
// included, and Preregister gives the methods of a server their zero series.
//
// The difference is the cost: each method's series are resolved once, so a
// message on a stream costs one atomic add, where the provider looks its
// labels up again for every message (a hash of three strings and a map
// read), which showed in profiles of watch streams carrying many events.
package grpcmetrics

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Server is the set of series; it is a prometheus.Collector.
type Server struct {
	started, handled, received, sent *prometheus.CounterVec
	// handling is nil unless handling times are measured.
	handling *prometheus.HistogramVec
	all      []prometheus.Collector // the vectors above
	methods  sync.Map               // full method name → *method
}

// method holds one method's series.
type method struct {
	started, received, sent prometheus.Counter
	handled                 [codes.Unauthenticated + 1]prometheus.Counter
	handling                prometheus.Observer // nil unless measured
	labels                  [3]string           // type, service, method
}

// New returns the series, with the handling-time histogram if handlingTime
// (etcd's --metrics=extensive).
func New(handlingTime bool) *Server {
	labels := []string{"grpc_type", "grpc_service", "grpc_method"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	s := &Server{
		started: counter("grpc_server_started_total", "Total number of RPCs started on the server.", labels...),
		handled: counter("grpc_server_handled_total",
			"Total number of RPCs completed on the server, regardless of success or failure.", append(labels, "grpc_code")...),
		received: counter("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", labels...),
		sent:     counter("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", labels...),
	}
	s.all = []prometheus.Collector{s.started, s.handled, s.received, s.sent}
	if handlingTime {
		s.handling = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "grpc_server_handling_seconds",
			Help:    "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
			Buckets: prometheus.DefBuckets,
		}, labels)
		s.all = append(s.all, s.handling)
	}
	return s
}

// Describe implements prometheus.Collector.
func (s *Server) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range s.all {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (s *Server) Collect(ch chan<- prometheus.Metric) {
	for _, c := range s.all {
		c.Collect(ch)
	}
}

// Preregister creates the series of every method of srv at zero, every
// code of grpc_server_handled_total included, as etcd's server does, but
// for the services named in except, whose series appear when first used.
func (s *Server) Preregister(srv *grpc.Server, except ...string) {
	for service, info := range srv.GetServiceInfo() {
		if slices.Contains(except, service) {
			continue
		}
		for _, m := range info.Methods {
			s.method("/"+service+"/"+m.Name, callType(m.IsClientStream, m.IsServerStream))
		}
	}
}

// method returns the series of fullMethod, a call of type typ, resolving
// them the first time.
func (s *Server) method(fullMethod, typ string) *method {
	if m, ok := s.methods.Load(fullMethod); ok {
		return m.(*method)
	}
	service, name, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		service, name = "unknown", "unknown"
	}
	m := &method{labels: [3]string{typ, service, name}}
	m.started = s.started.WithLabelValues(typ, service, name)
	m.received = s.received.WithLabelValues(typ, service, name)
	m.sent = s.sent.WithLabelValues(typ, service, name)
	for c := range m.handled {
		m.handled[c] = s.handled.WithLabelValues(typ, service, name, codes.Code(c).String())
	}
	if s.handling != nil {
		m.handling = s.handling.WithLabelValues(typ, service, name)
	}
	got, _ := s.methods.LoadOrStore(fullMethod, m)
	return got.(*method)
}

// done counts a call that ended with err after starting at start.
func (s *Server) done(m *method, err error, start time.Time) {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	if c := st.Code(); int(c) < len(m.handled) {
		m.handled[c].Inc()
	} else {
		s.handled.WithLabelValues(m.labels[0], m.labels[1], m.labels[2], c.String()).Inc()
	}
	if m.handling != nil {
		m.handling.Observe(time.Since(start).Seconds())
	}
}

// Unary returns the interceptor of unary calls.
func (s *Server) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		m := s.method(info.FullMethod, "unary")
		m.started.Inc()
		m.received.Inc()
		resp, err := handler(ctx, req)
		m.sent.Inc()
		s.done(m, err, start)
		return resp, err
	}
}

// Stream returns the interceptor of streaming calls.
func (s *Server) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		m := s.method(info.FullMethod, callType(info.IsClientStream, info.IsServerStream))
		m.started.Inc()
		err := handler(srv, &stream{ServerStream: ss, m: m})
		s.done(m, err, start)
		return err
	}
}

// stream counts the messages of a streaming call.
type stream struct {
	grpc.ServerStream
	m *method
}

// SendMsg implements grpc.ServerStream.
func (s *stream) SendMsg(msg any) error {
	err := s.ServerStream.SendMsg(msg)
	s.m.sent.Inc()
	return err
}

// RecvMsg implements grpc.ServerStream.
func (s *stream) RecvMsg(msg any) error {
	err := s.ServerStream.RecvMsg(msg)
	s.m.received.Inc()
	return err
}

// callType names a call's type as the grpc_type label does.
func callType(clientStream, serverStream bool) string {
	switch {
	case clientStream && !serverStream:
		return "client_stream"
	case !clientStream && serverStream:
		return "server_stream"
	case clientStream:
		return "bidi_stream"
	}
	return "unary"
}
