package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

func TestPercentile(t *testing.T) {
	var lats []time.Duration
	for i := 100; i >= 1; i-- {
		lats = append(lats, time.Duration(i)*time.Millisecond)
	}
	got := summarise(lats)
	want := Latency{
		Min: 1 * time.Millisecond, Mean: 50500 * time.Microsecond,
		P50: 50 * time.Millisecond, P90: 90 * time.Millisecond, P99: 99 * time.Millisecond,
		P999: 100 * time.Millisecond, Max: 100 * time.Millisecond,
	}
	if got != want {
		t.Errorf("summarise = %+v, want %+v", got, want)
	}
	if one := summarise([]time.Duration{7}); one.P50 != 7 || one.P99 != 7 || one.Max != 7 {
		t.Errorf("one sample: %+v", one)
	}
	if (summarise(nil) != Latency{}) {
		t.Error("no samples should give the zero Latency")
	}
}

func TestConfigRejectsNonLoopbackAndUnbounded(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		is   error
	}{
		{"private address", Config{Endpoints: []string{"10.0.0.1:2379"}, Total: 1}, ErrNotLoopback},
		{"public URL", Config{Endpoints: []string{"http://93.184.216.34:2379"}, Total: 1}, ErrNotLoopback},
		{"host name", Config{Endpoints: []string{"example.com:2379"}, Total: 1}, ErrNotLoopback},
		{"one bad of two", Config{Endpoints: []string{"127.0.0.1:2379", "192.168.1.2:2379"}, Total: 1}, ErrNotLoopback},
		{"no port", Config{Endpoints: []string{"127.0.0.1"}, Total: 1}, nil},
		{"zero total", Config{Endpoints: []string{"127.0.0.1:2379"}}, nil},
		{"too many clients", Config{Endpoints: []string{"127.0.0.1:2379"}, Total: 1, Clients: MaxClients + 1}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.cfg.normalise()
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v, want %v", err, tc.is)
			}
		})
	}
	for _, ep := range []string{"127.0.0.1:2379", "127.3.4.5:1", "localhost:2379", "[::1]:2379", "http://127.0.0.1:2379"} {
		cfg, err := Config{Endpoints: []string{ep}, Total: 5, Clients: 2, Conns: 8}.normalise()
		if err != nil {
			t.Errorf("%s: %v", ep, err)
			continue
		}
		if cfg.Conns != 2 || cfg.MaxDuration != MaxDuration || cfg.RequestTimeout != defaultTimeout {
			t.Errorf("%s: defaults not applied: %+v", ep, cfg)
		}
	}
}

func TestKeysFollowEtcdBenchmark(t *testing.T) {
	o, err := PutOptions{Sequential: true, KeySpace: 300}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	key := o.keyFunc()
	// binary.PutVarint zig-zags: 1 → 0x02, 299 → 0xd6 0x04.
	if got, want := key(1), "\x02\x00\x00\x00\x00\x00\x00\x00"; got != want {
		t.Errorf("key(1) = %q, want %q", got, want)
	}
	if got, want := key(299), "\xd6\x04\x00\x00\x00\x00\x00\x00"; got != want {
		t.Errorf("key(299) = %q, want %q", got, want)
	}
	if key(300) != key(0) {
		t.Error("sequential keys should wrap at the key space")
	}
	o.Sequential = false
	random := o.keyFunc()
	for i := range 1000 {
		if k := random(i); len(k) != 8 {
			t.Fatalf("key %q is %d bytes", k, len(k))
		}
	}
	if _, err := (PutOptions{KeySize: 1, KeySpace: 100}).withDefaults(); err == nil {
		t.Error("a key space of 100 cannot fit in 1-byte varint keys")
	}
}

// startEtcd runs a single-member etcd in this process and returns its
// client endpoint.
func startEtcd(t *testing.T) string {
	t.Helper()
	port := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	// A port found free may be taken by another test process before etcd
	// binds it: try again with new ports.
	var (
		e  *embed.Etcd
		cu *url.URL
	)
	for attempt := 1; ; attempt++ {
		cfg := embed.NewConfig()
		cfg.Dir = t.TempDir()
		cfg.LogLevel = "error"
		cu, _ = url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port()))
		pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", port()))
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		var err error
		if e, err = embed.StartEtcd(cfg); err == nil {
			break
		}
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		t.Fatal("embedded etcd not ready after 60s")
	}
	return cu.Host
}

func TestWorkloadsAgainstEtcd(t *testing.T) {
	ep := startEtcd(t)
	ctx := context.Background()
	cfg := Config{Endpoints: []string{ep}, Clients: 4, Conns: 2, Total: 200, MaxDuration: time.Minute}

	put, err := Put(ctx, cfg, PutOptions{KeySpace: 50, Sequential: true})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, put, "put", 200)

	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	got, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if got.Count != 50 {
		t.Errorf("put over a sequential key space of 50 left %d keys", got.Count)
	}
	if got.Header.Revision != 201 {
		t.Errorf("200 puts should reach revision 201, got %d", got.Header.Revision)
	}

	for _, c := range []Consistency{Serializable, Linearizable} {
		r, err := Range(ctx, cfg, RangeOptions{Key: "r", Consistency: c, ValueSize: 256})
		if err != nil {
			t.Fatal(err)
		}
		checkResult(t, r, "range-"+c.String(), 200)
	}
	kv, err := cli.Get(ctx, "r")
	if err != nil || len(kv.Kvs) != 1 || len(kv.Kvs[0].Value) != 256 {
		t.Errorf("range did not prefill its key: %v %v", kv, err)
	}

	txn, err := TxnPut(ctx, cfg, TxnOptions{Ops: 3})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, txn, "txn-put", 200)
}

func TestStopsAtMaxDurationAndCountsErrors(t *testing.T) {
	ep := startEtcd(t)
	// A value over etcd's 1.5 MiB request limit fails every request.
	cfg := Config{Endpoints: []string{ep}, Clients: 2, Total: 50}
	res, err := Put(context.Background(), cfg, PutOptions{ValueSize: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Errors != 50 || res.Throughput != 0 || len(res.ErrorKinds) != 1 {
		t.Errorf("oversized puts: %+v", res)
	}

	cfg = Config{Endpoints: []string{ep}, Clients: 2, Total: MaxTotal, MaxDuration: 300 * time.Millisecond}
	start := time.Now()
	res, err = Range(context.Background(), cfg, RangeOptions{Consistency: Serializable})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Incomplete || time.Since(start) > 10*time.Second {
		t.Errorf("run was not cut at MaxDuration: %+v after %v", res, time.Since(start))
	}
}

func checkResult(t *testing.T, r Result, workload string, total int) {
	t.Helper()
	if r.Workload != workload || r.Requests != total || r.Errors != 0 || r.Incomplete {
		t.Errorf("%s: %+v", workload, r)
	}
	l := r.Latency
	if r.Throughput <= 0 || l.Min <= 0 || l.Min > l.P50 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.Max {
		t.Errorf("%s: implausible figures %+v", workload, r)
	}
}
