package etcdcompat

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestStreamFailures: as etcd's, a stream error that means the client went
// away (its context ended, or gRPC says it canceled, timed out or
// disconnected) is a debug line, and any other is a warning counted in
// etcd_network_server_stream_failures_total by direction and API.
func TestStreamFailures(t *testing.T) {
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	tests := []struct {
		name    string
		ctx     context.Context
		err     error
		counted bool
	}{
		{"context ended", ended, errors.New("transport is closing"), false},
		{"client canceled", live, status.Error(codes.Canceled, "context canceled"), false},
		{"client deadline", live, status.Error(codes.DeadlineExceeded, "context deadline exceeded"), false},
		{"client disconnected", live, status.Error(codes.Unavailable, "client disconnected"), false},
		{"stream reset by the client", live, status.Error(codes.Unavailable, "stream error: stream ID 21; CANCEL"), false},
		{"server unavailable", live, status.Error(codes.Unavailable, "transport is closing"), true},
		{"too large", live, status.Error(codes.ResourceExhausted, "grpc: received message larger than max"), true},
		{"not a status", live, errors.New("broken pipe"), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.DebugLevel)
			m := NewRequestMetrics()
			f := &streamFailures{lg: zap.New(core), m: m}
			f.failed(tc.ctx, tc.err, "receive", "watch", "failed to receive watch request from gRPC stream")
			counted := testutil.ToFloat64(m.streamFailures.WithLabelValues("receive", "watch"))
			level := zapcore.DebugLevel
			if tc.counted {
				level = zapcore.WarnLevel
			}
			if got := logs.FilterLevelExact(level).FilterMessage("failed to receive watch request from gRPC stream").Len(); got != 1 || logs.Len() != 1 {
				t.Errorf("logged %v, want one line at %v", logs.All(), level)
			}
			if want := map[bool]float64{false: 0, true: 1}[tc.counted]; counted != want {
				t.Errorf("counted %v, want %v", counted, want)
			}
		})
	}
	// The peer server's keep-alives have no reporter.
	var none *streamFailures
	none.failed(live, errors.New("broken pipe"), "send", "lease-keepalive", "")
}
