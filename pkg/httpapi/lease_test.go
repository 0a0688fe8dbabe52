package httpapi

import (
	"context"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// keyLeases is a lease service with one lease, 42, holding keys.
type keyLeases struct {
	keys   [][]byte
	grants []*etcdserverpb.LeaseGrantRequest
}

func (l *keyLeases) Grant(_ context.Context, r *etcdserverpb.LeaseGrantRequest) (*etcdserverpb.LeaseGrantResponse, error) {
	l.grants = append(l.grants, r)
	return &etcdserverpb.LeaseGrantResponse{ID: 42, TTL: r.TTL, Header: &etcdserverpb.ResponseHeader{Revision: 3}}, nil
}

func (l *keyLeases) Revoke(context.Context, *etcdserverpb.LeaseRevokeRequest) (*etcdserverpb.LeaseRevokeResponse, error) {
	return &etcdserverpb.LeaseRevokeResponse{Header: &etcdserverpb.ResponseHeader{Revision: 4}}, nil
}

func (l *keyLeases) Renew(context.Context, int64) (int64, error) { return 10, nil }

func (l *keyLeases) TimeToLive(_ context.Context, r *etcdserverpb.LeaseTimeToLiveRequest) (*etcdserverpb.LeaseTimeToLiveResponse, error) {
	resp := &etcdserverpb.LeaseTimeToLiveResponse{ID: r.ID, TTL: 9, GrantedTTL: 10}
	if r.Keys {
		resp.Keys = l.keys
	}
	return resp, nil
}

// TestLeaseKeysKeepTheirBytes: keys attached to a lease come back byte for
// byte. A key that is not UTF-8 was rendered as U+FFFD ("lk\ufffd\ufffd"),
// and ?encoding=base64 was refused on this route.
func TestLeaseKeysKeepTheirBytes(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		keys         [][]byte
		want         string
	}{
		{"text", "/v1/leases/42?keys=true", [][]byte{[]byte("a"), []byte("é")},
			`{"id":"42","ttl":9,"granted_ttl":10,"keys":["a","é"]}`},
		{"binary key makes the list base64", "/v1/leases/42?keys=true", [][]byte{[]byte("a"), []byte("lk\xff\xfe")},
			`{"id":"42","ttl":9,"granted_ttl":10,"keys":["YQ==","bGv//g=="],"encoding":"base64"}`},
		{"base64 asked for", "/v1/leases/42?keys=true&encoding=base64", [][]byte{[]byte("a")},
			`{"id":"42","ttl":9,"granted_ttl":10,"keys":["YQ=="],"encoding":"base64"}`},
		{"base64 asked for, no keys", "/v1/leases/42?encoding=base64", [][]byte{[]byte("a")},
			`{"id":"42","ttl":9,"granted_ttl":10}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := New(newFakeBackend(), Options{Leases: &keyLeases{keys: tc.keys}})
			hr := &harness{t: t, h: h}
			expectJSON(t, hr.do("GET", tc.target, ""), 200, tc.want)
		})
	}
}

// TestLeaseRoutesAcceptEncoding: ?encoding=base64 is accepted on every
// lease route, so a client may set it on all its requests; other
// parameters are refused as on every route.
func TestLeaseRoutesAcceptEncoding(t *testing.T) {
	leases := &keyLeases{}
	hr := &harness{t: t, h: New(newFakeBackend(), Options{Leases: leases})}
	expectJSON(t, hr.do("POST", "/v1/leases?encoding=base64", `{"ttl":10}`), 200, `{"id":"42","ttl":10,"revision":3}`)
	expectJSON(t, hr.do("POST", "/v1/leases/42/keepalive?encoding=base64", ""), 200, `{"id":"42","ttl":10}`)
	expectJSON(t, hr.do("DELETE", "/v1/leases/42?encoding=base64", ""), 200, `{"revision":4}`)
	for _, bad := range []struct{ method, target string }{
		{"POST", "/v1/leases?ttl=5"},
		{"POST", "/v1/leases/42/keepalive?x=1"},
		{"DELETE", "/v1/leases/42?force=true"},
		{"DELETE", "/v1/leases/42?encoding=hex"},
	} {
		expectError(t, hr.do(bad.method, bad.target, `{"ttl":5}`), 400, "invalid_argument")
	}
	if len(leases.grants) != 1 {
		t.Errorf("lease service got %d grants, want 1", len(leases.grants))
	}
}

// TestLeaseGrantNeedsTTL: the spec requires ttl; {} and null were granted
// with the minimum TTL.
func TestLeaseGrantNeedsTTL(t *testing.T) {
	for body, code := range map[string]string{
		`{}`:              "invalid_argument",
		`{"id":"5"}`:      "invalid_argument",
		`null`:            "malformed_body",
		` null `:          "malformed_body",
		`[]`:              "malformed_body",
		`{"ttl":null}`:    "invalid_argument",
		`{"ttl":"5"}`:     "malformed_body",
		`{"ttl":5,"x":1}`: "malformed_body",
	} {
		leases := &keyLeases{}
		hr := &harness{t: t, h: New(newFakeBackend(), Options{Leases: leases})}
		expectError(t, hr.do("POST", "/v1/leases", body), 400, code)
		if len(leases.grants) != 0 {
			t.Errorf("body %s: lease service got %v, want no grant", body, leases.grants)
		}
	}
	leases := &keyLeases{}
	hr := &harness{t: t, h: New(newFakeBackend(), Options{Leases: leases})}
	expectJSON(t, hr.do("POST", "/v1/leases", `{"ttl":0}`), 200, `{"id":"42","ttl":0,"revision":3}`)
}
