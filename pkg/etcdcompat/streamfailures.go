package etcdcompat

import (
	"context"
	"strings"

	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// streamFailures logs and counts the failures of the client's watch and
// keep-alive streams as etcd does: one because the client went away is a
// debug line; any other is a warning and counts in
// etcd_network_server_stream_failures_total. A nil *streamFailures (the
// peer server's keep-alives) logs and counts nothing.
type streamFailures struct {
	lg *zap.Logger
	m  *RequestMetrics
}

// failed reports err, met by a stream of api (etcd's "watch" or
// "lease-keepalive") in direction kind ("receive" or "send"), with msg.
func (f *streamFailures) failed(ctx context.Context, err error, kind, api, msg string) {
	if f == nil {
		return
	}
	if clientGone(ctx, err) {
		f.lg.Debug(msg, zap.Error(err))
		return
	}
	f.lg.Warn(msg, zap.Error(err))
	if f.m != nil {
		f.m.streamFailures.WithLabelValues(kind, api).Inc()
	}
}

// clientGone reports whether err, from a stream whose context is ctx,
// means that its client went away: the context ended, or gRPC's status
// says the client canceled, timed out or disconnected.
func clientGone(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return false
	}
	switch st.Code() {
	case codes.Canceled, codes.DeadlineExceeded:
		return true
	case codes.Unavailable:
		msg := st.Message()
		return msg == "client disconnected" || strings.HasPrefix(msg, "stream error: ") && strings.HasSuffix(msg, "; CANCEL")
	}
	return false
}
