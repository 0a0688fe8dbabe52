package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestPrefixEndMatchesClientv3(t *testing.T) {
	for _, prefix := range []string{"", "a", "abc", "/registry/", "a\xff", "a\xff\xff", "\xff", "\xff\xff", "\x00", "a\x00", "\xfe\xff"} {
		in := []byte(prefix)
		got := prefixEnd(in)
		if want := clientv3.GetPrefixRangeEnd(prefix); string(got) != want {
			t.Errorf("prefixEnd(%q) = %q, want %q", prefix, got, want)
		}
		if string(in) != prefix {
			t.Errorf("prefixEnd(%q) modified its argument to %q", prefix, in)
		}
	}
}

func TestGetTranslatesToRange(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   *etcdserverpb.RangeRequest
	}{
		{"/v1/kv/foo", &etcdserverpb.RangeRequest{Key: []byte("foo")}},
		{"/v1/kv/foo?prefix=true", &etcdserverpb.RangeRequest{Key: []byte("foo"), RangeEnd: []byte("fop")}},
		{"/v1/kv/foo?prefix", &etcdserverpb.RangeRequest{Key: []byte("foo"), RangeEnd: []byte("fop")}},
		{"/v1/kv/foo?prefix=false", &etcdserverpb.RangeRequest{Key: []byte("foo")}},
		{"/v1/kv/a%FF?prefix=1", &etcdserverpb.RangeRequest{Key: []byte("a\xff"), RangeEnd: []byte("b")}},
		{"/v1/kv/%FF%FF?prefix=true", &etcdserverpb.RangeRequest{Key: []byte("\xff\xff"), RangeEnd: []byte{0}}},
		// The empty prefix is every key, as clientv3.WithPrefix makes it.
		{"/v1/kv/?prefix=true", &etcdserverpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}},
		{"/v1/kv/?prefix=true&encoding=base64&limit=3", &etcdserverpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Limit: 3}},
		{
			"/v1/kv/foo/?prefix=true&limit=10&revision=7&keys_only=true&serializable=true",
			&etcdserverpb.RangeRequest{Key: []byte("foo/"), RangeEnd: []byte("foo0"), Limit: 10, Revision: 7, KeysOnly: true, Serializable: true},
		},
		{"/v1/kv/foo?prefix=true&count_only=true", &etcdserverpb.RangeRequest{Key: []byte("foo"), RangeEnd: []byte("fop"), CountOnly: true}},
		{"/v1/kv/foo?revision=1&keys_only=true", &etcdserverpb.RangeRequest{Key: []byte("foo"), Revision: 1, KeysOnly: true}},
		// Keys are the URL-decoded path, slashes and all.
		{"/v1/kv/registry/pods/default/my%20pod", &etcdserverpb.RangeRequest{Key: []byte("registry/pods/default/my pod")}},
		{"/v1/kv//registry/pods", &etcdserverpb.RangeRequest{Key: []byte("/registry/pods")}},
		{"/v1/kv/a%2Fb", &etcdserverpb.RangeRequest{Key: []byte("a/b")}},
		{"/v1/kv/a//b/", &etcdserverpb.RangeRequest{Key: []byte("a//b/")}},
		{"/v1/kv/../x/./y", &etcdserverpb.RangeRequest{Key: []byte("../x/./y")}},
		{"/v1/kv/a%3Fb%23c%25d", &etcdserverpb.RangeRequest{Key: []byte("a?b#c%d")}},
		{"/v1/kv/a+b", &etcdserverpb.RangeRequest{Key: []byte("a+b")}},
		{"/v1/kv/%D0%BA%D0%BB%D1%8E%D1%87", &etcdserverpb.RangeRequest{Key: []byte("ключ")}},
		// Under ?encoding=base64 the path is base64, standard or URL-safe,
		// padded or not.
		{"/v1/kv/Zm9v?encoding=base64", &etcdserverpb.RangeRequest{Key: []byte("foo")}},
		{"/v1/kv/AP8=?encoding=base64&prefix=true", &etcdserverpb.RangeRequest{Key: []byte{0, 0xff}, RangeEnd: []byte{1}}},
		{"/v1/kv//w==?encoding=base64", &etcdserverpb.RangeRequest{Key: []byte{0xff}}},
		{"/v1/kv/_w?encoding=base64", &etcdserverpb.RangeRequest{Key: []byte{0xff}}},
		{"/v1/kv/%2Fw%3D%3D?encoding=base64", &etcdserverpb.RangeRequest{Key: []byte{0xff}}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.do(http.MethodGet, tc.target, "")
			h.expectRequest(tc.want)
		})
	}
}

func TestPutTranslatesToPut(t *testing.T) {
	for _, tc := range []struct {
		name, target, body string
		want               *etcdserverpb.PutRequest
	}{
		{"plain", "/v1/kv/foo", "bar", &etcdserverpb.PutRequest{Key: []byte("foo"), Value: []byte("bar")}},
		{"empty value", "/v1/kv/foo", "", &etcdserverpb.PutRequest{Key: []byte("foo")}},
		{"raw binary body", "/v1/kv/foo", "\x00\xff\n", &etcdserverpb.PutRequest{Key: []byte("foo"), Value: []byte("\x00\xff\n")}},
		{"lease and prev_kv", "/v1/kv/foo?lease=7587862369472446213&prev_kv=true", "v", &etcdserverpb.PutRequest{Key: []byte("foo"), Value: []byte("v"), Lease: 7587862369472446213, PrevKv: true}},
		{"ignore_value", "/v1/kv/foo?ignore_value=true", "", &etcdserverpb.PutRequest{Key: []byte("foo"), IgnoreValue: true}},
		{"ignore_lease", "/v1/kv/foo?ignore_lease", "v", &etcdserverpb.PutRequest{Key: []byte("foo"), Value: []byte("v"), IgnoreLease: true}},
		{"slashes and spaces", "/v1/kv//a%20b/c", "v", &etcdserverpb.PutRequest{Key: []byte("/a b/c"), Value: []byte("v")}},
		{"base64 key and body", "/v1/kv/Zm9v?encoding=base64", "AAEC/w==\n", &etcdserverpb.PutRequest{Key: []byte("foo"), Value: []byte{0, 1, 2, 0xff}}},
		{"base64 multi-line body", "/v1/kv/Zm9v?encoding=base64", "aGVs\nbG8=\r\n", &etcdserverpb.PutRequest{Key: []byte("foo"), Value: []byte("hello")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.do(http.MethodPut, tc.target, tc.body)
			h.expectRequest(tc.want)
		})
	}
}

func TestDeleteTranslatesToDeleteRange(t *testing.T) {
	for _, tc := range []struct {
		target string
		want   *etcdserverpb.DeleteRangeRequest
	}{
		{"/v1/kv/foo", &etcdserverpb.DeleteRangeRequest{Key: []byte("foo")}},
		{"/v1/kv/foo/?prefix=true&prev_kv=true", &etcdserverpb.DeleteRangeRequest{Key: []byte("foo/"), RangeEnd: []byte("foo0"), PrevKv: true}},
		{"/v1/kv/a%2Fb%20c", &etcdserverpb.DeleteRangeRequest{Key: []byte("a/b c")}},
		{"/v1/kv/_w?encoding=base64&prefix=true", &etcdserverpb.DeleteRangeRequest{Key: []byte{0xff}, RangeEnd: []byte{0}}},
	} {
		t.Run(tc.target, func(t *testing.T) {
			h := newHarness(t, Options{})
			h.do(http.MethodDelete, tc.target, "")
			h.expectRequest(tc.want)
		})
	}
}

func TestKVLifecycle(t *testing.T) {
	h := newHarness(t, Options{})
	h.f.leases[7587862369472446213] = true
	steps := []struct {
		method, target, body string
		status               int
		want                 string
	}{
		{"PUT", "/v1/kv/dir/a", "1", 200, `{"revision":2}`},
		{"PUT", "/v1/kv/dir/b?lease=7587862369472446213", "2", 200, `{"revision":3}`},
		{"PUT", "/v1/kv/dir/a?prev_kv=true", "10", 200,
			`{"revision":4,"prev_kv":{"key":"dir/a","value":"1","create_revision":2,"mod_revision":2,"version":1}}`},
		{"PUT", "/v1/kv/dir/c?prev_kv=true", "", 200, `{"revision":5}`},
		{"GET", "/v1/kv/dir/a", "", 200,
			`{"key":"dir/a","value":"10","create_revision":2,"mod_revision":4,"version":2,"revision":5}`},
		{"GET", "/v1/kv/dir/b", "", 200,
			`{"key":"dir/b","value":"2","create_revision":3,"mod_revision":3,"version":1,"lease":"7587862369472446213","revision":5}`},
		{"GET", "/v1/kv/dir/c?keys_only=true", "", 200,
			`{"key":"dir/c","value":"","create_revision":5,"mod_revision":5,"version":1,"revision":5}`},
		{"GET", "/v1/kv/dir/?prefix=true", "", 200, `{"kvs":[
			{"key":"dir/a","value":"10","create_revision":2,"mod_revision":4,"version":2},
			{"key":"dir/b","value":"2","create_revision":3,"mod_revision":3,"version":1,"lease":"7587862369472446213"},
			{"key":"dir/c","value":"","create_revision":5,"mod_revision":5,"version":1}
		],"count":3,"more":false,"revision":5}`},
		{"GET", "/v1/kv/dir/?prefix=true&limit=1&keys_only=true", "", 200, `{"kvs":[
			{"key":"dir/a","value":"","create_revision":2,"mod_revision":4,"version":2}
		],"count":3,"more":true,"revision":5}`},
		{"GET", "/v1/kv/dir/?prefix=true&count_only=true", "", 200, `{"kvs":[],"count":3,"more":false,"revision":5}`},
		{"GET", "/v1/kv/nothing/?prefix=true", "", 200, `{"kvs":[],"count":0,"more":false,"revision":5}`},
		{"GET", "/v1/kv/?prefix=true&keys_only=true", "", 200, `{"kvs":[
			{"key":"dir/a","value":"","create_revision":2,"mod_revision":4,"version":2},
			{"key":"dir/b","value":"","create_revision":3,"mod_revision":3,"version":1,"lease":"7587862369472446213"},
			{"key":"dir/c","value":"","create_revision":5,"mod_revision":5,"version":1}
		],"count":3,"more":false,"revision":5}`},
		{"DELETE", "/v1/kv/dir/b?prev_kv=true", "", 200, `{"deleted":1,"revision":6,"prev_kvs":[
			{"key":"dir/b","value":"2","create_revision":3,"mod_revision":3,"version":1,"lease":"7587862369472446213"}
		]}`},
		{"DELETE", "/v1/kv/nothing/?prefix=true&prev_kv=true", "", 200, `{"deleted":0,"revision":6}`},
		{"DELETE", "/v1/kv/dir/?prefix=true", "", 200, `{"deleted":2,"revision":7}`},
		{"GET", "/v1/kv/dir/?prefix=true", "", 200, `{"kvs":[],"count":0,"more":false,"revision":7}`},
	}
	for _, s := range steps {
		expectJSON(t, h.do(s.method, s.target, s.body), s.status, s.want)
	}
}

func TestMissingSingleKeyIs404(t *testing.T) {
	h := newHarness(t, Options{})
	expectError(t, h.do("GET", "/v1/kv/nope", ""), 404, "key_not_found")
	expectError(t, h.do("DELETE", "/v1/kv/nope", ""), 404, "key_not_found")
	expectJSON(t, h.do("DELETE", "/v1/kv/nope?prefix=true", ""), 200, `{"deleted":0,"revision":1}`)
}

func TestBinaryAndUnicodeValues(t *testing.T) {
	h := newHarness(t, Options{})
	// Written in base64, read back without it: the value is not UTF-8, so
	// the kv comes base64 with the marker.
	expectJSON(t, h.do("PUT", "/v1/kv/Ymlu?encoding=base64", "AP8="), 200, `{"revision":2}`)
	expectJSON(t, h.do("GET", "/v1/kv/bin", ""), 200,
		`{"key":"Ymlu","value":"AP8=","encoding":"base64","create_revision":2,"mod_revision":2,"version":1,"revision":2}`)
	expectJSON(t, h.do("GET", "/v1/kv/Ymlu?encoding=base64", ""), 200,
		`{"key":"Ymlu","value":"AP8=","encoding":"base64","create_revision":2,"mod_revision":2,"version":1,"revision":2}`)

	// A key that is not UTF-8, written raw through the path.
	expectJSON(t, h.do("PUT", "/v1/kv/k%FF", "v"), 200, `{"revision":3}`)
	expectJSON(t, h.do("GET", "/v1/kv/k%FF", ""), 200,
		`{"key":"a/8=","value":"dg==","encoding":"base64","create_revision":3,"mod_revision":3,"version":1,"revision":3}`)

	// UTF-8 text is shown as text, or as base64 when asked for.
	expectJSON(t, h.do("PUT", "/v1/kv/%D0%BA%D0%BB%D1%8E%D1%87", "héllo ✓"), 200, `{"revision":4}`)
	expectJSON(t, h.do("GET", "/v1/kv/%D0%BA%D0%BB%D1%8E%D1%87", ""), 200,
		`{"key":"ключ","value":"héllo ✓","create_revision":4,"mod_revision":4,"version":1,"revision":4}`)
	expectJSON(t, h.do("GET", "/v1/kv/0LrQu9GO0Yc=?encoding=base64", ""), 200,
		`{"key":"0LrQu9GO0Yc=","value":"aMOpbGxvIOKckw==","encoding":"base64","create_revision":4,"mod_revision":4,"version":1,"revision":4}`)

	// In a list, each kv carries its own marker.
	h.do("PUT", "/v1/kv/p/text", "t")
	h.do("PUT", "/v1/kv/cC9iaW4=?encoding=base64", "/w==")
	expectJSON(t, h.do("GET", "/v1/kv/p/?prefix=true", ""), 200, `{"kvs":[
		{"key":"cC9iaW4=","value":"/w==","encoding":"base64","create_revision":6,"mod_revision":6,"version":1},
		{"key":"p/text","value":"t","create_revision":5,"mod_revision":5,"version":1}
	],"count":2,"more":false,"revision":6}`)
}

// TestKeysOverRealServer sends keys through a real HTTP client and server,
// both with slashes left in the path and with every byte escaped.
func TestKeysOverRealServer(t *testing.T) {
	h := newHarness(t, Options{})
	srv := httptest.NewServer(h.h)
	defer srv.Close()

	keys := []string{"/registry/pods/default/web-0", "a b/c d", "x//y", "..", "../etc", "a?b#c", "100%", "ключ", "trailing/"}
	for i, key := range keys {
		value := strings.Repeat("v", i)
		paths := []string{
			(&url.URL{Path: "/v1/kv/" + key}).EscapedPath(),
			"/v1/kv/" + url.PathEscape(key),
		}
		for _, p := range paths {
			req, err := http.NewRequest(http.MethodPut, srv.URL+p, strings.NewReader(value))
			if err != nil {
				t.Fatal(err)
			}
			if resp := mustDo(t, req); resp.StatusCode != 200 {
				t.Fatalf("PUT %s: status %d", p, resp.StatusCode)
			}
			req, _ = http.NewRequest(http.MethodGet, srv.URL+p, nil)
			resp := mustDo(t, req)
			var kv keyValue
			if err := json.NewDecoder(bytes.NewReader(resp.body)).Decode(&kv); err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s: status %d, %v: %s", p, resp.StatusCode, err, resp.body)
			}
			if kv.Key != key || kv.Value != value {
				t.Errorf("GET %s = key %q value %q, want %q %q", p, kv.Key, kv.Value, key, value)
			}
		}
	}
}

// TestConcurrentRequests runs writers and readers at once; under -race it
// checks that requests share no mutable state in the handler.
func TestConcurrentRequests(t *testing.T) {
	h := newHarness(t, Options{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				key := fmt.Sprintf("/v1/kv/c/%d/%d", g, i)
				for _, rec := range []*httptest.ResponseRecorder{
					h.do("PUT", key, "v"),
					h.do("GET", key, ""),
					h.do("GET", "/v1/kv/c/?prefix=true&count_only=true", ""),
					h.do("POST", "/v1/txn", `{"success": [{"get": {"key": "c/", "prefix": true, "limit": 2}}]}`),
				} {
					if rec.Code != 200 {
						t.Errorf("%s: status %d: %s", key, rec.Code, rec.Body)
					}
				}
			}
		})
	}
	wg.Wait()
	expectJSON(t, h.do("GET", "/v1/kv/c/?prefix=true&count_only=true", ""), 200, `{"kvs":[],"count":100,"more":false,"revision":101}`)
}

type response struct {
	StatusCode int
	body       []byte
}

func mustDo(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, b}
}
