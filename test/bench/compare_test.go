// Package bench measures Cairn against a real etcd on this machine with the
// same client-side load (internal/loadgen). Run it with `make bench`, or:
//
//	go test -run '^$' -bench Compare -benchtime 1x -timeout 30m ./test/bench/
//
// By default the reference etcd runs in a child process, this test binary
// re-executed (go.etcd.io/etcd/server/v3/embed, default configuration,
// fsync on; -compare.etcd-process=false runs it in this test process), and
// Cairn runs as a separate process built from this module, one per storage
// engine. All servers are up at once and the targets take turns workload by
// workload, over several rounds, so that load from elsewhere on the
// machine falls on all of them alike; the report gives medians. See
// docs/performance.md for the method and the figures.
//
// -compare.members 3 (`make bench-cluster`) makes every target a cluster of
// three members, each a process of its own with its own data directory:
// etcd as three children started with one initial cluster and otherwise
// the defaults above, Cairn as three processes per engine. Every workload
// is given the three client endpoints and loadgen sends each connection's
// requests to them in turn, so every member serves reads and takes puts,
// which followers hand to the leader. The warm-up and the wait for a
// leader cover every member; a row's server CPU is the sum over the
// members' processes, and Cairn's actor figures are summed over the
// members. The kv rows are the cluster comparison:
//
//	go test -run '^$' -bench Compare -benchtime 1x -timeout 30m ./test/bench/ -compare.members 3
//
// The watch and lease rows run on clusters too, but without the figures
// loadgen reads from the one server process's /proc (resident memory, CPU),
// which a cluster spreads over three: watch-idle-memory then reports only
// how fast watchers are created, and lease-keepalive no server CPU. A
// cluster's etcd always runs in child processes.
//
// -compare.workloads picks what runs: a comma-separated list of groups
// ("kv", "watch", "lease", "all") or workload ids (below). The default is
// "kv", the put and range rows, which take about two minutes; the watch
// and lease rows take about ten more at full scale, so they run only when
// asked for:
//
//	go test -run '^$' -bench Compare -benchtime 1x -timeout 60m ./test/bench/ -compare.workloads watch,lease
//
// The watch group: watch-fanout-1key (1000 watchers on one key, over 10
// connections of one watch stream each, then puts to the key: events
// delivered per second), watch-fanout-100keys (6400 watchers, 64 on each
// of 100 keys, puts round-robin over them), watch-latency (100 watchers
// on one key, 1000 puts/s open loop: put-to-event p50 and p99) and
// watch-idle-memory (100 streams of one watcher, then of 100 watchers, on
// keys nobody writes: the server's resident memory per stream and per
// watcher; it runs first of the watch rows and in the first round only,
// since a server reuses the memory that earlier watchers freed). The lease group: lease-keepalive (10,000 leases, each renewed
// with KeepAliveOnce every 5s: keep-alive p99 and the server's CPU) and
// lease-storm (10,000 leases of a 5s TTL with a key each, left to expire
// while one client writes: the writer's p99 and max before and during the
// storm, and how long expiry took). -compare.scale multiplies their put
// counts and phase lengths; the watcher and lease counts are the shape of
// each row and stay fixed. Each row revokes its leases and cancels its
// watchers before the next begins. They are reported in a table of their
// own, figure by figure.
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
	"os/signal"
	"path/filepath"
	"slices"
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
	flagScale       = flag.Float64("compare.scale", 1, "multiply every workload's request count (0.1 for a quick look)")
	flagRounds      = flag.Int("compare.rounds", 3, "rounds of every workload on every target; the report gives medians")
	flagEngines     = flag.String("compare.engines", "rocksdb,memory", "Cairn storage engines to measure, comma-separated")
	flagBin         = flag.String("compare.cairn-bin", "", "measure this cairn binary instead of building ./cmd/cairn")
	flagWorkloads   = flag.String("compare.workloads", "kv", "workloads to run, comma-separated: groups (kv, watch, lease, all) or workload ids")
	flagEtcdProcess = flag.Bool("compare.etcd-process", true, "run the reference etcd in a child process (this test binary re-executed), started the same way as Cairn; false runs it inside the test process")
	flagMembers     = flag.Int("compare.members", 1, "members of every target: 1 for single servers, 3 for clusters of three processes with the load spread over them")
)

// etcdChildEnv, when set in the environment of this test binary, makes it
// serve as one etcd member (an etcdMember in JSON) instead of running
// tests: the -compare.etcd-process mode.
const etcdChildEnv = "CAIRN_BENCH_ETCD_CHILD"

const readyLine = "ready to serve client requests"

func TestMain(m *testing.M) {
	if spec := os.Getenv(etcdChildEnv); spec != "" {
		os.Exit(serveEtcdChild(spec))
	}
	os.Exit(m.Run())
}

// workload is one row of the comparison: the same load on every target.
type workload struct {
	name    string
	clients int
	conns   int
	total   int
	maxDur  time.Duration
	run     func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error)
	// id and group select the row with -compare.workloads; the kv rows
	// are selected by group alone.
	id, group string
	// scenario rows report loadgen.Result.Metrics, headed by headline,
	// rather than requests per second.
	scenario bool
	headline string
	// once rows run in the first round only: their figure would not
	// repeat on a server that has already done the same work.
	once bool
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
// speed: with three targets and three rounds the whole benchmark takes
// about two minutes here and at most five.
var workloads = []workload{
	{name: "put, 1 client", clients: 1, conns: 1, total: 1500, maxDur: 8 * time.Second, run: put, id: "put-1", group: "kv"},
	{name: "put, 64 clients", clients: 64, conns: 8, total: 15000, maxDur: 10 * time.Second, run: put, id: "put-64", group: "kv"},
	{name: "range serializable, 64 clients", clients: 64, conns: 8, total: 30000, maxDur: 8 * time.Second,
		run: rangeOf(loadgen.Serializable), id: "range-s", group: "kv"},
	{name: "range linearizable, 64 clients", clients: 64, conns: 8, total: 30000, maxDur: 8 * time.Second,
		run: rangeOf(loadgen.Linearizable), id: "range-l", group: "kv"},

	// Resident memory grows only by what the heap cannot take from memory
	// freed earlier, so this row runs first of the watch rows, and once:
	// in a later round it would reuse the memory its own first round
	// freed and report almost nothing.
	{name: "idle watchers, 100 streams x 100", conns: 10, maxDur: time.Minute, id: "watch-idle-memory", group: "watch",
		scenario: true, headline: "bytes/watcher", once: true,
		run: func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.IdleWatchers(ctx, cfg, loadgen.IdleWatchOptions{Streams: 100, WatchersPerStream: 100, Settle: 2 * time.Second})
		}},
	{name: "watch fan-out, 1000 watchers on 1 key", conns: 10, maxDur: time.Minute, id: "watch-fanout-1key", group: "watch",
		scenario: true, headline: "events/s",
		run: func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.WatchFanout(ctx, cfg, loadgen.FanoutOptions{Watchers: 1000, Keys: 1, Puts: scaled(1000, 50)})
		}},
	{name: "watch fan-out, 6400 watchers on 100 keys", conns: 10, maxDur: time.Minute, id: "watch-fanout-100keys", group: "watch",
		scenario: true, headline: "events/s",
		run: func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.WatchFanout(ctx, cfg, loadgen.FanoutOptions{Watchers: 6400, Keys: 100, Puts: scaled(10000, 500)})
		}},
	{name: "watch latency, 100 watchers, 1000 puts/s", conns: 4, maxDur: time.Minute, id: "watch-latency", group: "watch",
		scenario: true, headline: "event p99",
		run: func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.WatchLatency(ctx, cfg, loadgen.WatchLatencyOptions{Watchers: 100, Rate: 1000, Duration: scaledDur(5*time.Second, 2*time.Second)})
		}},
	{name: "lease keep-alive, 10000 leases every 5s", conns: 8, maxDur: 2 * time.Minute, id: "lease-keepalive", group: "lease",
		scenario: true, headline: "keep-alive p99",
		run: func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.LeaseKeepAlive(ctx, cfg, loadgen.KeepAliveOptions{
				Leases: 10_000, TTL: time.Minute, Interval: 5 * time.Second, Duration: scaledDur(20*time.Second, 5*time.Second),
			})
		}},
	{name: "lease storm, 10000 leases of 5s TTL", conns: 8, maxDur: 2 * time.Minute, id: "lease-storm", group: "lease",
		scenario: true, headline: "put p99 storm",
		run: func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.LeaseStorm(ctx, cfg, loadgen.StormOptions{
				Leases: 10_000, TTL: 5 * time.Second, Baseline: scaledDur(3*time.Second, 2*time.Second),
			})
		}},
}

// scaled returns n times -compare.scale, and at least floor.
func scaled(n, floor int) int { return max(int(float64(n)**flagScale), floor) }

// scaledDur returns d times -compare.scale, and at least floor.
func scaledDur(d, floor time.Duration) time.Duration {
	return max(time.Duration(float64(d)**flagScale), floor)
}

// selectWorkloads returns the rows that spec names, in table order.
func selectWorkloads(spec string) ([]workload, error) {
	want := map[string]bool{}
	for _, s := range strings.Split(spec, ",") {
		if s = strings.TrimSpace(s); s != "" {
			want[s] = true
		}
	}
	var out []workload
	for _, w := range workloads {
		if want["all"] || want[w.group] || want[w.id] {
			out = append(out, w)
		}
	}
	if len(out) == 0 {
		var ids []string
		for _, w := range workloads {
			ids = append(ids, w.id)
		}
		return nil, fmt.Errorf("-compare.workloads=%q selects nothing; use kv, watch, lease, all or ids of %s", spec, strings.Join(ids, ", "))
	}
	return out, nil
}

// warmup runs once on every fresh server before the measured rounds, so
// the first row does not pay for connection set-up, first allocations, and
// the like.
var warmup = workload{name: "warm-up", clients: 16, conns: 4, total: 2000, maxDur: 20 * time.Second, run: put}

// target is a server under test: one member, or a cluster of members that
// every workload spreads its load over.
type target struct {
	name      string
	endpoints []string // each member's client address
	pids      []int    // each member's process; none when etcd runs in this process
	httpURLs  []string // each member's client URL for /debug/actors, Cairn only
}

// cpu returns the CPU time of every process of t together.
func (t target) cpu() time.Duration {
	var d time.Duration
	for _, pid := range t.pids {
		d += cpuTime(pid)
	}
	return d
}

// serverPID is the process a watch or lease row reads the server's memory
// and CPU from: the target's one process, or 0, which leaves those
// figures out, for a cluster or an in-process etcd.
func (t target) serverPID() int {
	if len(t.pids) == 1 {
		return t.pids[0]
	}
	return 0
}

// measurement is one workload on one target in one round.
type measurement struct {
	res       loadgen.Result
	cpuSelf   time.Duration // CPU of this process: load generator, and etcd when in-process
	cpuServer time.Duration // CPU of the server's processes when they are not this one
	cpuOther  float64       // cores used by every other process on the machine
	actors    []actorLoad
	// span is the time CPU and actor figures are taken over: the
	// result's Elapsed for a kv row, the whole run (set-up, grants and
	// clean-up included) for a scenario row, whose Elapsed is one phase.
	span time.Duration
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
	selected, err := selectWorkloads(*flagWorkloads)
	if err != nil {
		b.Fatal(err)
	}
	members := *flagMembers
	if members < 1 || (members > 1 && !*flagEtcdProcess) {
		b.Fatalf("-compare.members=%d: want 1, or more with -compare.etcd-process (a cluster's members are processes)", members)
	}
	bin := *flagBin
	if bin == "" {
		bin = buildCairn(b)
	}
	rounds := max(*flagRounds, 1)

	started := time.Now()
	var targets []target
	if *flagEtcdProcess {
		targets = append(targets, startEtcdProcesses(b, members))
	} else {
		targets = append(targets, startEtcd(b))
	}
	for _, e := range strings.Split(*flagEngines, ",") {
		if e = strings.TrimSpace(e); e != "" {
			targets = append(targets, startCairn(b, bin, e, members))
		}
	}

	ctx := context.Background()
	for _, t := range targets {
		if res, err := runOne(ctx, t, warmup); err != nil || res.Errors > 0 {
			b.Fatalf("%s: warm-up: %v %v", t.name, err, res.ErrorKinds)
		}
	}
	// results[target][workload][round]
	results := make([][][]measurement, len(targets))
	for ti := range targets {
		results[ti] = make([][]measurement, len(selected))
	}
	for r := range rounds {
		for wi, w := range selected {
			if w.once && r > 0 {
				continue
			}
			// Rotate who goes first, so no target always follows another.
			for k := range targets {
				ti := (k + r + wi) % len(targets)
				m := measureOne(b, targets[ti], w)
				results[ti][wi] = append(results[ti][wi], m)
				if w.scenario {
					head := "-"
					if h, ok := m.res.Metric(w.headline); ok {
						head = fmt.Sprintf("%.1f %s", h.Value, h.Unit)
					}
					fmt.Fprintf(os.Stderr, "round %d  %-14s %-40s %s %s  errors %d %v  other load %.2f cores\n",
						r+1, targets[ti].name, w.name, w.headline, head, m.res.Errors, m.res.ErrorKinds, m.cpuOther)
					continue
				}
				fmt.Fprintf(os.Stderr, "round %d  %-14s %-32s %7.0f req/s  p99 %7.2fms  errors %d  other load %.2f cores\n",
					r+1, targets[ti].name, w.name, m.res.Throughput, msf(m.res.Latency.P99), m.res.Errors, m.cpuOther)
			}
		}
	}

	printReport(os.Stdout, targets, selected, results, rounds, time.Since(started))
	for ti, t := range targets[1:] {
		for wi, w := range selected {
			if w.scenario {
				if et := medianOf(results[0][wi], metric(w.headline)); et > 0 {
					b.ReportMetric(medianOf(results[ti+1][wi], metric(w.headline))/et,
						fmt.Sprintf("x-etcd/%s/%s", strings.TrimPrefix(t.name, "cairn-"), w.id))
				}
				continue
			}
			if et := medianOf(results[0][wi], throughput); et > 0 {
				b.ReportMetric(medianOf(results[ti+1][wi], throughput)/et,
					fmt.Sprintf("x-etcd/%s/%s", strings.TrimPrefix(t.name, "cairn-"), metricName(w.name)))
			}
		}
	}
}

// measureOne runs w against t and gathers CPU and actor figures around it.
func measureOne(b *testing.B, t target, w workload) measurement {
	before := actorStats(t)
	selfBefore, serverBefore := cpuTime(0), t.cpu()
	busyBefore := machineBusy()
	began := time.Now()
	res, err := runOne(context.Background(), t, w)
	if err != nil {
		b.Fatalf("%s: %s: %v", t.name, w.name, err)
	}
	m := measurement{res: res, cpuSelf: cpuTime(0) - selfBefore, cpuServer: t.cpu() - serverBefore, span: res.Elapsed}
	if w.scenario {
		m.span = time.Since(began)
	}
	other := machineBusy() - busyBefore - m.cpuSelf - m.cpuServer
	m.cpuOther = max(other.Seconds()/m.span.Seconds(), 0)
	m.actors = actorDelta(before, actorStats(t))
	return m
}

func runOne(ctx context.Context, t target, w workload) (loadgen.Result, error) {
	total := max(int(float64(w.total)**flagScale), w.clients)
	return w.run(ctx, loadgen.Config{
		Endpoints:   t.endpoints,
		Clients:     w.clients,
		Conns:       w.conns,
		Total:       total,
		MaxDuration: w.maxDur,
		ServerPID:   t.serverPID(),
	})
}

// printReport writes the comparison table, then the detail behind it.
func printReport(w io.Writer, targets []target, workloads []workload, results [][][]measurement, rounds int, took time.Duration) {
	if n := *flagMembers; n > 1 {
		fmt.Fprintf(w, "\nCairn vs etcd on this machine, each a cluster of %d members (a process each, etcd as this test binary re-executed,\n"+
			"embed) with every workload's load spread over the members; fsync on in both.\n", n)
	} else {
		etcdMode := "in this test process (embed)"
		if *flagEtcdProcess {
			etcdMode = "in its own process (this test binary re-executed, embed)"
		}
		fmt.Fprintf(w, "\nCairn vs etcd on this machine: etcd %s, Cairn as a separate process; fsync on in both.\n", etcdMode)
	}
	fmt.Fprintf(w, "Medians of %d rounds (cairn/etcd: ratio of the medians; range: lowest and highest of the per-round ratios); took %s.\n",
		rounds, took.Round(time.Second))
	var others []float64
	for _, byWorkload := range results {
		for _, ms := range byWorkload {
			for _, m := range ms {
				others = append(others, m.cpuOther)
			}
		}
	}
	if o := median(others); o > 0.25 {
		fmt.Fprintf(w, "Other processes used a median %.2f of this machine's cores during the runs: expect noise.\n", o)
	}
	kv := slices.ContainsFunc(workloads, func(wl workload) bool { return !wl.scenario })
	if kv {
		printKV(w, targets, workloads, results)
	}
	printScenarios(w, targets, workloads, results)
	printActors(w, targets, workloads, results)
}

// printKV writes the put and range rows: the comparison, then the detail
// behind it.
func printKV(w io.Writer, targets []target, workloads []workload, results [][][]measurement) {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tcairn engine\tetcd req/s\tcairn req/s\tcairn/etcd\t(range)\tetcd p99\tcairn p99\t")
	for wi, wl := range workloads {
		if wl.scenario {
			continue
		}
		e := results[0][wi]
		for ti, t := range targets[1:] {
			c := results[ti+1][wi]
			ratio, spread := "n/a", ""
			if et := medianOf(e, throughput); et > 0 {
				ratio = fmt.Sprintf("%.2fx", medianOf(c, throughput)/et)
			}
			if ratios := pairedRatios(c, e); len(ratios) > 0 {
				spread = fmt.Sprintf("%.2f-%.2f", slices.Min(ratios), slices.Max(ratios))
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.0f\t%s\t%s\t%.2fms\t%.2fms\t\n",
				wl.name, strings.TrimPrefix(t.name, "cairn-"), medianOf(e, throughput), medianOf(c, throughput),
				ratio, spread, medianOf(e, p99)*1e3, medianOf(c, p99)*1e3)
		}
	}
	_ = tw.Flush()

	server := "the server's own process"
	if *flagMembers > 1 {
		server = "its members' processes together"
	}
	fmt.Fprintf(w, "\nDetail (medians over rounds). CPU µs/req: \"load gen\" is this process (the load generator, plus etcd when\n"+
		"etcd runs in-process); \"server\" is %s. \"other\" is cores used meanwhile by the rest of the machine.\n\n", server)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tworkload\trequests\terrors\treq/s\tp50\tp90\tp99\tmax\tCPU µs/req load gen\tCPU µs/req server\tother\t")
	for ti, t := range targets {
		for wi, wl := range workloads {
			if wl.scenario {
				continue
			}
			ms := results[ti][wi]
			reqs, errs, cut := 0, 0, false
			for _, m := range ms {
				reqs += m.res.Requests
				errs += m.res.Errors
				cut = cut || m.res.Incomplete
			}
			note := ""
			if cut {
				note = " (cut at max duration)"
			}
			server := "-"
			if len(t.pids) > 0 {
				server = fmt.Sprintf("%.0f", medianOf(ms, func(m measurement) float64 { return perReq(m.cpuServer, m.res) }))
			}
			fmt.Fprintf(tw, "%s\t%s\t%d%s\t%d\t%.0f\t%.2fms\t%.2fms\t%.2fms\t%.2fms\t%.0f\t%s\t%.2f\t\n",
				t.name, wl.name, reqs, note, errs, medianOf(ms, throughput),
				medianOf(ms, lat(func(l loadgen.Latency) time.Duration { return l.P50 }))*1e3,
				medianOf(ms, lat(func(l loadgen.Latency) time.Duration { return l.P90 }))*1e3,
				medianOf(ms, p99)*1e3,
				medianOf(ms, lat(func(l loadgen.Latency) time.Duration { return l.Max }))*1e3,
				medianOf(ms, func(m measurement) float64 { return perReq(m.cpuSelf, m.res) }),
				server,
				medianOf(ms, func(m measurement) float64 { return m.cpuOther }))
		}
	}
	_ = tw.Flush()
}

// printActors writes what Cairn's actors did during each row, then every
// row's errors.
func printActors(w io.Writer, targets []target, workloads []workload, results [][][]measurement) {
	source, busy := "/debug/actors,", ""
	if *flagMembers > 1 {
		source, busy = "/debug/actors of every member, summed;", ", up to 100% per member"
	}
	fmt.Fprintf(w, "\nCairn actors during each workload (from %s medians over rounds; busy = handling time / wall time%s)\n\n", source, busy)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "target\tworkload\tactor\tmessages/req\tmean handling\tbusy\t")
	for ti, t := range targets {
		if len(t.httpURLs) == 0 {
			continue
		}
		for wi, wl := range workloads {
			ms := results[ti][wi]
			for ai, a := range ms[0].actors {
				pick := func(f func(actorLoad, measurement) float64) float64 {
					var xs []float64
					for _, m := range ms {
						if ai < len(m.actors) && m.actors[ai].name == a.name {
							xs = append(xs, f(m.actors[ai], m))
						}
					}
					return median(xs)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.1fµs\t%.0f%%\t\n", t.name, wl.name, a.name,
					pick(func(a actorLoad, m measurement) float64 { return float64(a.messages) / float64(max(m.res.Requests, 1)) }),
					pick(func(a actorLoad, _ measurement) float64 { return a.meanMicro }),
					pick(func(a actorLoad, m measurement) float64 { return 100 * a.busy.Seconds() / m.span.Seconds() }))
			}
		}
	}
	_ = tw.Flush()
	for ti, t := range targets {
		for wi, wl := range workloads {
			for _, m := range results[ti][wi] {
				for k, n := range m.res.ErrorKinds {
					fmt.Fprintf(w, "%s %s: error x%d: %s\n", t.name, wl.name, n, k)
				}
			}
		}
	}
}

func throughput(m measurement) float64 { return m.res.Throughput }

// metric returns the named figure of a scenario row.
func metric(name string) func(measurement) float64 {
	return func(m measurement) float64 {
		x, _ := m.res.Metric(name)
		return x.Value
	}
}

// printScenarios writes the watch and lease rows figure by figure: the
// median over rounds on each target, and each Cairn engine's ratio to
// etcd. A figure a target did not report (memory and CPU of an in-process
// etcd) is "-".
func printScenarios(w io.Writer, targets []target, workloads []workload, results [][][]measurement) {
	var rows []int
	for wi, wl := range workloads {
		if wl.scenario {
			rows = append(rows, wi)
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nWatch and lease workloads (medians over rounds, or the one round of a row that runs once; cairn/etcd is the\n"+
		"ratio of the medians; \"better\" says which way is good).\n\n")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := "workload\tfigure\tbetter\t"
	for _, t := range targets {
		header += t.name + "\t"
	}
	for _, t := range targets[1:] {
		header += strings.TrimPrefix(t.name, "cairn-") + "/etcd\t"
	}
	fmt.Fprintln(tw, header)
	for _, wi := range rows {
		wl := workloads[wi]
		// The figures in the order the first round on etcd reported them.
		var names []loadgen.Metric
		for ti := range targets {
			if len(results[ti][wi]) > 0 && len(results[ti][wi][0].res.Metrics) > len(names) {
				names = results[ti][wi][0].res.Metrics
			}
		}
		for _, n := range names {
			line := fmt.Sprintf("%s\t%s (%s)\t%s\t", wl.id, n.Name, n.Unit, n.Better)
			meds := make([]float64, len(targets))
			have := make([]bool, len(targets))
			for ti := range targets {
				var xs []float64
				for _, m := range results[ti][wi] {
					if x, ok := m.res.Metric(n.Name); ok {
						xs = append(xs, x.Value)
					}
				}
				meds[ti], have[ti] = median(xs), len(xs) > 0
				if have[ti] {
					line += fmt.Sprintf("%.4g\t", meds[ti])
				} else {
					line += "-\t"
				}
			}
			for ti := range targets[1:] {
				if have[0] && have[ti+1] && meds[0] != 0 {
					line += fmt.Sprintf("%.2fx\t", meds[ti+1]/meds[0])
				} else {
					line += "-\t"
				}
			}
			fmt.Fprintln(tw, line)
		}
	}
	_ = tw.Flush()
}

func p99(m measurement) float64 { return m.res.Latency.P99.Seconds() }

func lat(f func(loadgen.Latency) time.Duration) func(measurement) float64 {
	return func(m measurement) float64 { return f(m.res.Latency).Seconds() }
}

func perReq(cpu time.Duration, r loadgen.Result) float64 {
	return float64(cpu.Microseconds()) / float64(max(r.Requests, 1))
}

// pairedRatios returns cairn/etcd throughput round by round.
func pairedRatios(cairn, etcd []measurement) []float64 {
	var out []float64
	for i := range min(len(cairn), len(etcd)) {
		if etcd[i].res.Throughput > 0 {
			out = append(out, cairn[i].res.Throughput/etcd[i].res.Throughput)
		}
	}
	return out
}

func medianOf(ms []measurement, f func(measurement) float64) float64 {
	xs := make([]float64, len(ms))
	for i, m := range ms {
		xs[i] = f(m)
	}
	return median(xs)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func metricName(s string) string {
	return strings.NewReplacer(", ", "-", " clients", "c", " client", "c", " ", "-").Replace(s)
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

// usedPorts are the ports freePort has handed out. The kernel may hand
// out a port it has just closed again, and two members on one port fail
// to start.
var usedPorts = map[int]bool{}

// freePort returns a loopback port that is free now and that no earlier
// call has returned. Only the benchmark's goroutine calls it.
func freePort(b *testing.B) int {
	b.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !usedPorts[port] {
			usedPorts[port] = true
			return port
		}
	}
}

// member is where one member of a target listens.
type member struct {
	name         string
	client, peer string // host:port
}

// layout picks loopback ports for n members and returns them with the
// initial cluster (name=peer URL of each member) that they start with.
func layout(b *testing.B, n int) ([]member, string) {
	b.Helper()
	ms := make([]member, n)
	initial := make([]string, n)
	for i := range ms {
		ms[i] = member{
			name:   fmt.Sprintf("m%d", i+1),
			client: fmt.Sprintf("127.0.0.1:%d", freePort(b)),
			peer:   fmt.Sprintf("127.0.0.1:%d", freePort(b)),
		}
		initial[i] = ms[i].name + "=http://" + ms[i].peer
	}
	return ms, strings.Join(initial, ",")
}

// etcdMember is one member of the reference etcd: what etcdConfig takes,
// and what a child process receives in etcdChildEnv.
type etcdMember struct {
	Name, Dir      string
	Client, Peer   string // host:port
	InitialCluster string // name=peer URL of every member
}

// etcdConfig is the reference's configuration: etcd's defaults (fsync on,
// snapshot count, quota, ...) for member m, with data in m.Dir.
func etcdConfig(m etcdMember) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir = m.Name, m.Dir
	// At "error", Close logs its listeners' shutdown as failures; request
	// failures are counted by loadgen instead.
	cfg.LogLevel = "fatal"
	cu, _ := url.Parse("http://" + m.Client)
	pu, _ := url.Parse("http://" + m.Peer)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = m.InitialCluster
	return cfg
}

// startEtcd starts the reference in this process, a single member.
func startEtcd(b *testing.B) target {
	b.Helper()
	ms, initial := layout(b, 1)
	e, err := embed.StartEtcd(etcdConfig(etcdMember{
		Name: ms[0].name, Dir: b.TempDir(), Client: ms[0].client, Peer: ms[0].peer, InitialCluster: initial,
	}))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		b.Fatal("embedded etcd not ready after 60s")
	}
	return target{name: "etcd", endpoints: []string{ms[0].client}}
}

// startEtcdProcesses starts the reference as n child processes, the
// members of one cluster: this test binary, re-executed with etcdChildEnv
// set.
func startEtcdProcesses(b *testing.B, n int) target {
	b.Helper()
	ms, initial := layout(b, n)
	cmds := make([]*exec.Cmd, n)
	for i, m := range ms {
		spec, err := json.Marshal(etcdMember{Name: m.name, Dir: b.TempDir(), Client: m.client, Peer: m.peer, InitialCluster: initial})
		if err != nil {
			b.Fatal(err)
		}
		cmds[i] = exec.Command(os.Args[0])
		cmds[i].Env = append(cleanEnv(), etcdChildEnv+"="+string(spec))
	}
	t := startTarget(b, "etcd", ms, cmds)
	t.httpURLs = nil // etcd has no /debug/actors
	return t
}

// serveEtcdChild runs etcd until SIGTERM; spec is an etcdMember in JSON.
func serveEtcdChild(spec string) int {
	var m etcdMember
	if err := json.Unmarshal([]byte(spec), &m); err != nil {
		fmt.Fprintf(os.Stderr, "%s=%q: %v\n", etcdChildEnv, spec, err)
		return 2
	}
	e, err := embed.StartEtcd(etcdConfig(m))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println(readyLine)
	case <-sig:
		e.Close()
		return 1
	}
	<-sig
	e.Close()
	return 0
}

// startCairn starts bin on engine as n members of one cluster, each with
// its data in a temporary directory.
func startCairn(b *testing.B, bin, engine string, n int) target {
	b.Helper()
	ms, initial := layout(b, n)
	cmds := make([]*exec.Cmd, n)
	for i, m := range ms {
		cmds[i] = exec.Command(bin,
			"--name", m.name,
			"--data-dir", b.TempDir(),
			"--storage-engine", engine,
			"--listen-client-urls", "http://"+m.client,
			"--advertise-client-urls", "http://"+m.client,
			"--listen-peer-urls", "http://"+m.peer,
			"--initial-advertise-peer-urls", "http://"+m.peer,
			"--initial-cluster", initial,
			"--http-listen-addr", fmt.Sprintf("127.0.0.1:%d", freePort(b)),
		)
		cmds[i].Env = cleanEnv()
	}
	return startTarget(b, "cairn-"+engine, ms, cmds)
}

// cleanEnv drops ETCD_* variables, which would configure the servers.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") && !strings.HasPrefix(kv, etcdChildEnv+"=") {
			env = append(env, kv)
		}
	}
	return env
}

// startTarget starts cmds[i] as member ms[i] of the target called name,
// all at once, since a member of a cluster becomes ready only once a
// quorum is up. It waits until every member has logged readiness and
// answers a linearizable read, and stops them when the benchmark ends.
func startTarget(b *testing.B, name string, ms []member, cmds []*exec.Cmd) target {
	b.Helper()
	t := target{name: name}
	procs := make([]*process, 0, len(cmds))
	b.Cleanup(func() { stopAll(procs) })
	for i, cmd := range cmds {
		label := name
		if len(cmds) > 1 {
			label += " " + ms[i].name
		}
		procs = append(procs, launch(b, label, cmd))
		t.endpoints = append(t.endpoints, ms[i].client)
		t.pids = append(t.pids, cmd.Process.Pid)
		t.httpURLs = append(t.httpURLs, "http://"+ms[i].client)
	}
	timeout := time.After(60 * time.Second)
	for _, p := range procs {
		select {
		case <-p.ready:
		case <-p.done:
			b.Fatalf("%s exited before becoming ready:\n%s", p.label, logsOf(procs))
		case <-timeout:
			b.Fatalf("%s not ready after 60s:\n%s", p.label, logsOf(procs))
		}
	}
	// Before the first row, every member must reach the leader: wait for
	// a linearizable read to succeed on each.
	for i, ep := range t.endpoints {
		if err := waitLeader(ep); err != nil {
			b.Fatalf("%s has no leader: %v\n%s", procs[i].label, err, logsOf(procs))
		}
	}
	return t
}

// process is a running server process and what it has logged.
type process struct {
	label string
	cmd   *exec.Cmd
	ready chan struct{} // closed when it logs readyLine
	done  chan struct{} // closed when it has exited
	logMu sync.Mutex
	log   bytes.Buffer
}

// launch starts cmd, gathering its output, and returns without waiting.
func launch(b *testing.B, label string, cmd *exec.Cmd) *process {
	b.Helper()
	p := &process{label: label, cmd: cmd, ready: make(chan struct{}), done: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var once sync.Once
		for sc.Scan() {
			p.logMu.Lock()
			p.log.WriteString(sc.Text() + "\n")
			p.logMu.Unlock()
			if strings.Contains(sc.Text(), readyLine) {
				once.Do(func() { close(p.ready) })
			}
		}
	}()
	go func() { _ = cmd.Wait(); pw.Close(); close(p.done) }()
	return p
}

func (p *process) logs() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// stop sends SIGTERM and waits for the process to exit, killing it after
// 30s.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// stopAll stops procs together and prints the log of any that logged an
// error.
func stopAll(procs []*process) {
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Go(p.stop)
	}
	wg.Wait()
	for _, p := range procs {
		if l := p.logs(); strings.Contains(l, `"level":"error"`) || strings.Contains(l, "panic:") {
			fmt.Fprintf(os.Stderr, "%s logged errors:\n%s", p.label, l)
		}
	}
}

// logsOf returns the logs of procs, each headed by its label when there
// are several: the others' logs tell why one member found no leader.
func logsOf(procs []*process) string {
	if len(procs) == 1 {
		return procs[0].logs()
	}
	var sb strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&sb, "=== %s\n%s", p.label, p.logs())
	}
	return sb.String()
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

// clockTick is the unit of /proc CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

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
	// utime and stime are fields 14 and 15 of the line, counted from the
	// pid; the command name before them may hold spaces, so count from
	// its closing parenthesis.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * clockTick
}

// machineBusy returns the CPU time every core of the machine has spent
// not idle (user, nice, system, irq, softirq, steal) since boot.
func machineBusy() time.Duration {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += n
	}
	return time.Duration(ticks) * clockTick
}

// actorSnapshot mirrors one entry of Cairn's /debug/actors.
type actorSnapshot struct {
	Name      string  `json:"name"`
	Processed int64   `json:"messages_processed"`
	Mean      float64 `json:"mean_handling_us"`
}

// actorTotal is what an actor has done since its member started, summed
// over the members of a target.
type actorTotal struct {
	messages int64
	busyUs   float64 // handling time, µs
}

// actorStats reads /debug/actors of every member of t and sums each
// actor's figures over the members. A member that does not answer is left
// out.
func actorStats(t target) map[string]actorTotal {
	out := map[string]actorTotal{}
	for _, u := range t.httpURLs {
		for _, a := range memberActors(u) {
			tot := out[a.Name]
			tot.messages += a.Processed
			tot.busyUs += a.Mean * float64(a.Processed)
			out[a.Name] = tot
		}
	}
	return out
}

// memberActors returns /debug/actors of the member at httpURL, or nil.
func memberActors(httpURL string) []actorSnapshot {
	resp, err := http.Get(httpURL + "/debug/actors")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var body struct {
		Actors []actorSnapshot `json:"actors"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return nil
	}
	return body.Actors
}

// actorDelta turns two actorStats readings into the work done between
// them, sorted by actor name.
func actorDelta(before, after map[string]actorTotal) []actorLoad {
	var out []actorLoad
	for name, a := range after {
		p := before[name]
		n := a.messages - p.messages
		busyUs := a.busyUs - p.busyUs
		l := actorLoad{name: name, messages: n, busy: time.Duration(busyUs * 1e3)}
		if n > 0 {
			l.meanMicro = busyUs / float64(n)
		}
		out = append(out, l)
	}
	slices.SortFunc(out, func(x, y actorLoad) int { return strings.Compare(x.name, y.name) })
	return out
}
