package test

// Cairn's REST API on a cluster of three member processes, on both
// engines: what a client sees when it talks to any member, leader or
// follower, and when members fail. The etcd API tests of the same shapes
// are in etcd_api_cluster_kv_test.go.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// restClient bounds each REST request of the cluster tests, well above a
// member's own request timeout (5 s plus two election timeouts), so that a
// request the member never answers fails the test rather than hanging it.
var restClient = &http.Client{Timeout: 20 * time.Second}

// restAnswer is one REST exchange as a cluster test sees it.
type restAnswer struct {
	status  int
	body    []byte
	elapsed time.Duration
	err     error // transport error: no answer at all
}

// restCall sends one REST request and never fails the test, so that
// goroutines and requests expected to fail may use it.
func restCall(m *member, method, path, body string) restAnswer {
	return restCallContext(context.Background(), m, method, path, body)
}

// restCallContext is restCall, cut short when rctx ends.
func restCallContext(rctx context.Context, m *member, method, path, body string) restAnswer {
	start := time.Now()
	req, err := http.NewRequestWithContext(rctx, method, m.httpURL+path, strings.NewReader(body))
	if err != nil {
		return restAnswer{err: err}
	}
	resp, err := restClient.Do(req)
	if err != nil {
		return restAnswer{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return restAnswer{status: resp.StatusCode, body: b, elapsed: time.Since(start), err: err}
}

// errorCode is the code of a JSON error body, or "" when the body is not
// one (the documented shape, with a message).
func (a restAnswer) errorCode() string {
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if json.Unmarshal(a.body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	return e.Error.Code
}

func (a restAnswer) String() string {
	if a.err != nil {
		return fmt.Sprintf("no answer after %v: %v", a.elapsed.Round(time.Millisecond), a.err)
	}
	return fmt.Sprintf("%d %s after %v", a.status, truncate(a.body), a.elapsed.Round(time.Millisecond))
}

// restOK sends a request that must be answered 200 and decodes the body
// into out.
func restOK(t *testing.T, m *member, method, path, body string, out any) {
	t.Helper()
	a := restCall(m, method, path, body)
	if a.err != nil || a.status != http.StatusOK {
		t.Fatalf("%s %s through %s: %v", method, path, m.name, a)
	}
	decodeJSON(t, a.body, out)
}

// TestHTTPClusterWriteAnywhereReadEverywhere: a key written through the
// REST API of any member, leader or follower, is read through the REST API
// of every member right after, by default (linearizable) reads, with the
// revisions the etcd API reports for it on that member; a delete through a
// follower is likewise gone everywhere.
func TestHTTPClusterWriteAnywhereReadEverywhere(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		clients := map[*member]*clientv3.Client{}
		for _, m := range c.members {
			clients[m] = m.client(t)
		}
		// Writers take turns and every member reads each write at once:
		// a read served from a follower's local state without asking the
		// leader would, sooner or later, miss the write just acknowledged.
		const rounds = 10
		for round := 1; round <= rounds; round++ {
			for _, w := range c.members {
				key := "rw/" + w.name
				value := fmt.Sprintf("%s-%d", w.name, round)
				var put restKey
				restOK(t, w, put_, "/v1/kv/"+key, value, &put)
				for _, r := range c.members {
					var got restKey
					restOK(t, r, get_, "/v1/kv/"+key, "", &got)
					if got.Value != value || got.ModRevision != put.Revision || got.Version != int64(round) || got.Revision < put.Revision {
						t.Fatalf("GET %s through %s after a PUT through %s at revision %d: %+v, want %q at mod_revision %d, version %d",
							key, r.name, w.name, put.Revision, got, value, put.Revision, round)
					}
					g, err := clients[r].Get(ctx(t), key, clientv3.WithSerializable())
					if err != nil || len(g.Kvs) != 1 {
						t.Fatalf("etcd API get %s through %s: %v %v", key, r.name, g, err)
					}
					if kv := g.Kvs[0]; string(kv.Value) != got.Value || kv.ModRevision != got.ModRevision ||
						kv.CreateRevision != got.CreateRevision || kv.Version != got.Version {
						t.Fatalf("%s: the etcd API reports %s=%s c%d m%d v%d, the REST API %+v",
							r.name, kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, got)
					}
				}
			}
		}

		// Every member lists the same keys, at the same revision, as the
		// etcd API does.
		var first string
		for _, m := range c.members {
			var list struct {
				Kvs      []restKey `json:"kvs"`
				Count    int64     `json:"count"`
				Revision int64     `json:"revision"`
			}
			restOK(t, m, get_, "/v1/kv/rw/?prefix=true", "", &list)
			g, err := clients[m].Get(ctx(t), "rw/", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			var rest, grpc []string
			for _, kv := range list.Kvs {
				rest = append(rest, fmt.Sprintf("%s=%s c%d m%d v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version))
			}
			for _, kv := range g.Kvs {
				grpc = append(grpc, fmt.Sprintf("%s=%s c%d m%d v%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version))
			}
			got := fmt.Sprintf("rev %d: %s", list.Revision, strings.Join(rest, " "))
			if want := fmt.Sprintf("rev %d: %s", g.Header.Revision, strings.Join(grpc, " ")); got != want || list.Count != int64(len(c.members)) {
				t.Errorf("%s lists through REST %s (count %d), through the etcd API %s", m.name, got, list.Count, want)
			}
			if first == "" {
				first = got
			} else if got != first {
				t.Errorf("%s lists %s, %s listed %s", m.name, got, c.members[0].name, first)
			}
		}

		// A delete through a follower is gone through every member.
		f := c.followers()[0]
		var del restKey
		restOK(t, f, del_, "/v1/kv/rw/"+c.members[0].name, "", &del)
		for _, m := range c.members {
			a := restCall(m, get_, "/v1/kv/rw/"+c.members[0].name, "")
			if a.status != http.StatusNotFound || a.errorCode() != "key_not_found" {
				t.Errorf("GET through %s of a key deleted through %s at revision %d: %v", m.name, f.name, del.Revision, a)
			}
		}
	})
}

// txnAnswer is the body of POST /v1/txn.
type txnAnswer struct {
	Succeeded bool  `json:"succeeded"`
	Revision  int64 `json:"revision"`
	Responses []struct {
		Put *struct {
			PrevKv *restKey `json:"prev_kv"`
		} `json:"put"`
		Get *struct {
			Kvs []restKey `json:"kvs"`
		} `json:"get"`
	} `json:"responses"`
}

// TestHTTPClusterTxnOnFollower: a compare-and-swap through a follower's
// REST API sees a write made through the leader, applies at one revision
// that every member and the etcd API agree on, and fails on the other
// follower once the value has moved; a read-only txn on a follower reads
// the latest write.
func TestHTTPClusterTxnOnFollower(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		leader, f := c.leader(), c.followers()
		put, err := leader.client(t).Put(ctx(t), "cfg", "v1")
		if err != nil {
			t.Fatal(err)
		}
		v1 := put.Header.Revision
		cas := fmt.Sprintf(`{
			"compare": [{"key":"cfg","target":"value","result":"=","value":"v1"},
			            {"key":"cfg","target":"mod","result":"=","mod_revision":%d}],
			"success": [{"put":{"key":"cfg","value":"v2","prev_kv":true}},
			            {"put":{"key":"cfg-by","value":"%s"}},
			            {"get":{"key":"cfg"}}],
			"failure": [{"get":{"key":"cfg"}}]}`, v1, f[0].name)

		var won txnAnswer
		restOK(t, f[0], post_, "/v1/txn", cas, &won)
		if !won.Succeeded || won.Revision <= v1 || len(won.Responses) != 3 {
			t.Fatalf("txn through %s after a put at %d: %+v", f[0].name, v1, won)
		}
		if p := won.Responses[0].Put; p == nil || p.PrevKv == nil || p.PrevKv.Value != "v1" || p.PrevKv.ModRevision != v1 {
			t.Errorf("put's prev_kv: %+v, want v1 at %d", won.Responses[0], v1)
		}
		if g := won.Responses[2].Get; g == nil || len(g.Kvs) != 1 || g.Kvs[0].Value != "v2" || g.Kvs[0].ModRevision != won.Revision {
			t.Errorf("get inside the txn: %+v, want v2 at %d", won.Responses[2], won.Revision)
		}
		// Both puts applied at the txn's one revision, on every member.
		for _, m := range c.members {
			g, err := m.client(t).Get(ctx(t), "cfg", clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, kv := range g.Kvs {
				got = append(got, fmt.Sprintf("%s=%s m%d", kv.Key, kv.Value, kv.ModRevision))
			}
			want := []string{fmt.Sprintf("cfg=v2 m%d", won.Revision), fmt.Sprintf("cfg-by=%s m%d", f[0].name, won.Revision)}
			if !slices.Equal(got, want) {
				t.Errorf("%s after the txn: %v, want %v", m.name, got, want)
			}
		}

		// The same compare-and-swap through the other follower now fails,
		// runs the failure branch, and writes nothing.
		var lost txnAnswer
		restOK(t, f[1], post_, "/v1/txn", cas, &lost)
		if lost.Succeeded || lost.Revision != won.Revision || len(lost.Responses) != 1 || lost.Responses[0].Get == nil ||
			len(lost.Responses[0].Get.Kvs) != 1 || lost.Responses[0].Get.Kvs[0].Value != "v2" {
			t.Errorf("second txn through %s: %+v, want failed at revision %d reading v2", f[1].name, lost, won.Revision)
		}
		required := strings.Replace(cas, `"compare"`, `"require_success": true, "compare"`, 1)
		if a := restCall(f[1], post_, "/v1/txn", required); a.status != http.StatusPreconditionFailed || a.errorCode() != "compare_failed" {
			t.Errorf("require_success txn through %s: %v, want 412 compare_failed", f[1].name, a)
		}

		// A read-only txn through a follower, right after a write through
		// the leader, reads that write.
		for i := 0; i < 10; i++ {
			w, err := leader.client(t).Put(ctx(t), "cfg", fmt.Sprint("v", i+3))
			if err != nil {
				t.Fatal(err)
			}
			var read txnAnswer
			restOK(t, f[i%2], post_, "/v1/txn", `{"success":[{"get":{"key":"cfg"}}]}`, &read)
			if len(read.Responses) != 1 || read.Responses[0].Get == nil || len(read.Responses[0].Get.Kvs) != 1 ||
				read.Responses[0].Get.Kvs[0].ModRevision != w.Header.Revision || read.Revision < w.Header.Revision {
				t.Fatalf("read-only txn through %s after a put at %d: %+v", f[i%2].name, w.Header.Revision, read)
			}
		}
	})
}

// leaseAnswer is the body of the /v1/leases endpoints.
type leaseAnswer struct {
	ID         string   `json:"id"`
	TTL        int64    `json:"ttl"`
	GrantedTTL int64    `json:"granted_ttl"`
	Keys       []string `json:"keys"`
	Revision   int64    `json:"revision"`
}

// TestHTTPClusterLeases: a lease granted through one follower's REST API
// is renewed and looked up through the other follower's, which ask the
// leader whose clock counts, and revoked through the leader's; its keys go
// at one revision on every member, and every member then answers 404.
func TestHTTPClusterLeases(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		leader, f := c.leader(), c.followers()
		granter, renewer, revoker := f[0], f[1], leader

		var grant leaseAnswer
		restOK(t, granter, post_, "/v1/leases", `{"ttl": 60}`, &grant)
		id, err := strconv.ParseInt(grant.ID, 10, 64)
		if err != nil || grant.TTL != 60 {
			t.Fatalf("grant through %s: %+v", granter.name, grant)
		}
		path := "/v1/leases/" + grant.ID
		var a, b restKey
		restOK(t, granter, put_, "/v1/kv/leased/a?lease="+grant.ID, "1", &a)
		restOK(t, renewer, put_, "/v1/kv/leased/b?lease="+grant.ID, "2", &b)
		ttl, err := leader.client(t).TimeToLive(ctx(t), clientv3.LeaseID(id), clientv3.WithAttachedKeys())
		if err != nil || ttl.GrantedTTL != 60 || len(ttl.Keys) != 2 {
			t.Fatalf("etcd API TimeToLive on the leader: %+v %v", ttl, err)
		}

		// Let the lease run down to 57 s (the leader's clock may have
		// started up to an election timeout after the grant, as etcd's
		// does), then renew it through a follower: the leader's TTL is back
		// to the full 60 s, so above 57 s for the next two seconds.
		var before leaseAnswer
		if !waitFor(6*time.Second, func() bool {
			restOK(t, renewer, get_, path+"?keys=true", "", &before)
			return before.TTL <= 57
		}) {
			t.Fatalf("lease through %s 6 s after the grant: %+v, want ttl ≤ 57", renewer.name, before)
		}
		if before.TTL <= 0 || before.GrantedTTL != 60 || !slices.Equal(before.Keys, []string{"leased/a", "leased/b"}) {
			t.Fatalf("lease through %s: %+v, want a positive ttl, granted 60, keys leased/a leased/b", renewer.name, before)
		}
		var renewed leaseAnswer
		restOK(t, renewer, post_, path+"/keepalive", "", &renewed)
		if renewed.ID != grant.ID || renewed.TTL != 60 {
			t.Fatalf("keepalive through %s: %+v, want ttl 60", renewer.name, renewed)
		}
		for _, m := range c.members {
			var after leaseAnswer
			restOK(t, m, get_, path, "", &after)
			if after.TTL < 58 || after.GrantedTTL != 60 {
				t.Errorf("lease through %s after a renewal through %s: %+v, want ttl ≥ 58 (it was %d)", m.name, renewer.name, after, before.TTL)
			}
		}

		var revoked struct{ Revision int64 }
		restOK(t, revoker, del_, path, "", &revoked)
		if revoked.Revision <= b.Revision {
			t.Fatalf("revoke through %s answered revision %d, after a put at %d", revoker.name, revoked.Revision, b.Revision)
		}
		for _, m := range c.members {
			for _, key := range []string{"leased/a", "leased/b"} {
				if got := restCall(m, get_, "/v1/kv/"+key, ""); got.status != http.StatusNotFound || got.errorCode() != "key_not_found" {
					t.Errorf("GET %s through %s after the revoke: %v", key, m.name, got)
				}
			}
			// The keys went at the revoke's revision, both at once.
			cli := m.client(t)
			if g, err := cli.Get(ctx(t), "leased/", clientv3.WithPrefix(), clientv3.WithRev(revoked.Revision-1)); err != nil || g.Count != 2 {
				t.Errorf("%s at revision %d, before the revoke: %v %v", m.name, revoked.Revision-1, g, err)
			}
			if g, err := cli.Get(ctx(t), "leased/", clientv3.WithPrefix(), clientv3.WithRev(revoked.Revision)); err != nil || g.Count != 0 {
				t.Errorf("%s at revision %d, the revoke's: %v %v", m.name, revoked.Revision, g, err)
			}
			for _, req := range []struct{ method, path string }{{get_, path}, {post_, path + "/keepalive"}} {
				if got := restCall(m, req.method, req.path, ""); got.status != http.StatusNotFound || got.errorCode() != "lease_not_found" {
					t.Errorf("%s %s through %s after the revoke: %v", req.method, req.path, m.name, got)
				}
			}
		}
	})
}

// TestHTTPClusterLeaderKill: clients write through the REST API of every
// member while the leader is killed with SIGKILL. Every answer the
// survivors give is 200 or a 503 JSON error, never a 500; once a new
// leader is elected each survivor takes writes again; and every
// acknowledged write is on every member, the old leader too once
// restarted, at the revision it was acknowledged with.
func TestHTTPClusterLeaderKill(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		old := c.leader()
		type ack struct {
			via *member
			rev int64
		}
		var (
			mu      sync.Mutex
			acked   = map[string]ack{}
			refused []string // answers of survivors that are neither 200 nor 503
			wg      sync.WaitGroup
		)
		// Writes in flight when the leader dies wait out the member's
		// request timeout; the writers are cut short when the test has
		// seen enough, and a write cut short is simply not acknowledged.
		writing, stop := context.WithCancel(context.Background())
		defer stop()
		record := func(m *member, key string, a restAnswer) {
			var r restKey
			mu.Lock()
			defer mu.Unlock()
			switch {
			case a.err == nil && a.status == http.StatusOK && json.Unmarshal(a.body, &r) == nil:
				acked[key] = ack{via: m, rev: r.Revision}
			case a.err != nil && (m == old || writing.Err() != nil):
				// The killed member does not answer, and a cut
				// request has no answer.
			case a.err != nil || a.status != http.StatusServiceUnavailable || a.errorCode() == "":
				refused = append(refused, fmt.Sprintf("PUT %s through %s: %v", key, m.name, a))
			}
		}
		for _, m := range c.members {
			for w := 0; w < 2; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; writing.Err() == nil; i++ {
						key := fmt.Sprintf("lk/%s/%d/%04d", m.name, w, i)
						a := restCallContext(writing, m, put_, "/v1/kv/"+key, "v")
						record(m, key, a)
						if m == old && a.err != nil {
							return
						}
					}
				}()
			}
		}
		time.Sleep(500 * time.Millisecond)
		old.kill9()
		newLeader := c.leader()
		if newLeader == old {
			t.Fatal("the killed member is still reported leader")
		}
		// Each survivor takes writes of its own again (any refusal on the
		// way is checked like the writers' answers).
		for _, m := range c.members {
			if m == old {
				continue
			}
			n := 0
			if !waitFor(10*time.Second, func() bool {
				key := fmt.Sprintf("lk/after/%s/%d", m.name, n)
				a := restCall(m, put_, "/v1/kv/"+key, "v")
				record(m, key, a)
				if a.status == http.StatusOK {
					n++
				}
				return n == 5
			}) {
				t.Errorf("%s took %d writes in the 10 s after %s was elected, want 5", m.name, n, newLeader.name)
			}
		}
		stop()
		wg.Wait()
		for _, r := range refused {
			t.Errorf("a survivor answered neither 200 nor a 503 JSON error: %s", r)
		}

		c.launch(old)
		if len(acked) < 20 {
			t.Fatalf("only %d writes acknowledged", len(acked))
		}
		// Each put has its own revision: two acknowledged at one revision
		// means one of them is lost.
		byRev := map[int64]string{}
		for key, a := range acked {
			if other, dup := byRev[a.rev]; dup {
				t.Errorf("%s and %s both acknowledged at revision %d", key, other, a.rev)
			}
			byRev[a.rev] = key
		}
		for _, m := range c.members {
			var list struct {
				Kvs []restKey `json:"kvs"`
			}
			restOK(t, m, get_, "/v1/kv/lk/?prefix=true&keys_only=true", "", &list)
			have := map[string]int64{}
			for _, kv := range list.Kvs {
				have[kv.Key] = kv.ModRevision
			}
			missing := 0
			for key, a := range acked {
				if rev, ok := have[key]; !ok || rev != a.rev {
					if missing++; missing <= 5 {
						t.Errorf("%s: %s acknowledged through %s at revision %d, found at %d (present: %v)", m.name, key, a.via.name, a.rev, rev, ok)
					}
				}
			}
			if missing > 5 {
				t.Errorf("%s: %d acknowledged writes missing or moved in all", m.name, missing)
			}
		}
	})
}

// TestHTTPClusterLoneMember: with two members of three killed, the last
// one refuses writes, linearizable reads and lease requests through REST
// with a 503 and the API's JSON error, within its request timeout, and
// still serves serializable reads. It is a follower, so that at first it
// still names the dead leader and forwards lease requests to it.
func TestHTTPClusterLoneMember(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3, "--election-timeout", "500", "--heartbeat-interval", "50")
		leader := c.leader()
		lone := c.followers()[0]
		var put restKey
		restOK(t, lone, put_, "/v1/kv/k", "v", &put)
		var grant leaseAnswer
		restOK(t, lone, post_, "/v1/leases", `{"ttl": 60}`, &grant)
		for _, m := range c.members {
			if m != lone {
				m.kill9()
			}
		}

		refused := []struct{ method, path, body string }{
			{post_, "/v1/leases/" + grant.ID + "/keepalive", ""},
			{get_, "/v1/leases/" + grant.ID, ""},
			{put_, "/v1/kv/k", "v2"},
			{get_, "/v1/kv/k", ""},
			{get_, "/v1/kv/?prefix=true", ""},
			{del_, "/v1/kv/k", ""},
			{post_, "/v1/txn", `{"success":[{"put":{"key":"k","value":"v3"}}]}`},
			{post_, "/v1/txn", `{"success":[{"get":{"key":"k"}}]}`},
			{post_, "/v1/leases", `{"ttl": 60}`},
			{del_, "/v1/leases/" + grant.ID, ""},
		}
		// The codes docs/api.md gives for a member without a leader: the
		// cluster has none, the dead leader cannot be reached, or a quorum
		// did not answer in time.
		leaderless := []string{"no_leader", "unavailable", "timeout"}
		// send sends every refused request at once and checks each answer
		// as it comes. Writes wait out the request timeout, so the two
		// rounds overlap; wg waits for both.
		var wg sync.WaitGroup
		defer wg.Wait()
		send := func(when string) {
			for _, r := range refused {
				wg.Add(1)
				go func() {
					defer wg.Done()
					a := restCall(lone, r.method, r.path, r.body)
					if a.err != nil || a.status != http.StatusServiceUnavailable || !slices.Contains(leaderless, a.errorCode()) {
						t.Errorf("%s: %s %s: %v, want 503 with a JSON error %v", when, r.method, r.path, a, leaderless)
					}
				}()
			}
		}
		// At once, while the lone member may still believe in the dead
		// leader, and again once it has noticed it is alone.
		send(fmt.Sprintf("right after %s (leader) and the other follower were killed", leader.name))
		if !waitFor(10*time.Second, func() bool {
			var st struct{ Leader string }
			restOK(t, lone, get_, "/v1/status", "", &st)
			return st.Leader == "0"
		}) {
			t.Errorf("%s still names a leader 10 s after losing the others", lone.name)
		}
		send("once it knows it has no leader")

		var got restKey
		restOK(t, lone, get_, "/v1/kv/k?serializable=true", "", &got)
		if got.Value != "v" || got.ModRevision != put.Revision {
			t.Errorf("serializable read through the lone member: %+v, want v at %d", got, put.Revision)
		}
		var list struct {
			Count int64 `json:"count"`
		}
		restOK(t, lone, get_, "/v1/kv/?prefix=true&serializable=true&count_only=true", "", &list)
		if list.Count != 1 {
			t.Errorf("serializable count through the lone member: %d, want 1", list.Count)
		}
	})
}
