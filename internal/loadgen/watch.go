package loadgen

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// How long a watch workload waits for watchers to be created, and for
// events after the writer has finished, before it gives up and reports
// what is missing.
const (
	watchCreateTimeout = 60 * time.Second
	watchStallTimeout  = 10 * time.Second
)

// FanoutOptions shape a watch fan-out workload: Watchers watchers spread
// evenly over Keys keys, then Puts puts round-robin over those keys.
//
// Every watcher is its own Watch call. Watcher w is on key w mod Keys and
// on gRPC watch stream w mod Streams; stream s is on connection s mod
// cfg.Conns. So the default 1000 watchers on 10 connections are 10 streams
// of 100 watchers each, as 10 client processes each watching a key from
// 100 places would open.
type FanoutOptions struct {
	Watchers  int    // default 1000
	Keys      int    // default 1
	Streams   int    // gRPC watch streams; default cfg.Conns
	Puts      int    // default 1000
	Writers   int    // goroutines putting concurrently over one connection of their own; default 16
	ValueSize int    // default 256
	Prefix    string // keys are Prefix+number; default "loadgen/fanout/"
}

func (o FanoutOptions) withDefaults(conns int) (FanoutOptions, error) {
	if o.Watchers <= 0 {
		o.Watchers = 1000
	}
	if o.Keys <= 0 {
		o.Keys = 1
	}
	if o.Streams <= 0 {
		o.Streams = conns
	}
	if o.Puts <= 0 {
		o.Puts = 1000
	}
	if o.Writers <= 0 {
		o.Writers = 16
	}
	if o.ValueSize <= 0 {
		o.ValueSize = 256
	}
	if o.Prefix == "" {
		o.Prefix = "loadgen/fanout/"
	}
	if o.Watchers > MaxClients*10 || o.Puts > MaxTotal {
		return o, fmt.Errorf("loadgen: fan-out of %d watchers and %d puts is over the limits", o.Watchers, o.Puts)
	}
	return o, nil
}

// watchers is a set of open Watch calls and what they received.
type watchers struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	created atomic.Int64
	events  atomic.Int64 // events received by every watcher together
	errs    tally
}

// open starts n watchers, watcher w on keyOf(w) over stream w mod streams
// (stream s on conns[s mod len(conns)]); onEvents is called from the
// watcher's own goroutine with each response's events. It waits until
// every watcher is created.
func openWatchers(ctx context.Context, conns []*clientv3.Client, n, streams int,
	keyOf func(w int) string, onEvents func(w int, evs []*clientv3.Event, at time.Time)) (*watchers, error) {
	wctx, cancel := context.WithCancel(ctx)
	ws := &watchers{cancel: cancel}
	sctx := make([]context.Context, streams)
	for s := range sctx {
		sctx[s] = streamContext(wctx, s)
	}
	for w := range n {
		s := w % streams
		ch := conns[s%len(conns)].Watch(sctx[s], keyOf(w), clientv3.WithCreatedNotify())
		ws.wg.Go(func() {
			for resp := range ch {
				if resp.Created {
					ws.created.Add(1)
					continue
				}
				if err := resp.Err(); err != nil {
					if wctx.Err() == nil {
						ws.errs.fail(err)
					}
					continue
				}
				if len(resp.Events) > 0 {
					ws.events.Add(int64(len(resp.Events)))
					onEvents(w, resp.Events, time.Now())
				}
			}
		})
	}
	if err := ws.waitCreated(ctx, int64(n)); err != nil {
		ws.close()
		return nil, err
	}
	return ws, nil
}

// waitCreated waits until n watchers in all have been created.
func (ws *watchers) waitCreated(ctx context.Context, n int64) error {
	deadline := time.Now().Add(watchCreateTimeout)
	for ws.created.Load() < n {
		if time.Now().After(deadline) || !sleepCtx(ctx, 5*time.Millisecond) {
			var r Result
			ws.errs.into(&r)
			return fmt.Errorf("loadgen: %d of %d watchers created after %v; errors %v",
				ws.created.Load(), n, watchCreateTimeout, r.ErrorKinds)
		}
	}
	return nil
}

// waitEvents waits until want events in all have arrived, or none has
// arrived for watchStallTimeout, and reports whether they all arrived.
func (ws *watchers) waitEvents(ctx context.Context, want int64) bool {
	last, lastChange := ws.events.Load(), time.Now()
	for {
		got := ws.events.Load()
		if got >= want {
			return true
		}
		if got != last {
			last, lastChange = got, time.Now()
		}
		if time.Since(lastChange) > watchStallTimeout || !sleepCtx(ctx, 2*time.Millisecond) {
			return false
		}
	}
}

// close cancels every watcher and waits for their goroutines.
func (ws *watchers) close() {
	ws.cancel()
	ws.wg.Wait()
}

// WatchFanout opens opts.Watchers watchers, then puts opts.Puts values and
// measures how fast the server delivers the events: every event received
// by every watcher, over the time from the first put until the last
// watcher has its last event. Result.Requests, Throughput and Latency are
// the writer's puts; the fan-out figures are in Result.Metrics, headed by
// "events/s".
func WatchFanout(ctx context.Context, cfg Config, opts FanoutOptions) (Result, error) {
	cfg, err := cfg.normaliseScenario(10)
	if err != nil {
		return Result{}, err
	}
	opts, err = opts.withDefaults(cfg.Conns)
	if err != nil {
		return Result{}, err
	}
	conns, writer, err := dialWithWriter(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(append(conns, writer))

	keys := make([]string, opts.Keys)
	expect := make([]int64, opts.Keys) // events each watcher of key k should get
	for k := range keys {
		keys[k] = opts.Prefix + strconv.Itoa(k)
	}
	for i := range opts.Puts {
		expect[i%opts.Keys]++
	}
	var want int64
	for w := range opts.Watchers {
		want += expect[w%opts.Keys]
	}

	// Each watcher's own count and completion time, touched only by its
	// goroutine until close.
	got := make([]int64, opts.Watchers)
	doneAt := make([]time.Time, opts.Watchers)
	lastAt := make([]time.Time, opts.Watchers)
	setupStart := time.Now()
	ws, err := openWatchers(ctx, conns, opts.Watchers, opts.Streams,
		func(w int) string { return keys[w%opts.Keys] },
		func(w int, evs []*clientv3.Event, at time.Time) {
			got[w] += int64(len(evs))
			lastAt[w] = at
			if doneAt[w].IsZero() && got[w] >= expect[w%opts.Keys] {
				doneAt[w] = at
			}
		})
	if err != nil {
		return Result{}, err
	}
	setup := time.Since(setupStart)

	val := randomValue(opts.ValueSize)
	var (
		next    atomic.Int64
		putLats latencies
		putErrs tally
		wg      sync.WaitGroup
	)
	start := time.Now()
	for range opts.Writers {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= opts.Puts {
					return
				}
				rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
				t0 := time.Now()
				_, err := writer.Put(rctx, keys[i%opts.Keys], val)
				cancel()
				if err != nil {
					putErrs.fail(err)
					continue
				}
				putLats.add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	putsDone := time.Since(start)
	complete := ws.waitEvents(ctx, want)
	ws.close()

	var end time.Time
	finish := make([]time.Duration, 0, opts.Watchers)
	var received int64
	for w := range opts.Watchers {
		received += got[w]
		if lastAt[w].After(end) {
			end = lastAt[w]
		}
		if !doneAt[w].IsZero() {
			finish = append(finish, doneAt[w].Sub(start))
		}
	}
	elapsed := end.Sub(start)
	if end.IsZero() {
		elapsed = time.Since(start)
	}
	res := Result{Workload: "watch-fanout", Clients: opts.Writers, Conns: cfg.Conns, Requests: opts.Puts, Elapsed: elapsed}
	putLat, okPuts := putLats.summary()
	res.Latency = putLat
	res.Throughput = float64(okPuts) / putsDone.Seconds()
	res.Incomplete = !complete
	putErrs.into(&res)
	ws.errs.into(&res)
	if received < want {
		res.countError(fmt.Sprintf("watchers received %d of %d events", received, want))
	}

	var m metrics
	m.add("events/s", float64(received)/elapsed.Seconds(), "events/s", "higher")
	m.add("events expected", float64(want), "", "")
	m.add("events missing", float64(max(want-received, 0)), "", "lower")
	m.add("events extra", float64(max(received-want, 0)), "", "lower")
	fs := summarise(finish)
	m.ms("watcher done p50", fs.P50, "lower")
	m.ms("watcher done max", fs.Max, "lower")
	// How far delivery trails the writer: near zero when the fan-out
	// keeps up and events/s is bound by the put rate.
	m.ms("last event after last put", max(elapsed-putsDone, 0), "lower")
	m.add("puts/s", res.Throughput, "puts/s", "higher")
	m.ms("put p99", putLat.P99, "lower")
	m.add("watch setup", float64(opts.Watchers)/setup.Seconds(), "watchers/s", "higher")
	res.Metrics = m
	return res, nil
}

// WatchLatencyOptions shape a watch latency workload: Watchers watchers
// on one key while a writer puts to it at Rate puts per second, open loop,
// for Duration.
type WatchLatencyOptions struct {
	Watchers  int           // default 100
	Streams   int           // gRPC watch streams; default cfg.Conns
	Rate      int           // puts per second; default 1000
	Duration  time.Duration // default 5s
	ValueSize int           // default 256, at least 8
	Key       string        // default "loadgen/watch-latency"
}

// maxInFlight bounds the puts an open-loop writer has outstanding; when
// the server is slower than the rate, the writer falls behind its
// schedule, and latency, taken from the schedule, shows it.
const maxInFlight = 1024

// WatchLatency measures put-to-event latency: each put is scheduled at
// start + i/Rate and carries its scheduled time in the value's first 8
// bytes; each watcher takes, for each event, the time from that schedule
// to the event's arrival. Result.Latency is that latency over every event
// of every watcher; Result.Requests and Throughput are the writer's puts.
func WatchLatency(ctx context.Context, cfg Config, opts WatchLatencyOptions) (Result, error) {
	cfg, err := cfg.normaliseScenario(4)
	if err != nil {
		return Result{}, err
	}
	if opts.Watchers <= 0 {
		opts.Watchers = 100
	}
	if opts.Streams <= 0 {
		opts.Streams = cfg.Conns
	}
	if opts.Rate <= 0 {
		opts.Rate = 1000
	}
	if opts.Duration <= 0 {
		opts.Duration = 5 * time.Second
	}
	opts.ValueSize = max(opts.ValueSize, 8)
	if opts.Key == "" {
		opts.Key = "loadgen/watch-latency"
	}
	puts := int(opts.Duration.Seconds() * float64(opts.Rate))
	if opts.Watchers > MaxClients*10 || puts > MaxTotal || puts <= 0 {
		return Result{}, fmt.Errorf("loadgen: watch latency of %d watchers and %d puts is out of bounds", opts.Watchers, puts)
	}
	conns, writer, err := dialWithWriter(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(append(conns, writer))

	lats := make([][]time.Duration, opts.Watchers)
	ws, err := openWatchers(ctx, conns, opts.Watchers, opts.Streams,
		func(int) string { return opts.Key },
		func(w int, evs []*clientv3.Event, at time.Time) {
			for _, ev := range evs {
				if len(ev.Kv.Value) >= 8 {
					sched := int64(binary.BigEndian.Uint64(ev.Kv.Value))
					lats[w] = append(lats[w], at.Sub(time.Unix(0, sched)))
				}
			}
		})
	if err != nil {
		return Result{}, err
	}

	pad := []byte(randomValue(opts.ValueSize))
	var (
		putLats  latencies
		putErrs  tally
		okPuts   atomic.Int64
		wg       sync.WaitGroup
		inflight = make(chan struct{}, maxInFlight)
		behind   time.Duration // how far the writer fell behind its schedule at worst
	)
	interval := time.Second / time.Duration(opts.Rate)
	start := time.Now()
	for i := range puts {
		sched := start.Add(time.Duration(i) * interval)
		if !sleepCtx(ctx, time.Until(sched)) {
			break
		}
		select {
		case inflight <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		behind = max(behind, time.Since(sched))
		val := make([]byte, opts.ValueSize)
		copy(val, pad)
		binary.BigEndian.PutUint64(val, uint64(sched.UnixNano()))
		wg.Go(func() {
			defer func() { <-inflight }()
			rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
			defer cancel()
			t0 := time.Now()
			if _, err := writer.Put(rctx, opts.Key, string(val)); err != nil {
				putErrs.fail(err)
				return
			}
			putLats.add(time.Since(t0))
			okPuts.Add(1)
		})
	}
	wg.Wait()
	putsDone := time.Since(start)
	want := okPuts.Load() * int64(opts.Watchers)
	complete := ws.waitEvents(ctx, want)
	elapsed := time.Since(start)
	ws.close()

	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	received := int64(len(all))
	putLat, _ := putLats.summary()
	res := Result{
		Workload: "watch-latency", Clients: 1, Conns: cfg.Conns, Requests: puts, Elapsed: elapsed,
		Throughput: float64(okPuts.Load()) / putsDone.Seconds(), Incomplete: !complete,
	}
	res.Latency = summarise(all)
	putErrs.into(&res)
	ws.errs.into(&res)
	if received < want {
		res.countError(fmt.Sprintf("watchers received %d of %d events", received, want))
	}

	var m metrics
	m.ms("event p50", res.Latency.P50, "lower")
	m.ms("event p99", res.Latency.P99, "lower")
	m.ms("event max", res.Latency.Max, "lower")
	m.add("events missing", float64(max(want-received, 0)), "", "lower")
	m.add("puts/s", res.Throughput, "puts/s", "")
	m.ms("put p99", putLat.P99, "lower")
	m.ms("writer behind schedule", behind, "lower")
	res.Metrics = m
	return res, nil
}

// IdleWatchOptions shape an idle-watcher memory workload.
type IdleWatchOptions struct {
	Streams           int           // gRPC watch streams; default 100
	WatchersPerStream int           // default 100
	Settle            time.Duration // wait before reading memory; default 2s
	Prefix            string        // keys are Prefix+stream/watcher, never written; default "loadgen/idle/"
}

// IdleWatchers measures the server's resident memory per idle watch
// stream and per idle watcher. It opens opts.Streams streams of one
// watcher each, on distinct keys nobody writes, and reads the server's
// VmRSS; then it adds the other watchers and reads it again. Each reading
// follows opts.Settle of quiet and is the median of five. The first
// step's growth over the stream count is the cost of a stream (with one
// watcher), the second's over the added watchers the cost of a watcher.
// Without cfg.ServerPID it measures only how fast watchers are created.
//
// Resident memory is a coarse measure: a garbage-collected server may
// reuse memory freed by earlier work, or grow its heap in steps, so
// compare figures taken the same way.
func IdleWatchers(ctx context.Context, cfg Config, opts IdleWatchOptions) (Result, error) {
	cfg, err := cfg.normaliseScenario(10)
	if err != nil {
		return Result{}, err
	}
	if opts.Streams <= 0 {
		opts.Streams = 100
	}
	if opts.WatchersPerStream <= 0 {
		opts.WatchersPerStream = 100
	}
	if opts.Settle <= 0 {
		opts.Settle = 2 * time.Second
	}
	if opts.Prefix == "" {
		opts.Prefix = "loadgen/idle/"
	}
	if opts.Streams*opts.WatchersPerStream > MaxClients*10 {
		return Result{}, fmt.Errorf("loadgen: %d idle watchers is over the limit", opts.Streams*opts.WatchersPerStream)
	}
	conns, err := dial(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	defer closeAll(conns)

	// rss settles, then takes the median of five readings a tenth of the
	// settling time apart, to damp the garbage collector's steps.
	rss := func() int64 {
		sleepCtx(ctx, opts.Settle)
		if cfg.ServerPID <= 0 {
			return 0
		}
		var xs []time.Duration // as durations, to reuse summarise
		for i := range 5 {
			if i > 0 {
				sleepCtx(ctx, opts.Settle/10)
			}
			if n, err := processRSS(cfg.ServerPID); err == nil {
				xs = append(xs, time.Duration(n))
			}
		}
		return int64(summarise(xs).P50)
	}
	noEvents := func(w int, evs []*clientv3.Event, _ time.Time) {}
	start := time.Now()
	rss0 := rss()
	// Watcher w of the first set is stream w's only watcher.
	first, err := openWatchers(ctx, conns, opts.Streams, opts.Streams,
		func(w int) string { return fmt.Sprintf("%s%d/0", opts.Prefix, w) }, noEvents)
	if err != nil {
		return Result{}, err
	}
	defer first.close()
	rss1 := rss()

	more := opts.Streams * (opts.WatchersPerStream - 1)
	t0 := time.Now()
	var second *watchers
	if more > 0 {
		// Stream numbering restarts at 0 with the same metadata, so the
		// second set joins the first set's streams.
		second, err = openWatchers(ctx, conns, more, opts.Streams,
			func(w int) string { return fmt.Sprintf("%s%d/%d", opts.Prefix, w%opts.Streams, 1+w/opts.Streams) }, noEvents)
		if err != nil {
			return Result{}, err
		}
	}
	createTime := time.Since(t0)
	rss2 := rss()
	if second != nil {
		second.close()
	}
	first.close()
	rss3 := rss()

	total := opts.Streams * opts.WatchersPerStream
	res := Result{Workload: "watch-idle", Clients: total, Conns: cfg.Conns, Requests: total, Elapsed: time.Since(start)}
	first.errs.into(&res)
	if second != nil {
		second.errs.into(&res)
	}
	var m metrics
	if cfg.ServerPID > 0 {
		m.add("bytes/stream", float64(rss1-rss0)/float64(opts.Streams), "B", "lower")
		if more > 0 {
			m.add("bytes/watcher", float64(rss2-rss1)/float64(more), "B", "lower")
		}
		m.add("RSS before", float64(rss0)/(1<<20), "MiB", "")
		m.add("RSS with watchers", float64(rss2)/(1<<20), "MiB", "")
		m.add("RSS after cancel", float64(rss3)/(1<<20), "MiB", "")
	}
	if more > 0 {
		res.Throughput = float64(more) / createTime.Seconds()
		m.add("watch setup", res.Throughput, "watchers/s", "higher")
	}
	res.Metrics = m
	return res, nil
}
