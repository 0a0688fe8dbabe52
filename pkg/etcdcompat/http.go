package etcdcompat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	gw "github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	etcdgw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/cairn-kv/cairn/internal/store"
)

// Versioner is what /version reports beyond the server version;
// *store.Client implements it.
type Versioner interface {
	// ClusterVersion is the cluster version, such as "3.7.0", as this
	// member last applied it.
	ClusterVersion() string
	// StorageVersion is this member's storage version, such as "3.7.0".
	StorageVersion() string
}

// defaultVersion is the cluster and storage version /version reports for
// a store that does not tell them: those of an etcd 3.7 cluster.
const defaultVersion = "3.7.0"

// RegisterHTTP adds etcd's HTTP endpoints on the client port to mux: the
// grpc-gateway JSON API under /v3/ (served by calling the gRPC API through
// conn, as etcd does), /health, /livez, /readyz and /version; hm counts the
// health endpoints' answers.
func RegisterHTTP(ctx context.Context, mux *http.ServeMux, st Store, conn *grpc.ClientConn, hm *HealthMetrics) error {
	gwmux := gw.NewServeMux(gw.WithMarshalerOption(gw.MIMEWildcard, compactJSON{&gw.HTTPBodyMarshaler{
		Marshaler: &gw.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}}))
	for _, register := range []func(context.Context, *gw.ServeMux, *grpc.ClientConn) error{
		etcdgw.RegisterKVHandler,
		etcdgw.RegisterWatchHandler,
		etcdgw.RegisterLeaseHandler,
		etcdgw.RegisterClusterHandler,
		etcdgw.RegisterMaintenanceHandler,
		etcdgw.RegisterAuthHandler,
		lockgw.RegisterLockHandler,
		electiongw.RegisterElectionHandler,
	} {
		if err := register(ctx, gwmux, conn); err != nil {
			return err
		}
	}
	mux.Handle("/v3/", gwmux)
	mux.HandleFunc("/version", GetOnly(versionHandler(st)))
	registerHealth(mux, st, hm)
	return nil
}

// compactJSON is the gateway's marshaler with the whitespace protojson
// adds on purpose taken out: protojson puts a space after some separators
// depending on the binary it is built into, to keep callers from relying on
// its bytes, so responses would differ by spaces from one Cairn build to
// the next (etcd's builds differ the same way). Compacted, every response
// and stream message is the same compact JSON whatever the build.
type compactJSON struct{ gw.Marshaler }

// Marshal marshals v as the wrapped marshaler does, then compacts it.
func (m compactJSON) Marshal(v any) ([]byte, error) {
	b, err := m.Marshaler.Marshal(v)
	if err != nil {
		return b, err
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b, nil // not JSON (an HTTP body): as it is
	}
	return buf.Bytes(), nil
}

// Access is what etcd controls of its client port's HTTP requests besides
// auth: --cors and --host-whitelist.
type Access struct {
	// CORS lists the origins whose browser requests may read the answers;
	// empty or "*" allows every origin (etcd's default).
	CORS []string
	// Hosts lists the host names a plain-text request's Host header may
	// name; empty or "*" allows any (etcd's default). It protects a member
	// serving plain HTTP on localhost from DNS rebinding (CVE-2018-5702).
	Hosts []string
	// ClientCertAuth is --client-cert-auth, AuthEnabled whether auth is
	// enabled now.
	ClientCertAuth bool
	AuthEnabled    func() bool
}

// allows reports whether list allows v: an empty list or "*" allows all.
func allows(list []string, v string) bool {
	return len(list) == 0 || slices.Contains(list, "*") || slices.Contains(list, v)
}

// AccessControl wraps the client port's HTTP handler with etcd's checks,
// in etcd's order:
//   - a path under /v3beta/ is served as the same path under /v3/ (etcd
//     keeps the old prefix working);
//   - a plain-text request whose Host is not in a.Hosts is refused with
//     421 and etcd's explanation, and logged;
//   - over TLS, with a.ClientCertAuth on and auth enabled, a /v3/ request
//     that presents a verified client certificate with a common name is
//     refused with 400 and etcd's plain-text reason: the gateway calls the
//     gRPC API with its own connection, so that name could not be the user
//     the request is made as;
//   - an allowed origin gets CORS headers (every origin by default, as in
//     etcd), and an OPTIONS request is answered 200 with them alone.
func AccessControl(next http.Handler, a Access, lg *zap.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rest, ok := strings.CutPrefix(r.URL.Path, "/v3beta/"); ok {
			r.URL.Path = "/v3/" + rest
			r.URL.RawPath = ""
		}
		if r.TLS == nil {
			host := r.Host
			if h, _, err := net.SplitHostPort(r.Host); err == nil {
				host = h
			}
			if !allows(a.Hosts, host) {
				lg.Warn("rejecting HTTP request to prevent DNS rebinding attacks", zap.String("host", host))
				http.Error(w, dnsRebindingText(host), http.StatusMisdirectedRequest)
				return
			}
		} else if a.ClientCertAuth && strings.HasPrefix(r.URL.Path, "/v3/") && a.AuthEnabled != nil && a.AuthEnabled() {
			for _, chain := range r.TLS.VerifiedChains {
				if len(chain) > 0 && chain[0].Subject.CommonName != "" {
					http.Error(w, "CommonName of client sending a request against gateway will be ignored and not used as expected", http.StatusBadRequest)
					return
				}
			}
		}
		if allows(a.CORS, "*") {
			addCORSHeaders(w, "*")
		} else if origin := r.Header.Get("Origin"); slices.Contains(a.CORS, origin) {
			addCORSHeaders(w, origin)
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// addCORSHeaders lets origin read the answer, as etcd's headers do.
func addCORSHeaders(w http.ResponseWriter, origin string) {
	w.Header().Add("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE")
	w.Header().Add("Access-Control-Allow-Origin", origin)
	w.Header().Add("Access-Control-Allow-Headers", "accept, content-type, authorization")
}

// dnsRebindingText is etcd's answer to a request whose Host it does not
// allow.
func dnsRebindingText(host string) string {
	return fmt.Sprintf(`
etcd received your request, but the Host header was unrecognized.

To fix this, choose one of the following options:
- Enable TLS, then any HTTPS request will be allowed.
- Add the hostname you want to use to the whitelist in settings.
  - e.g. etcd --host-whitelist %q

This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).
`, host)
}

// RegisterHealth adds etcd's health endpoints alone to mux: /health, and
// /livez and /readyz with their per-check subpaths, as etcd serves them on
// --listen-metrics-urls; hm counts their answers.
func RegisterHealth(mux *http.ServeMux, st Store, hm *HealthMetrics) { registerHealth(mux, st, hm) }

// GetOnly wraps an endpoint that answers GET only, as etcd's health and
// version endpoints do: any other method is a 405 with "Allow: GET" and
// etcd's plain-text body.
func GetOnly(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		f(w, r)
	}
}

// versions is the body of /version, in etcd's field order.
type versions struct {
	Server  string `json:"etcdserver"`
	Cluster string `json:"etcdcluster"`
	Storage string `json:"storage"`
}

// versionHandler answers /version as etcd does, without a final newline:
// the cluster and storage versions follow a downgrade (see Versioner).
func versionHandler(st Store) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		vs := versions{Server: store.Version, Cluster: defaultVersion, Storage: defaultVersion}
		if v, ok := st.(Versioner); ok {
			vs.Cluster, vs.Storage = v.ClusterVersion(), v.StorageVersion()
		}
		body, _ := json.Marshal(vs)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}
}
