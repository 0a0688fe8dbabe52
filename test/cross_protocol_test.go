package test

// The REST API and the etcd API serve one store: a write through either is
// read through the other with the same value and revisions, and both draw
// revisions from one sequence.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// restKey is GET /v1/kv/{key} and the answers of writes.
type restKey struct {
	Key            string `json:"key"`
	Value          string `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Revision       int64  `json:"revision"`
	Succeeded      bool   `json:"succeeded"`
	Deleted        int64  `json:"deleted"`
}

// rest sends a request that must succeed with 200 and decodes its answer.
func rest(t *testing.T, m *member, method, path, body string) restKey {
	t.Helper()
	code, b := m.httpDo(t, method, path, strings.NewReader(body))
	if code != http.StatusOK {
		t.Fatalf("%s %s: %d %s", method, path, code, b)
	}
	var out restKey
	decodeJSON(t, b, &out)
	return out
}

// restPut is PUT /v1/kv/{key} for goroutines other than the test's: it
// returns errors instead of failing the test.
func restPut(m *member, key, value string) (int64, error) {
	req, err := http.NewRequest(http.MethodPut, m.httpURL+"/v1/kv/"+key, strings.NewReader(value))
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var r restKey
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("PUT %s: status %d, %v", key, resp.StatusCode, err)
	}
	return r.Revision, nil
}

func TestCrossProtocol(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		cli := m.client(t)

		t.Run("REST write, etcd read", func(t *testing.T) {
			w := rest(t, m, http.MethodPut, "/v1/kv/from-rest", "rest value")
			r, err := cli.Get(ctx(t), "from-rest")
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "rest value" || r.Kvs[0].ModRevision != w.Revision || r.Kvs[0].CreateRevision != w.Revision {
				t.Fatalf("etcd API reads %v after a REST put at revision %d", r.Kvs, w.Revision)
			}
			if r.Header.Revision < w.Revision {
				t.Errorf("etcd API header revision %d is behind the REST write's %d", r.Header.Revision, w.Revision)
			}
		})

		t.Run("etcd write, REST read", func(t *testing.T) {
			w, err := cli.Put(ctx(t), "from-etcd", "etcd value")
			if err != nil {
				t.Fatal(err)
			}
			r := rest(t, m, http.MethodGet, "/v1/kv/from-etcd", "")
			if r.Value != "etcd value" || r.ModRevision != w.Header.Revision || r.Version != 1 || r.Revision < w.Header.Revision {
				t.Fatalf("REST reads %+v after an etcd put at revision %d", r, w.Header.Revision)
			}
		})

		t.Run("REST delete, etcd read", func(t *testing.T) {
			d := rest(t, m, http.MethodDelete, "/v1/kv/from-etcd", "")
			r, err := cli.Get(ctx(t), "from-etcd")
			if err != nil {
				t.Fatal(err)
			}
			if d.Deleted != 1 || len(r.Kvs) != 0 || r.Header.Revision != d.Revision {
				t.Fatalf("REST deleted %d at revision %d; etcd API then reads %v at revision %d", d.Deleted, d.Revision, r.Kvs, r.Header.Revision)
			}
		})

		t.Run("revisions are one sequence across both APIs", func(t *testing.T) {
			var last int64
			for i := range 10 {
				var rev int64
				if i%2 == 0 {
					rev = rest(t, m, http.MethodPut, fmt.Sprintf("/v1/kv/seq%d", i), "r").Revision
				} else {
					p, err := cli.Put(ctx(t), fmt.Sprintf("seq%d", i), "e")
					if err != nil {
						t.Fatal(err)
					}
					rev = p.Header.Revision
				}
				if last != 0 && rev != last+1 {
					t.Errorf("write %d got revision %d after %d", i, rev, last)
				}
				last = rev
			}
		})

		t.Run("REST txn on a key written through etcd", func(t *testing.T) {
			p, err := cli.Put(ctx(t), "cas", "etcd")
			if err != nil {
				t.Fatal(err)
			}
			tx := rest(t, m, http.MethodPost, "/v1/txn", fmt.Sprintf(`{
				"compare": [{"key":"cas","target":"mod","result":"=","mod_revision":%d}],
				"success": [{"put":{"key":"cas","value":"rest"}}]}`, p.Header.Revision))
			if !tx.Succeeded || tx.Revision != p.Header.Revision+1 {
				t.Fatalf("REST txn comparing the etcd write's mod revision %d: succeeded %v at revision %d", p.Header.Revision, tx.Succeeded, tx.Revision)
			}
			r, err := cli.Get(ctx(t), "cas")
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Kvs[0].Value) != "rest" || r.Kvs[0].ModRevision != tx.Revision || r.Kvs[0].Version != 2 {
				t.Errorf("etcd API reads %v after the REST txn at revision %d", r.Kvs[0], tx.Revision)
			}
		})

		t.Run("etcd txn on a key written through REST", func(t *testing.T) {
			w := rest(t, m, http.MethodPut, "/v1/kv/cas2", "rest")
			tr, err := cli.Txn(ctx(t)).
				If(clientv3.Compare(clientv3.Value("cas2"), "=", "rest"), clientv3.Compare(clientv3.ModRevision("cas2"), "=", w.Revision)).
				Then(clientv3.OpPut("cas2", "etcd"), clientv3.OpGet("cas2")).
				Commit()
			if err != nil {
				t.Fatal(err)
			}
			if !tr.Succeeded || tr.Header.Revision != w.Revision+1 {
				t.Fatalf("etcd txn comparing the REST write: succeeded %v at revision %d, REST wrote at %d", tr.Succeeded, tr.Header.Revision, w.Revision)
			}
			r := rest(t, m, http.MethodGet, "/v1/kv/cas2", "")
			if r.Value != "etcd" || r.ModRevision != tr.Header.Revision || r.CreateRevision != w.Revision || r.Version != 2 {
				t.Errorf("REST reads %+v after the etcd txn at revision %d", r, tr.Header.Revision)
			}
			// A compare that no longer holds fails the same through both.
			stale := rest(t, m, http.MethodPost, "/v1/txn", fmt.Sprintf(`{
				"compare": [{"key":"cas2","target":"mod","result":"=","mod_revision":%d}],
				"success": [{"put":{"key":"cas2","value":"stale"}}]}`, w.Revision))
			if stale.Succeeded || stale.Revision != tr.Header.Revision {
				t.Errorf("stale REST txn: succeeded %v at revision %d, want false at %d", stale.Succeeded, stale.Revision, tr.Header.Revision)
			}
		})

		t.Run("concurrent writers through both APIs", func(t *testing.T) {
			const writers, each = 4, 25
			type ack struct {
				key, value string
				rev        int64
			}
			acks := make(chan ack, writers*each)
			var wg sync.WaitGroup
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						key, value := fmt.Sprintf("conc/%d/%02d", w, i), fmt.Sprintf("w%d-%d", w, i)
						if w%2 == 0 {
							rev, err := restPut(m, key, value)
							if err != nil {
								t.Error(err)
								return
							}
							acks <- ack{key, value, rev}
						} else {
							p, err := cli.Put(ctx(t), key, value)
							if err != nil {
								t.Errorf("put %s: %v", key, err)
								return
							}
							acks <- ack{key, value, p.Header.Revision}
						}
					}
				}()
			}
			wg.Wait()
			close(acks)
			seen := map[int64]string{}
			for a := range acks {
				if other, dup := seen[a.rev]; dup {
					t.Errorf("revision %d given to both %s and %s", a.rev, other, a.key)
				}
				seen[a.rev] = a.key
				if a.rev%2 == 0 { // check half through each API
					r := rest(t, m, http.MethodGet, "/v1/kv/"+a.key, "")
					if r.Value != a.value || r.ModRevision != a.rev {
						t.Errorf("REST reads %s = %q at %d, acknowledged %q at %d", a.key, r.Value, r.ModRevision, a.value, a.rev)
					}
				} else {
					r, err := cli.Get(ctx(t), a.key)
					if err != nil {
						t.Fatal(err)
					}
					if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != a.value || r.Kvs[0].ModRevision != a.rev {
						t.Errorf("etcd API reads %s = %v, acknowledged %q at %d", a.key, r.Kvs, a.value, a.rev)
					}
				}
			}
			if len(seen) != writers*each {
				t.Errorf("%d writes acknowledged, want %d", len(seen), writers*each)
			}
		})
	})
}
