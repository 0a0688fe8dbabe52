package etcdcompat

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
)

// fakeStore answers every call with err, or with canned responses when err
// is nil. RangeStream sends chunks, then returns streamErr.
type fakeStore struct {
	mu        sync.Mutex
	err       error
	chunks    []*pb.RangeResponse
	streamErr error
	lastRange *pb.RangeRequest
}

func (f *fakeStore) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

func (f *fakeStore) fail() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func hdr() *pb.ResponseHeader {
	return &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 3, RaftTerm: 4}
}

func (f *fakeStore) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.RangeResponse{Header: hdr(), Kvs: []*mvccpb.KeyValue{{Key: r.Key, Value: []byte("v")}}, Count: 1}, nil
}

func (f *fakeStore) RangeStream(ctx context.Context, r *pb.RangeRequest, send func(*pb.RangeResponse) error) error {
	f.mu.Lock()
	chunks, streamErr := f.chunks, f.streamErr
	f.lastRange = proto.Clone(r).(*pb.RangeRequest)
	f.mu.Unlock()
	for _, c := range chunks {
		if err := send(c); err != nil {
			return err
		}
	}
	return streamErr
}

func (f *fakeStore) Put(context.Context, *pb.PutRequest) (*pb.PutResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.PutResponse{Header: hdr()}, nil
}

func (f *fakeStore) DeleteRange(context.Context, *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.DeleteRangeResponse{Header: hdr(), Deleted: 1}, nil
}

func (f *fakeStore) Txn(context.Context, *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.TxnResponse{Header: hdr(), Succeeded: true}, nil
}

func (f *fakeStore) Compact(context.Context, *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.CompactionResponse{Header: hdr()}, nil
}

func (f *fakeStore) Defragment(context.Context) error { return f.fail() }

func (f *fakeStore) Status(context.Context) (*pb.StatusResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.StatusResponse{Header: hdr(), Version: "3.7.3"}, nil
}

func (f *fakeStore) Header() *pb.ResponseHeader { return hdr() }

func (f *fakeStore) Linearize(context.Context) error { return f.fail() }

// The fake has auth disabled: every check passes.
func (f *fakeStore) CheckAdmin(context.Context) error                 { return nil }
func (f *fakeStore) RequireIdentity(context.Context) error            { return nil }
func (f *fakeStore) CheckWatch(context.Context, []byte, []byte) error { return nil }

func (f *fakeStore) ClusterHeader() *pb.ResponseHeader { h := hdr(); h.Revision = 0; return h }
func (f *fakeStore) StampHeader(h *pb.ResponseHeader) {
	ref := hdr()
	h.ClusterId, h.MemberId, h.RaftTerm = ref.ClusterId, ref.MemberId, ref.RaftTerm
}

type fakeCluster struct{}

func (fakeCluster) Members() []*pb.Member { return []*pb.Member{{ID: 2, Name: "m"}} }
func (fakeCluster) AddMember(context.Context, []string, bool) (*pb.Member, error) {
	return nil, errors.New("no membership changes")
}
func (fakeCluster) RemoveMember(context.Context, uint64) error {
	return errors.New("no membership changes")
}
func (fakeCluster) UpdateMember(context.Context, uint64, []string) error {
	return errors.New("no membership changes")
}
func (fakeCluster) PromoteMember(context.Context, uint64) error {
	return errors.New("no membership changes")
}

// startServer serves the etcd API over st on a loopback port and returns a
// clientv3 client of it.
func startServer(t *testing.T, st Store) *clientv3.Client {
	cli, _ := startServerAt(t, st)
	return cli
}

func startServerAt(t *testing.T, st Store) (*clientv3.Client, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(st, fakeCluster{}, Options{MaxRequestBytes: 1 << 20, Logger: zaptest.NewLogger(t)})
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{l.Addr().String()},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli, l.Addr().String()
}

func callCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestKVErrorsReachClientv3 checks that clientv3 turns what the KV service
// sends into etcd's rpctypes error values, so code written against etcd
// (errors.Is(err, rpctypes.ErrCompacted), err == rpctypes.ErrNoLeader)
// works unchanged against Cairn.
func TestKVErrorsReachClientv3(t *testing.T) {
	st := &fakeStore{}
	cli, addr := startServerAt(t, st)
	ops := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"Put", func(ctx context.Context) error { _, err := cli.Put(ctx, "k", "v"); return err }},
		{"Delete", func(ctx context.Context) error { _, err := cli.Delete(ctx, "k"); return err }},
		{"Txn", func(ctx context.Context) error {
			_, err := cli.Txn(ctx).Then(clientv3.OpPut("k", "v")).Commit()
			return err
		}},
	}
	for _, tt := range etcdErrors {
		if _, isEtcd := rpctypes.Error(tt.want).(rpctypes.EtcdError); !isEtcd {
			continue // not one clientv3 knows by name
		}
		want := rpctypes.Error(tt.want)
		for _, op := range ops {
			t.Run(op.name+"/"+tt.err.Error(), func(t *testing.T) {
				st.setErr(fmt.Errorf("wrapped: %w", tt.err))
				err := op.call(callCtx(t))
				if !errors.Is(err, want) {
					t.Errorf("%s error = %v (%T), want rpctypes %q", op.name, err, err, want)
				}
			})
		}
	}

	// Reads retry on codes.Unavailable in clientv3, so check them with
	// errors the client does not retry.
	for _, tt := range []struct {
		err  error
		want error
	}{
		{mvcc.ErrCompacted, rpctypes.ErrCompacted},
		{mvcc.ErrFutureRev, rpctypes.ErrFutureRev},
		{mvcc.ErrInvalidSortOption, rpctypes.ErrInvalidSortOption},
	} {
		t.Run("Get/"+tt.err.Error(), func(t *testing.T) {
			st.setErr(tt.err)
			_, err := cli.Get(callCtx(t), "k", clientv3.WithRev(1))
			if !errors.Is(err, tt.want) || err.Error() != tt.want.Error() {
				t.Errorf("Get error = %v, want %v", err, tt.want)
			}
		})
	}
	t.Run("Compact", func(t *testing.T) {
		st.setErr(mvcc.ErrCompacted)
		_, err := cli.Compact(callCtx(t), 5)
		if !errors.Is(err, rpctypes.ErrCompacted) {
			t.Errorf("Compact error = %v, want %v", err, rpctypes.ErrCompacted)
		}
	})
	t.Run("Status", func(t *testing.T) {
		st.setErr(store.ErrNoSpace)
		_, err := cli.Status(callCtx(t), cli.Endpoints()[0])
		if !errors.Is(err, rpctypes.ErrNoSpace) {
			t.Errorf("Status error = %v, want %v", err, rpctypes.ErrNoSpace)
		}
	})
	// Passed through, a context error becomes gRPC's own code on the
	// wire, as etcd's does. (clientv3 would retry it, since its own
	// context is still live; a plain connection shows what was sent.)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := pb.NewKVClient(conn)
	for _, tt := range []struct {
		err  error
		want codes.Code
	}{
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("waiting for apply: %w", context.Canceled), codes.Canceled},
	} {
		t.Run("context/"+tt.err.Error(), func(t *testing.T) {
			st.setErr(tt.err)
			_, err := raw.Put(callCtx(t), &pb.PutRequest{Key: []byte("k")})
			if got := status.Code(err); got != tt.want {
				t.Errorf("Put error = %v, want code %v", err, tt.want)
			}
		})
	}
	t.Run("unknown error", func(t *testing.T) {
		st.setErr(errors.New("disk on fire"))
		_, err := cli.Put(callCtx(t), "k", "v")
		if status.Code(err) != codes.Unknown || status.Convert(err).Message() != "disk on fire" {
			t.Errorf("Put error = %v, want Unknown %q", err, "disk on fire")
		}
	})
	t.Run("success", func(t *testing.T) {
		st.setErr(nil)
		resp, err := cli.Get(callCtx(t), "k")
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != "k" || resp.Header.GetRevision() != 3 {
			t.Errorf("Get = %v, want k at revision 3", resp)
		}
	})
}

// TestRangeStream checks that the chunks the store sends reach the client
// in order, and that an error after some chunks ends the stream with etcd's
// error.
func TestRangeStream(t *testing.T) {
	chunks := []*pb.RangeResponse{
		{Kvs: []*mvccpb.KeyValue{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte("b"), Value: []byte("2")}}},
		{Kvs: []*mvccpb.KeyValue{{Key: []byte("c"), Value: []byte("3")}}},
		{Kvs: []*mvccpb.KeyValue{{Key: []byte("d"), Value: []byte("4")}}, Header: hdr(), Count: 4},
	}
	tests := []struct {
		name      string
		opts      []clientv3.OpOption
		chunks    []*pb.RangeResponse
		streamErr error
		wantErr   error // nil: the stream ends cleanly
	}{
		{name: "chunks in order", chunks: chunks},
		{name: "no chunks", chunks: nil},
		{name: "error after a chunk", chunks: chunks[:1], streamErr: mvcc.ErrCompacted, wantErr: rpctypes.ErrCompacted},
		{name: "error before any chunk", streamErr: mvcc.ErrFutureRev, wantErr: rpctypes.ErrFutureRev},
		{
			name:      "custom sort order",
			opts:      []clientv3.OpOption{clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)},
			streamErr: store.ErrStreamSortOrder,
			wantErr:   status.Error(codes.Unimplemented, "RangeStream does not support custom sort orders"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &fakeStore{chunks: tt.chunks, streamErr: tt.streamErr}
			cli := startServer(t, st)
			opts := append([]clientv3.OpOption{clientv3.WithRange("z")}, tt.opts...)
			ch, err := cli.GetStream(callCtx(t), "a", opts...)
			if err != nil {
				t.Fatal(err)
			}
			var got []*pb.RangeResponse
			var streamErr error
			for r := range ch {
				if err := r.Err(); err != nil {
					streamErr = err
					continue
				}
				got = append(got, r.RangeResponse)
			}
			if len(got) != len(tt.chunks) {
				t.Fatalf("received %d chunks, want %d", len(got), len(tt.chunks))
			}
			for i := range got {
				if !proto.Equal(got[i], tt.chunks[i]) {
					t.Errorf("chunk %d = %v, want %v", i, got[i], tt.chunks[i])
				}
			}
			switch {
			case tt.wantErr == nil && streamErr != nil:
				t.Errorf("stream ended with %v, want a clean end", streamErr)
			case tt.wantErr != nil:
				ws := status.Convert(tt.wantErr)
				if streamErr == nil {
					t.Fatalf("stream ended cleanly, want %v", tt.wantErr)
				}
				if _, etcd := rpctypes.Error(tt.wantErr).(rpctypes.EtcdError); etcd {
					if !errors.Is(streamErr, rpctypes.Error(tt.wantErr)) {
						t.Errorf("stream error = %v, want %v", streamErr, rpctypes.Error(tt.wantErr))
					}
				} else if gs := status.Convert(streamErr); gs.Code() != ws.Code() || gs.Message() != ws.Message() {
					t.Errorf("stream error = %v %q, want %v %q", gs.Code(), gs.Message(), ws.Code(), ws.Message())
				}
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			if string(st.lastRange.GetKey()) != "a" || string(st.lastRange.GetRangeEnd()) != "z" {
				t.Errorf("store got range [%q, %q), want [a, z)", st.lastRange.GetKey(), st.lastRange.GetRangeEnd())
			}
		})
	}
}

// TestGetStreamToGetResponse checks the chunks merge, on the client, into
// the response a plain Get would give.
func TestGetStreamToGetResponse(t *testing.T) {
	st := &fakeStore{chunks: []*pb.RangeResponse{
		{Kvs: []*mvccpb.KeyValue{{Key: []byte("a")}}},
		{Kvs: []*mvccpb.KeyValue{{Key: []byte("b")}}, Header: hdr(), Count: 2},
	}}
	cli := startServer(t, st)
	ch, err := cli.GetStream(callCtx(t), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := clientv3.GetStreamToGetResponse(ch)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 2 || string(resp.Kvs[0].Key) != "a" || string(resp.Kvs[1].Key) != "b" || resp.Count != 2 || resp.Header.GetRevision() != 3 {
		t.Errorf("merged response = %v, want a and b, count 2, revision 3", resp)
	}
}
