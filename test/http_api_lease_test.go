package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestHTTPLeases: leases granted over REST are usable from clientv3 and the
// other way round; keep-alive, time-to-live with keys, and revoke (which
// deletes the attached keys) work over REST.
func TestHTTPLeases(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		decode := func(body []byte) map[string]any {
			t.Helper()
			var v map[string]any
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("bad JSON %s: %v", body, err)
			}
			return v
		}

		code, body := m.httpDo(t, http.MethodPost, "/v1/leases", strings.NewReader(`{"ttl": 60}`))
		if code != http.StatusOK {
			t.Fatalf("grant: %d %s", code, body)
		}
		restLease, err := strconv.ParseInt(decode(body)["id"].(string), 10, 64)
		if err != nil || decode(body)["ttl"] != float64(60) {
			t.Fatalf("grant answered %s", body)
		}
		if _, err := cli.Put(ctx(t), "via-grpc", "x", clientv3.WithLease(clientv3.LeaseID(restLease))); err != nil {
			t.Fatalf("gRPC put with a REST lease: %v", err)
		}
		grpcLease, err := cli.Grant(ctx(t), 60)
		if err != nil {
			t.Fatal(err)
		}
		if code, body := m.httpDo(t, http.MethodPut, fmt.Sprintf("/v1/kv/via-rest?lease=%d", grpcLease.ID), strings.NewReader("y")); code != http.StatusOK {
			t.Fatalf("REST put with a gRPC lease: %d %s", code, body)
		}
		ttl, err := cli.TimeToLive(ctx(t), grpcLease.ID, clientv3.WithAttachedKeys())
		if err != nil || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "via-rest" {
			t.Fatalf("gRPC lease keys: %v %v", ttl, err)
		}

		path := fmt.Sprintf("/v1/leases/%d", restLease)
		if code, body := m.httpDo(t, http.MethodPost, path+"/keepalive", nil); code != http.StatusOK || decode(body)["ttl"] != float64(60) {
			t.Fatalf("keepalive: %d %s", code, body)
		}
		code, body = m.httpDo(t, http.MethodGet, path+"?keys=true", nil)
		if got := decode(body); code != http.StatusOK || got["granted_ttl"] != float64(60) || fmt.Sprint(got["keys"]) != "[via-grpc]" {
			t.Fatalf("get lease: %d %s", code, body)
		}
		if code, body := m.httpDo(t, http.MethodDelete, path, nil); code != http.StatusOK {
			t.Fatalf("revoke: %d %s", code, body)
		}
		if resp, err := cli.Get(ctx(t), "via-grpc"); err != nil || len(resp.Kvs) != 0 {
			t.Fatalf("key of a revoked lease still there: %v %v", resp, err)
		}
		for _, req := range []struct{ method, path string }{
			{http.MethodGet, path}, {http.MethodPost, path + "/keepalive"}, {http.MethodDelete, path},
		} {
			if code, body := m.httpDo(t, req.method, req.path, nil); code != http.StatusNotFound || decode(body)["error"].(map[string]any)["code"] != "lease_not_found" {
				t.Fatalf("%s %s of a revoked lease: %d %s", req.method, req.path, code, body)
			}
		}
		if code, _ := m.httpDo(t, http.MethodPost, "/v1/leases", strings.NewReader(fmt.Sprintf(`{"ttl": 60, "id": "%d"}`, grpcLease.ID))); code != http.StatusConflict {
			t.Fatalf("granting an existing ID: %d, want 409", code)
		}
	})
}
