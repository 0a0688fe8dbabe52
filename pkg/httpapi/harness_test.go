package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// harness is the REST API over a fakeBackend, with its log captured.
type harness struct {
	t    *testing.T
	f    *fakeBackend
	h    http.Handler
	log  *zap.Logger
	logs *observer.ObservedLogs
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	opts.Logger = zap.New(core)
	f := newFakeBackend()
	return &harness{t: t, f: f, h: New(f, opts), log: opts.Logger, logs: logs}
}

// do serves one request. target is a request URI as it appears on the
// wire, so path escapes such as %2F reach the router unchanged.
func (h *harness) do(method, target, body string) *httptest.ResponseRecorder {
	h.t.Helper()
	rec := httptest.NewRecorder()
	h.h.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
	return rec
}

// lastRequest is the last request the backend received.
func (h *harness) lastRequest() proto.Message {
	h.t.Helper()
	reqs := h.f.requests()
	if len(reqs) == 0 {
		h.t.Fatal("backend received no request")
	}
	return reqs[len(reqs)-1]
}

// expectRequest checks that the backend's last request is want.
func (h *harness) expectRequest(want proto.Message) {
	h.t.Helper()
	if got := h.lastRequest(); !proto.Equal(got, want) {
		h.t.Errorf("backend request:\n got %T {%s}\nwant %T {%s}", got, prototext.Format(got), want, prototext.Format(want))
	}
}

// expectJSON checks the status and that the body is JSON equal to want,
// ignoring key order and spacing.
func expectJSON(t *testing.T, rec *httptest.ResponseRecorder, status int, want string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var got, exp any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("response is not JSON: %v; body %q", err, rec.Body)
	}
	if err := json.Unmarshal([]byte(want), &exp); err != nil {
		t.Fatalf("bad expectation %q: %v", want, err)
	}
	if !reflect.DeepEqual(got, exp) {
		g, _ := json.Marshal(got)
		e, _ := json.Marshal(exp)
		t.Errorf("body:\n got %s\nwant %s", g, e)
	}
}

// expectError checks an error response's status and code, and that it has
// the documented shape.
func expectError(t *testing.T, rec *httptest.ResponseRecorder, status int, code string) {
	t.Helper()
	if rec.Code != status {
		t.Errorf("status = %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error *errorDetail `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil {
		t.Fatalf("not an error body (%v): %s", err, rec.Body)
	}
	if body.Error.Code != code {
		t.Errorf("code = %q, want %q; message %q", body.Error.Code, code, body.Error.Message)
	}
	if body.Error.Message == "" {
		t.Error("error message is empty")
	}
}
