package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// serveReal serves the API over a real listener, as the member does, and
// returns its address.
func serveReal(t *testing.T, opts Options) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewServer(New(newFakeBackend(), opts))
	go func() { _ = hs.Serve(Listener(l)) }()
	t.Cleanup(func() { _ = hs.Close() })
	return l.Addr().String()
}

// rawExchange writes raw to a new connection and reads one response.
func rawExchange(t *testing.T, addr, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// expectJSONError checks an error answer read off the wire.
func expectJSONError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json; body %q", ct, body)
	}
	var e errorResponse
	if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != code || e.Error.Message == "" {
		t.Errorf("body %q: want an error with code %q and a message (%v)", body, code, err)
	}
}

// TestNetHTTPErrorsAreJSON: requests that net/http refuses before any
// handler runs were answered in plain text; on the REST port every error
// is the API's JSON.
func TestNetHTTPErrorsAreJSON(t *testing.T) {
	addr := serveReal(t, Options{})
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"bad escape in the path", "GET /v1/kv/%ZZ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"negative Content-Length", "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"two Content-Lengths", "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nv", 400},
		{"gzip Transfer-Encoding", "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"no Host header", "GET /v1/status HTTP/1.1\r\n\r\n", 400},
		{"malformed header line", "GET /v1/status HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400},
		{"malformed request line", "GET\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawExchange(t, addr, tc.raw)
			expectJSONError(t, resp, body, tc.status, "malformed_request")
		})
	}
	// Handlers' own answers pass through unchanged, errors included.
	resp, body := rawExchange(t, addr, "GET /v1/kv/a HTTP/1.1\r\nHost: x\r\n\r\n")
	expectJSONError(t, resp, body, 404, "key_not_found")
	resp, body = rawExchange(t, addr, "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"revision"`) {
		t.Errorf("PUT: %d %s", resp.StatusCode, body)
	}
}

// TestStalledBodyIsTimedOut: a client that declares a large body and then
// stalls was kept connected for ever; it now gets a 408 and its
// connection is closed.
func TestStalledBodyIsTimedOut(t *testing.T) {
	addr := serveReal(t, Options{BodyTimeout: 300 * time.Millisecond})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_, _ = io.WriteString(c, "PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 104857600\r\n\r\nsome of it")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	expectJSONError(t, resp, body, 408, "request_timeout")
	if _, err := r.ReadByte(); err != io.EOF {
		t.Errorf("after the 408 the connection is still open (read: %v)", err)
	}
}

// slowLeases grants after a delay, failing if the request's context ends
// meanwhile.
type slowLeases struct {
	keyLeases
	delay time.Duration
}

func (l *slowLeases) Grant(ctx context.Context, r *etcdserverpb.LeaseGrantRequest) (*etcdserverpb.LeaseGrantResponse, error) {
	select {
	case <-time.After(l.delay):
		return l.keyLeases.Grant(ctx, r)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestBodyTimeoutEndsWithTheBody: the body deadline does not outlive the
// body. A deadline left on the connection (as http.Server.ReadTimeout
// leaves one) fires while the request is still being served, and net/http,
// which watches the connection for the client going away, takes the
// timeout for a disconnect and cancels the request: a slow grant, a long
// txn or an SSE watch would be cut.
func TestBodyTimeoutEndsWithTheBody(t *testing.T) {
	addr := serveReal(t, Options{BodyTimeout: 200 * time.Millisecond, Leases: &slowLeases{delay: time.Second}})
	resp, body := rawExchange(t, addr, "POST /v1/leases HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{\"ttl\":10}")
	if resp.StatusCode != 200 {
		t.Fatalf("grant served for longer than the body timeout: %d %s", resp.StatusCode, body)
	}
}
