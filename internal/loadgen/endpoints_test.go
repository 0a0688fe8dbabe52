package loadgen

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

// countingKV answers every Put and Range at once and counts the Puts, so
// that a test can see which endpoint a request went to.
type countingKV struct {
	pb.UnimplementedKVServer
	puts atomic.Int64
}

func (s *countingKV) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	s.puts.Add(1)
	return &pb.PutResponse{Header: &pb.ResponseHeader{}}, nil
}

func (s *countingKV) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Header: &pb.ResponseHeader{}}, nil
}

// startCountingKV serves a countingKV on a loopback port until the test
// ends and returns it with its endpoint.
func startCountingKV(t *testing.T) (*countingKV, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	kv := &countingKV{}
	srv := grpc.NewServer()
	pb.RegisterKVServer(srv, kv)
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return kv, l.Addr().String()
}

// A run against several endpoints, as against the members of a cluster,
// sends each of them an equal share of its requests, over one connection
// as over several.
func TestLoadIsSpreadOverEndpoints(t *testing.T) {
	var (
		kvs [3]*countingKV
		eps []string
	)
	for i := range kvs {
		var ep string
		kvs[i], ep = startCountingKV(t)
		eps = append(eps, ep)
	}
	const total = 3000
	for _, conns := range []int{1, 8} {
		for _, kv := range kvs {
			kv.puts.Store(0)
		}
		cfg := Config{Endpoints: eps, Clients: 16, Conns: conns, Total: total, MaxDuration: time.Minute}
		res, err := Put(context.Background(), cfg, PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, res, "put", total)
		for i, kv := range kvs {
			// An equal share is 1000; allow for a connection that became
			// ready a little after the others.
			if n := kv.puts.Load(); n < total/4 || n > total/2 {
				t.Errorf("%d conns: endpoint %d of 3 took %d of %d puts", conns, i, n, total)
			}
		}
	}
}
