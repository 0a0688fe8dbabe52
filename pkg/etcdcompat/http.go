package etcdcompat

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	gw "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	etcdgw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cairn-kv/cairn/internal/store"
)

// clusterVersion is the cluster version /version reports.
const clusterVersion = "3.7.0"

// healthTimeout bounds the read /health performs, as etcd's does.
const healthTimeout = 5 * time.Second

// RegisterHTTP adds etcd's HTTP endpoints on the client port to mux: the
// grpc-gateway JSON API under /v3/ (served by calling the gRPC API through
// conn, as etcd does), /health, /livez, /readyz and /version.
func RegisterHTTP(ctx context.Context, mux *http.ServeMux, st Store, conn *grpc.ClientConn) error {
	gwmux := gw.NewServeMux(gw.WithMarshalerOption(gw.MIMEWildcard, &gw.HTTPBodyMarshaler{
		Marshaler: &gw.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	for _, register := range []func(context.Context, *gw.ServeMux, *grpc.ClientConn) error{
		etcdgw.RegisterKVHandler,
		etcdgw.RegisterWatchHandler,
		etcdgw.RegisterLeaseHandler,
		etcdgw.RegisterClusterHandler,
		etcdgw.RegisterMaintenanceHandler,
		lockgw.RegisterLockHandler,
		electiongw.RegisterElectionHandler,
	} {
		if err := register(ctx, gwmux, conn); err != nil {
			return err
		}
	}
	mux.Handle("/v3/", gwmux)
	mux.HandleFunc("/version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"etcdserver": store.Version, "etcdcluster": clusterVersion})
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { serveHealth(w, r, st) })
	ok := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok"))
	}
	mux.HandleFunc("/livez", ok)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := check(r, st); reason != "" {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		ok(w, r)
	})
	return nil
}

// serveHealth answers like etcd's /health: {"health":"true","reason":""} when the
// member has a leader and can serve a read, 503 with a reason otherwise.
func serveHealth(w http.ResponseWriter, r *http.Request, st Store) {
	if reason := check(r, st); reason != "" {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"health": "false", "reason": reason})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"health": "true", "reason": ""})
}

// check performs etcd's health read (linearizable unless
// ?serializable=true) and returns a failure reason, or "".
func check(r *http.Request, st Store) string {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	req := &pb.RangeRequest{Key: []byte("health"), Serializable: r.URL.Query().Get("serializable") == "true"}
	if _, err := st.Range(ctx, req); err != nil {
		return "RANGE ERROR:" + err.Error()
	}
	return ""
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
