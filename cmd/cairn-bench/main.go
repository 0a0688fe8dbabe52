// Command cairn-bench drives load at an etcd v3 API (Cairn or etcd) on this
// machine and prints what it measured, in the manner of etcd's `benchmark`
// tool:
//
//	cairn-bench put --endpoints 127.0.0.1:2379 --clients 64 --conns 8 --total 20000
//	cairn-bench range --consistency s --clients 64 --conns 8 --total 50000 --prefill-val-size 256
//	cairn-bench txn-put --txn-ops 4 --clients 16 --total 5000
//
// Every run is bounded by --total and --max-duration, and endpoints must be
// loopback addresses. It exits 1 if the run could not start or any request
// failed, 2 on a usage error.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cairn-kv/cairn/internal/loadgen"
)

const usage = `usage: cairn-bench <put|range|txn-put> [flags]

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
		clients    = fs.Int("clients", 1, "concurrent clients, each with one request in flight")
		conns      = fs.Int("conns", 1, "gRPC connections shared by the clients")
		total      = fs.Int("total", 10000, "requests to send")
		maxDur     = fs.Duration("max-duration", 5*time.Minute, "stop sending after this long")
		reqTimeout = fs.Duration("request-timeout", 10*time.Second, "timeout of each request")
		format     = fs.String("w", "table", "output format: table or json")
	)
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
	})
	if err != nil {
		fmt.Fprintf(stderr, "cairn-bench: %v\n", err)
		return 1
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
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
	kinds := make([]string, 0, len(r.ErrorKinds))
	for k := range r.ErrorKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "error x%d: %s\n", r.ErrorKinds[k], k)
	}
}

// ms formats a latency in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }
