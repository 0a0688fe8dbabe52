package test

// Cairn's REST API (api/openapi/httpapi.yaml) end to end, on both engines.
// Each table is played in order on a fresh member, so revisions are those
// of a fresh store: revision 1 is empty and each write takes the next.

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	get_   = http.MethodGet
	put_   = http.MethodPut
	del_   = http.MethodDelete
	post_  = http.MethodPost
	ok     = http.StatusOK
	bad    = http.StatusBadRequest
	absent = http.StatusNotFound
)

func TestHTTPKV(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		play(t, m, []exchange{
			{"get of a missing key is 404", get_, "/v1/kv/foo", "", absent, `{"error":{"code":"key_not_found"}}`},
			{"put answers the new revision", put_, "/v1/kv/foo", "bar", ok, `{"revision":2}`},
			{"get answers the key and the current revision", get_, "/v1/kv/foo", "", ok,
				`{"key":"foo","value":"bar","create_revision":2,"mod_revision":2,"version":1,"revision":2}`},
			{"put with prev_kv answers the replaced key", put_, "/v1/kv/foo?prev_kv=true", "baz", ok,
				`{"revision":3,"prev_kv":{"key":"foo","value":"bar","create_revision":2,"mod_revision":2,"version":1}}`},
			{"put with prev_kv of a new key has no prev_kv", put_, "/v1/kv/foo/a?prev_kv=true", "1", ok, `{"revision":4}`},
			{"put foo/b", put_, "/v1/kv/foo/b", "2", ok, `{"revision":5}`},
			{"put fop", put_, "/v1/kv/fop", "3", ok, `{"revision":6}`},
			{"get at a past revision", get_, "/v1/kv/foo?revision=2", "", ok,
				`{"key":"foo","value":"bar","create_revision":2,"mod_revision":2,"version":1,"revision":6}`},
			{"get at a revision before the key existed is 404", get_, "/v1/kv/fop?revision=5", "", absent, `{"error":{"code":"key_not_found"}}`},
			{"get keys_only leaves the value empty", get_, "/v1/kv/foo?keys_only=true", "", ok,
				`{"key":"foo","value":"","create_revision":2,"mod_revision":3,"version":2,"revision":6}`},
			{"serializable get", get_, "/v1/kv/foo?serializable=true", "", ok,
				`{"key":"foo","value":"baz","create_revision":2,"mod_revision":3,"version":2,"revision":6}`},
			{"prefix lists the keys in key order", get_, "/v1/kv/foo?prefix=true", "", ok, `{"kvs":[
				{"key":"foo","value":"baz","create_revision":2,"mod_revision":3,"version":2},
				{"key":"foo/a","value":"1","create_revision":4,"mod_revision":4,"version":1},
				{"key":"foo/b","value":"2","create_revision":5,"mod_revision":5,"version":1}],
				"count":3,"more":false,"revision":6}`},
			{"bare ?prefix means true", get_, "/v1/kv/fo?prefix&count_only", "", ok, `{"kvs":[],"count":4,"more":false,"revision":6}`},
			{"limit cuts the list, count is the whole range", get_, "/v1/kv/foo/?prefix=true&limit=1", "", ok,
				`{"kvs":[{"key":"foo/a","value":"1","create_revision":4,"mod_revision":4,"version":1}],"count":2,"more":true,"revision":6}`},
			{"count_only", get_, "/v1/kv/f?prefix=true&count_only=true", "", ok, `{"kvs":[],"count":4,"more":false,"revision":6}`},
			{"prefix keys_only at a past revision", get_, "/v1/kv/foo?prefix=true&keys_only=true&revision=4", "", ok, `{"kvs":[
				{"key":"foo","value":"","create_revision":2,"mod_revision":3,"version":2},
				{"key":"foo/a","value":"","create_revision":4,"mod_revision":4,"version":1}],
				"count":2,"more":false,"revision":6}`},
			{"prefix matching nothing is an empty list", get_, "/v1/kv/nothing?prefix=true", "", ok, `{"kvs":[],"count":0,"more":false,"revision":6}`},
			{"limit without prefix is 400", get_, "/v1/kv/foo?limit=1", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"count_only without prefix is 400", get_, "/v1/kv/foo?count_only=true", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"a future revision is 400", get_, "/v1/kv/foo?revision=100", "", bad, `{"error":{"code":"future_revision"}}`},
			{"an unknown parameter is 400", get_, "/v1/kv/foo?prefx=true", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"a repeated parameter is 400", get_, "/v1/kv/foo?revision=2&revision=3", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"a revision that is not a number is 400", get_, "/v1/kv/foo?revision=abc", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"a negative limit is 400", get_, "/v1/kv/foo?prefix=true&limit=-1", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"a flag that is not a boolean is 400", get_, "/v1/kv/foo?prefix=maybe", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"get of the empty key is 400", get_, "/v1/kv/", "", bad, `{"error":{"code":"empty_key"}}`},
			{"put of the empty key is 400", put_, "/v1/kv/", "v", bad, `{"error":{"code":"empty_key"}}`},
			{"delete of the empty key is 400", del_, "/v1/kv/", "", bad, `{"error":{"code":"empty_key"}}`},
			{"put with a lease that does not exist is 404", put_, "/v1/kv/x?lease=7587862369472446213", "v", absent, `{"error":{"code":"lease_not_found"}}`},
			{"put with ignore_value of a missing key is 404", put_, "/v1/kv/nokey?ignore_value=true", "", absent, `{"error":{"code":"key_not_found"}}`},
			{"put with ignore_value and a body is 400", put_, "/v1/kv/fop?ignore_value=true", "x", bad, `{"error":{"code":"value_provided"}}`},
			{"put with ignore_lease and a lease is 400", put_, "/v1/kv/fop?ignore_lease=true&lease=5", "x", bad, `{"error":{"code":"lease_provided"}}`},
			{"put with ignore_value keeps the value", put_, "/v1/kv/fop?ignore_value=true&prev_kv=true", "", ok,
				`{"revision":7,"prev_kv":{"key":"fop","value":"3","create_revision":6,"mod_revision":6,"version":1}}`},
			{"the kept value", get_, "/v1/kv/fop", "", ok, `{"key":"fop","value":"3","create_revision":6,"mod_revision":7,"version":2,"revision":7}`},
			{"put of an empty body stores the empty value", put_, "/v1/kv/empty", "", ok, `{"revision":8}`},
			{"the empty value", get_, "/v1/kv/empty", "", ok, `{"key":"empty","value":"","create_revision":8,"mod_revision":8,"version":1,"revision":8}`},
			{"delete of a key", del_, "/v1/kv/foo/a", "", ok, `{"deleted":1,"revision":9}`},
			{"delete of a missing key is 404", del_, "/v1/kv/foo/a", "", absent, `{"error":{"code":"key_not_found"}}`},
			{"delete of a prefix with prev_kv", del_, "/v1/kv/foo?prefix=true&prev_kv=true", "", ok, `{"deleted":2,"prev_kvs":[
				{"key":"foo","value":"baz","create_revision":2,"mod_revision":3,"version":2},
				{"key":"foo/b","value":"2","create_revision":5,"mod_revision":5,"version":1}],"revision":10}`},
			{"delete of a prefix matching nothing is 200", del_, "/v1/kv/zzz?prefix=true", "", ok, `{"deleted":0,"revision":10}`},
			{"a deleted key is 404", get_, "/v1/kv/foo", "", absent, `{"error":{"code":"key_not_found"}}`},
			{"a deleted key can be read in the past", get_, "/v1/kv/foo?revision=9", "", ok,
				`{"key":"foo","value":"baz","create_revision":2,"mod_revision":3,"version":2,"revision":10}`},
			{"an unknown method is 405", post_, "/v1/kv/foo", "", http.StatusMethodNotAllowed, `{"error":{"code":"method_not_allowed"}}`},
			{"an unknown path is 404", get_, "/v1/nope", "", absent, `{"error":{"code":"not_found"}}`},
			{"a body over --max-request-bytes is 413", put_, "/v1/kv/big", strings.Repeat("x", 3<<19+1), http.StatusRequestEntityTooLarge, `{"error":{"code":"request_too_large"}}`},
			{"a body at the limit is too large once wrapped in a request", put_, "/v1/kv/big", strings.Repeat("x", 3<<19), http.StatusRequestEntityTooLarge, `{"error":{"code":"request_too_large"}}`},
			{"a 1 MiB value is fine", put_, "/v1/kv/big", strings.Repeat("x", 1<<20), ok, `{"revision":11}`},
		})
		cli := m.client(t)
		resp, err := cli.Get(ctx(t), "\x00", clientv3.WithFromKey(), clientv3.WithKeysOnly())
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, kv := range resp.Kvs {
			keys = append(keys, string(kv.Key))
		}
		if got, want := strings.Join(keys, " "), "big empty fop"; got != want || resp.Header.Revision != 11 {
			t.Errorf("store holds keys %q at revision %d, want %q at 11", got, resp.Header.Revision, want)
		}
	})
}

func TestHTTPKeysAndEncoding(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		play(t, m, []exchange{
			{"a key may start with / and hold spaces", put_, "/v1/kv//registry/pods/default/my%20pod", "spec", ok, `{"revision":2}`},
			{"the same key read back", get_, "/v1/kv//registry/pods/default/my%20pod", "", ok,
				`{"key":"/registry/pods/default/my pod","value":"spec","create_revision":2,"mod_revision":2,"version":1,"revision":2}`},
			{"%2F is a slash in the key", put_, "/v1/kv/a%2Fb", "escaped", ok, `{"revision":3}`},
			{"a literal slash names the same key", get_, "/v1/kv/a/b", "", ok,
				`{"key":"a/b","value":"escaped","create_revision":3,"mod_revision":3,"version":1,"revision":3}`},
			{"the path is never cleaned", put_, "/v1/kv/a//b/../c/./d", "raw path", ok, `{"revision":4}`},
			{"escaped ? # and %", put_, "/v1/kv/q%3Fx%23y%25z", "special", ok, `{"revision":5}`},
			{"non-ASCII keys and values", put_, "/v1/kv/%D0%BA%D0%BB%D1%8E%D1%87", "значение", ok, `{"revision":6}`},
			{"read back as UTF-8 text", get_, "/v1/kv/%D0%BA%D0%BB%D1%8E%D1%87", "", ok,
				`{"key":"ключ","value":"значение","create_revision":6,"mod_revision":6,"version":1,"revision":6}`},
			{"a prefix with slashes", get_, "/v1/kv//registry/?prefix=true&keys_only=true", "", ok,
				`{"kvs":[{"key":"/registry/pods/default/my pod","value":"","create_revision":2,"mod_revision":2,"version":1}],"count":1,"more":false,"revision":6}`},
			{"binary key and value in base64", put_, "/v1/kv/AP8=?encoding=base64", "AP8B\n", ok, `{"revision":7}`},
			{"read back in base64", get_, "/v1/kv/AP8=?encoding=base64", "", ok,
				`{"key":"AP8=","value":"AP8B","encoding":"base64","create_revision":7,"mod_revision":7,"version":1,"revision":7}`},
			{"URL-safe unpadded base64 names the same key", get_, "/v1/kv/AP8?encoding=base64", "", ok,
				`{"key":"AP8=","value":"AP8B","encoding":"base64","create_revision":7,"mod_revision":7,"version":1,"revision":7}`},
			{"binary read without encoding comes back base64 and marked", get_, "/v1/kv/%00%FF", "", ok,
				`{"key":"AP8=","value":"AP8B","encoding":"base64","create_revision":7,"mod_revision":7,"version":1,"revision":7}`},
			{"a raw binary body is stored as is", put_, "/v1/kv/raw", "\xff\xfe\x00", ok, `{"revision":8}`},
			{"and read back base64 and marked", get_, "/v1/kv/raw", "", ok,
				`{"key":"cmF3","value":"//4A","encoding":"base64","create_revision":8,"mod_revision":8,"version":1,"revision":8}`},
			{"text keys under base64 encoding", get_, "/v1/kv/YS9i?encoding=base64", "", ok,
				`{"key":"YS9i","value":"ZXNjYXBlZA==","encoding":"base64","create_revision":3,"mod_revision":3,"version":1,"revision":8}`},
			{"a base64 prefix", get_, "/v1/kv/AA?encoding=base64&prefix=true&keys_only=true", "", ok,
				`{"kvs":[{"key":"AP8=","value":"","encoding":"base64","create_revision":7,"mod_revision":7,"version":1}],"count":1,"more":false,"revision":8}`},
			{"a key that is not base64 is 400", get_, "/v1/kv/!!!?encoding=base64", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"a body that is not base64 is 400", put_, "/v1/kv/AP8=?encoding=base64", "not base64!", bad, `{"error":{"code":"invalid_argument"}}`},
			{"an unknown encoding is 400", get_, "/v1/kv/foo?encoding=hex", "", bad, `{"error":{"code":"invalid_argument"}}`},
		})
		// The etcd API sees exactly the bytes the REST API was given.
		cli := m.client(t)
		want := map[string]struct {
			value string
			rev   int64
		}{
			"/registry/pods/default/my pod": {"spec", 2},
			"a/b":                           {"escaped", 3},
			"a//b/../c/./d":                 {"raw path", 4},
			"q?x#y%z":                       {"special", 5},
			"ключ":                          {"значение", 6},
			"\x00\xff":                      {"\x00\xff\x01", 7},
			"raw":                           {"\xff\xfe\x00", 8},
		}
		resp, err := cli.Get(ctx(t), "\x00", clientv3.WithFromKey())
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = true
			w, ok := want[string(kv.Key)]
			if !ok {
				t.Errorf("etcd API sees unexpected key %q", kv.Key)
				continue
			}
			if string(kv.Value) != w.value || kv.ModRevision != w.rev {
				t.Errorf("etcd API: %q = %q at revision %d, want %q at %d", kv.Key, kv.Value, kv.ModRevision, w.value, w.rev)
			}
		}
		for k := range want {
			if !got[k] {
				t.Errorf("etcd API does not see key %q", k)
			}
		}
	})
}

// manyOps is a JSON list of n put ops on distinct keys.
func manyOps(n int) string {
	var ops []string
	for i := range n {
		ops = append(ops, fmt.Sprintf(`{"put":{"key":"k%03d","value":"v"}}`, i))
	}
	return "[" + strings.Join(ops, ",") + "]"
}

func TestHTTPTxn(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		const cfgV2 = `{"key":"cfg","value":"v2","create_revision":2,"mod_revision":3,"version":2}`
		play(t, m, []exchange{
			{"setup", put_, "/v1/kv/cfg", "v1", ok, `{"revision":2}`},
			{"compare-and-swap that holds runs success", post_, "/v1/txn", `{
				"compare": [{"key":"cfg","target":"value","result":"=","value":"v1"}],
				"success": [{"put":{"key":"cfg","value":"v2","prev_kv":true}}, {"get":{"key":"cfg"}}],
				"failure": [{"get":{"key":"cfg"}}]}`, ok,
				`{"succeeded":true,"revision":3,"responses":[
					{"put":{"prev_kv":{"key":"cfg","value":"v1","create_revision":2,"mod_revision":2,"version":1}}},
					{"get":{"kvs":[` + cfgV2 + `],"count":1,"more":false}}]}`},
			{"a compare that fails runs failure and is still 200", post_, "/v1/txn", `{
				"compare": [{"key":"cfg","target":"value","result":"=","value":"v1"}],
				"success": [{"put":{"key":"cfg","value":"v2"}}],
				"failure": [{"get":{"key":"cfg"}}]}`, ok,
				`{"succeeded":false,"revision":3,"responses":[{"get":{"kvs":[` + cfgV2 + `],"count":1,"more":false}}]}`},
			{"require_success makes a failed compare 412 with the failure results", post_, "/v1/txn", `{
				"compare": [{"key":"cfg","target":"value","result":"=","value":"v1"}],
				"success": [{"put":{"key":"cfg","value":"v2"}}],
				"failure": [{"get":{"key":"cfg"}}],
				"require_success": true}`, http.StatusPreconditionFailed,
				`{"error":{"code":"compare_failed"},"succeeded":false,"revision":3,"responses":[{"get":{"kvs":[` + cfgV2 + `],"count":1,"more":false}}]}`},
			{"compare on mod revision, delete with prev_kv", post_, "/v1/txn", `{
				"compare": [{"key":"cfg","target":"mod","result":"=","mod_revision":3}],
				"success": [{"delete":{"key":"cfg","prev_kv":true}}]}`, ok,
				`{"succeeded":true,"revision":4,"responses":[{"delete":{"deleted":1,"prev_kvs":[` + cfgV2 + `]}}]}`},
			{"create revision 0 means the key does not exist; writes share a revision", post_, "/v1/txn", `{
				"compare": [{"key":"cfg","target":"create","result":"=","create_revision":0}],
				"success": [{"put":{"key":"cfg","value":"new"}}, {"put":{"key":"other","value":"o"}}]}`, ok,
				`{"succeeded":true,"revision":5,"responses":[{"put":{}},{"put":{}}]}`},
			{"version and lease compares, keys_only prefix get", post_, "/v1/txn", `{
				"compare": [{"key":"cfg","target":"version","result":"=","version":1}, {"key":"cfg","target":"lease","result":"=","lease":"0"}],
				"success": [{"get":{"key":"c","prefix":true,"keys_only":true}}]}`, ok,
				`{"succeeded":true,"revision":5,"responses":[{"get":{"kvs":[{"key":"cfg","value":"","create_revision":5,"mod_revision":5,"version":1}],"count":1,"more":false}}]}`},
			{"a prefix compare holds for every key; count_only over a range", post_, "/v1/txn", `{
				"compare": [{"key":"o","prefix":true,"target":"version","result":">","version":0}],
				"success": [{"get":{"key":"a","range_end":"z","count_only":true}}]}`, ok,
				`{"succeeded":true,"revision":5,"responses":[{"get":{"kvs":[],"count":2,"more":false}}]}`},
			{"a range compare that fails for one key fails", post_, "/v1/txn", `{
				"compare": [{"key":"a","range_end":"z","target":"value","result":"=","value":"new"}],
				"success": [{"put":{"key":"x","value":"1"}}]}`, ok,
				`{"succeeded":false,"revision":5,"responses":[]}`},
			{"nested txn", post_, "/v1/txn", `{
				"success": [{"txn":{
					"compare": [{"key":"cfg","target":"value","result":"=","value":"new"}],
					"success": [{"put":{"key":"n","value":"1"}}],
					"failure": [{"put":{"key":"n","value":"0"}}]}}]}`, ok,
				`{"succeeded":true,"revision":6,"responses":[{"txn":{"succeeded":true,"responses":[{"put":{}}]}}]}`},
			{"an empty txn succeeds and writes nothing", post_, "/v1/txn", `{}`, ok, `{"succeeded":true,"revision":6,"responses":[]}`},
			{"a txn reads its own writes", post_, "/v1/txn", `{"success":[{"put":{"key":"n","value":"2"}},{"get":{"key":"n"}}]}`, ok,
				`{"succeeded":true,"revision":7,"responses":[{"put":{}},{"get":{"kvs":[{"key":"n","value":"2","create_revision":6,"mod_revision":7,"version":2}],"count":1,"more":false}}]}`},
			{"binary data in a base64 txn", post_, "/v1/txn?encoding=base64", `{
				"compare": [{"key":"AP8=","target":"version","result":"=","version":0}],
				"success": [{"put":{"key":"AP8=","value":"AQI="}}, {"get":{"key":"AP8="}}]}`, ok,
				`{"succeeded":true,"revision":8,"responses":[{"put":{}},{"get":{"kvs":[{"key":"AP8=","value":"AQI=","encoding":"base64","create_revision":8,"mod_revision":8,"version":1}],"count":1,"more":false}}]}`},
			{"a get at a past revision in a txn", post_, "/v1/txn", `{"success":[{"get":{"key":"n","revision":6}}]}`, ok,
				`{"succeeded":true,"revision":8,"responses":[{"get":{"kvs":[{"key":"n","value":"1","create_revision":6,"mod_revision":6,"version":1}],"count":1,"more":false}}]}`},

			{"malformed JSON is 400", post_, "/v1/txn", `{"compare": [`, bad, `{"error":{"code":"malformed_body"}}`},
			{"an empty body is 400", post_, "/v1/txn", ``, bad, `{"error":{"code":"malformed_body"}}`},
			{"an unknown field is 400", post_, "/v1/txn", `{"compares": []}`, bad, `{"error":{"code":"malformed_body"}}`},
			{"a field of the wrong type is 400", post_, "/v1/txn", `{"success": "put"}`, bad, `{"error":{"code":"malformed_body"}}`},
			{"data after the JSON value is 400", post_, "/v1/txn", `{} {}`, bad, `{"error":{"code":"malformed_body"}}`},
			{"an unknown compare target is 400", post_, "/v1/txn", `{"compare":[{"key":"n","target":"size","result":"=","value":"1"}]}`, bad, `{"error":{"code":"invalid_argument"}}`},
			{"an unknown compare result is 400", post_, "/v1/txn", `{"compare":[{"key":"n","target":"value","result":"<=","value":"1"}]}`, bad, `{"error":{"code":"invalid_argument"}}`},
			{"an operand in the wrong field is 400", post_, "/v1/txn", `{"compare":[{"key":"n","target":"value","result":"=","version":1}]}`, bad, `{"error":{"code":"invalid_argument"}}`},
			{"an op of two kinds is 400", post_, "/v1/txn", `{"success":[{"put":{"key":"a","value":"1"},"get":{"key":"a"}}]}`, bad, `{"error":{"code":"invalid_argument"}}`},
			{"an op of no kind is 400", post_, "/v1/txn", `{"success":[{}]}`, bad, `{"error":{"code":"invalid_argument"}}`},
			{"prefix and range_end together are 400", post_, "/v1/txn", `{"success":[{"get":{"key":"a","range_end":"b","prefix":true}}]}`, bad, `{"error":{"code":"invalid_argument"}}`},
			{"129 ops are too many", post_, "/v1/txn", `{"success":` + manyOps(129) + `}`, bad, `{"error":{"code":"too_many_ops"}}`},
			{"129 ops in a nested txn are too many", post_, "/v1/txn", `{"success":[{"txn":{"failure":` + manyOps(129) + `}}]}`, bad, `{"error":{"code":"too_many_ops"}}`},
			{"the same key put twice is 400", post_, "/v1/txn", `{"success":[{"put":{"key":"a","value":"1"}},{"put":{"key":"a","value":"2"}}]}`, bad, `{"error":{"code":"duplicate_key"}}`},
			{"a put inside a deleted range is 400", post_, "/v1/txn", `{"success":[{"delete":{"key":"a","prefix":true}},{"put":{"key":"ab","value":"2"}}]}`, bad, `{"error":{"code":"duplicate_key"}}`},
			{"an empty key in an op is 400", post_, "/v1/txn", `{"success":[{"put":{"key":"","value":"1"}}]}`, bad, `{"error":{"code":"empty_key"}}`},
			{"an empty key in a compare is 400", post_, "/v1/txn", `{"compare":[{"key":"","target":"version","result":"=","version":0}]}`, bad, `{"error":{"code":"empty_key"}}`},
			{"a lease that does not exist is 404", post_, "/v1/txn", `{"success":[{"put":{"key":"a","value":"1","lease":"7587862369472446213"}}]}`, absent, `{"error":{"code":"lease_not_found"}}`},
			{"ignore_value of a missing key is 404", post_, "/v1/txn", `{"success":[{"put":{"key":"nokey","ignore_value":true}}]}`, absent, `{"error":{"code":"key_not_found"}}`},
			{"a future revision is 400", post_, "/v1/txn", `{"success":[{"get":{"key":"n","revision":100}}]}`, bad, `{"error":{"code":"future_revision"}}`},
			{"a body over --max-request-bytes is 413", post_, "/v1/txn", `{"success":[{"put":{"key":"a","value":"` + strings.Repeat("x", 3<<19) + `"}}]}`,
				http.StatusRequestEntityTooLarge, `{"error":{"code":"request_too_large"}}`},
			{"txn is POST only", get_, "/v1/txn", "", http.StatusMethodNotAllowed, `{"error":{"code":"method_not_allowed"}}`},
			{"an unknown parameter is 400", post_, "/v1/txn?prefix=true", `{}`, bad, `{"error":{"code":"invalid_argument"}}`},
			{"no refused txn has written anything", post_, "/v1/txn", `{"success":[{"get":{"key":"a","range_end":"z","count_only":true}}]}`, ok,
				`{"succeeded":true,"revision":8,"responses":[{"get":{"kvs":[],"count":3,"more":false}}]}`},
		})
	})
}

func TestHTTPCompacted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		cli := m.client(t)
		for _, v := range []string{"v1", "v2", "v3"} { // revisions 2, 3, 4
			if _, err := cli.Put(ctx(t), "k", v); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Compact(ctx(t), 3, clientv3.WithCompactPhysical()); err != nil {
			t.Fatal(err)
		}
		play(t, m, []exchange{
			{"a compacted revision is 410", get_, "/v1/kv/k?revision=2", "", http.StatusGone, `{"error":{"code":"compacted"}}`},
			{"a compacted revision in a range is 410", get_, "/v1/kv/k?prefix=true&revision=2", "", http.StatusGone, `{"error":{"code":"compacted"}}`},
			{"a compacted revision in a txn is 410", post_, "/v1/txn", `{"success":[{"get":{"key":"k","revision":2}}]}`, http.StatusGone, `{"error":{"code":"compacted"}}`},
			{"the compaction revision itself is readable", get_, "/v1/kv/k?revision=3", "", ok,
				`{"key":"k","value":"v2","create_revision":2,"mod_revision":3,"version":2,"revision":4}`},
		})
	})
}

// statusBody is GET /v1/status.
type statusBody struct {
	Version          string   `json:"version"`
	StorageVersion   string   `json:"storage_version"`
	ClusterID        string   `json:"cluster_id"`
	MemberID         string   `json:"member_id"`
	Leader           string   `json:"leader"`
	IsLearner        bool     `json:"is_learner"`
	RaftTerm         uint64   `json:"raft_term"`
	RaftIndex        uint64   `json:"raft_index"`
	RaftAppliedIndex uint64   `json:"raft_applied_index"`
	DBSize           int64    `json:"db_size"`
	DBSizeInUse      int64    `json:"db_size_in_use"`
	DBSizeQuota      int64    `json:"db_size_quota"`
	Revision         int64    `json:"revision"`
	Errors           []string `json:"errors"`
}

func TestHTTPStatus(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		cli := m.client(t)
		if _, err := cli.Put(ctx(t), "foo", "bar"); err != nil {
			t.Fatal(err)
		}
		code, body := m.httpDo(t, get_, "/v1/status", nil)
		if code != ok {
			t.Fatalf("GET /v1/status: %d %s", code, body)
		}
		var st statusBody
		decodeJSON(t, body, &st)
		var raw map[string]any
		decodeJSON(t, body, &raw)
		for _, f := range []string{"version", "cluster_id", "member_id", "leader", "is_learner", "raft_term", "raft_index",
			"raft_applied_index", "db_size", "db_size_in_use", "db_size_quota", "revision", "errors"} {
			if _, ok := raw[f]; !ok {
				t.Errorf("status has no %q: %s", f, body)
			}
		}
		for _, id := range []string{"cluster_id", "member_id", "leader"} {
			if _, isString := raw[id].(string); !isString {
				t.Errorf("status %s is %T, want a decimal string", id, raw[id])
			}
		}
		if st.Version != "3.7.3" || st.StorageVersion != "3.7.0" {
			t.Errorf("version %q, storage_version %q; want 3.7.3, 3.7.0", st.Version, st.StorageVersion)
		}
		if st.Revision != 2 {
			t.Errorf("revision %d after one put, want 2", st.Revision)
		}
		if st.Leader == "0" || st.Leader != st.MemberID {
			t.Errorf("leader %s, member_id %s: a single member leads itself", st.Leader, st.MemberID)
		}
		if st.RaftTerm == 0 || st.RaftIndex == 0 || st.RaftAppliedIndex == 0 {
			t.Errorf("raft term %d, index %d, applied %d: want non-zero", st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex)
		}
		if st.DBSizeQuota != 2<<30 || st.IsLearner || st.Errors == nil || len(st.Errors) != 0 {
			t.Errorf("db_size_quota %d, is_learner %v, errors %v; want %d, false, []", st.DBSizeQuota, st.IsLearner, st.Errors, 2<<30)
		}
		// The REST API and the etcd API describe the same member.
		es, err := cli.Status(ctx(t), m.clientEP)
		if err != nil {
			t.Fatal(err)
		}
		if st.ClusterID != strconv.FormatUint(es.Header.ClusterId, 10) || st.MemberID != strconv.FormatUint(es.Header.MemberId, 10) ||
			st.Leader != strconv.FormatUint(es.Leader, 10) || st.Version != es.Version || st.RaftTerm != es.RaftTerm {
			t.Errorf("REST status %+v disagrees with etcd API status %+v", st, es)
		}
		play(t, m, []exchange{
			{"status takes no parameters", get_, "/v1/status?verbose=1", "", bad, `{"error":{"code":"invalid_argument"}}`},
			{"status is GET only", post_, "/v1/status", "", http.StatusMethodNotAllowed, `{"error":{"code":"method_not_allowed"}}`},
		})
	})
}
