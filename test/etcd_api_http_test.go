package test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// httpAnswer is what the endpoints of the client port answer, as far as a
// client can tell them apart.
type httpAnswer struct {
	Status      int
	Allow       string
	ContentType string
	Body        string // byte for byte: clients may parse it in order
}

func httpAsk(t *testing.T, method, url string) httpAnswer {
	t.Helper()
	resp, b := httpRequest(t, nil, method, url, nil, nil)
	return httpAnswer{Status: resp.StatusCode, Allow: resp.Header.Get("Allow"), ContentType: resp.Header.Get("Content-Type"), Body: string(b)}
}

// TestClientPortHTTPMatchesEtcd compares etcd's own HTTP endpoints on the
// client port, methods other than GET included: etcd answers those with a
// 405 and "Allow: GET", and /version names the storage version too.
func TestClientPortHTTPMatchesEtcd(t *testing.T) {
	etcdURL := "http://" + etcdEndpoint(startEtcd(t))
	// A fresh etcd reports storage 3.5.0 until its version monitor has
	// moved the schema to the cluster version, moments after the first
	// election (limitations.md); Cairn reports the cluster version at once.
	settled := func() bool {
		var v struct{ Etcdcluster, Storage string }
		if err := json.Unmarshal([]byte(httpAsk(t, "GET", etcdURL+"/version").Body), &v); err != nil {
			t.Fatal(err)
		}
		return v.Storage != "" && v.Storage == v.Etcdcluster
	}
	if !waitFor(30*time.Second, settled) {
		t.Fatal("etcd's storage version never reached its cluster version")
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cairnURL := "http://" + m.clientEP
		// /readyz?verbose is left out: etcd lists its checks in map order.
		for _, path := range []string{
			"/health", "/health?serializable=true", "/version",
			"/livez", "/livez?verbose", "/livez/serializable_read", "/livez/nosuch",
			"/readyz", "/readyz?exclude=data_corruption&exclude=non_learner&exclude=linearizable_read&verbose",
			"/readyz/data_corruption", "/readyz/linearizable_read?verbose", "/readyz/non_learner",
		} {
			for _, method := range []string{"GET", "POST", "PUT", "DELETE"} {
				want, got := httpAsk(t, method, etcdURL+path), httpAsk(t, method, cairnURL+path)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s %s:\n cairn %+v\n  etcd %+v", method, path, got, want)
				}
			}
		}
		// Cairn's own debug endpoint follows the same rule.
		if got := httpAsk(t, "GET", cairnURL+"/debug/actors"); got.Status != 200 {
			t.Errorf("GET /debug/actors: %+v", got)
		}
		want := httpAnswer{Status: 405, Allow: "GET", ContentType: "text/plain; charset=utf-8", Body: "Method Not Allowed\n"}
		if got := httpAsk(t, "POST", cairnURL+"/debug/actors"); !reflect.DeepEqual(got, want) {
			t.Errorf("POST /debug/actors: %+v, want %+v", got, want)
		}
	})
}

// TestHealthWithAuthMatchesEtcd: with auth on, the health endpoints, which
// send no credentials, still answer healthy, as etcd's do.
func TestHealthWithAuthMatchesEtcd(t *testing.T) {
	ecli := startEtcd(t)
	enableAuth(t, ecli)
	etcdURL := "http://" + etcdEndpoint(ecli)
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		enableAuth(t, m.client(t))
		cairnURL := "http://" + m.clientEP
		for _, path := range []string{"/health", "/health?serializable=true", "/livez", "/readyz", "/readyz/linearizable_read?verbose"} {
			want, got := httpAsk(t, "GET", etcdURL+path), httpAsk(t, "GET", cairnURL+path)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("GET %s with auth on:\n cairn %+v\n  etcd %+v", path, got, want)
			}
		}
	})
}
