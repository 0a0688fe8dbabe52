package test

// Helpers for REST API tests: a table row is one HTTP exchange and the
// answer it must get.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// exchange is one request to the REST API and the answer it must get.
// want is the exact JSON body; in error bodies only error.code is
// compared (the message is for people and may change, but must be
// there). An empty want checks the status alone.
type exchange struct {
	name   string
	method string
	path   string
	body   string
	status int
	want   string
}

// play sends each exchange in order, each as a subtest, and checks its
// answer. The exchanges share the member, so later ones see earlier writes.
func play(t *testing.T, m *member, exchanges []exchange) {
	t.Helper()
	for _, e := range exchanges {
		t.Run(e.name, func(t *testing.T) {
			status, body := m.httpDo(t, e.method, e.path, strings.NewReader(e.body))
			checkJSON(t, fmt.Sprintf("%s %s", e.method, e.path), status, body, e.status, e.want)
		})
	}
}

// checkJSON checks an HTTP answer against the wanted status and JSON body
// as exchange describes.
func checkJSON(t *testing.T, what string, status int, body []byte, wantStatus int, want string) {
	t.Helper()
	if status != wantStatus {
		t.Errorf("%s: status %d, want %d; body: %s", what, status, wantStatus, truncate(body))
	}
	var got any
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("%s: body is not JSON (%v): %s", what, err, truncate(body))
	}
	if obj, ok := got.(map[string]any); ok {
		if detail, ok := obj["error"].(map[string]any); ok {
			if msg, _ := detail["message"].(string); msg == "" {
				t.Errorf("%s: error without a message: %s", what, truncate(body))
			}
			delete(detail, "message")
		}
	}
	if want == "" {
		return
	}
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON %s: %v", want, err)
	}
	if d := cmp.Diff(w, got); d != "" {
		t.Errorf("%s: body differs (-want +got):\n%s\nbody: %s", what, d, truncate(body))
	}
}

func truncate(b []byte) string {
	if len(b) > 500 {
		return string(b[:500]) + fmt.Sprintf("… (%d bytes)", len(b))
	}
	return string(b)
}

// decodeJSON decodes an HTTP answer body into v.
func decodeJSON(t *testing.T, body []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("decoding %s: %v", truncate(body), err)
	}
}
