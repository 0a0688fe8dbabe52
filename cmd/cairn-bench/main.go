// Command cairn-bench drives load at an etcd v3 API (Cairn or etcd) on this
// machine and prints what it measured, in the manner of etcd's `benchmark`
// tool:
//
//	cairn-bench put --endpoints 127.0.0.1:2379 --clients 64 --conns 8 --total 20000
//	cairn-bench range --consistency s --clients 64 --conns 8 --total 50000 --prefill-val-size 256
//	cairn-bench txn-put --txn-ops 4 --clients 16 --total 5000
//
// and watch and lease workloads, which report named figures rather than
// requests per second (--server-pid lets them read the server's CPU and
// memory from /proc):
//
//	cairn-bench watch-fanout --watchers 1000 --keys 1 --puts 1000 --conns 10
//	cairn-bench watch-fanout --watchers 6400 --keys 100 --puts 10000 --conns 10
//	cairn-bench watch-latency --watchers 100 --rate 1000 --duration 5s
//	cairn-bench watch-idle --streams 100 --watchers-per-stream 100 --server-pid 1234
//	cairn-bench lease-keepalive --leases 10000 --interval 5s --duration 20s --server-pid 1234
//	cairn-bench lease-storm --leases 10000 --ttl 5s
//
// and a snapshot workload, which loads a store (1 GiB by default), then
// takes one Maintenance.Snapshot while a writer puts, checks the file
// and reports its speed and the server's memory meanwhile:
//
//	cairn-bench snapshot --data-size 1GiB --server-pid 1234 --pprof-url http://127.0.0.1:2379/debug/pprof
//
// Every run is bounded by --total (or the workload's own counts) and
// --max-duration, and endpoints must be loopback addresses. It exits 1 if
// the run could not start or any request failed, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cairn-kv/cairn/internal/loadgen"
)

const usage = `usage: cairn-bench <put|range|txn-put|watch-fanout|watch-latency|watch-idle|lease-keepalive|lease-storm|snapshot> [flags]

Run 'cairn-bench <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("cairn-bench "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		endpoints  = fs.String("endpoints", "127.0.0.1:2379", "comma-separated loopback client endpoints")
		maxDur     = fs.Duration("max-duration", 5*time.Minute, "stop sending after this long")
		reqTimeout = fs.Duration("request-timeout", 10*time.Second, "timeout of each request")
		format     = fs.String("w", "table", "output format: table or json")
		clients    = new(int)
		total      = new(int)
		conns      *int
		serverPID  = new(int)
	)
	// The put, range and txn-put commands share a request count and a
	// client pool; the watch and lease commands have counts of their own.
	if isKV := cmd == "put" || cmd == "txn-put" || cmd == "range"; isKV {
		clients = fs.Int("clients", 1, "concurrent clients, each with one request in flight")
		conns = fs.Int("conns", 1, "gRPC connections shared by the clients")
		total = fs.Int("total", 10000, "requests to send")
	} else {
		conns = fs.Int("conns", 0, "gRPC connections (0: the workload's default)")
		serverPID = fs.Int("server-pid", 0, "the server's process id on this machine, to report its CPU and memory (0: not reported)")
	}
	var run func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error)
	switch cmd {
	case "put", "txn-put":
		var (
			keySize  = fs.Int("key-size", 8, "bytes per key")
			valSize  = fs.Int("val-size", 256, "bytes per value")
			keySpace = fs.Int("key-space-size", 100000, "number of distinct keys")
			seq      = fs.Bool("sequential-keys", false, "use keys in order instead of at random")
			txnOps   = fs.Int("txn-ops", 1, "puts per transaction (txn-put only)")
		)
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			po := loadgen.PutOptions{KeySize: *keySize, ValueSize: *valSize, KeySpace: *keySpace, Sequential: *seq}
			if cmd == "txn-put" {
				return loadgen.TxnPut(ctx, cfg, loadgen.TxnOptions{PutOptions: po, Ops: *txnOps})
			}
			return loadgen.Put(ctx, cfg, po)
		}
	case "range":
		var (
			key         = fs.String("key", "loadgen/range", "key to read")
			end         = fs.String("end", "", "range end (empty: the key alone)")
			limit       = fs.Int64("limit", 0, "limit on keys returned (0: none)")
			consistency = fs.String("consistency", "l", "l (linearizable) or s (serializable)")
			prefill     = fs.Int("prefill-val-size", 0, "if positive, first write the key with a value of this many bytes")
		)
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			c, err := loadgen.ParseConsistency(*consistency)
			if err != nil {
				return loadgen.Result{}, err
			}
			return loadgen.Range(ctx, cfg, loadgen.RangeOptions{
				Key: *key, End: *end, Limit: *limit, Consistency: c, ValueSize: *prefill,
			})
		}
	case "watch-fanout":
		var o loadgen.FanoutOptions
		fs.IntVar(&o.Watchers, "watchers", 1000, "watchers, each its own Watch call")
		fs.IntVar(&o.Keys, "keys", 1, "keys watched, watchers spread evenly over them")
		fs.IntVar(&o.Streams, "streams", 0, "gRPC watch streams the watchers share (0: one per connection)")
		fs.IntVar(&o.Puts, "puts", 1000, "puts, round-robin over the keys")
		fs.IntVar(&o.Writers, "writers", 16, "concurrent writers over one connection of their own")
		fs.IntVar(&o.ValueSize, "val-size", 256, "bytes per value")
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.WatchFanout(ctx, cfg, o)
		}
	case "watch-latency":
		var o loadgen.WatchLatencyOptions
		fs.IntVar(&o.Watchers, "watchers", 100, "watchers on the key")
		fs.IntVar(&o.Streams, "streams", 0, "gRPC watch streams the watchers share (0: one per connection)")
		fs.IntVar(&o.Rate, "rate", 1000, "puts per second, open loop")
		fs.DurationVar(&o.Duration, "duration", 5*time.Second, "how long the writer puts")
		fs.IntVar(&o.ValueSize, "val-size", 256, "bytes per value (at least 8)")
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.WatchLatency(ctx, cfg, o)
		}
	case "watch-idle":
		var o loadgen.IdleWatchOptions
		fs.IntVar(&o.Streams, "streams", 100, "gRPC watch streams")
		fs.IntVar(&o.WatchersPerStream, "watchers-per-stream", 100, "idle watchers on each stream")
		fs.DurationVar(&o.Settle, "settle", 2*time.Second, "wait before each memory reading")
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.IdleWatchers(ctx, cfg, o)
		}
	case "lease-keepalive":
		var o loadgen.KeepAliveOptions
		fs.IntVar(&o.Leases, "leases", 10000, "leases granted and kept alive")
		fs.DurationVar(&o.TTL, "ttl", time.Minute, "lease TTL")
		fs.DurationVar(&o.Interval, "interval", 5*time.Second, "each lease is renewed once per interval")
		fs.DurationVar(&o.Duration, "duration", 20*time.Second, "length of the keep-alive phase")
		fs.IntVar(&o.Clients, "clients", 64, "goroutines granting and renewing")
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.LeaseKeepAlive(ctx, cfg, o)
		}
	case "lease-storm":
		var o loadgen.StormOptions
		fs.IntVar(&o.Leases, "leases", 10000, "leases granted, one key attached to each, never renewed")
		fs.DurationVar(&o.TTL, "ttl", 5*time.Second, "lease TTL")
		fs.DurationVar(&o.Baseline, "baseline", 3*time.Second, "the writer alone before the grants")
		fs.DurationVar(&o.Tail, "tail", time.Second, "the writer after the last lease is gone")
		fs.IntVar(&o.Clients, "clients", 64, "goroutines granting")
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.LeaseStorm(ctx, cfg, o)
		}
	case "snapshot":
		o := loadgen.SnapshotOptions{DataBytes: 1 << 30}
		fs.Func("data-size", "value bytes loaded before the snapshot, with an optional suffix KiB, MiB or GiB (default 1GiB)", func(s string) (err error) {
			o.DataBytes, err = parseSize(s)
			return err
		})
		fs.IntVar(&o.ValueSize, "val-size", 100<<10, "bytes per loaded value")
		fs.IntVar(&o.Loaders, "loaders", 8, "goroutines loading concurrently")
		fs.IntVar(&o.Writers, "writers", 1, "goroutines putting while the snapshot is taken")
		fs.IntVar(&o.WriterValueSize, "writer-val-size", 256, "bytes per value the writers put")
		fs.DurationVar(&o.Settle, "settle", 10*time.Second, "how long the server's memory must hold within 8 MiB before the snapshot (waited for at most 20 times as long)")
		fs.DurationVar(&o.Sample, "sample", 50*time.Millisecond, "interval of the server's memory readings during the snapshot")
		fs.StringVar(&o.PprofURL, "pprof-url", "", "the server's pprof address (http://host:port/debug/pprof, served with --enable-pprof): if set, the server collects its garbage before its memory is read")
		fs.StringVar(&o.Dir, "dir", "", "directory where the snapshot is saved to be checked, then removed (default: the system's temporary directory)")
		run = func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
			return loadgen.Snapshot(ctx, cfg, o)
		}
	default:
		fmt.Fprintf(stderr, "cairn-bench: unknown command %q\n%s", cmd, usage)
		return 2
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "cairn-bench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *format != "table" && *format != "json" {
		fmt.Fprintf(stderr, "cairn-bench: -w must be table or json, got %q\n", *format)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, loadgen.Config{
		Endpoints:      strings.Split(*endpoints, ","),
		Conns:          *conns,
		Clients:        *clients,
		Total:          *total,
		MaxDuration:    *maxDur,
		RequestTimeout: *reqTimeout,
		ServerPID:      *serverPID,
	})
	if err != nil {
		fmt.Fprintf(stderr, "cairn-bench: %v\n", err)
		return 1
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else if len(res.Metrics) > 0 {
		writeMetrics(stdout, res)
	} else {
		writeTable(stdout, res)
	}
	if res.Errors > 0 {
		return 1
	}
	return 0
}

// writeTable prints one result as a table, then its errors by kind.
func writeTable(w io.Writer, r loadgen.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\tclients\tconns\trequests\terrors\telapsed\treq/s\tp50\tp90\tp99\tp99.9\tmax\t")
	l := r.Latency
	fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n",
		r.Workload, r.Clients, r.Conns, r.Requests, r.Errors, r.Elapsed.Round(time.Millisecond), r.Throughput,
		ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max))
	_ = tw.Flush()
	if r.Incomplete {
		fmt.Fprintln(w, "stopped by --max-duration or a signal before --total requests were sent")
	}
	writeErrors(w, r)
}

// writeMetrics prints the figures of a watch or lease workload, one a
// line, then its errors by kind.
func writeMetrics(w io.Writer, r loadgen.Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s\tfigure\tvalue\tunit\tbetter\t\n", r.Workload)
	for _, m := range r.Metrics {
		fmt.Fprintf(tw, "\t%s\t%.4g\t%s\t%s\t\n", m.Name, m.Value, m.Unit, m.Better)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "elapsed %s, requests %d, errors %d\n", r.Elapsed.Round(time.Millisecond), r.Requests, r.Errors)
	if r.Incomplete {
		fmt.Fprintln(w, "incomplete: stopped by a signal or timeout before every event or renewal was seen")
	}
	writeErrors(w, r)
}

// writeErrors prints a result's errors by kind.
func writeErrors(w io.Writer, r loadgen.Result) {
	kinds := make([]string, 0, len(r.ErrorKinds))
	for k := range r.ErrorKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "error x%d: %s\n", r.ErrorKinds[k], k)
	}
}

// parseSize reads a byte count, optionally with a binary suffix: 4096,
// 512KiB, 100MiB, 1GiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	num := s
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", s)
	}
	return n * mult, nil
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
