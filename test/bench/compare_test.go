// Package bench measures Cairn against a real etcd on this machine with the
// same client-side load (internal/loadgen). Run it with `make bench`, or:
//
//	go test -run '^$' -bench Compare -benchtime 1x -timeout 30m ./test/bench/
//
// The reference etcd runs in this test process (go.etcd.io/etcd/server/v3/embed);
// Cairn runs as a separate process built from this module. Both keep
// fsync on. See docs/performance.md for the method and the figures.
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/loadgen"
)

var (
	flagScale   = flag.Float64("compare.scale", 1, "multiply every workload's request count (0.1 for a quick look)")
	flagEngines = flag.String("compare.engines", "rocksdb,memory", "Cairn storage engines to measure, comma-separated")
	flagBin     = flag.String("compare.cairn-bin", "", "measure this cairn binary instead of building ./cmd/cairn")
)

// workload is one row of the comparison: the same load on every target.
type workload struct {
	name    string
	clients int
	conns   int
	total   int
	maxDur  time.Duration
	run     func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error)
}

func put(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
	return loadgen.Put(ctx, cfg, loadgen.PutOptions{KeySize: 8, ValueSize: 256, KeySpace: 100_000})
}

func rangeOf(c loadgen.Consistency) func(context.Context, loadgen.Config) (loadgen.Result, error) {
	return func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
		return loadgen.Range(ctx, cfg, loadgen.RangeOptions{Key: "bench/range", Consistency: c, ValueSize: 256})
	}
}

// workloads follow etcd's op-guide/performance.md (key 8 B, value 256 B),
// scaled to two cores. MaxDuration bounds each run whatever the server's
// speed, so the whole benchmark stays within a few minutes.
var workloads = []workload{
	{"put, 1 client", 1, 1, 3000, 20 * time.Second, put},
	{"put, 64 clients", 64, 8, 30000, 25 * time.Second, put},
	{"range serializable, 64 clients", 64, 8, 60000, 20 * time.Second, rangeOf(loadgen.Serializable)},
	{"range linearizable, 64 clients", 64, 8, 60000, 20 * time.Second, rangeOf(loadgen.Linearizable)},
}

// warmup runs before the measured workloads on every fresh server, so the
// first row does not pay for connection set-up, first allocation of
// memtables, and the like.
var warmup = workload{"warm-up", 16, 4, 2000, 20 * time.Second, put}

// target is a server under test.
type target struct {
	name     string
	endpoint string
	pid      int    // process to account CPU to; 0 means this process
	httpURL  string // client URL for /debug/actors, Cairn only
	stop     func()
}

// measurement is one workload on one target.
type measurement struct {
	res     loadgen.Result
	cpuSelf time.Duration // CPU of this process (load generator, and etcd when in-process)
	cpuPeer time.Duration // CPU of the Cairn process
	actors  []actorLoad
}

// actorLoad is what /debug/actors says an actor did during one workload.
type actorLoad struct {
	name      string
	messages  int64
	busy      time.Duration // total handling time
	meanMicro float64
}

func BenchmarkCompare(b *testing.B) {
	if testing.Short() {
		b.Skip("the comparison takes minutes")
	}
	bin := *flagBin
	if bin == "" {
		bin = buildCairn(b)
	}
	var engines []string
	for _, e := range strings.Split(*flagEngines, ",") {
		if e = strings.TrimSpace(e); e != "" {
			engines = append(engines, e)
		}
	}

	started := time.Now()
	results := map[string][]measurement{} // target name → one per workload
	names := []string{"etcd"}
	results["etcd"] = measureAll(b, startEtcd(b))
	for _, e := range engines {
		name := "cairn-" + e
		names = append(names, name)
		results[name] = measureAll(b, startCairn(b, bin, e))
	}

	printReport(os.Stdout, names, results, time.Since(started))
	for _, name := range names[1:] {
		for i, w := range workloads {
			if ratio, ok := ratioOf(results[name][i].res, results["etcd"][i].res); ok {
				b.ReportMetric(ratio, fmt.Sprintf("x-etcd/%s/%s", strings.TrimPrefix(name, "cairn-"), metricName(w.name)))
			}
		}
	}
}

// measureAll runs the warm-up, then every workload against t, then stops t.
func measureAll(b *testing.B, t target) []measurement {
	defer t.stop()
	ctx := context.Background()
	if res, err := runOne(ctx, t, warmup); err != nil || res.Errors > 0 {
		b.Fatalf("%s: warm-up: %v %v", t.name, err, res.ErrorKinds)
	}
	var out []measurement
	for _, w := range workloads {
		before := actorStats(t)
		selfBefore, peerBefore := cpuTime(0), cpuTime(t.pid)
		res, err := runOne(ctx, t, w)
		if err != nil {
			b.Fatalf("%s: %s: %v", t.name, w.name, err)
		}
		m := measurement{res: res, cpuSelf: cpuTime(0) - selfBefore}
		if t.pid != 0 {
			m.cpuPeer = cpuTime(t.pid) - peerBefore
		}
		m.actors = actorDelta(before, actorStats(t))
		out = append(out, m)
		fmt.Fprintf(os.Stderr, "%-14s %-32s %8.0f req/s  p99 %6.2fms  errors %d\n",
			t.name, w.name, res.Throughput, msf(res.Latency.P99), res.Errors)
	}
	return out
}

func runOne(ctx context.Context, t target, w workload) (loadgen.Result, error) {
	total := max(int(float64(w.total)**flagScale), w.clients)
	return w.run(ctx, loadgen.Config{
		Endpoints:   []string{t.endpoint},
		Clients:     w.clients,
		Conns:       w.conns,
		Total:       total,
		MaxDuration: w.maxDur,
	})
}

// printReport writes the comparison table, then the detail behind it.
func printReport(w io.Writer, names []string, results map[string][]measurement, took time.Duration) {
	fmt.Fprintf(w, "\nCairn vs etcd on this machine (etcd in-process via embed, Cairn as a separate process; fsync on in both; took %s)\n\n",
		took.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tcairn engine\tetcd req/s\tcairn req/s\tcairn/etcd\tetcd p99\tcairn p99\t")
	for i, wl := range workloads {
		e := results["etcd"][i].res
		for _, name := range names[1:] {
			c := results[name][i].res
			ratio := "n/a"
			if r, ok := ratioOf(c, e); ok {
				ratio = fmt.Sprintf("%.2fx", r)
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%s\t%.2fms\t%.2fms\t\n",
				wl.name, strings.TrimPrefix(name, "cairn-"), e.Throughput, c.Throughput, ratio, msf(e.Latency.P99), msf(c.Latency.P99))
		}
	}
	_ = tw.Flush()

	fmt.Fprintf(w, "\nDetail per target (CPU µs/req: this process = load generator [+ etcd when in-process]; server = the Cairn process)\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tworkload\trequests\terrors\telapsed\treq/s\tp50\tp90\tp99\tmax\tCPU µs/req this process\tCPU µs/req server\t")
	for _, name := range names {
		for i, wl := range workloads {
			m := results[name][i]
			r := m.res
			n := float64(max(r.Requests, 1))
			server := "-"
			if m.cpuPeer > 0 {
				server = fmt.Sprintf("%.0f", float64(m.cpuPeer.Microseconds())/n)
			}
			incomplete := ""
			if r.Incomplete {
				incomplete = " (cut at max duration)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d%s\t%d\t%s\t%.0f\t%.2fms\t%.2fms\t%.2fms\t%.2fms\t%.0f\t%s\t\n",
				name, wl.name, r.Requests, incomplete, r.Errors, r.Elapsed.Round(time.Millisecond), r.Throughput,
				msf(r.Latency.P50), msf(r.Latency.P90), msf(r.Latency.P99), msf(r.Latency.Max),
				float64(m.cpuSelf.Microseconds())/n, server)
		}
	}
	_ = tw.Flush()

	fmt.Fprintf(w, "\nCairn actors during each workload (from /debug/actors; busy = handling time / wall time)\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tworkload\tactor\tmessages\tmessages/req\tmean handling\tbusy\t")
	for _, name := range names[1:] {
		for i, wl := range workloads {
			m := results[name][i]
			for _, a := range m.actors {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f\t%.1fµs\t%.0f%%\t\n", name, wl.name, a.name, a.messages,
					float64(a.messages)/float64(max(m.res.Requests, 1)), a.meanMicro,
					100*a.busy.Seconds()/m.res.Elapsed.Seconds())
			}
		}
	}
	_ = tw.Flush()
	for _, name := range names {
		for i, wl := range workloads {
			for k, n := range results[name][i].res.ErrorKinds {
				fmt.Fprintf(w, "%s %s: error x%d: %s\n", name, wl.name, n, k)
			}
		}
	}
}

func ratioOf(cairn, etcd loadgen.Result) (float64, bool) {
	if etcd.Throughput == 0 {
		return 0, false
	}
	return cairn.Throughput / etcd.Throughput, true
}

func metricName(s string) string {
	r := strings.NewReplacer(", ", "-", " clients", "c", " client", "c", " ", "-")
	return r.Replace(s)
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// buildCairn builds ./cmd/cairn into a temporary directory.
func buildCairn(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "cairn")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/cairn-kv/cairn/cmd/cairn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("building cairn: %v", err)
	}
	return bin
}

func freePort(b *testing.B) int {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startEtcd starts the reference: a single-member etcd in this process
// with its default configuration (fsync on), data in a temporary directory.
func startEtcd(b *testing.B) target {
	b.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = b.TempDir()
	// At "error", Close logs its listeners' shutdown as failures; request
	// failures are counted by loadgen instead.
	cfg.LogLevel = "fatal"
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(b)))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", freePort(b)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		b.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		b.Fatal("embedded etcd not ready after 60s")
	}
	return target{name: "etcd", endpoint: cu.Host, stop: e.Close}
}

// startCairn starts bin as a single member on engine, data in a temporary
// directory, and waits for its readiness log line.
func startCairn(b *testing.B, bin, engine string) target {
	b.Helper()
	client := fmt.Sprintf("127.0.0.1:%d", freePort(b))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(b))
	cmd := exec.Command(bin,
		"--name", "bench",
		"--data-dir", b.TempDir(),
		"--storage-engine", engine,
		"--listen-client-urls", "http://"+client,
		"--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer,
		"--http-listen-addr", fmt.Sprintf("127.0.0.1:%d", freePort(b)),
	)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var (
		logMu sync.Mutex
		log   bytes.Buffer
		ready = make(chan struct{})
		done  = make(chan struct{})
	)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if strings.Contains(sc.Text(), "ready to serve client requests") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(done) }()
	logs := func() string { logMu.Lock(); defer logMu.Unlock(); return log.String() }
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	select {
	case <-ready:
	case <-done:
		b.Fatalf("cairn exited before becoming ready:\n%s", logs())
	case <-time.After(60 * time.Second):
		stop()
		b.Fatalf("cairn not ready after 60s:\n%s", logs())
	}
	// Readiness is logged before the member has elected itself; wait for
	// a linearizable read to succeed, as etcd's ReadyNotify implies.
	if err := waitLeader(client); err != nil {
		stop()
		b.Fatalf("cairn has no leader: %v\n%s", err, logs())
	}
	return target{
		name:     "cairn-" + engine,
		endpoint: client,
		pid:      cmd.Process.Pid,
		httpURL:  "http://" + client,
		stop: func() {
			stop()
			if l := logs(); strings.Contains(l, `"level":"error"`) || strings.Contains(l, "panic") {
				fmt.Fprintf(os.Stderr, "cairn-%s logged errors:\n%s", engine, l)
			}
		},
	}
}

// waitLeader polls a linearizable read until it succeeds, for up to 30s.
func waitLeader(endpoint string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cli.Get(ctx, "bench/leader-check")
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuTime returns the user+system CPU time of process pid, or of this
// process if pid is 0.
func cpuTime(pid int) time.Duration {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line, in clock ticks (100 Hz on Linux).
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// actorSnapshot mirrors one entry of Cairn's /debug/actors.
type actorSnapshot struct {
	Name      string  `json:"name"`
	Processed int64   `json:"messages_processed"`
	Mean      float64 `json:"mean_handling_us"`
}

func actorStats(t target) map[string]actorSnapshot {
	if t.httpURL == "" {
		return nil
	}
	resp, err := http.Get(t.httpURL + "/debug/actors")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Actors []actorSnapshot `json:"actors"`
	}
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	out := make(map[string]actorSnapshot, len(body.Actors))
	for _, a := range body.Actors {
		out[a.Name] = a
	}
	return out
}

// actorDelta turns two /debug/actors snapshots into the work done between
// them.
func actorDelta(before, after map[string]actorSnapshot) []actorLoad {
	var out []actorLoad
	for name, a := range after {
		p := before[name]
		n := a.Processed - p.Processed
		busyUs := a.Mean*float64(a.Processed) - p.Mean*float64(p.Processed)
		l := actorLoad{name: name, messages: n, busy: time.Duration(busyUs * 1e3)}
		if n > 0 {
			l.meanMicro = busyUs / float64(n)
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
