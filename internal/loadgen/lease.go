package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ttlSeconds rounds d up to whole seconds, the unit of a lease TTL.
func ttlSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}

// grantLeases grants n leases of ttl from clients goroutines over conns
// and, if keyOf is not nil, puts keyOf(i) with lease i attached. A lease
// that could not be granted is 0 in the result.
func grantLeases(ctx context.Context, cfg Config, conns []*clientv3.Client, n, clients int, ttl time.Duration,
	keyOf func(i int) string, errs *tally) ([]clientv3.LeaseID, Latency) {
	ids := make([]clientv3.LeaseID, n)
	var (
		next atomic.Int64
		lats latencies
		wg   sync.WaitGroup
	)
	for c := range clients {
		cli := conns[c%len(conns)]
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
				t0 := time.Now()
				g, err := cli.Grant(rctx, ttlSeconds(ttl))
				if err == nil {
					lats.add(time.Since(t0))
					ids[i] = g.ID
					if keyOf != nil {
						_, err = cli.Put(rctx, keyOf(i), "", clientv3.WithLease(g.ID))
					}
				}
				cancel()
				if err != nil {
					errs.fail(err)
				}
			}
		})
	}
	wg.Wait()
	l, _ := lats.summary()
	return ids, l
}

// revokeLeases revokes every nonzero lease of ids; a lease already gone
// is not an error.
func revokeLeases(ctx context.Context, cfg Config, conns []*clientv3.Client, ids []clientv3.LeaseID, clients int, errs *tally) {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for c := range clients {
		cli := conns[c%len(conns)]
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				if ids[i] == 0 {
					continue
				}
				rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
				_, err := cli.Revoke(rctx, ids[i])
				cancel()
				if err != nil && !isLeaseNotFound(err) {
					errs.fail(fmt.Errorf("revoke: %w", err))
				}
			}
		})
	}
	wg.Wait()
}

func isLeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound)
}

// KeepAliveOptions shape a lease keep-alive workload: Leases leases, each
// renewed with one KeepAliveOnce every Interval, the renewals spread
// uniformly over the interval, for Duration.
type KeepAliveOptions struct {
	Leases   int           // default 10000
	TTL      time.Duration // default 60s; must comfortably exceed Interval
	Interval time.Duration // default 5s
	Duration time.Duration // of the keep-alive phase; default 20s
	Clients  int           // goroutines granting and renewing over cfg.Conns connections; default 64
}

// LeaseKeepAlive grants opts.Leases leases (untimed), keeps them alive
// for opts.Duration, then revokes them. Renewal n of the phase is
// scheduled at start + n·Interval/Leases for lease n mod Leases, open loop:
// its latency runs from its scheduled time to its reply, so a server (or
// client pool) that falls behind shows in the latency. With
// cfg.ServerPID the server's CPU time over the phase is reported too.
// Result.Requests, Throughput and Latency are the keep-alives.
func LeaseKeepAlive(ctx context.Context, cfg Config, opts KeepAliveOptions) (Result, error) {
	cfg, err := cfg.normaliseScenario(8)
	if err != nil {
		return Result{}, err
	}
	if opts.Leases <= 0 {
		opts.Leases = 10_000
	}
	if opts.TTL <= 0 {
		opts.TTL = 60 * time.Second
	}
	if opts.Interval <= 0 {
		opts.Interval = 5 * time.Second
	}
	if opts.Duration <= 0 {
		opts.Duration = 20 * time.Second
	}
	if opts.Clients <= 0 {
		opts.Clients = 64
	}
	renewals := int(float64(opts.Leases) * opts.Duration.Seconds() / opts.Interval.Seconds())
	if opts.Leases > MaxTotal || renewals > MaxTotal || opts.Clients > MaxClients || opts.TTL <= opts.Interval {
		return Result{}, fmt.Errorf("loadgen: keep-alive of %d leases (%d renewals, %d clients, TTL %v, interval %v) is out of bounds",
			opts.Leases, renewals, opts.Clients, opts.TTL, opts.Interval)
	}
	conns, err := dial(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)

	var grantErrs, errs tally
	t0 := time.Now()
	ids, grantLat := grantLeases(ctx, cfg, conns, opts.Leases, opts.Clients, opts.TTL, nil, &grantErrs)
	grantTime := time.Since(t0)
	// Revoke even if the phase is cut short: the next workload must not
	// share the server with ten thousand live leases.
	defer func() {
		var revokeErrs tally
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		revokeLeases(rctx, cfg, conns, ids, opts.Clients, &revokeErrs)
	}()

	cpu := func() time.Duration {
		if cfg.ServerPID <= 0 {
			return 0
		}
		d, _ := processCPU(cfg.ServerPID)
		return d
	}
	type job struct {
		id    clientv3.LeaseID
		sched time.Time
	}
	var (
		jobs = make(chan job, maxInFlight)
		lats latencies
		sent atomic.Int64
		wg   sync.WaitGroup
	)
	for c := range opts.Clients {
		cli := conns[c%len(conns)]
		wg.Go(func() {
			for j := range jobs {
				rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
				_, err := cli.KeepAliveOnce(rctx, j.id)
				d := time.Since(j.sched)
				cancel()
				sent.Add(1)
				if err != nil {
					errs.fail(err)
					continue
				}
				lats.add(d)
			}
		})
	}
	cpu0 := cpu()
	start := time.Now()
	step := opts.Interval / time.Duration(opts.Leases)
	behind := time.Duration(0)
	for n := range renewals {
		sched := start.Add(time.Duration(n) * step)
		if !sleepCtx(ctx, time.Until(sched)) {
			break
		}
		id := ids[n%opts.Leases]
		if id == 0 {
			continue
		}
		behind = max(behind, time.Since(sched))
		jobs <- job{id: id, sched: sched}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	cpuUsed := cpu() - cpu0

	lat, ok := lats.summary()
	res := Result{
		Workload: "lease-keepalive", Clients: opts.Clients, Conns: cfg.Conns, Requests: int(sent.Load()),
		Elapsed: elapsed, Throughput: float64(ok) / elapsed.Seconds(), Latency: lat,
		Incomplete: int(sent.Load()) < renewals,
	}
	errs.into(&res)
	grantErrs.into(&res)

	var m metrics
	m.ms("keep-alive p50", lat.P50, "lower")
	m.ms("keep-alive p99", lat.P99, "lower")
	m.ms("keep-alive max", lat.Max, "lower")
	m.add("keep-alives/s", res.Throughput, "/s", "")
	if cfg.ServerPID > 0 {
		m.add("server CPU", cpuUsed.Seconds()/elapsed.Seconds(), "cores", "lower")
		m.add("server CPU per keep-alive", float64(cpuUsed.Microseconds())/float64(max(ok, 1)), "µs", "lower")
	}
	m.add("grants/s", float64(opts.Leases)/grantTime.Seconds(), "/s", "higher")
	m.ms("grant p99", grantLat.P99, "lower")
	m.ms("renewer behind schedule", behind, "lower")
	res.Metrics = m
	return res, nil
}

// StormOptions shape a lease storm: Leases leases of a short TTL, one key
// attached to each, left to expire together while one client writes.
type StormOptions struct {
	Leases   int           // default 10000
	TTL      time.Duration // default 5s
	Baseline time.Duration // the writer alone before the grants; default 3s
	Tail     time.Duration // the writer after the last lease is gone; default 1s
	Clients  int           // goroutines granting over cfg.Conns connections; default 64
	// Timeout bounds the wait for the leases to expire, from the last
	// grant; what is left then is revoked. Default TTL + 60s.
	Timeout time.Duration
	Prefix  string // the attached keys are Prefix+"k/"+i, the writer's key Prefix+"w"; default "loadgen/storm/"
}

// LeaseStorm shows whether mass lease expiry stalls writes. One client
// puts sequentially from opts.Baseline before the grants until opts.Tail
// after every lease is gone (its key deleted and the lease no longer
// listed). It reports that writer's latency in the baseline window, before
// the first grant, and in the storm window, from the first grant until
// the last lease is gone, also split at the last grant (before it the
// writer competes with the granting clients, after it with expiry alone),
// and how long expiry took. If granting takes longer than the TTL, the
// first leases expire while the last are granted. Result.Latency is the
// storm window's; Result.Requests counts the writer's puts.
func LeaseStorm(ctx context.Context, cfg Config, opts StormOptions) (Result, error) {
	cfg, err := cfg.normaliseScenario(8)
	if err != nil {
		return Result{}, err
	}
	if opts.Leases <= 0 {
		opts.Leases = 10_000
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Second
	}
	if opts.Baseline <= 0 {
		opts.Baseline = 3 * time.Second
	}
	if opts.Tail <= 0 {
		opts.Tail = time.Second
	}
	if opts.Clients <= 0 {
		opts.Clients = 64
	}
	if opts.Timeout <= 0 {
		opts.Timeout = opts.TTL + time.Minute
	}
	if opts.Prefix == "" {
		opts.Prefix = "loadgen/storm/"
	}
	if opts.Leases > MaxTotal || opts.Clients > MaxClients {
		return Result{}, fmt.Errorf("loadgen: storm of %d leases from %d clients is out of bounds", opts.Leases, opts.Clients)
	}
	conns, writer, err := dialWithWriter(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(append(conns, writer))

	type sample struct {
		at  time.Time // sent
		lat time.Duration
		err error
	}
	var (
		samples []sample // the writer's alone until stop is closed and it is done
		stop    = make(chan struct{})
		wdone   = make(chan struct{})
	)
	val := randomValue(256)
	go func() {
		defer close(wdone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
			t0 := time.Now()
			_, err := writer.Put(rctx, opts.Prefix+"w", val)
			samples = append(samples, sample{at: t0, lat: time.Since(t0), err: err})
			cancel()
			if ctx.Err() != nil {
				return
			}
		}
	}()
	stopWriter := func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-wdone
	}
	defer stopWriter()

	start := time.Now()
	sleepCtx(ctx, opts.Baseline)
	var errs tally
	stormStart := time.Now()
	ids, grantLat := grantLeases(ctx, cfg, conns, opts.Leases, opts.Clients, opts.TTL,
		func(i int) string { return fmt.Sprintf("%sk/%d", opts.Prefix, i) }, &errs)
	granted := time.Now()

	mine := make(map[clientv3.LeaseID]bool, len(ids))
	for _, id := range ids {
		if id != 0 {
			mine[id] = true
		}
	}
	// Poll until no attached key is left and none of the leases is
	// listed.
	gone, left := time.Time{}, -1
	poll := conns[0]
	for time.Since(granted) < opts.Timeout && ctx.Err() == nil {
		rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
		keys, err := poll.Get(rctx, opts.Prefix+"k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		var listed *clientv3.LeaseLeasesResponse
		if err == nil && keys.Count == 0 {
			listed, err = poll.Leases(rctx)
		}
		cancel()
		if err != nil {
			errs.fail(fmt.Errorf("poll: %w", err))
		} else if listed != nil {
			left = 0
			for _, l := range listed.Leases {
				if mine[l.ID] {
					left++
				}
			}
			if left == 0 {
				gone = time.Now()
				break
			}
		} else {
			left = int(keys.Count)
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
	if gone.IsZero() {
		errs.failMsg(fmt.Sprintf("%d leases or keys left %v after the last grant", left, opts.Timeout))
		rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		revokeLeases(rctx, cfg, conns, ids, opts.Clients, &errs)
		_, _ = poll.Delete(rctx, opts.Prefix+"k/", clientv3.WithPrefix())
		cancel()
	}
	stormEnd := gone
	if stormEnd.IsZero() {
		stormEnd = time.Now()
	}
	sleepCtx(ctx, opts.Tail)
	stopWriter()
	elapsed := time.Since(start)

	// The storm window splits at the last grant: before it the writer
	// shares the server with the granting clients, after it only with
	// expiry.
	var base, storm, granting, expiring []time.Duration
	var writeErrs tally
	for _, s := range samples {
		if s.err != nil {
			writeErrs.fail(fmt.Errorf("writer: %w", s.err))
			continue
		}
		switch {
		case s.at.Before(stormStart):
			base = append(base, s.lat)
		case s.at.Before(granted):
			granting = append(granting, s.lat)
			storm = append(storm, s.lat)
		case !s.at.After(stormEnd):
			expiring = append(expiring, s.lat)
			storm = append(storm, s.lat)
		}
	}
	nStorm := len(storm)
	bl, sl := summarise(base), summarise(storm)
	gl, el := summarise(granting), summarise(expiring)
	res := Result{
		Workload: "lease-storm", Clients: opts.Clients, Conns: cfg.Conns, Requests: len(samples),
		Elapsed: elapsed, Latency: sl, Incomplete: gone.IsZero(),
		Throughput: float64(nStorm) / stormEnd.Sub(stormStart).Seconds(),
	}
	errs.into(&res)
	writeErrs.into(&res)

	var m metrics
	m.ms("put p99 baseline", bl.P99, "")
	m.ms("put max baseline", bl.Max, "")
	m.ms("put p99 storm", sl.P99, "lower")
	m.ms("put max storm", sl.Max, "lower")
	m.add("puts/s baseline", float64(len(base))/stormStart.Sub(start).Seconds(), "puts/s", "")
	m.add("puts/s storm", res.Throughput, "puts/s", "higher")
	m.ms("put p99 while granting", gl.P99, "lower")
	m.ms("put max while granting", gl.Max, "lower")
	m.ms("put p99 after grants", el.P99, "lower")
	m.ms("put max after grants", el.Max, "lower")
	m.add("puts/s after grants", float64(len(expiring))/stormEnd.Sub(granted).Seconds(), "puts/s", "higher")
	m.add("grant+put time", granted.Sub(stormStart).Seconds(), "s", "lower")
	m.ms("grant p99", grantLat.P99, "lower")
	if !gone.IsZero() {
		// The last lease was granted by `granted`; it cannot expire before
		// granted+TTL, so this is what expiry took beyond the TTL.
		m.add("storm length", gone.Sub(stormStart).Seconds(), "s", "lower")
		m.add("all gone after last grant", gone.Sub(granted).Seconds(), "s", "lower")
		m.add("expiry lag beyond TTL", (gone.Sub(granted) - opts.TTL).Seconds(), "s", "lower")
	}
	res.Metrics = m
	return res, nil
}
