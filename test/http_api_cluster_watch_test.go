package test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sseEventLine renders a watch event message of the REST API as one line:
// type, key, value and revisions, and the previous value if sent.
func sseEventLine(msg sseMessage) string {
	d := msg.data
	line := fmt.Sprintf("%s %v=%v c%v m%v v%v", msg.event, d["key"], d["value"], d["create_revision"], d["mod_revision"], d["version"])
	if prev, ok := d["prev_kv"].(map[string]any); ok {
		line += fmt.Sprintf(" prev %v m%v", prev["value"], prev["mod_revision"])
	}
	return line
}

// watchModel follows the keys under a watched prefix as writes are
// acknowledged and says which event line each write must produce.
type watchModel map[string]restKey

func (w watchModel) put(key, value string, rev int64) string {
	old, existed := w[key]
	kv := restKey{Key: key, Value: value, CreateRevision: rev, ModRevision: rev, Version: 1}
	line := ""
	if existed {
		kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
		line = fmt.Sprintf(" prev %s m%d", old.Value, old.ModRevision)
	}
	w[key] = kv
	return fmt.Sprintf("put %s=%s c%d m%d v%d", key, value, kv.CreateRevision, rev, kv.Version) + line
}

func (w watchModel) delete(key string, rev int64) string {
	old := w[key]
	delete(w, key)
	return fmt.Sprintf("delete %s= c0 m%d v0 prev %s m%d", key, rev, old.Value, old.ModRevision)
}

// TestHTTPClusterWatchOnFollower: an SSE watch on a follower's REST API
// streams, in revision order, every change made through another member's
// REST API and through the third member's etcd API, with the revisions
// the writers were answered; a watch from a past revision on another
// member replays the same events.
func TestHTTPClusterWatchOnFollower(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		leader, f := c.leader(), c.followers()
		watcher, restWriter, grpcWriter := f[0], f[1], leader
		cli := grpcWriter.client(t)

		live := openSSE(t, watcher, "/v1/watch/w/?prefix=true&prev_kv=true")
		created := nextSSE(t, live)
		if created.event != "created" {
			t.Fatalf("first message %+v, want created", created)
		}
		start, _ := created.data["revision"].(float64)

		// Writes one after the other, through either API, as a table;
		// the lines each must produce follow from the revisions answered.
		model := watchModel{}
		var (
			want     []string
			firstRev int64
		)
		restWrite := func(method, key, value string) int64 {
			var r restKey
			restOK(t, restWriter, method, "/v1/kv/"+key, value, &r)
			return r.Revision
		}
		for _, s := range []struct{ via, op, key, value string }{
			{"rest", "put", "w/a", "1"},
			{"grpc", "put", "w/b", "1"},
			{"rest", "put", "w/a", "2"},
			{"grpc", "put", "w/a", "3"},
			{"rest", "put", "x/outside", "not watched"},
			{"rest", "delete", "w/b", ""},
			{"grpc", "put", "w/b", "2"},
			{"grpc", "delete", "w/a", ""},
			{"rest", "put", "w/a", "4"},
		} {
			var rev int64
			switch {
			case s.via == "rest" && s.op == "put":
				rev = restWrite(http.MethodPut, s.key, s.value)
			case s.via == "rest":
				rev = restWrite(http.MethodDelete, s.key, "")
			case s.op == "put":
				r, err := cli.Put(ctx(t), s.key, s.value)
				if err != nil {
					t.Fatal(err)
				}
				rev = r.Header.Revision
			default:
				r, err := cli.Delete(ctx(t), s.key)
				if err != nil {
					t.Fatal(err)
				}
				rev = r.Header.Revision
			}
			if firstRev == 0 {
				firstRev = rev
			}
			switch {
			case !strings.HasPrefix(s.key, "w/"):
			case s.op == "put":
				want = append(want, model.put(s.key, s.value, rev))
			default:
				want = append(want, model.delete(s.key, rev))
			}
		}
		// A txn through REST: two events at one revision, in op order.
		var txn txnAnswer
		restOK(t, restWriter, http.MethodPost, "/v1/txn",
			`{"success":[{"put":{"key":"w/t2","value":"x"}},{"put":{"key":"w/t1","value":"y"}}]}`, &txn)
		want = append(want, model.put("w/t2", "x", txn.Revision), model.put("w/t1", "y", txn.Revision))

		// Two writers at once, one per API: whatever order raft chose,
		// the watcher gets it in revision order, each write once.
		var (
			mu    sync.Mutex
			acked = map[int64]string{}
			wg    sync.WaitGroup
		)
		for _, via := range []string{"rest", "grpc"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 20 {
					key := fmt.Sprintf("w/c/%s/%02d", via, i)
					var rev int64
					if via == "rest" {
						r, err := restPut(restWriter, key, "c")
						if err != nil {
							t.Error(err)
							return
						}
						rev = r
					} else {
						r, err := cli.Put(ctx(t), key, "c")
						if err != nil {
							t.Error(err)
							return
						}
						rev = r.Header.Revision
					}
					mu.Lock()
					acked[rev] = key
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if len(acked) != 40 {
			t.Fatalf("40 puts acknowledged at %d distinct revisions: %v", len(acked), acked)
		}
		var concurrent []string
		for rev := int64(1); len(concurrent) < len(acked); rev++ {
			if key, ok := acked[rev]; ok {
				concurrent = append(concurrent, model.put(key, "c", rev))
			}
		}
		want = append(want, concurrent...)

		var got []string
		for len(got) < len(want) {
			msg := nextSSE(t, live)
			if msg.event != "put" && msg.event != "delete" {
				t.Fatalf("after %d events the watch on %s sent %+v", len(got), watcher.name, msg)
			}
			got = append(got, sseEventLine(msg))
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("watch on %s (-want +got):\n%s", watcher.name, d)
		}
		if start <= 0 || int64(start) >= firstRev {
			t.Errorf("watch created at revision %v, want one before the first write's %d", created.data["revision"], firstRev)
		}

		// From the revision after the watch was created, a watch on the
		// leader replays the same history.
		hist := openSSE(t, leader, fmt.Sprintf("/v1/watch/w/?prefix=true&prev_kv=true&revision=%d", int64(start)+1))
		if msg := nextSSE(t, hist); msg.event != "created" {
			t.Fatalf("history watch on %s opened with %+v", leader.name, msg)
		}
		var replayed []string
		for len(replayed) < len(want) {
			replayed = append(replayed, sseEventLine(nextSSE(t, hist)))
		}
		if d := cmp.Diff(want, replayed); d != "" {
			t.Errorf("history watch on %s (-want +got):\n%s", leader.name, d)
		}
	})
}
