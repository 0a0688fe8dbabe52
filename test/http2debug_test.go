package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestClusterHTTP2DebugLogsClientAuthority starts three members as etcd's
// e2e framework does in its TestAuthority (GODEBUG=http2debug=2, no
// --http-listen-addr) and checks what that test checks: the first
// `:authority` header each member logs is its client's, not a peer's,
// since etcd's members log no peer HTTP/2. It also checks that such a
// member serves no REST API and that its plain-text client URL, served
// through net/http under http2debug, still answers gRPC and HTTP.
func TestClusterHTTP2DebugLogsClientAuthority(t *testing.T) {
	c := startClusterOpts(t, "memory", 3, clusterOpts{env: []string{"GODEBUG=http2debug=2"}, noREST: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i, m := range c.members {
		cli := m.client(t)
		if _, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v"); err != nil {
			t.Fatalf("put on %s: %v", m.name, err)
		}
		resp, err := cli.Get(ctx, "k", clientv3.WithPrefix())
		if err != nil {
			t.Fatalf("get on %s: %v", m.name, err)
		}
		if resp.Count != int64(i+1) {
			t.Errorf("get on %s: %d keys, want %d", m.name, resp.Count, i+1)
		}
		hr, err := http.Get("http://" + m.clientEP + "/health")
		if err != nil {
			t.Fatalf("/health on %s: %v", m.name, err)
		}
		body, _ := io.ReadAll(hr.Body)
		hr.Body.Close()
		if hr.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
			t.Errorf("/health on %s: %d %s", m.name, hr.StatusCode, body)
		}
	}
	authority := regexp.MustCompile(`http2: decoded hpack field header field ":authority" = "[^"]*"`)
	for _, m := range c.members {
		want := fmt.Sprintf(`http2: decoded hpack field header field ":authority" = %q`, m.clientEP)
		var got string
		// The line of the put above is logged before its answer is sent.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if got = authority.FindString(m.logs()); got != "" {
				break
			}
		}
		if got != want {
			t.Errorf("%s: first :authority logged is %q, want %q", m.name, got, want)
		}
		if strings.Contains(m.logs(), "serving REST API") {
			t.Errorf("%s serves the REST API without --http-listen-addr", m.name)
		}
	}
}
