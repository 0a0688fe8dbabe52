package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

func putOp(r *etcdserverpb.PutRequest) *etcdserverpb.RequestOp {
	return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: r}}
}

func getOp(r *etcdserverpb.RangeRequest) *etcdserverpb.RequestOp {
	return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: r}}
}

func deleteOp(r *etcdserverpb.DeleteRangeRequest) *etcdserverpb.RequestOp {
	return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func TestTxnTranslatesToTxnRequest(t *testing.T) {
	h := newHarness(t, Options{})
	h.do(http.MethodPost, "/v1/txn", `{
		"compare": [
			{"key": "k", "target": "value", "result": "=", "value": "v"},
			{"key": "k", "target": "version", "result": "!=", "version": 0},
			{"key": "dir/", "prefix": true, "target": "create", "result": "<", "create_revision": 5},
			{"key": "a", "range_end": "c", "target": "mod", "result": ">", "mod_revision": 3},
			{"key": "k", "target": "lease", "result": "=", "lease": "7587862369472446213"},
			{"key": "k", "target": "lease", "result": "!=", "lease": 42}
		],
		"success": [
			{"put": {"key": "k", "value": "v2", "lease": "42", "prev_kv": true}},
			{"put": {"key": "/a b", "lease": null, "ignore_value": true, "ignore_lease": true}},
			{"get": {"key": "dir/", "prefix": true, "limit": 5, "revision": 9, "keys_only": true, "count_only": true}},
			{"get": {"key": "a", "range_end": "\u0000"}},
			{"delete": {"key": "old/", "prefix": true, "prev_kv": true}},
			{"delete": {"key": "x", "range_end": "y"}},
			{"txn": {
				"compare": [{"key": "x", "target": "version", "result": "=", "version": 0}],
				"success": [{"put": {"key": "x", "value": ""}}],
				"failure": []
			}}
		],
		"failure": [{"get": {"key": "k"}}]
	}`)
	h.expectRequest(&etcdserverpb.TxnRequest{
		Compare: []*etcdserverpb.Compare{
			{Key: []byte("k"), Target: etcdserverpb.Compare_VALUE, Result: etcdserverpb.Compare_EQUAL, TargetUnion: &etcdserverpb.Compare_Value{Value: []byte("v")}},
			{Key: []byte("k"), Target: etcdserverpb.Compare_VERSION, Result: etcdserverpb.Compare_NOT_EQUAL, TargetUnion: &etcdserverpb.Compare_Version{Version: 0}},
			{Key: []byte("dir/"), RangeEnd: []byte("dir0"), Target: etcdserverpb.Compare_CREATE, Result: etcdserverpb.Compare_LESS, TargetUnion: &etcdserverpb.Compare_CreateRevision{CreateRevision: 5}},
			{Key: []byte("a"), RangeEnd: []byte("c"), Target: etcdserverpb.Compare_MOD, Result: etcdserverpb.Compare_GREATER, TargetUnion: &etcdserverpb.Compare_ModRevision{ModRevision: 3}},
			{Key: []byte("k"), Target: etcdserverpb.Compare_LEASE, Result: etcdserverpb.Compare_EQUAL, TargetUnion: &etcdserverpb.Compare_Lease{Lease: 7587862369472446213}},
			{Key: []byte("k"), Target: etcdserverpb.Compare_LEASE, Result: etcdserverpb.Compare_NOT_EQUAL, TargetUnion: &etcdserverpb.Compare_Lease{Lease: 42}},
		},
		Success: []*etcdserverpb.RequestOp{
			putOp(&etcdserverpb.PutRequest{Key: []byte("k"), Value: []byte("v2"), Lease: 42, PrevKv: true}),
			putOp(&etcdserverpb.PutRequest{Key: []byte("/a b"), IgnoreValue: true, IgnoreLease: true}),
			getOp(&etcdserverpb.RangeRequest{Key: []byte("dir/"), RangeEnd: []byte("dir0"), Limit: 5, Revision: 9, KeysOnly: true, CountOnly: true}),
			getOp(&etcdserverpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}}),
			deleteOp(&etcdserverpb.DeleteRangeRequest{Key: []byte("old/"), RangeEnd: []byte("old0"), PrevKv: true}),
			deleteOp(&etcdserverpb.DeleteRangeRequest{Key: []byte("x"), RangeEnd: []byte("y")}),
			{Request: &etcdserverpb.RequestOp_RequestTxn{RequestTxn: &etcdserverpb.TxnRequest{
				Compare: []*etcdserverpb.Compare{{Key: []byte("x"), Target: etcdserverpb.Compare_VERSION, Result: etcdserverpb.Compare_EQUAL, TargetUnion: &etcdserverpb.Compare_Version{Version: 0}}},
				Success: []*etcdserverpb.RequestOp{putOp(&etcdserverpb.PutRequest{Key: []byte("x")})},
			}}},
		},
		Failure: []*etcdserverpb.RequestOp{getOp(&etcdserverpb.RangeRequest{Key: []byte("k")})},
	})
}

func TestTxnBase64TranslatesEveryKeyAndValue(t *testing.T) {
	h := newHarness(t, Options{})
	h.do(http.MethodPost, "/v1/txn?encoding=base64", `{
		"compare": [{"key": "AP8=", "range_end": "AQ==", "target": "value", "result": "=", "value": "/w=="}],
		"success": [
			{"put": {"key": "AP8", "value": "AAE="}},
			{"get": {"key": "_w", "prefix": true}},
			{"delete": {"key": "AA==", "range_end": "AA=="}}
		]
	}`)
	h.expectRequest(&etcdserverpb.TxnRequest{
		Compare: []*etcdserverpb.Compare{
			{Key: []byte{0, 0xff}, RangeEnd: []byte{1}, Target: etcdserverpb.Compare_VALUE, Result: etcdserverpb.Compare_EQUAL, TargetUnion: &etcdserverpb.Compare_Value{Value: []byte{0xff}}},
		},
		Success: []*etcdserverpb.RequestOp{
			putOp(&etcdserverpb.PutRequest{Key: []byte{0, 0xff}, Value: []byte{0, 1}}),
			getOp(&etcdserverpb.RangeRequest{Key: []byte{0xff}, RangeEnd: []byte{0}}),
			deleteOp(&etcdserverpb.DeleteRangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}),
		},
	})
}

func TestTxnResponses(t *testing.T) {
	h := newHarness(t, Options{})
	const createLock = `{
		"compare": [{"key": "lock", "target": "create", "result": "=", "create_revision": 0}],
		"success": [{"put": {"key": "lock", "value": "me"}}],
		"failure": [{"get": {"key": "lock"}}]%s
	}`
	const lockKV = `{"key":"lock","value":"me","create_revision":2,"mod_revision":2,"version":1}`

	expectJSON(t, h.do("POST", "/v1/txn", fmt.Sprintf(createLock, "")), 200,
		`{"succeeded":true,"revision":2,"responses":[{"put":{}}]}`)

	// A failed compare is an answer, not an error...
	expectJSON(t, h.do("POST", "/v1/txn", fmt.Sprintf(createLock, "")), 200,
		`{"succeeded":false,"revision":2,"responses":[{"get":{"kvs":[`+lockKV+`],"count":1,"more":false}}]}`)
	// ...unless the client asks for success: then it is a 412 that still
	// reports what the failure branch did.
	expectJSON(t, h.do("POST", "/v1/txn", fmt.Sprintf(createLock, `, "require_success": true`)), 412,
		`{"error":{"code":"compare_failed","message":"txn compare failed"},
		  "succeeded":false,"revision":2,"responses":[{"get":{"kvs":[`+lockKV+`],"count":1,"more":false}}]}`)
	// require_success that succeeds is a plain 200.
	expectJSON(t, h.do("POST", "/v1/txn", `{"require_success": true}`), 200,
		`{"succeeded":true,"revision":2,"responses":[]}`)

	// Every op kind, all writes at one revision.
	expectJSON(t, h.do("POST", "/v1/txn", `{
		"compare": [{"key": "lock", "target": "value", "result": "=", "value": "me"}],
		"success": [
			{"put": {"key": "lock", "value": "you", "prev_kv": true}},
			{"put": {"key": "other", "value": "o"}},
			{"delete": {"key": "other", "prev_kv": true}},
			{"delete": {"key": "nothing", "prev_kv": true}},
			{"txn": {
				"compare": [{"key": "lock", "target": "version", "result": ">", "version": 1}],
				"success": [{"get": {"key": "lock"}}, {"get": {"key": "l", "prefix": true, "count_only": true}}]
			}}
		]
	}`), 200, `{"succeeded":true,"revision":3,"responses":[
		{"put":{"prev_kv":`+lockKV+`}},
		{"put":{}},
		{"delete":{"deleted":1,"prev_kvs":[{"key":"other","value":"o","create_revision":3,"mod_revision":3,"version":1}]}},
		{"delete":{"deleted":0}},
		{"txn":{"succeeded":true,"responses":[
			{"get":{"kvs":[{"key":"lock","value":"you","create_revision":2,"mod_revision":3,"version":2}],"count":1,"more":false}},
			{"get":{"kvs":[],"count":1,"more":false}}
		]}}
	]}`)

	// Under ?encoding=base64 every kv in the answer is base64.
	expectJSON(t, h.do("POST", "/v1/txn?encoding=base64", `{"success": [{"get": {"key": "bG9jaw=="}}]}`), 200,
		`{"succeeded":true,"revision":3,"responses":[{"get":{"kvs":[
			{"key":"bG9jaw==","value":"eW91","encoding":"base64","create_revision":2,"mod_revision":3,"version":2}
		],"count":1,"more":false}}]}`)
}

func TestTxnRejectsMalformedRequests(t *testing.T) {
	for _, tc := range []struct {
		name, query, body string
		code              string
	}{
		{"empty body", "", ``, "malformed_body"},
		{"truncated JSON", "", `{"success": [`, "malformed_body"},
		{"not an object", "", `[]`, "malformed_body"},
		{"unknown field", "", `{"compares": []}`, "malformed_body"},
		{"unknown nested field", "", `{"success": [{"get": {"key": "a", "sort": "key"}}]}`, "malformed_body"},
		{"require_success nested", "", `{"success": [{"txn": {"require_success": true}}]}`, "malformed_body"},
		{"trailing value", "", `{} {}`, "malformed_body"},
		{"trailing garbage", "", `{}x`, "malformed_body"},
		{"limit as string", "", `{"success": [{"get": {"key": "a", "limit": "5"}}]}`, "malformed_body"},
		{"fractional limit", "", `{"success": [{"get": {"key": "a", "limit": 1.5}}]}`, "malformed_body"},
		{"limit overflows int64", "", `{"success": [{"get": {"key": "a", "limit": 99999999999999999999}}]}`, "malformed_body"},
		{"key as number", "", `{"success": [{"put": {"key": 1}}]}`, "malformed_body"},
		{"lease not a number", "", `{"success": [{"put": {"key": "a", "lease": "abc"}}]}`, "malformed_body"},
		{"negative lease", "", `{"success": [{"put": {"key": "a", "lease": -1}}]}`, "malformed_body"},
		{"lease in exponent form", "", `{"success": [{"put": {"key": "a", "lease": 1e3}}]}`, "malformed_body"},
		{"negative limit", "", `{"success": [{"get": {"key": "a", "limit": -1}}]}`, "invalid_argument"},
		{"negative revision", "", `{"failure": [{"get": {"key": "a", "revision": -1}}]}`, "invalid_argument"},
		{"op of no kind", "", `{"success": [{}]}`, "invalid_argument"},
		{"op of two kinds", "", `{"success": [{"put": {"key": "a"}, "get": {"key": "a"}}]}`, "invalid_argument"},
		{"prefix and range_end", "", `{"success": [{"get": {"key": "a", "prefix": true, "range_end": "b"}}]}`, "invalid_argument"},
		{"unknown result", "", `{"compare": [{"key": "a", "target": "value", "result": "==", "value": "x"}]}`, "invalid_argument"},
		{"unknown target", "", `{"compare": [{"key": "a", "target": "val", "result": "=", "value": "x"}]}`, "invalid_argument"},
		{"missing operand", "", `{"compare": [{"key": "a", "target": "value", "result": "="}]}`, "invalid_argument"},
		{"operand of another target", "", `{"compare": [{"key": "a", "target": "value", "result": "=", "version": 1}]}`, "invalid_argument"},
		{"two operands", "", `{"compare": [{"key": "a", "target": "version", "result": "=", "version": 1, "value": "x"}]}`, "invalid_argument"},
		{"compare without key", "", `{"compare": [{"target": "version", "result": "=", "version": 1}]}`, "empty_key"},
		{"put without key", "", `{"success": [{"put": {"value": "v"}}]}`, "empty_key"},
		{"delete without key", "", `{"failure": [{"delete": {}}]}`, "empty_key"},
		{"nested get without key", "", `{"success": [{"txn": {"success": [{"get": {"key": ""}}]}}]}`, "empty_key"},
		{"bad base64 key", "?encoding=base64", `{"success": [{"put": {"key": "!!"}}]}`, "invalid_argument"},
		{"bad base64 value", "?encoding=base64", `{"success": [{"put": {"key": "YQ==", "value": "!!"}}]}`, "invalid_argument"},
		{"bad base64 range_end", "?encoding=base64", `{"success": [{"get": {"key": "YQ==", "range_end": "*"}}]}`, "invalid_argument"},
		{"bad base64 delete range_end", "?encoding=base64", `{"success": [{"delete": {"key": "YQ==", "range_end": "*"}}]}`, "invalid_argument"},
		{"bad base64 compare value", "?encoding=base64", `{"compare": [{"key": "YQ==", "target": "value", "result": "=", "value": "*"}]}`, "invalid_argument"},
		{"unknown encoding", "?encoding=hex", `{}`, "invalid_argument"},
		{"unknown parameter", "?dry_run=true", `{}`, "invalid_argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{})
			expectError(t, h.do("POST", "/v1/txn"+tc.query, tc.body), 400, tc.code)
			if n := len(h.f.requests()); n != 0 {
				t.Errorf("backend received %d requests, want none", n)
			}
		})
	}
}

func TestTxnErrorNamesTheOffendingOp(t *testing.T) {
	h := newHarness(t, Options{})
	rec := h.do("POST", "/v1/txn", `{"success": [{"get": {"key": "a"}}, {"txn": {"failure": [{"put": {"key": ""}}]}}]}`)
	expectError(t, rec, 400, "empty_key")
	if want := "txn.success[1].txn.failure[0].put"; !strings.Contains(rec.Body.String(), want) {
		t.Errorf("message does not name %s: %s", want, rec.Body)
	}
}

func TestTxnMaxOps(t *testing.T) {
	const get = `{"get": {"key": "a"}}`
	const cmp = `{"key": "a", "target": "version", "result": "=", "version": 0}`
	ops := func(n int, op string) string { return strings.TrimSuffix(strings.Repeat(op+",", n), ",") }
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"at the limit", fmt.Sprintf(`{"compare": [%s], "success": [%s], "failure": [%s]}`, ops(2, cmp), ops(2, get), ops(2, get)), true},
		{"too many compares", fmt.Sprintf(`{"compare": [%s]}`, ops(3, cmp)), false},
		{"too many success ops", fmt.Sprintf(`{"success": [%s]}`, ops(3, get)), false},
		{"too many failure ops", fmt.Sprintf(`{"failure": [%s]}`, ops(3, get)), false},
		{"too many ops nested", fmt.Sprintf(`{"success": [{"txn": {"success": [%s]}}]}`, ops(3, get)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, Options{MaxTxnOps: 2})
			rec := h.do("POST", "/v1/txn", tc.body)
			if tc.ok {
				expectJSON(t, rec, 200, `{"succeeded":true,"revision":1,"responses":[
					{"get":{"kvs":[],"count":0,"more":false}},{"get":{"kvs":[],"count":0,"more":false}}]}`)
				return
			}
			expectError(t, rec, 400, "too_many_ops")
			if n := len(h.f.requests()); n != 0 {
				t.Errorf("backend received %d requests, want none", n)
			}
		})
	}
}

func TestTxnDefaultMaxOps(t *testing.T) {
	h := newHarness(t, Options{})
	body := `{"success": [` + strings.TrimSuffix(strings.Repeat(`{"get": {"key": "a"}},`, DefaultMaxTxnOps+1), ",") + `]}`
	expectError(t, h.do("POST", "/v1/txn", body), 400, "too_many_ops")
}
