package etcdcompat

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/store"
)

// unreadableStore is a member whose reads fail with err: a leader whose
// disk hangs times its linearizable reads out.
type unreadableStore struct {
	Store
	err error
}

func (s unreadableStore) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return nil, s.err
}
func (unreadableStore) Alarms() []*pb.AlarmMember { return nil }
func (unreadableStore) Status(context.Context) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{}, nil
}

// TestHealthWordsErrorsAsEtcd: a failed read shows in /health's reason and
// in /readyz's report with etcd's text for the error, not Cairn's.
func TestHealthWordsErrorsAsEtcd(t *testing.T) {
	mux := http.NewServeMux()
	registerHealth(mux, unreadableStore{err: store.ErrTimeout})
	for path, want := range map[string]string{
		"/health": `{"health":"false","reason":"RANGE ERROR:etcdserver: request timed out"}`,
		"/readyz": "[-]linearizable_read failed: etcdserver: request timed out\n",
		"/livez":  "[-]serializable_read failed: etcdserver: request timed out\n",
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(string(body), want) {
			t.Errorf("%s: %d %q, want 503 with %q", path, rec.Code, body, want)
		}
	}
}
