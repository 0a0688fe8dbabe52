package etcdcompat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/status"

	"github.com/cairn-kv/cairn/internal/auth"
)

// healthTimeout bounds the reads the health endpoints perform, as etcd's
// request timeout does.
const healthTimeout = 5 * time.Second

// healthCheck is one named check of /livez or /readyz.
type healthCheck struct {
	name string
	run  func(ctx context.Context, st Store) error
}

// livezChecks and readyzChecks are etcd's checks for its two probe
// endpoints, in the order their ?verbose lines are written.
var (
	livezChecks  = []healthCheck{{"serializable_read", readCheck(true)}}
	readyzChecks = []healthCheck{
		{"data_corruption", alarmCheck(pb.AlarmType_CORRUPT)},
		{"serializable_read", readCheck(true)},
		{"linearizable_read", readCheck(false)},
		{"non_learner", nonLearner},
	}
)

// registerHealth adds /health, and /livez and /readyz with a subpath per
// check (/readyz/linearizable_read), answering GET only, as etcd does;
// hm counts their answers.
func registerHealth(mux *http.ServeMux, st Store, hm *HealthMetrics) {
	mux.HandleFunc("/health", hm.getOnly(func(w http.ResponseWriter, r *http.Request) { serveHealth(w, r, st, hm) }))
	for root, checks := range map[string][]healthCheck{"/livez": livezChecks, "/readyz": readyzChecks} {
		mux.HandleFunc(root, hm.getOnly(func(w http.ResponseWriter, r *http.Request) {
			excluded := r.URL.Query()["exclude"]
			var run []healthCheck
			for _, c := range checks {
				if !slices.Contains(excluded, c.name) {
					run = append(run, c)
				}
			}
			serveChecks(w, r, st, run, hm, root[1:])
		}))
		for _, c := range checks {
			mux.HandleFunc(root+"/"+c.name, hm.getOnly(func(w http.ResponseWriter, r *http.Request) {
				serveChecks(w, r, st, []healthCheck{c}, hm, root[1:])
			}))
		}
	}
}

// getOnly is GetOnly for a health endpoint: a refused method is logged
// as etcd logs it, "/health error" for /health and "Health request
// error" with the path for the probes.
func (m *HealthMetrics) getOnly(f http.HandlerFunc) http.HandlerFunc {
	get := GetOnly(f)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			if r.URL.Path == "/health" {
				m.logger().Warn("/health error", zap.Int("status-code", http.StatusMethodNotAllowed))
			} else {
				m.logger().Warn("Health request error", zap.String("path", r.URL.Path), zap.Int("status-code", http.StatusMethodNotAllowed))
			}
		}
		get(w, r)
	}
}

// serveChecks runs checks and answers as etcd's probes do: "ok" in plain
// text, preceded with ?verbose by one "[+]name ok" line per check; a 503
// listing every check, failed ones as "[-]name failed: reason", when any
// fails. hm records each check's outcome under typ ("livez" or "readyz").
func serveChecks(w http.ResponseWriter, r *http.Request, st Store, checks []healthCheck, hm *HealthMetrics, typ string) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	var report strings.Builder
	failed := false
	for _, c := range checks {
		err := c.run(ctx, st)
		hm.ran(typ, c.name, err)
		if err != nil {
			failed = true
			fmt.Fprintf(&report, "[-]%s failed: %s\n", c.name, etcdText(err))
		} else {
			fmt.Fprintf(&report, "[+]%s ok\n", c.name)
		}
	}
	if failed {
		http.Error(w, report.String(), http.StatusServiceUnavailable)
		hm.logger().Error("Health check error", zap.String("path", r.URL.Path), zap.String("reason", report.String()),
			zap.Int("status-code", http.StatusServiceUnavailable))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, verbose := r.URL.Query()["verbose"]; verbose {
		_, _ = w.Write([]byte(report.String()))
	}
	_, _ = w.Write([]byte("ok\n"))
	hm.logger().Debug("Health check OK", zap.String("path", r.URL.Path), zap.String("reason", report.String()),
		zap.Int("status-code", http.StatusOK))
}

// readCheck is a read of one key, local when serializable, else through
// the leader as every linearizable read.
func readCheck(serializable bool) func(context.Context, Store) error {
	return func(ctx context.Context, st Store) error {
		return healthRead(ctx, st, serializable)
	}
}

// etcdText is err worded as etcd's server words it: the message of the
// status etcd sends for it ("etcdserver: request timed out"), or err's own
// text where etcd has none of its own (a context's error).
func etcdText(err error) string {
	if s, ok := status.FromError(toGRPCError(err)); ok {
		return s.Message()
	}
	return err.Error()
}

// healthRead is the read behind /health and the read probes, made as
// root as etcd makes it, so that it passes whether auth is on or not.
func healthRead(ctx context.Context, st Store, serializable bool) error {
	ctx = auth.WithUser(ctx, auth.RootUser)
	_, err := st.Range(ctx, &pb.RangeRequest{Key: []byte("health"), KeysOnly: true, Limit: 1, Serializable: serializable})
	return err
}

// alarmCheck fails while an alarm of type typ is active on any member.
func alarmCheck(typ pb.AlarmType) func(context.Context, Store) error {
	return func(_ context.Context, st Store) error {
		for _, a := range st.Alarms() {
			if a.Alarm == typ {
				return fmt.Errorf("alarm activated: %s", typ)
			}
		}
		return nil
	}
}

// nonLearner fails on a learner, which etcd does not count as ready.
func nonLearner(ctx context.Context, st Store) error {
	s, err := st.Status(ctx)
	if err != nil {
		return err
	}
	if s.IsLearner {
		return errors.New("not supported for learner")
	}
	return nil
}

// healthBody is the body of /health.
type healthBody struct {
	Health string `json:"health"`
	Reason string `json:"reason"`
}

// serveHealth answers like etcd's /health: {"health":"true","reason":""}
// when no alarm is active (but those named by ?exclude=NOSPACE and the
// like), the member knows a leader (unless ?serializable=true) and it can
// serve a read (linearizable unless ?serializable=true), else a 503 with
// "false" and the reason of the first check that failed ("ALARM NOSPACE"
// for the first alarm found, "RAFT NO LEADER", "RANGE ERROR:..."). etcd
// sends the JSON as plain text, and so does Cairn.
func serveHealth(w http.ResponseWriter, r *http.Request, st Store, hm *HealthMetrics) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	serializable := r.URL.Query().Get("serializable") == "true"
	lg := hm.logger()
	h := healthBody{Health: "true"}
	if a := firstAlarm(st, r.URL.Query()["exclude"]); a != nil {
		h = healthBody{Health: "false", Reason: alarmReason(a.Alarm)}
		lg.Warn("serving /health false due to an alarm", zap.Stringer("alarm", a))
	} else if !serializable && leaderless(ctx, st) {
		h = healthBody{Health: "false", Reason: "RAFT NO LEADER"}
		lg.Warn("serving /health false; no leader")
	} else if err := healthRead(ctx, st, serializable); err != nil {
		h = healthBody{Health: "false", Reason: "RANGE ERROR:" + etcdText(err)}
		lg.Warn("serving /health false; Range fails", zap.Error(err))
	}
	hm.health(h.Health == "true")
	body, _ := json.Marshal(h)
	if h.Health != "true" {
		http.Error(w, string(body), http.StatusServiceUnavailable)
		lg.Warn("/health error", zap.String("output", string(body)), zap.Int("status-code", http.StatusServiceUnavailable))
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write(body)
	lg.Debug("/health OK", zap.Int("status-code", http.StatusOK))
}

// leaderless reports whether the member's status names no leader.
func leaderless(ctx context.Context, st Store) bool {
	s, err := st.Status(ctx)
	return err == nil && s.Leader == 0
}

// firstAlarm is the first active alarm whose type is not excluded (by
// name: NOSPACE, CORRUPT), nil if none.
func firstAlarm(st Store, excluded []string) *pb.AlarmMember {
	for _, a := range st.Alarms() {
		if !slices.Contains(excluded, a.Alarm.String()) {
			return a
		}
	}
	return nil
}

// alarmReason is how etcd's /health names an active alarm.
func alarmReason(t pb.AlarmType) string {
	switch t {
	case pb.AlarmType_NOSPACE:
		return "ALARM NOSPACE"
	case pb.AlarmType_CORRUPT:
		return "ALARM CORRUPT"
	}
	return "ALARM UNKNOWN"
}
