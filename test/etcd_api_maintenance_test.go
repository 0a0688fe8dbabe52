package test

import (
	"strings"
	"testing"

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
