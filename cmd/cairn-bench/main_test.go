package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/cairn-kv/cairn/internal/loadgen"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		say  string
	}{
		{nil, 2, "usage"},
		{[]string{"watch"}, 2, "unknown command"},
		{[]string{"put", "--no-such-flag"}, 2, "not defined"},
		{[]string{"put", "extra"}, 2, "unexpected arguments"},
		{[]string{"put", "-w", "yaml"}, 2, "table or json"},
		{[]string{"range", "--consistency", "x", "--total", "1"}, 1, "consistency must be l or s"},
		{[]string{"put", "--endpoints", "10.1.2.3:2379", "--total", "1"}, 1, "not a loopback address"},
		{[]string{"put", "--total", "0"}, 1, "total must be"},
		{[]string{"watch-fanout", "--total", "5"}, 2, "not defined"},
		{[]string{"lease-keepalive", "--ttl", "1s", "--interval", "5s"}, 1, "out of bounds"},
		{[]string{"lease-storm", "--endpoints", "10.1.2.3:2379"}, 1, "not a loopback address"},
		{[]string{"snapshot", "--data-size", "1TB"}, 2, "optionally with KiB"},
		{[]string{"snapshot", "--data-size", "100GiB"}, 1, "over the limits"},
	} {
		var out, errOut bytes.Buffer
		code := run(tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(errOut.String(), tc.say) {
			t.Errorf("%q: exit %d, stderr %q; want exit %d mentioning %q", tc.args, code, errOut.String(), tc.code, tc.say)
		}
	}
}

func TestRunsAgainstEtcd(t *testing.T) {
	ep := startEtcd(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"range", "--endpoints", ep, "--consistency", "s", "--clients", "4", "--conns", "2",
		"--total", "40", "--prefill-val-size", "16"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "req/s") || !strings.Contains(lines[1], "range-s") {
		t.Errorf("table:\n%s", out.String())
	}

	out.Reset()
	if code := run([]string{"txn-put", "--endpoints", ep, "--txn-ops", "2", "--total", "10", "-w", "json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if res.Workload != "txn-put" || res.Requests != 10 || res.Errors != 0 {
		t.Errorf("json result: %+v", res)
	}
}

func TestWatchAndLeaseCommandsAgainstEtcd(t *testing.T) {
	ep := startEtcd(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"watch-fanout", "--endpoints", ep, "--watchers", "20", "--keys", "2", "--puts", "20",
		"--conns", "2"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "events/s") || !strings.Contains(out.String(), "errors 0") {
		t.Errorf("table:\n%s", out.String())
	}

	out.Reset()
	if code := run([]string{"lease-keepalive", "--endpoints", ep, "--leases", "20", "--ttl", "10s", "--interval", "200ms",
		"--duration", "400ms", "--clients", "4", "-w", "json"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res loadgen.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v in %s", err, out.String())
	}
	if _, ok := res.Metric("keep-alive p99"); res.Workload != "lease-keepalive" || res.Requests != 40 || !ok {
		t.Errorf("json result: %+v", res)
	}
}

func TestSnapshotCommandAgainstEtcd(t *testing.T) {
	ep := startEtcd(t)
	var out, errOut bytes.Buffer
	if code := run([]string{"snapshot", "--endpoints", ep, "--data-size", "1MiB", "--val-size", "16384",
		"--settle", "50ms", "--dir", t.TempDir()}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "snapshot MB/s") || !strings.Contains(out.String(), "errors 0") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "512KiB": 512 << 10, "100MiB": 100 << 20, "1GiB": 1 << 30} {
		if got, err := parseSize(in); got != want || err != nil {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1", "1GB", "GiB", "9999999999GiB"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) accepted", in)
		}
	}
}

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
		cfg.LogLevel = "fatal"
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
