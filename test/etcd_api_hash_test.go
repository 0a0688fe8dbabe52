package test

import (
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestHashKVMatchesEtcd gives a Cairn member and a real etcd the same
// history (puts, deletes, txns, a key with a lease, two compactions) and
// requires the same Maintenance.HashKV answer from both at every revision:
// hash, compact_revision, hash_revision, header revision, or the same
// error. Members with equal history thus report equal hashes whether they
// are Cairn's or etcd's.
func TestHashKVMatchesEtcd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		ref := startEtcd(t)
		m := startMember(t, engine)
		cli := m.client(t)
		both := []*clientv3.Client{ref, cli}
		do := func(name string, f func(c *clientv3.Client) error) {
			t.Helper()
			for _, c := range both {
				if err := f(c); err != nil {
					t.Fatalf("%s on %v: %v", name, c.Endpoints(), err)
				}
			}
		}
		put := func(k, v string, opts ...clientv3.OpOption) {
			t.Helper()
			do("put "+k, func(c *clientv3.Client) error { _, err := c.Put(ctx(t), k, v, opts...); return err })
		}
		del := func(k string, opts ...clientv3.OpOption) {
			t.Helper()
			do("delete "+k, func(c *clientv3.Client) error { _, err := c.Delete(ctx(t), k, opts...); return err })
		}
		compact := func(rev int64) {
			t.Helper()
			do(fmt.Sprint("compact ", rev), func(c *clientv3.Client) error {
				_, err := c.Compact(ctx(t), rev, clientv3.WithCompactPhysical())
				return err
			})
		}
		const leaseID = 0x2a
		do("grant", func(c *clientv3.Client) error {
			_, err := pb.NewLeaseClient(c.ActiveConnection()).LeaseGrant(ctx(t), &pb.LeaseGrantRequest{ID: leaseID, TTL: 600})
			return err
		})

		put("a", "1")
		put("b", "2")
		put("a", "3")
		put("leased", "x", clientv3.WithLease(leaseID))
		del("b")
		do("txn", func(c *clientv3.Client) error {
			_, err := c.Txn(ctx(t)).If(clientv3.Compare(clientv3.Value("a"), "=", "3")).
				Then(clientv3.OpPut("c", "4"), clientv3.OpPut("d", "5"), clientv3.OpDelete("a")).Commit()
			return err
		})
		put("b", "6")
		put("c", "7")
		compareHashKV(t, ref, cli, m.clientEP)

		compact(6) // at b's tombstone
		put("a", "8")
		del("c")
		put("leased", "y", clientv3.WithIgnoreLease())
		compareHashKV(t, ref, cli, m.clientEP)

		compact(11) // at c's tombstone, over the compaction at 6
		put("e", "9")
		compareHashKV(t, ref, cli, m.clientEP)

		// What etcdctl shows for the member is etcd's hash.
		want, err := ref.HashKV(ctx(t), ref.Endpoints()[0], 0)
		if err != nil {
			t.Fatal(err)
		}
		out, exit := m.etcdctlStdin("", "endpoint", "hashkv", "--cluster", "-w", "json")
		if exit != 0 || !strings.Contains(out, fmt.Sprintf(`"hash":%d,`, want.Hash)) {
			t.Errorf("etcdctl endpoint hashkv: exit %d, %s; want hash %d", exit, out, want.Hash)
		}
	})
}

// compareHashKV compares HashKV at the current revision (0), at every
// revision from below the first to above the current one, and so also at
// and below the compaction revision.
func compareHashKV(t *testing.T, ref, cli *clientv3.Client, ep string) {
	t.Helper()
	cur, err := ref.Get(ctx(t), "any")
	if err != nil {
		t.Fatal(err)
	}
	refEP := ref.Endpoints()[0]
	for rev := int64(0); rev <= cur.Header.Revision+2; rev++ {
		want, wantErr := ref.HashKV(ctx(t), refEP, rev)
		got, err := cli.HashKV(ctx(t), ep, rev)
		switch {
		case wantErr != nil || err != nil:
			if fmt.Sprint(err) != fmt.Sprint(wantErr) {
				t.Errorf("HashKV(%d): error %v, etcd's %v", rev, err, wantErr)
			}
		case got.Hash != want.Hash || got.CompactRevision != want.CompactRevision ||
			got.HashRevision != want.HashRevision || got.Header.Revision != want.Header.Revision:
			t.Errorf("HashKV(%d) = hash %d compact %d hash_revision %d at %d; etcd: %d %d %d at %d", rev,
				got.Hash, got.CompactRevision, got.HashRevision, got.Header.Revision,
				want.Hash, want.CompactRevision, want.HashRevision, want.Header.Revision)
		default:
			t.Logf("HashKV(%d) = hash %d compact %d hash_revision %d at %d, as etcd's",
				rev, got.Hash, got.CompactRevision, got.HashRevision, got.Header.Revision)
		}
	}
}
