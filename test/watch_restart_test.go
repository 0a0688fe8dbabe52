package test

import (
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestWatchResumesAcrossRestart: a watcher that loses its member (kill -9)
// reconnects with start_revision = last seen + 1 and receives every later
// event exactly once, in order, including those written while it was away.
func TestWatchResumesAcrossRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		var seen []int64
		collect := func(wc clientv3.WatchChan, until int64) {
			t.Helper()
			deadline := time.After(20 * time.Second)
			for len(seen) == 0 || seen[len(seen)-1] < until {
				select {
				case resp, ok := <-wc:
					if !ok || resp.Err() != nil {
						t.Fatalf("watch ended: %v", resp.Err())
					}
					for _, ev := range resp.Events {
						seen = append(seen, ev.Kv.ModRevision)
					}
				case <-deadline:
					t.Fatalf("saw revisions up to %v, want up to %d", seen[max(0, len(seen)-1):], until)
				}
			}
		}
		put := func(cli *clientv3.Client, i int) int64 {
			t.Helper()
			resp, err := cli.Put(ctx(t), fmt.Sprintf("w/%03d", i), "v")
			if err != nil {
				t.Fatal(err)
			}
			return resp.Header.Revision
		}

		cli := m.client(t)
		wc := cli.Watch(ctx(t), "w/", clientv3.WithPrefix())
		var last int64
		for i := 0; i < 30; i++ {
			last = put(cli, i)
		}
		collect(wc, last)
		cli.Close()

		m.kill9()
		m.start()
		cli = m.client(t)
		// Writes made before the watcher is back are delivered from history.
		for i := 30; i < 45; i++ {
			last = put(cli, i)
		}
		wc = cli.Watch(ctx(t), "w/", clientv3.WithPrefix(), clientv3.WithRev(seen[len(seen)-1]+1))
		for i := 45; i < 60; i++ {
			last = put(cli, i)
		}
		collect(wc, last)

		if len(seen) != 60 {
			t.Fatalf("saw %d events, want 60", len(seen))
		}
		for i := 1; i < len(seen); i++ {
			if seen[i] != seen[i-1]+1 {
				t.Fatalf("revisions not consecutive at %d: %d then %d", i, seen[i-1], seen[i])
			}
		}
	})
}
