package etcdcompat

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

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
	return &pb.StatusResponse{Leader: 1}, nil
}

// leaderlessStore is a member that knows no leader but serves
// serializable reads.
type leaderlessStore struct{ unreadableStore }

func (leaderlessStore) Range(context.Context, *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Header: &pb.ResponseHeader{}}, nil
}
func (leaderlessStore) Status(context.Context) (*pb.StatusResponse, error) {
	return &pb.StatusResponse{}, nil
}

// TestHealthWithoutLeader: as etcd's, /health of a member that knows no
// leader says so before it tries a read, unless asked for a serializable
// check, which it passes.
func TestHealthWithoutLeader(t *testing.T) {
	mux := http.NewServeMux()
	registerHealth(mux, leaderlessStore{}, nil)
	for path, want := range map[string]struct {
		code int
		body string
	}{
		"/health":                   {http.StatusServiceUnavailable, `{"health":"false","reason":"RAFT NO LEADER"}`},
		"/health?serializable=true": {http.StatusOK, `{"health":"true","reason":""}`},
	} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body, _ := io.ReadAll(rec.Body)
		if rec.Code != want.code || strings.TrimSpace(string(body)) != want.body {
			t.Errorf("%s: %d %q, want %d %q", path, rec.Code, body, want.code, want.body)
		}
	}
}

// TestHealthWordsErrorsAsEtcd: a failed read shows in /health's reason and
// in /readyz's report with etcd's text for the error, not Cairn's.
func TestHealthWordsErrorsAsEtcd(t *testing.T) {
	mux := http.NewServeMux()
	registerHealth(mux, unreadableStore{err: store.ErrTimeout}, nil)
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

// TestHealthMetrics: /health counts its answers, and /livez and /readyz
// (and their per-check paths) record each check's last outcome and count
// its runs by outcome, labelled as etcd labels them.
func TestHealthMetrics(t *testing.T) {
	hm := NewHealthMetrics(nil)
	mux := http.NewServeMux()
	registerHealth(mux, unreadableStore{err: store.ErrTimeout}, hm)
	for _, path := range []string{"/health", "/health", "/readyz", "/readyz/non_learner", "/livez"} {
		mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", path, nil))
	}
	for name, tc := range map[string]struct {
		c    prometheus.Collector
		want float64
	}{
		"health failures":                   {hm.failures, 2},
		"health successes":                  {hm.success, 0},
		"readyz linearizable_read":          {hm.check.WithLabelValues("readyz", "linearizable_read"), 0},
		"readyz non_learner":                {hm.check.WithLabelValues("readyz", "non_learner"), 1},
		"readyz non_learner successes":      {hm.checks.WithLabelValues("readyz", "non_learner", "success"), 2},
		"readyz linearizable_read errors":   {hm.checks.WithLabelValues("readyz", "linearizable_read", "error"), 1},
		"livez serializable_read errors":    {hm.checks.WithLabelValues("livez", "serializable_read", "error"), 1},
		"livez serializable_read successes": {hm.checks.WithLabelValues("livez", "serializable_read", "success"), 0},
	} {
		if got := testutil.ToFloat64(tc.c); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

// alarmedStore is a member with an active NOSPACE alarm.
type alarmedStore struct{ unreadableStore }

func (alarmedStore) Alarms() []*pb.AlarmMember {
	return []*pb.AlarmMember{{MemberID: 1, Alarm: pb.AlarmType_NOSPACE}}
}

// TestHealthFailuresLogged: as etcd's, a /health answered false is logged
// as "/health error" with the answer, after a warning that names the
// failed check, and a failed /livez or /readyz as "Health check error";
// answers of true log only at debug level ("/health OK", "Health check
// OK"); a method other than GET is refused with 405 and logged as etcd
// logs it.
func TestHealthFailuresLogged(t *testing.T) {
	type line struct {
		level zapcore.Level
		msg   string
	}
	for _, tc := range []struct {
		st     Store
		method string
		path   string
		want   []line
	}{
		{unreadableStore{err: store.ErrTimeout}, "GET", "/health", []line{{zapcore.WarnLevel, "serving /health false; Range fails"}, {zapcore.WarnLevel, "/health error"}}},
		{leaderlessStore{}, "GET", "/health", []line{{zapcore.WarnLevel, "serving /health false; no leader"}, {zapcore.WarnLevel, "/health error"}}},
		{alarmedStore{}, "GET", "/health", []line{{zapcore.WarnLevel, "serving /health false due to an alarm"}, {zapcore.WarnLevel, "/health error"}}},
		{unreadableStore{err: store.ErrTimeout}, "GET", "/readyz", []line{{zapcore.ErrorLevel, "Health check error"}}},
		{leaderlessStore{}, "GET", "/health?serializable=true", []line{{zapcore.DebugLevel, "/health OK"}}},
		{leaderlessStore{}, "GET", "/livez", []line{{zapcore.DebugLevel, "Health check OK"}}},
		{leaderlessStore{}, "POST", "/health", []line{{zapcore.WarnLevel, "/health error"}}},
		{leaderlessStore{}, "POST", "/readyz/non_learner", []line{{zapcore.WarnLevel, "Health request error"}}},
	} {
		core, logs := observer.New(zapcore.DebugLevel)
		mux := http.NewServeMux()
		registerHealth(mux, tc.st, NewHealthMetrics(zap.New(core)))
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if tc.method != "GET" && rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, want 405", tc.method, tc.path, rec.Code)
		}
		var got []line
		for _, e := range logs.All() {
			got = append(got, line{e.Level, e.Message})
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%T %s %s logged %v, want %v", tc.st, tc.method, tc.path, got, tc.want)
		}
		for _, e := range logs.FilterMessage("/health error").All() {
			if f := e.ContextMap(); tc.method == "GET" && (f["status-code"] != int64(503) || !strings.Contains(f["output"].(string), `"health":"false"`)) {
				t.Errorf("/health error fields: %v", f)
			}
		}
	}
}
