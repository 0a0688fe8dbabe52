package grpcmetrics

import (
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// serve starts a gRPC server with etcd's KV, Lease and Maintenance services
// (every method unimplemented) and a Watch service that reads its stream to
// the end, instrumented by unary and stream, and returns a connection to
// it.
func serve(t *testing.T, unary grpc.UnaryServerInterceptor, stream grpc.StreamServerInterceptor, preregister func(*grpc.Server)) *grpc.ClientConn {
	t.Helper()
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	pb.RegisterKVServer(srv, pb.UnimplementedKVServer{})
	pb.RegisterWatchServer(srv, drain{})
	pb.RegisterLeaseServer(srv, pb.UnimplementedLeaseServer{})
	pb.RegisterMaintenanceServer(srv, pb.UnimplementedMaintenanceServer{})
	preregister(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// drain is a Watch service that reads requests until the stream ends.
type drain struct{ pb.UnimplementedWatchServer }

func (drain) Watch(s pb.Watch_WatchServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			return nil
		}
	}
}

// traffic makes unary, bidi-stream and server-stream calls that fail, and
// a stream that ends after two requests.
func traffic(t *testing.T, conn *grpc.ClientConn) {
	t.Helper()
	ctx := context.Background()
	for range 3 {
		if _, err := pb.NewKVClient(conn).Range(ctx, &pb.RangeRequest{Key: []byte("k")}); err == nil {
			t.Fatal("unimplemented Range succeeded")
		}
	}
	k, err := pb.NewLeaseClient(conn).LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Recv(); err == nil {
		t.Fatal("unimplemented LeaseKeepAlive succeeded")
	}
	w, err := pb.NewWatchClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := w.Send(&pb.WatchRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("Watch ended with %v, want io.EOF", err)
	}
	s, err := pb.NewMaintenanceClient(conn).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err == nil {
		t.Fatal("unimplemented Snapshot succeeded")
	}
}

// page returns the text exposition of c, without what timing changes
// (histogram sums and buckets).
func page(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	b, err := testutil.CollectAndFormat(c, expfmt.TypeTextPlain, "grpc_server_started_total", "grpc_server_handled_total",
		"grpc_server_msg_received_total", "grpc_server_msg_sent_total", "grpc_server_handling_seconds")
	if err != nil {
		t.Fatal(err)
	}
	timing := regexp.MustCompile(`(?m)^grpc_server_handling_seconds_(bucket|sum)\{.*\n`)
	return timing.ReplaceAllString(string(b), "")
}

// The series and their values after the same calls are those of the
// provider etcd uses, with and without handling times.
func TestMatchesEtcdsInterceptors(t *testing.T) {
	for _, extensive := range []bool{false, true} {
		var opts []grpcprom.ServerMetricsOption
		if extensive {
			opts = append(opts, grpcprom.WithServerHandlingTimeHistogram())
		}
		theirs := grpcprom.NewServerMetrics(opts...)
		traffic(t, serve(t, theirs.UnaryServerInterceptor(), theirs.StreamServerInterceptor(),
			func(s *grpc.Server) { theirs.InitializeMetrics(s) }))
		ours := New(extensive)
		traffic(t, serve(t, ours.Unary(), ours.Stream(), func(s *grpc.Server) { ours.Preregister(s) }))

		want, got := page(t, theirs), page(t, ours)
		if !strings.Contains(want, `grpc_server_handled_total{grpc_code="Unimplemented",grpc_method="LeaseKeepAlive",grpc_service="etcdserverpb.Lease",grpc_type="bidi_stream"} 1`) {
			t.Fatalf("the provider's page lacks the Watch call: the test is wrong\n%s", want)
		}
		if got != want {
			t.Errorf("extensive=%v: page\n%s\nwant the provider's\n%s", extensive, got, want)
		}
	}
}

// The services named to Preregister get no series until used.
func TestPreregisterExcept(t *testing.T) {
	m := New(false)
	conn := serve(t, m.Unary(), m.Stream(), func(s *grpc.Server) { m.Preregister(s, "etcdserverpb.KV") })
	before := page(t, m)
	if strings.Contains(before, `grpc_service="etcdserverpb.KV"`) || !strings.Contains(before, `grpc_service="etcdserverpb.Lease"`) {
		t.Fatalf("page before any call, KV excepted:\n%s", before)
	}
	traffic(t, conn)
	if after := page(t, m); !strings.Contains(after, `grpc_server_started_total{grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"} 3`) {
		t.Fatalf("page after three Range calls:\n%s", after)
	}
}

func BenchmarkStreamSend(b *testing.B) {
	b.Run("provider", func(b *testing.B) {
		m := grpcprom.NewServerMetrics()
		benchSend(b, m.StreamServerInterceptor())
	})
	b.Run("grpcmetrics", func(b *testing.B) { benchSend(b, New(false).Stream()) })
}

// benchSend measures SendMsg on a stream wrapped by interceptor.
func benchSend(b *testing.B, interceptor grpc.StreamServerInterceptor) {
	info := &grpc.StreamServerInfo{FullMethod: "/etcdserverpb.Watch/Watch", IsClientStream: true, IsServerStream: true}
	interceptor(nil, nopStream{}, info, func(_ any, ss grpc.ServerStream) error {
		b.ReportAllocs()
		for b.Loop() {
			_ = ss.SendMsg(nil)
		}
		return nil
	})
}

type nopStream struct{ grpc.ServerStream }

func (nopStream) Context() context.Context { return context.Background() }
func (nopStream) SendMsg(any) error        { return nil }

// A full method name without a service is counted as the provider counts
// it, under "unknown", and never panics.
func TestMalformedMethodName(t *testing.T) {
	m := New(false)
	for _, name := range []string{"", "/", "Range", "/etcdserverpb.KV/Range"} {
		got := m.method(name, "unary").labels
		want := [3]string{"unary", "unknown", "unknown"}
		if name == "/etcdserverpb.KV/Range" {
			want = [3]string{"unary", "etcdserverpb.KV", "Range"}
		}
		if got != want {
			t.Errorf("method(%q) labels %q, want %q", name, got, want)
		}
	}
}
