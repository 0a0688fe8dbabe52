package loadgen

import (
	"context"
	"os"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// The watch and lease workloads, scaled down to run in seconds against an
// embedded etcd: each must deliver every event, keep every lease, clean up
// after itself, and report its figures.

func TestWatchWorkloadsAgainstEtcd(t *testing.T) {
	ep := startEtcd(t)
	ctx := context.Background()
	cfg := Config{Endpoints: []string{ep}, Conns: 2, ServerPID: os.Getpid()}

	fan, err := WatchFanout(ctx, cfg, FanoutOptions{Watchers: 50, Keys: 5, Streams: 4, Puts: 100, Writers: 4})
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, fan, "watch-fanout", "events/s", "watch setup")
	if m, _ := fan.Metric("events expected"); m.Value != 50*20 {
		t.Errorf("50 watchers over 5 keys and 100 puts should expect 1000 events, got %v", m.Value)
	}
	if m, _ := fan.Metric("events missing"); m.Value != 0 {
		t.Errorf("events missing: %v", m.Value)
	}

	lat, err := WatchLatency(ctx, cfg, WatchLatencyOptions{Watchers: 10, Rate: 200, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, lat, "watch-latency", "event p50", "event p99")
	if lat.Requests != 200 || lat.Latency.Min <= 0 || lat.Latency.P99 > time.Second {
		t.Errorf("watch latency: %+v", lat)
	}

	idle, err := IdleWatchers(ctx, cfg, IdleWatchOptions{Streams: 5, WatchersPerStream: 10, Settle: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, idle, "watch-idle", "watch setup", "bytes/watcher", "bytes/stream", "RSS with watchers")
	if m, _ := idle.Metric("RSS with watchers"); m.Value <= 0 {
		t.Errorf("RSS not read: %+v", idle.Metrics)
	}
}

func TestLeaseWorkloadsAgainstEtcd(t *testing.T) {
	ep := startEtcd(t)
	ctx := context.Background()
	cfg := Config{Endpoints: []string{ep}, Conns: 2, ServerPID: os.Getpid()}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	noLeases := func(after string) {
		t.Helper()
		ls, err := cli.Leases(ctx)
		if err != nil || len(ls.Leases) != 0 {
			t.Errorf("after %s: %d leases left (%v)", after, len(ls.Leases), err)
		}
	}

	ka, err := LeaseKeepAlive(ctx, cfg, KeepAliveOptions{
		Leases: 50, TTL: 10 * time.Second, Interval: 500 * time.Millisecond, Duration: 1500 * time.Millisecond, Clients: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, ka, "lease-keepalive", "keep-alive p99", "server CPU")
	if ka.Requests != 150 || ka.Latency.P99 <= 0 {
		t.Errorf("keep-alive: %+v", ka)
	}
	noLeases("keep-alive")

	storm, err := LeaseStorm(ctx, cfg, StormOptions{
		Leases: 50, TTL: 2 * time.Second, Baseline: 300 * time.Millisecond, Tail: 100 * time.Millisecond, Clients: 8,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkMetrics(t, storm, "lease-storm", "put p99 baseline", "put p99 storm", "all gone after last grant")
	if m, _ := storm.Metric("all gone after last grant"); m.Value < 2 {
		t.Errorf("leases of a 2s TTL gone %vs after the last grant", m.Value)
	}
	noLeases("storm")
	keys, err := cli.Get(ctx, "loadgen/storm/k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || keys.Count != 0 {
		t.Errorf("storm left %v keys (%v)", keys, err)
	}
}

func TestScenarioConfigRejectsNonLoopback(t *testing.T) {
	cfg := Config{Endpoints: []string{"10.0.0.1:2379"}}
	for name, run := range map[string]func() error{
		"fanout":    func() error { _, err := WatchFanout(context.Background(), cfg, FanoutOptions{}); return err },
		"keepalive": func() error { _, err := LeaseKeepAlive(context.Background(), cfg, KeepAliveOptions{}); return err },
		"storm":     func() error { _, err := LeaseStorm(context.Background(), cfg, StormOptions{}); return err },
	} {
		if err := run(); err == nil {
			t.Errorf("%s accepted a non-loopback endpoint", name)
		}
	}
	if _, err := LeaseKeepAlive(context.Background(), Config{Endpoints: []string{"127.0.0.1:1"}},
		KeepAliveOptions{TTL: time.Second, Interval: 2 * time.Second}); err == nil {
		t.Error("a TTL shorter than the renewal interval was accepted")
	}
}

func TestProcessFigures(t *testing.T) {
	cpu, err := processCPU(os.Getpid())
	if err != nil || cpu <= 0 {
		t.Errorf("processCPU = %v, %v", cpu, err)
	}
	rss, err := processRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("processRSS = %v, %v", rss, err)
	}
}

// checkMetrics checks a workload's name, that it had no errors, and that
// it reported the named figures.
func checkMetrics(t *testing.T, r Result, workload string, names ...string) {
	t.Helper()
	if r.Workload != workload || r.Errors != 0 || r.Incomplete {
		t.Errorf("%s: %+v", workload, r)
	}
	for _, n := range names {
		if _, ok := r.Metric(n); !ok {
			t.Errorf("%s: no %q in %+v", workload, n, r.Metrics)
		}
	}
}
