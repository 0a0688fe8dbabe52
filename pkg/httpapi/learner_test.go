package httpapi

import (
	"context"
	"sync/atomic"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// learnerFlag is a member whose learner state the test sets.
type learnerFlag struct{ atomic.Bool }

func (l *learnerFlag) IsLearner() bool { return l.Load() }

// TestLearnerServesStatusAndSerializableReadsOnly: as etcd's learners serve
// Status and serializable ranges only, a learner's REST API answers
// GET /v1/status and ?serializable=true reads, and every other request 503
// learner without reaching the store, the watch service or the lessor. A
// learner served watches and lease lookups and keep-alives, which the
// store does not refuse. Once promoted, the member serves everything.
func TestLearnerServesStatusAndSerializableReadsOnly(t *testing.T) {
	learner := &learnerFlag{}
	f := newFakeBackend()
	f.status = &etcdserverpb.StatusResponse{Version: "3.7.3", IsLearner: true}
	leases := &countingLeases{}
	var watches atomic.Int64
	h := &harness{t: t, f: f, h: New(f, Options{
		Learner: learner,
		Leases:  leases,
		Watch: func(send func(*etcdserverpb.WatchResponse) error) WatchStream {
			watches.Add(1)
			return nil // never used: a learner must not open a watch
		},
	})}
	if rec := h.do("PUT", "/v1/kv/k", "v"); rec.Code != 200 {
		t.Fatalf("setting up: %d %s", rec.Code, rec.Body)
	}
	learner.Store(true)

	for _, tc := range []struct {
		name, method, target, body string
		status                     int
		code                       string // for an error
	}{
		{"status", "GET", "/v1/status", "", 200, ""},
		{"serializable get", "GET", "/v1/kv/k?serializable=true", "", 200, ""},
		{"serializable range", "GET", "/v1/kv/?prefix=true&serializable=true", "", 200, ""},
		{"serializable get of an absent key", "GET", "/v1/kv/nope?serializable=true", "", 404, "key_not_found"},
		{"bad query is still bad", "GET", "/v1/kv/k?limit=x&serializable=true", "", 400, "invalid_argument"},
		{"linearizable get", "GET", "/v1/kv/k", "", 503, "learner"},
		{"linearizable range", "GET", "/v1/kv/?prefix=true", "", 503, "learner"},
		{"serializable=false", "GET", "/v1/kv/k?serializable=false", "", 503, "learner"},
		{"put", "PUT", "/v1/kv/k", "v2", 503, "learner"},
		{"delete", "DELETE", "/v1/kv/k", "", 503, "learner"},
		{"read-only txn", "POST", "/v1/txn", `{"success":[{"get":{"key":"k"}}]}`, 503, "learner"},
		{"txn", "POST", "/v1/txn", `{"success":[{"put":{"key":"k","value":"v3"}}]}`, 503, "learner"},
		{"watch", "GET", "/v1/watch/k", "", 503, "learner"},
		{"lease grant", "POST", "/v1/leases", `{"ttl":10}`, 503, "learner"},
		{"lease lookup", "GET", "/v1/leases/42", "", 503, "learner"},
		{"lease keep-alive", "POST", "/v1/leases/42/keepalive", "", 503, "learner"},
		{"lease revoke", "DELETE", "/v1/leases/42", "", 503, "learner"},
		{"unknown route is still 404", "GET", "/v2/keys/k", "", 404, "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.requests())
			rec := h.do(tc.method, tc.target, tc.body)
			if tc.code != "" {
				expectError(t, rec, tc.status, tc.code)
			} else if rec.Code != tc.status {
				t.Errorf("status = %d, want %d; body %s", rec.Code, tc.status, rec.Body)
			}
			if tc.code == "learner" && len(f.requests()) != before {
				t.Errorf("refused request reached the store: %v", h.lastRequest())
			}
		})
	}
	if n := watches.Load(); n != 0 {
		t.Errorf("a learner opened %d watch streams", n)
	}
	if n := leases.calls.Load(); n != 0 {
		t.Errorf("a learner called its lessor %d times", n)
	}

	learner.Store(false) // promoted
	for _, tc := range []struct{ method, target, body string }{
		{"GET", "/v1/kv/k", ""},
		{"PUT", "/v1/kv/k", "v2"},
		{"POST", "/v1/txn", `{"success":[{"get":{"key":"k"}}]}`},
		{"POST", "/v1/leases/42/keepalive", ""},
		{"GET", "/v1/leases/42", ""},
	} {
		if rec := h.do(tc.method, tc.target, tc.body); rec.Code != 200 {
			t.Errorf("promoted member: %s %s = %d %s, want 200", tc.method, tc.target, rec.Code, rec.Body)
		}
	}
}

// countingLeases is keyLeases counting the calls it gets.
type countingLeases struct {
	keyLeases
	calls atomic.Int64
}

func (l *countingLeases) Grant(ctx context.Context, r *etcdserverpb.LeaseGrantRequest) (*etcdserverpb.LeaseGrantResponse, error) {
	l.calls.Add(1)
	return l.keyLeases.Grant(ctx, r)
}

func (l *countingLeases) Revoke(ctx context.Context, r *etcdserverpb.LeaseRevokeRequest) (*etcdserverpb.LeaseRevokeResponse, error) {
	l.calls.Add(1)
	return l.keyLeases.Revoke(ctx, r)
}

func (l *countingLeases) Renew(ctx context.Context, id int64) (int64, error) {
	l.calls.Add(1)
	return l.keyLeases.Renew(ctx, id)
}

func (l *countingLeases) TimeToLive(ctx context.Context, r *etcdserverpb.LeaseTimeToLiveRequest) (*etcdserverpb.LeaseTimeToLiveResponse, error) {
	l.calls.Add(1)
	return l.keyLeases.TimeToLive(ctx, r)
}
