package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/store"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestBackendErrorsMapToStatuses(t *testing.T) {
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{mvcc.ErrEmptyKey, 400, "empty_key"},
		{mvcc.ErrTooManyOps, 400, "too_many_ops"},
		{mvcc.ErrDuplicateKey, 400, "duplicate_key"},
		{mvcc.ErrInvalidSortOption, 400, "invalid_sort_option"},
		{mvcc.ErrValueProvided, 400, "value_provided"},
		{mvcc.ErrLeaseProvided, 400, "lease_provided"},
		{mvcc.ErrFutureRev, 400, "future_revision"},
		{auth.ErrUserEmpty, 401, "auth_required"},
		{mvcc.ErrKeyNotFound, 404, "key_not_found"},
		{mvcc.ErrLeaseNotFound, 404, "lease_not_found"},
		{mvcc.ErrCompacted, 410, "compacted"},
		{store.ErrRequestTooLarge, 413, "request_too_large"},
		{store.ErrTooManyRequests, 429, "too_many_requests"},
		{store.ErrNoLeader, 503, "no_leader"},
		{store.ErrStopped, 503, "stopped"},
		{store.ErrTimeout, 503, "timeout"},
		{context.DeadlineExceeded, 503, "timeout"},
		{context.Canceled, 503, "canceled"},
		{store.ErrNoSpace, 507, "no_space"},
	} {
		t.Run(tc.code, func(t *testing.T) {
			h := newHarness(t, Options{})
			for _, err := range []error{tc.err, fmt.Errorf("apply: %w", tc.err)} {
				h.f.setErr(err)
				rec := h.do("GET", "/v1/kv/a", "")
				expectError(t, rec, tc.status, tc.code)
				if !strings.Contains(rec.Body.String(), tc.err.Error()) {
					t.Errorf("message does not carry %q: %s", tc.err, rec.Body)
				}
			}
			if n := h.logs.Len(); n != 0 {
				t.Errorf("known error logged %d times, want 0", n)
			}
		})
	}
}

func TestEveryEndpointMapsBackendErrors(t *testing.T) {
	for _, tc := range []struct{ method, target, body string }{
		{"GET", "/v1/kv/a", ""},
		{"GET", "/v1/kv/a?prefix=true", ""},
		{"PUT", "/v1/kv/a", "v"},
		{"DELETE", "/v1/kv/a", ""},
		{"POST", "/v1/txn", "{}"},
		{"GET", "/v1/status", ""},
	} {
		h := newHarness(t, Options{})
		h.f.setErr(store.ErrNoLeader)
		expectError(t, h.do(tc.method, tc.target, tc.body), 503, "no_leader")
	}
}

// The fake's own semantics produce these, rather than an injected error.
func TestStoreSemanticErrors(t *testing.T) {
	h := newHarness(t, Options{})
	h.do("PUT", "/v1/kv/a", "v")
	h.f.compacted = 1
	expectError(t, h.do("PUT", "/v1/kv/a?lease=99", "v"), 404, "lease_not_found")
	expectError(t, h.do("PUT", "/v1/kv/b?ignore_value=true", ""), 404, "key_not_found")
	expectError(t, h.do("PUT", "/v1/kv/a?ignore_value=true", "v"), 400, "value_provided")
	expectError(t, h.do("PUT", "/v1/kv/a?ignore_lease=true&lease=5", ""), 400, "lease_provided")
	expectError(t, h.do("GET", "/v1/kv/a?revision=1", ""), 410, "compacted")
	expectError(t, h.do("GET", "/v1/kv/a?prefix&revision=100", ""), 400, "future_revision")
	expectError(t, h.do("POST", "/v1/txn", `{"success": [{"put": {"key": "a", "lease": 99}}]}`), 404, "lease_not_found")
}

func TestUnknownErrorIsAnOpaque500(t *testing.T) {
	h := newHarness(t, Options{})
	h.f.setErr(errors.New("rocksdb: corruption in /var/lib/cairn/000042.sst"))
	rec := h.do("GET", "/v1/kv/a", "")
	expectJSON(t, rec, 500, `{"error":{"code":"internal","message":"internal server error"}}`)
	logs := h.logs.FilterMessage("httpapi: unexpected error").All()
	if len(logs) != 1 || !strings.Contains(fmt.Sprint(logs[0].ContextMap()["error"]), "000042.sst") {
		t.Errorf("want the detail logged once, got %v", h.logs.All())
	}
}

// panickyBackend panics in every call.
type panickyBackend struct {
	Backend
	v any
}

func (p panickyBackend) Status(context.Context) (*etcdserverpb.StatusResponse, error) {
	panic(p.v)
}

func TestPanicIsRecoveredAsLogged500(t *testing.T) {
	h := newHarness(t, Options{})
	h.h = New(panickyBackend{v: "boom"}, Options{Logger: h.log})
	expectJSON(t, h.do("GET", "/v1/status", ""), 500, `{"error":{"code":"internal","message":"internal server error"}}`)
	logs := h.logs.FilterMessage("httpapi: panic serving request").All()
	if len(logs) != 1 || logs[0].ContextMap()["panic"] != "boom" || logs[0].ContextMap()["stack"] == "" {
		t.Errorf("want one panic log with value and stack, got %v", h.logs.All())
	}
}

func TestAbortHandlerPanicPassesThrough(t *testing.T) {
	handler := New(panickyBackend{v: http.ErrAbortHandler}, Options{})
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler", v)
		}
	}()
	handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/status", nil))
}

func TestBadRequestsNeverReachTheBackend(t *testing.T) {
	for _, tc := range []struct {
		method, target, body string
		status               int
		code                 string
	}{
		{"GET", "/v1/kv/a?limit=abc&prefix=true", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?limit=-1&prefix=true", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?limit=5", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?count_only=true", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?revision=1.5", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?revision=99999999999999999999", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?revision=0x10", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?prefix=yes", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?prefx=true", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?prefix=true&prefix=false", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?encoding=hex", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/a?prefix=%zz", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/!!?encoding=base64", "", 400, "invalid_argument"},
		{"GET", "/v1/kv/", "", 400, "empty_key"},
		{"PUT", "/v1/kv/", "v", 400, "empty_key"},
		{"DELETE", "/v1/kv/?prefix=true", "", 400, "empty_key"},
		{"PUT", "/v1/kv/?encoding=base64", "", 400, "empty_key"},
		{"PUT", "/v1/kv/a?lease=abc", "", 400, "invalid_argument"},
		{"PUT", "/v1/kv/a?lease=-5", "", 400, "invalid_argument"},
		{"PUT", "/v1/kv/a?prefix=true", "", 400, "invalid_argument"},
		{"PUT", "/v1/kv/a?prev_kv=maybe", "", 400, "invalid_argument"},
		{"PUT", "/v1/kv/YQ==?encoding=base64", "not base64!", 400, "invalid_argument"},
		{"DELETE", "/v1/kv/a?limit=1", "", 400, "invalid_argument"},
		// JSON text that encoding/json would store as U+FFFD instead of
		// what was sent.
		{"POST", "/v1/txn", "{\"success\":[{\"put\":{\"key\":\"utf\xff\",\"value\":\"v\xfe\"}}]}", 400, "malformed_body"},
		{"POST", "/v1/txn", "{\"success\":[{\"put\":{\"key\":\"k\",\"value\":\"\xed\xa0\x80\"}}]}", 400, "malformed_body"},
		{"POST", "/v1/txn", `{"success":[{"put":{"key":"\ud800","value":"v"}}]}`, 400, "malformed_body"},
		{"POST", "/v1/txn", `{"success":[{"put":{"key":"\udc00\ud800","value":"v"}}]}`, 400, "malformed_body"},
		{"POST", "/v1/txn", `{"success":[{"put":{"key":"k","value":"\ud83d"}}]}`, 400, "malformed_body"},
		{"POST", "/v1/txn", `{"compare":[{"key":"k","target":"value","result":"=","value":"\ud83dx"}]}`, 400, "malformed_body"},
		{"POST", "/v1/txn", "null", 400, "malformed_body"},
		{"POST", "/v1/txn", " \n null ", 400, "malformed_body"},
		{"POST", "/v1/txn", "[]", 400, "malformed_body"},
		{"POST", "/v1/txn", `"txn"`, 400, "malformed_body"},
		{"GET", "/v1/status?verbose=1", "", 400, "invalid_argument"},
		{"GET", "/v1/status?encoding=hex", "", 400, "invalid_argument"},
		{"POST", "/v1/kv/a", "", 405, "method_not_allowed"},
		{"PATCH", "/v1/kv/a", "", 405, "method_not_allowed"},
		{"HEAD", "/v1/status", "", 405, "method_not_allowed"},
		{"GET", "/v1/txn", "", 405, "method_not_allowed"},
		{"PUT", "/v1/status", "", 405, "method_not_allowed"},
		{"GET", "/v1/kv", "", 404, "not_found"},
		{"GET", "/v2/keys/a", "", 404, "not_found"},
		{"GET", "/", "", 404, "not_found"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			h := newHarness(t, Options{})
			rec := h.do(tc.method, tc.target, tc.body)
			if tc.method == "HEAD" {
				if rec.Code != tc.status {
					t.Errorf("status = %d, want %d", rec.Code, tc.status)
				}
			} else {
				expectError(t, rec, tc.status, tc.code)
			}
			if n := len(h.f.requests()); n != 0 {
				t.Errorf("backend received %d requests, want none", n)
			}
		})
	}
}

func TestMethodNotAllowedListsAllowedMethods(t *testing.T) {
	h := newHarness(t, Options{})
	for target, want := range map[string]string{
		"/v1/kv/a%2Fb": "GET, PUT, DELETE",
		"/v1/txn":      "POST",
		"/v1/status":   "GET",
	} {
		rec := h.do("PATCH", target, "")
		expectError(t, rec, 405, "method_not_allowed")
		if got := rec.Header().Get("Allow"); got != want {
			t.Errorf("PATCH %s: Allow = %q, want %q", target, got, want)
		}
	}
}

func TestOversizeBodies(t *testing.T) {
	h := newHarness(t, Options{MaxRequestBytes: 16})
	expectJSON(t, h.do("PUT", "/v1/kv/a", strings.Repeat("x", 16)), 200, `{"revision":2}`)
	expectError(t, h.do("PUT", "/v1/kv/a", strings.Repeat("x", 17)), 413, "request_too_large")
	// The limit is on the body as sent, so base64 counts encoded bytes.
	expectError(t, h.do("PUT", "/v1/kv/YQ==?encoding=base64", "eHh4eHh4eHh4eHh4eHh4"), 413, "request_too_large")
	expectError(t, h.do("POST", "/v1/txn", `{"success": [{"get": {"key": "a"}}]}`), 413, "request_too_large")
	if n := len(h.f.requests()); n != 1 {
		t.Errorf("backend received %d requests, want only the first put", n)
	}

	// Without Content-Length the limit holds too.
	req := httptest.NewRequest("PUT", "/v1/kv/a", strings.NewReader(strings.Repeat("x", 17)))
	req.ContentLength = -1
	rec := httptest.NewRecorder()
	h.h.ServeHTTP(rec, req)
	expectError(t, rec, 413, "request_too_large")
}

func TestDefaultMaxRequestBytes(t *testing.T) {
	h := newHarness(t, Options{})
	expectJSON(t, h.do("PUT", "/v1/kv/a", strings.Repeat("x", DefaultMaxRequestBytes)), 200, `{"revision":2}`)
	expectError(t, h.do("PUT", "/v1/kv/a", strings.Repeat("x", DefaultMaxRequestBytes+1)), 413, "request_too_large")
}

// TestErrorCodesAreDocumented keeps errorTable and the OpenAPI spec in step:
// every code is snake_case and listed in the spec's ErrorCode enum.
func TestErrorCodesAreDocumented(t *testing.T) {
	spec, err := os.ReadFile("../../api/openapi/httpapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	snake := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	codes := []string{internalError.Code}
	for _, e := range errorTable {
		codes = append(codes, e.code)
		if e.status < 400 || e.status > 599 {
			t.Errorf("%s: status %d is not an error status", e.code, e.status)
		}
	}
	for _, code := range codes {
		if !snake.MatchString(code) {
			t.Errorf("code %q is not snake_case", code)
		}
		if !regexp.MustCompile(`(?m)^\s+- ` + code + `$`).Match(spec) {
			t.Errorf("code %q is not in the ErrorCode enum of api/openapi/httpapi.yaml", code)
		}
	}
}
