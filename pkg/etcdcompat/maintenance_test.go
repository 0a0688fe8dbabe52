package etcdcompat

import (
	"context"
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

func (f *fakeStore) HashKV(_ context.Context, rev int64) (*pb.HashKVResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.HashKVResponse{Header: hdr(), Hash: 42, CompactRevision: -1, HashRevision: rev}, nil
}

func (f *fakeStore) Hash(context.Context) (*pb.HashResponse, error) {
	if err := f.fail(); err != nil {
		return nil, err
	}
	return &pb.HashResponse{Header: hdr(), Hash: 7}, nil
}

// TestHashKVOverGRPC checks that HashKV's fields and mvcc's errors reach
// clientv3 as etcd sends them.
func TestHashKVOverGRPC(t *testing.T) {
	st := &fakeStore{}
	cli, addr := startServerAt(t, st)
	mc := pb.NewMaintenanceClient(cli.ActiveConnection())

	resp, err := cli.HashKV(callCtx(t), addr, 5)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Hash != 42 || resp.CompactRevision != -1 || resp.HashRevision != 5 || resp.Header.Revision != 3 {
		t.Errorf("HashKV = %v", resp)
	}
	for _, tt := range []struct {
		err, want error
	}{
		{mvcc.ErrCompacted, rpctypes.ErrCompacted},
		{mvcc.ErrFutureRev, rpctypes.ErrFutureRev},
	} {
		st.setErr(tt.err)
		if _, err := cli.HashKV(callCtx(t), addr, 5); !errors.Is(err, tt.want) {
			t.Errorf("HashKV with %v: error %v, want %v", tt.err, err, tt.want)
		}
		if _, err := mc.Hash(callCtx(t), &pb.HashRequest{}); !errors.Is(rpctypes.Error(err), tt.want) {
			t.Errorf("Hash with %v: error %v, want %v", tt.err, err, tt.want)
		}
	}
	st.setErr(nil)
	h, err := mc.Hash(callCtx(t), &pb.HashRequest{})
	if err != nil || h.Hash != 7 {
		t.Errorf("Hash = %v, %v", h, err)
	}
}

func (f *fakeStore) Alarm(context.Context, *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return &pb.AlarmResponse{Header: hdr()}, f.fail()
}

func (f *fakeStore) Alarms() []*pb.AlarmMember { return nil }

func (f *fakeStore) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, f.fail()
}
