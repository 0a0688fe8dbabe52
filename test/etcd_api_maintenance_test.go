package test

import (
	"slices"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDefragment runs etcdctl defrag against Cairn and etcd: both report
// success in the same words, and the data is intact afterwards.
func TestDefragment(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		for i := 0; i < 200; i++ {
			if _, err := cli.Put(ctx(t), "defrag/"+strings.Repeat("k", i%7)+string(rune('a'+i%26)), strings.Repeat("v", 512)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Delete(ctx(t), "defrag/", clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "kept", "yes"); err != nil {
			t.Fatal(err)
		}
		out, exit := m.etcdctlStdin("", "defrag")
		if exit != 0 {
			t.Fatalf("etcdctl defrag: exit %d\n%s", exit, out)
		}
		if !strings.Contains(out, "Finished defragmenting etcd member["+m.clientEP+"]") {
			t.Fatalf("etcdctl defrag printed %q", out)
		}
		resp, err := cli.Get(ctx(t), "kept")
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "yes" {
			t.Fatalf("after defrag: %v %v", resp, err)
		}
	})
}

// TestLeaseOrderAndDefragHeaderMatchEtcd: LeaseLeases lists leases soonest
// to expire first on the leader, and Defragment answers without a header,
// as etcd does.
func TestLeaseOrderAndDefragHeaderMatchEtcd(t *testing.T) {
	// shape is the granted TTLs in the order LeaseLeases lists the leases,
	// and whether Defragment's answer has a header.
	shape := func(t *testing.T, cli *clientv3.Client) ([]int64, bool) {
		ttlOf := map[clientv3.LeaseID]int64{}
		for _, ttl := range []int64{300, 100, 200, 150} {
			g, err := cli.Grant(ctx(t), ttl)
			if err != nil {
				t.Fatal(err)
			}
			ttlOf[g.ID] = ttl
		}
		ls, err := cli.Leases(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		var order []int64
		for _, l := range ls.Leases {
			order = append(order, ttlOf[l.ID])
		}
		d, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Defragment(ctx(t), &pb.DefragmentRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return order, d.Header != nil
	}
	wantOrder, wantHeader := shape(t, startEtcd(t))
	forEachEngine(t, func(t *testing.T, engine string) {
		order, header := shape(t, startMember(t, engine).client(t))
		if !slices.Equal(order, wantOrder) || header != wantHeader {
			t.Errorf("lease order %v, defragment header %v; etcd: %v, %v", order, header, wantOrder, wantHeader)
		}
	})
}
