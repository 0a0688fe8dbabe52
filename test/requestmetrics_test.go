package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// labelledValues returns the value of each series of the given names on
// the Prometheus page at url, keyed by the whole series (name and labels).
func labelledValues(t *testing.T, url string, names ...string) map[string]float64 {
	t.Helper()
	a := httpAsk(t, "GET", url)
	if a.Status != 200 {
		t.Fatalf("GET %s: %d", url, a.Status)
	}
	values := map[string]float64{}
	for _, line := range strings.Split(a.Body, "\n") {
		// The value follows the last space: label values may hold spaces.
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		series, value := line[:i], line[i+1:]
		name, _, _ := strings.Cut(series, "{")
		for _, n := range names {
			if name == n {
				v, err := strconv.ParseFloat(value, 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				values[series] = v
			}
		}
	}
	return values
}

// requestSeries are the series TestRequestMetricsMatchEtcd compares: calls
// by client version, requests by kind and outcome, MVCC range reads.
var requestSeries = []string{
	"etcd_server_client_requests_total",
	"etcd_server_request_duration_seconds_count",
	"etcd_server_range_duration_seconds_count",
}

// seriesMoved returns how much each series of the families names moved on
// the page at url while run ran, leaving out those that did not, and the
// requests a member makes of itself (publishing its attributes, setting
// the cluster version), whose time depends on its start, not on run.
func seriesMoved(t *testing.T, url string, names []string, run func()) map[string]float64 {
	t.Helper()
	before := labelledValues(t, url, names...)
	run()
	moved := map[string]float64{}
	for s, v := range labelledValues(t, url, names...) {
		if strings.Contains(s, `type="Cluster`) || strings.Contains(s, `type="Downgrade`) {
			continue
		}
		if d := v - before[s]; d != 0 {
			moved[s] = d
		}
	}
	return moved
}

// requestWorkload makes calls of each kind the series tell apart: unary
// and stream calls; linearizable and serializable ranges, one at a
// compacted revision (a failed range); puts, a delete, a compaction, a txn
// that writes and one that only reads.
func requestWorkload(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	c := ctx(t)
	var last int64
	for i := range 3 {
		r, err := cli.Put(c, "rm/k", strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	if _, err := cli.Get(c, "rm/k"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(c, "rm/", clientv3.WithPrefix(), clientv3.WithSerializable()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(c, last); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(c, "rm/k", clientv3.WithRev(last-1)); err == nil {
		t.Fatal("get at a compacted revision succeeded")
	}
	if _, err := cli.Txn(c).If(clientv3.Compare(clientv3.Version("rm/k"), ">", 0)).Then(clientv3.OpGet("rm/k")).Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Txn(c).If(clientv3.Compare(clientv3.Version("rm/k"), ">", 0)).Then(clientv3.OpPut("rm/t", "v")).Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(c, "rm/t"); err != nil {
		t.Fatal(err)
	}
	wc, cancel := context.WithCancel(c)
	defer cancel()
	if wr := <-cli.Watch(wc, "rm/k", clientv3.WithCreatedNotify()); !wr.Created {
		t.Fatalf("first watch response %+v, want created", wr)
	}
}

// TestRequestMetricsMatchEtcd: the same calls move etcd's client request
// counter (by call kind and client API version), its request duration
// histogram (by request kind and outcome) and its range read histogram on
// Cairn as on etcd. etcd's series belong to its process, so this test runs
// on its own (not in parallel) and compares how much they moved.
func TestRequestMetricsMatchEtcd(t *testing.T) {
	movedAsEtcd(t, requestSeries, requestWorkload, func(want map[string]float64) bool { return len(want) >= 8 })
}

// movedAsEtcd runs workload against a real etcd, then against a member of
// each engine, and checks that every series of the families names moved
// as far on the member as on etcd, and no other. enough says whether
// etcd's moves are enough to compare. etcd's series belong to its
// process: a test that calls it must not run in parallel.
func movedAsEtcd(t *testing.T, names []string, workload func(*testing.T, *clientv3.Client), enough func(map[string]float64) bool) {
	t.Helper()
	etcdCli := startEtcd(t)
	want := seriesMoved(t, "http://"+etcdEndpoint(etcdCli)+"/metrics", names, func() { workload(t, etcdCli) })
	if !enough(want) {
		t.Fatalf("etcd's series moved too little to compare: %v", want)
	}
	t.Logf("etcd's series moved by %v", want)
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		got := seriesMoved(t, "http://"+m.clientEP+"/metrics", names, func() { workload(t, cli) })
		for s, v := range want {
			if got[s] != v {
				t.Errorf("%s moved by %v, etcd's by %v", s, got[s], v)
			}
		}
		for s, v := range got {
			if _, ok := want[s]; !ok {
				t.Errorf("%s moved by %v, etcd's did not move", s, v)
			}
		}
	})
}

// rawRange sends a Range call over HTTP/2 without gRPC's client, which
// refuses to send a metadata value that is not printable ASCII, with the
// given client-api-version, and returns the gRPC status and message.
func rawRange(t *testing.T, endpoint, version string) (status, message string) {
	t.Helper()
	// RangeRequest{Key: "k"}.
	return rawCall(t, endpoint, "/etcdserverpb.KV/Range", []byte{0x0a, 0x01, 'k'}, version)
}

// rawCall sends msg, the bytes of one protobuf message, to method over
// HTTP/2 without gRPC's client, which sends only what it can marshal, with
// the given client-api-version, and returns the gRPC status and message.
func rawCall(t *testing.T, endpoint, method string, msg []byte, version string) (status, message string) {
	t.Helper()
	// HTTP/2 over plain TCP, as gRPC speaks it without TLS.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	// gRPC's framing: uncompressed, then the length.
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	body = append(body, msg...)
	req, err := http.NewRequestWithContext(ctx(t), "POST", "http://"+endpoint+method, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	req.Header["client-api-version"] = []string{version}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		t.Fatal(err)
	}
	// A call that fails before any message carries its status in the
	// headers (a trailers-only response), others in the trailers.
	for _, h := range []http.Header{resp.Trailer, resp.Header} {
		if s := h.Get("Grpc-Status"); s != "" {
			return s, h.Get("Grpc-Message")
		}
	}
	t.Fatalf("no grpc-status in the answer: headers %v, trailers %v", resp.Header, resp.Trailer)
	return "", ""
}

// TestInvalidClientAPIVersionRefused: a call whose client-api-version is
// not UTF-8 is refused as etcd refuses it, and one with a valid version
// passes.
func TestInvalidClientAPIVersionRefused(t *testing.T) {
	etcdEP := etcdEndpoint(startEtcd(t))
	wantStatus, wantMsg := rawRange(t, etcdEP, "3.\xff")
	if wantStatus == "0" {
		t.Fatalf("etcd accepted an invalid client API version: the test sends something else")
	}
	if s, _ := rawRange(t, etcdEP, "3.7"); s != "0" {
		t.Fatalf("etcd refused a valid client API version with status %s: the request is wrong", s)
	}
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		status, msg := rawRange(t, m.clientEP, "3.\xff")
		if status != wantStatus || msg != wantMsg {
			t.Errorf("invalid version: status %s %q, etcd's %s %q", status, msg, wantStatus, wantMsg)
		}
		if s, msg := rawRange(t, m.clientEP, "3.7"); s != "0" {
			t.Errorf("valid version: status %s %q, want 0", s, msg)
		}
	})
}

// pingedWhenIdle opens an HTTP/2 connection to a client endpoint, makes
// no call, and reports whether the server pings it within wait.
func pingedWhenIdle(t *testing.T, endpoint string, wait time.Duration) bool {
	t.Helper()
	conn, err := net.Dial("tcp", endpoint)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false
			}
			t.Fatalf("reading the server's frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				return true
			}
		}
	}
}

// TestGRPCKeepaliveFlags: --grpc-keepalive-interval and -timeout set when
// the server pings an idle client connection, as etcd's do: after a
// second with both at 1s, not within two seconds by default (two hours).
// Checked against etcd first.
func TestGRPCKeepaliveFlags(t *testing.T) {
	etcdDefault := etcdEndpoint(startEtcd(t))
	etcdFast := etcdEndpoint(startEtcd(t, func(c *embed.Config) {
		c.GRPCKeepAliveInterval, c.GRPCKeepAliveTimeout = time.Second, time.Second
	}))
	if !pingedWhenIdle(t, etcdFast, 3*time.Second) || pingedWhenIdle(t, etcdDefault, 2*time.Second) {
		t.Fatal("etcd does not ping as the test expects: the test is wrong")
	}
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		fast := startMember(t, engine, "--grpc-keepalive-interval=1s", "--grpc-keepalive-timeout=1s")
		if !pingedWhenIdle(t, fast.clientEP, 3*time.Second) {
			t.Error("no ping within 3s of an idle connection with --grpc-keepalive-interval=1s")
		}
		def := startMember(t, engine)
		if pingedWhenIdle(t, def.clientEP, 2*time.Second) {
			t.Error("a ping within 2s of an idle connection with the default interval (2h)")
		}
	})
}

// streamsOpen opens n Watch streams on one connection to endpoint, each
// past its watch creation, and reports whether one more opens within a
// second.
func streamsOpen(t *testing.T, endpoint string, n int) (oneMore bool) {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := ctx(t)
	for i := range n {
		ws, err := pb.NewWatchClient(conn).Watch(c)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("k")}}}); err != nil {
			t.Fatal(err)
		}
		if r, err := ws.Recv(); err != nil || !r.Created {
			t.Fatalf("stream %d: %v %v, want created", i, r, err)
		}
	}
	short, cancel := context.WithTimeout(c, time.Second)
	defer cancel()
	ws, err := pb.NewWatchClient(conn).Watch(short)
	if err != nil {
		return false
	}
	// The stream may be reported open before the server takes it: a
	// created watch proves it was.
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("k")}}}); err != nil {
		return false
	}
	r, err := ws.Recv()
	return err == nil && r.Created
}

// TestMaxConcurrentStreamsFlag: --max-concurrent-streams caps the calls
// one client connection has open at once, as etcd's does: with 2, a third
// watch stream waits; by default it opens. Checked against etcd first.
func TestMaxConcurrentStreamsFlag(t *testing.T) {
	etcdTwo := etcdEndpoint(startEtcd(t, func(c *embed.Config) { c.MaxConcurrentStreams = 2 }))
	if streamsOpen(t, etcdTwo, 2) {
		t.Fatal("etcd opened a third stream with --max-concurrent-streams=2: the test is wrong")
	}
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		two := startMember(t, engine, "--max-concurrent-streams=2")
		if streamsOpen(t, two.clientEP, 2) {
			t.Error("a third stream opened with --max-concurrent-streams=2")
		}
		def := startMember(t, engine)
		if !streamsOpen(t, def.clientEP, 2) {
			t.Error("a third stream did not open with the default limit")
		}
	})
}

// accessAnswer is what TestAccessControlMatchesEtcd compares of an answer.
type accessAnswer struct {
	status int
	cors   string
	body   string
}

// askAccess sends method to path on endpoint with the given Host and
// Origin headers ("" for the default Host, none for Origin).
func askAccess(t *testing.T, endpoint, method, path, host, origin string) accessAnswer {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, "http://"+endpoint+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := accessAnswer{status: resp.StatusCode, cors: resp.Header.Get("Access-Control-Allow-Origin")}
	if resp.StatusCode != http.StatusOK {
		a.body = string(b)
	}
	return a
}

// TestAccessControlMatchesEtcd: the client port's HTTP answers carry
// etcd's CORS headers (every origin by default, the listed ones with
// --cors), answer OPTIONS with 200, and with --host-whitelist refuse a
// plain-text request naming another host with etcd's 421 and text.
func TestAccessControlMatchesEtcd(t *testing.T) {
	type probe struct{ method, path, host, origin string }
	probes := []probe{
		{"GET", "/health", "", ""},
		{"OPTIONS", "/v3/kv/range", "", "http://app.example:8080"},
		{"GET", "/version", "", "http://app.example:8080"},
		{"GET", "/version", "", "http://other.example"},
		{"GET", "/version", "evil.example:2379", ""},
		{"GET", "/version", "localhost", ""},
	}
	run := func(ep string) []accessAnswer {
		var out []accessAnswer
		for _, p := range probes {
			out = append(out, askAccess(t, ep, p.method, p.path, p.host, p.origin))
		}
		return out
	}
	etcdDefault := run(etcdEndpoint(startEtcd(t)))
	etcdLimited := run(etcdEndpoint(startEtcd(t, func(c *embed.Config) {
		c.CORS = map[string]struct{}{"http://app.example:8080": {}}
		c.HostWhitelist = map[string]struct{}{"localhost": {}, "127.0.0.1": {}}
	})))
	if etcdDefault[0].cors != "*" || etcdLimited[4].status != http.StatusMisdirectedRequest {
		t.Fatalf("etcd answered %v and %v: the test is wrong", etcdDefault, etcdLimited)
	}
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		if got := run(startMember(t, engine).clientEP); !slices.Equal(got, etcdDefault) {
			t.Errorf("defaults: %v, etcd's %v", got, etcdDefault)
		}
		limited := startMember(t, engine, "--cors=http://app.example:8080", "--host-whitelist=localhost,127.0.0.1")
		if got := run(limited.clientEP); !slices.Equal(got, etcdLimited) {
			t.Errorf("--cors and --host-whitelist: %v, etcd's %v", got, etcdLimited)
		}
	})
}
