// Package loadgen drives bounded load through the official etcd client
// against a server on this machine and measures it, in the manner of etcd's
// own `benchmark` tool: Conns gRPC connections shared round-robin by Clients
// goroutines, each sending one request at a time until Total requests have
// been sent or MaxDuration has passed.
//
// The watch workloads (WatchFanout, WatchLatency, IdleWatchers) and lease
// workloads (LeaseKeepAlive, LeaseStorm) have shapes of their own, given
// by their options, and report named figures in Result.Metrics; with
// Config.ServerPID they also read the server's CPU time and resident
// memory from /proc. Each cancels its watchers and revokes its leases
// before it returns. The Snapshot workload loads a large store and
// measures one Maintenance.Snapshot of it under writes: its speed, the
// server's memory meanwhile, and whether the file is consistent.
//
// It speaks only the public etcd v3 API, so the same workload measures Cairn
// and etcd alike. Endpoints must be loopback addresses: load is never sent
// off this machine.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Limits that keep a run bounded whatever its configuration asks for.
const (
	MaxTotal       = 10_000_000
	MaxClients     = 10_000
	MaxDuration    = 30 * time.Minute
	defaultTimeout = 10 * time.Second
)

// ErrNotLoopback is returned for an endpoint outside 127.0.0.0/8, ::1 and
// localhost.
var ErrNotLoopback = errors.New("loadgen: endpoint is not a loopback address")

// Config is the shape of a run: where it goes, how wide and how long.
type Config struct {
	// Endpoints are host:port (or http://host:port) addresses of the
	// server's client API. Each must be a loopback address. Several
	// endpoints, such as the members of a cluster, share the load
	// equally: every clientv3 client is given all of them and sends its
	// requests to each in turn (clientv3's round-robin balancing), where
	// etcd's benchmark instead gives each of its clients one endpoint.
	Endpoints []string
	// Conns is the number of clientv3 clients opened, each with one gRPC
	// connection per endpoint; default 1. Clients share them
	// round-robin, as etcd's benchmark --conns does.
	Conns int
	// Clients is the number of goroutines sending requests, each one at a
	// time; default 1.
	Clients int
	// Total is the number of requests to send; it must be positive.
	Total int
	// MaxDuration stops the run early: no request is sent after it has
	// passed since the first. Zero means MaxDuration (the package limit).
	MaxDuration time.Duration
	// RequestTimeout bounds each request; default 10s. A request that
	// times out counts as an error.
	RequestTimeout time.Duration
	// ServerPID, if positive, is the server's process on this machine:
	// the watch and lease workloads read its CPU time and resident memory
	// from /proc. Zero leaves those figures out.
	ServerPID int
}

// Result is what one run measured. Throughput and latencies count
// successful requests only, as etcd's benchmark does.
type Result struct {
	Workload   string
	Clients    int
	Conns      int
	Requests   int            // requests sent
	Errors     int            // requests that failed
	ErrorKinds map[string]int // error message → count
	Incomplete bool           // stopped by MaxDuration or ctx before Total was sent
	Elapsed    time.Duration  // from the first request sent to the last reply
	Throughput float64        // successful requests per second
	Latency    Latency
	// Metrics are the named figures of a watch or lease workload, in the
	// order it reports them; the put, range and txn workloads leave it
	// empty.
	Metrics []Metric `json:",omitempty"`
}

// Latency summarises the latency of successful requests.
type Latency struct {
	Min, Mean, P50, P90, P99, P999, Max time.Duration
}

// normalise fills defaults and rejects a configuration that is unbounded
// or that points off this machine.
func (c Config) normalise() (Config, error) {
	if len(c.Endpoints) == 0 {
		return c, errors.New("loadgen: no endpoints")
	}
	for _, ep := range c.Endpoints {
		if err := checkLoopback(ep); err != nil {
			return c, err
		}
	}
	if c.Conns <= 0 {
		c.Conns = 1
	}
	if c.Clients <= 0 {
		c.Clients = 1
	}
	if c.Clients > MaxClients {
		return c, fmt.Errorf("loadgen: %d clients is more than the limit of %d", c.Clients, MaxClients)
	}
	if c.Conns > c.Clients {
		c.Conns = c.Clients
	}
	if c.Total <= 0 || c.Total > MaxTotal {
		return c, fmt.Errorf("loadgen: total must be in [1, %d], got %d", MaxTotal, c.Total)
	}
	if c.MaxDuration <= 0 || c.MaxDuration > MaxDuration {
		c.MaxDuration = MaxDuration
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = defaultTimeout
	}
	return c, nil
}

// checkLoopback accepts host:port or a URL whose host is localhost or a
// loopback IP.
func checkLoopback(ep string) error {
	hostport := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil {
			return fmt.Errorf("loadgen: endpoint %q: %w", ep, err)
		}
		hostport = u.Host
	}
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("loadgen: endpoint %q: %w", ep, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q", ErrNotLoopback, ep)
}

// dial opens cfg.Conns clients and sends one serializable read on each so
// that connection set-up is not timed.
func dial(ctx context.Context, cfg Config) ([]*clientv3.Client, error) {
	conns := make([]*clientv3.Client, 0, cfg.Conns)
	closeAll := func() {
		for _, c := range conns {
			c.Close()
		}
	}
	for range cfg.Conns {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   cfg.Endpoints,
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
			Context:     ctx,
		})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("loadgen: dial %v: %w", cfg.Endpoints, err)
		}
		conns = append(conns, c)
		wctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		_, err = c.Get(wctx, "\x00loadgen-warmup", clientv3.WithSerializable())
		cancel()
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("loadgen: first request to %v: %w", cfg.Endpoints, err)
		}
	}
	return conns, nil
}

// run sends cfg.Total requests, the i-th built by next(i), from cfg.Clients
// goroutines over freshly dialled connections. next is called from many
// goroutines at once.
func run(ctx context.Context, cfg Config, workload string, next func(i int) clientv3.Op) (Result, error) {
	cfg, err := cfg.normalise()
	if err != nil {
		return Result{}, err
	}
	conns, err := dial(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()

	var (
		issued  atomic.Int64
		wg      sync.WaitGroup
		workers = make([]worker, cfg.Clients)
	)
	start := time.Now()
	deadline := start.Add(cfg.MaxDuration)
	for w := range workers {
		wk := &workers[w]
		wk.lats = make([]time.Duration, 0, cfg.Total/cfg.Clients+1)
		cli := conns[w%len(conns)]
		wg.Go(func() {
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(issued.Add(1)) - 1
				if i >= cfg.Total {
					return
				}
				op := next(i)
				rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
				t0 := time.Now()
				_, err := cli.Do(rctx, op)
				d := time.Since(t0)
				cancel()
				wk.sent++
				if err != nil {
					wk.fail(err)
					continue
				}
				wk.lats = append(wk.lats, d)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	res := Result{Workload: workload, Clients: cfg.Clients, Conns: cfg.Conns, Elapsed: elapsed}
	var lats []time.Duration
	for _, wk := range workers {
		res.Requests += wk.sent
		res.Errors += wk.errors
		for k, n := range wk.errKinds {
			if res.ErrorKinds == nil {
				res.ErrorKinds = make(map[string]int)
			}
			res.ErrorKinds[k] += n
		}
		lats = append(lats, wk.lats...)
	}
	res.Incomplete = res.Requests < cfg.Total
	if elapsed > 0 {
		res.Throughput = float64(len(lats)) / elapsed.Seconds()
	}
	res.Latency = summarise(lats)
	return res, nil
}

// worker is one client goroutine's private tally, merged after the run so
// the hot loop shares nothing but the request counter.
type worker struct {
	sent, errors int
	errKinds     map[string]int
	lats         []time.Duration
}

// maxErrorKinds caps the distinct error messages kept per worker.
const maxErrorKinds = 16

func (w *worker) fail(err error) {
	w.errors++
	if w.errKinds == nil {
		w.errKinds = make(map[string]int)
	}
	k := err.Error()
	if _, ok := w.errKinds[k]; !ok && len(w.errKinds) >= maxErrorKinds {
		k = "(other errors)"
	}
	w.errKinds[k]++
}
