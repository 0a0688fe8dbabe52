package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/pkg/v3/featuregate"
	"go.etcd.io/etcd/server/v3/embed"
)

// metricsPage is a Prometheus text page: each family's type and label
// names (a histogram's without "le"), and the values of unlabelled series.
type metricsPage struct {
	types  map[string]string
	labels map[string][]string
	values map[string]float64
	// grpcSeries are the labelled series of the gRPC call and message
	// counters (grpc_server_*_total), without their values.
	grpcSeries []string
}

// scrape reads a Prometheus text page into type by name and value by
// series (unlabelled series only).
func scrape(t *testing.T, url string) (types map[string]string, values map[string]float64) {
	t.Helper()
	p := scrapePage(t, url)
	return p.types, p.values
}

// scrapePage reads the Prometheus text page at url.
func scrapePage(t *testing.T, url string) metricsPage {
	t.Helper()
	a := httpAsk(t, "GET", url)
	if a.Status != 200 {
		t.Fatalf("GET %s: %d", url, a.Status)
	}
	p := metricsPage{types: map[string]string{}, labels: map[string][]string{}, values: map[string]float64{}}
	sc := bufio.NewScanner(strings.NewReader(a.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			p.types[f[2]] = f[3]
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		series, value, _ := strings.Cut(line, " ")
		name, labels, labelled := strings.Cut(series, "{")
		family := name
		if p.types[family] == "" {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, ok := strings.CutSuffix(name, suffix); ok && p.types[base] != "" {
					family = base
				}
			}
		}
		if !labelled {
			if v, err := strconv.ParseFloat(value, 64); err == nil {
				p.values[name] = v
			}
			continue
		}
		if strings.HasPrefix(family, "grpc_server_") && strings.HasSuffix(family, "_total") {
			p.grpcSeries = append(p.grpcSeries, series)
		}
		for _, l := range labelNames(labels) {
			if l != "le" && !slices.Contains(p.labels[family], l) {
				p.labels[family] = append(p.labels[family], l)
			}
		}
	}
	for _, ls := range p.labels {
		sort.Strings(ls)
	}
	sort.Strings(p.grpcSeries)
	return p
}

// labelNames returns the names in `a="x",b="y\"z"}`.
func labelNames(s string) []string {
	var names []string
	for {
		name, rest, ok := strings.Cut(s, `="`)
		if !ok {
			return names
		}
		names = append(names, strings.TrimPrefix(name, ","))
		// Skip the quoted value, escapes included.
		i := 0
		for i < len(rest) && rest[i] != '"' {
			if rest[i] == '\\' {
				i++
			}
			i++
		}
		if i+1 >= len(rest) {
			return names
		}
		s = rest[i+1:]
	}
}

// TestMetricsMatchEtcd: the series etcd's dashboards and alerts read about
// leadership, proposals, quota, database size and leases exist on Cairn's /metrics
// with etcd's names and types, and a lone member reports what etcd's does.
func TestMetricsMatchEtcd(t *testing.T) {
	names := []string{
		"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
		"etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total",
		"etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
		"etcd_server_quota_backend_bytes", "etcd_mvcc_db_total_size_in_bytes",
		"etcd_mvcc_db_total_size_in_use_in_bytes", "etcd_debugging_mvcc_current_revision",
		"etcd_debugging_lease_granted_total", "etcd_debugging_lease_revoked_total",
		"etcd_debugging_lease_renewed_total", "etcd_debugging_lease_ttl_total",
		"etcd_debugging_server_lease_expired_total",
		"etcd_server_health_success", "etcd_server_health_failures", "etcd_server_id", "etcd_server_go_version",
		"etcd_server_read_indexes_failed_total", "etcd_server_slow_read_indexes_total",
		"etcd_server_heartbeat_send_failures_total",
	}
	// What a lone, idle member reports, as a lone etcd member does. These
	// are not read from the reference etcd: its gauges and counters are
	// global to its process, which here runs other tests' members at the
	// same time, so its values describe whichever member set them last.
	idle := map[string]float64{
		"etcd_server_has_leader": 1, "etcd_server_is_leader": 1, "etcd_server_is_learner": 0,
		"etcd_server_proposals_pending": 0, "etcd_server_quota_backend_bytes": 2 << 30,
		"etcd_debugging_mvcc_compact_revision":  -1,
		"etcd_server_read_indexes_failed_total": 0, "etcd_server_slow_read_indexes_total": 0,
		"etcd_server_heartbeat_send_failures_total": 0,
	}
	etcdTypes, etcdValues := scrape(t, "http://"+etcdEndpoint(startEtcd(t))+"/metrics")
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		types, values := scrape(t, "http://"+m.clientEP+"/metrics")
		for _, n := range names {
			if etcdTypes[n] == "" {
				t.Fatalf("etcd has no %s: the list is wrong", n)
			}
			if types[n] != etcdTypes[n] {
				t.Errorf("%s: type %q, etcd's %q", n, types[n], etcdTypes[n])
			}
		}
		for n, want := range idle {
			if values[n] != want {
				t.Errorf("%s = %v, want %v", n, values[n], want)
			}
		}
		if got := values["etcd_server_leader_changes_seen_total"]; got != 1 || etcdValues["etcd_server_leader_changes_seen_total"] < 1 {
			t.Errorf("leader changes seen by a fresh lone member: %v, want 1 (etcd's process: %v)", got, etcdValues["etcd_server_leader_changes_seen_total"])
		}
		if values["etcd_mvcc_db_total_size_in_bytes"] <= 0 || values["etcd_server_proposals_applied_total"] <= 0 {
			t.Errorf("size %v, applied %v: want positive", values["etcd_mvcc_db_total_size_in_bytes"], values["etcd_server_proposals_applied_total"])
		}
	})
}

// traffic makes a few requests of each kind through cli: puts, a range, a
// watch that sees an event.
func traffic(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	c := ctx(t)
	wc := cli.Watch(c, "metrics/", clientv3.WithPrefix())
	for i := range 5 {
		if _, err := cli.Put(c, fmt.Sprintf("metrics/%d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Get(c, "metrics/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	select {
	case wr := <-wc:
		if err := wr.Err(); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event")
	}
}

// TestMetricsTrafficMatchEtcd: after puts, a range and a watch, the series
// of etcd's disk, gRPC and proposal monitoring are on Cairn's /metrics
// under etcd's names, types and label names, and they moved.
func TestMetricsTrafficMatchEtcd(t *testing.T) {
	names := []string{
		"etcd_server_proposals_failed_total",
		"etcd_disk_wal_fsync_duration_seconds", "etcd_disk_backend_commit_duration_seconds",
		"etcd_disk_wal_write_bytes_total",
		"etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
		"grpc_server_started_total", "grpc_server_handled_total",
		"grpc_server_msg_received_total", "grpc_server_msg_sent_total",
		"process_resident_memory_bytes",
		"etcd_mvcc_range_total", "etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total",
		"etcd_debugging_mvcc_keys_total", "etcd_debugging_mvcc_total_put_size_in_bytes",
		"etcd_debugging_mvcc_compact_revision",
		"etcd_debugging_mvcc_watch_stream_total", "etcd_debugging_mvcc_watcher_total",
		"etcd_debugging_mvcc_slow_watcher_total", "etcd_debugging_mvcc_events_total",
		"etcd_debugging_mvcc_pending_events_total",
		"etcd_debugging_mvcc_db_compaction_keys_total",
		"etcd_mvcc_hash_duration_seconds", "etcd_mvcc_hash_rev_duration_seconds",
		"etcd_disk_wal_write_duration_seconds",
		"etcd_server_slow_apply_total", "etcd_server_apply_duration_seconds",
		"etcd_server_client_requests_total", "etcd_server_request_duration_seconds",
		"etcd_server_range_duration_seconds",
	}
	etcdCli := startEtcd(t)
	traffic(t, etcdCli)
	etcdPage := scrapePage(t, "http://"+etcdEndpoint(etcdCli)+"/metrics")
	if got, want := etcdPage.labels["grpc_server_handled_total"], []string{"grpc_code", "grpc_method", "grpc_service", "grpc_type"}; !slices.Equal(got, want) {
		t.Fatalf("etcd's grpc_server_handled_total labels read as %q, want %q: the page parser is wrong", got, want)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		traffic(t, m.client(t))
		page := scrapePage(t, "http://"+m.clientEP+"/metrics")
		for _, n := range names {
			if etcdPage.types[n] == "" {
				t.Fatalf("etcd has no %s: the list is wrong", n)
			}
			if page.types[n] != etcdPage.types[n] {
				t.Errorf("%s: type %q, etcd's %q", n, page.types[n], etcdPage.types[n])
			}
			if !slices.Equal(page.labels[n], etcdPage.labels[n]) {
				t.Errorf("%s: labels %q, etcd's %q", n, page.labels[n], etcdPage.labels[n])
			}
		}
		for _, n := range []string{
			"etcd_disk_wal_fsync_duration_seconds_count", "etcd_disk_backend_commit_duration_seconds_count",
			"etcd_disk_wal_write_bytes_total", "etcd_network_client_grpc_received_bytes_total",
			"etcd_network_client_grpc_sent_bytes_total", "process_resident_memory_bytes",
			"etcd_mvcc_range_total", "etcd_mvcc_put_total", "etcd_debugging_mvcc_keys_total",
			"etcd_disk_wal_write_duration_seconds_count",
		} {
			if page.values[n] <= 0 {
				t.Errorf("%s = %v after traffic, want positive", n, page.values[n])
			}
		}
		// etcd creates every method's series at start, but for the lock and
		// election services, registered after: theirs appear when used.
		// The reference etcd is shared with other tests, which lock and
		// campaign, so those two services are left out of the comparison.
		lockOrElection := func(series string) bool {
			return strings.Contains(series, `grpc_service="v3lockpb.Lock"`) || strings.Contains(series, `grpc_service="v3electionpb.Election"`)
		}
		if i := slices.IndexFunc(page.grpcSeries, lockOrElection); i >= 0 {
			t.Errorf("%s before any lock or election call", page.grpcSeries[i])
		}
		if theirs := slices.DeleteFunc(slices.Clone(etcdPage.grpcSeries), lockOrElection); !slices.Equal(page.grpcSeries, theirs) {
			t.Errorf("grpc_server_*_total series differ from etcd's:\n%s", seriesDiff(page.grpcSeries, theirs))
		}
		if _, ok := page.types["grpc_server_handling_seconds"]; ok {
			t.Error("grpc_server_handling_seconds without --metrics=extensive")
		}
		for _, n := range []string{"cairn_actors", "cairn_actor_mailbox_depth", "cairn_actor_messages_processed_total", "cairn_actor_handling_seconds_total"} {
			if !slices.Equal(page.labels[n], []string{"actor"}) {
				t.Errorf("%s: labels %q, want [actor]", n, page.labels[n])
			}
		}
	})
	t.Run("extensive", func(t *testing.T) {
		m := startMember(t, engines[0], "--metrics=extensive")
		traffic(t, m.client(t))
		page := scrapePage(t, "http://"+m.clientEP+"/metrics")
		// etcd's, from go-grpc-prometheus, which etcd's page shows with
		// --metrics=extensive.
		want := []string{"grpc_method", "grpc_service", "grpc_type"}
		if n := "grpc_server_handling_seconds"; page.types[n] != "histogram" || !slices.Equal(page.labels[n], want) {
			t.Errorf("%s: type %q, labels %q; want histogram, %q", n, page.types[n], page.labels[n], want)
		}
	})
}

// mvccWorkload makes requests of every shape etcd's MVCC operation
// counters tell apart: plain and serializable ranges; puts plain, with
// prev_kv, ignore_value (of a present and of a missing key) and a lease;
// deletes with prev_kv and of a range; txns that write, with compares
// that hold and that fail early, ignore_value and a nested txn; a
// read-only txn; a lease revoke with keys.
func mvccWorkload(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	c := ctx(t)
	check := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := cli.Grant(c, 600)
	check(l, err)
	check(cli.Put(c, "mw/a", "1"))
	check(cli.Put(c, "mw/b", "22", clientv3.WithLease(l.ID)))
	check(cli.Put(c, "mw/c", "333", clientv3.WithLease(l.ID)))
	check(cli.Get(c, "mw/a"))
	check(cli.Get(c, "mw/", clientv3.WithPrefix(), clientv3.WithSerializable()))
	check(cli.Put(c, "mw/a", "x", clientv3.WithPrevKV()))
	check(cli.Put(c, "mw/b", "", clientv3.WithIgnoreValue(), clientv3.WithLease(l.ID)))
	if _, err := cli.Put(c, "mw/missing", "", clientv3.WithIgnoreValue()); err == nil {
		t.Fatal("put with ignore_value of a missing key succeeded")
	}
	check(cli.Delete(c, "mw/a", clientv3.WithPrevKV()))
	check(cli.Txn(c).If(clientv3.Compare(clientv3.Value("mw/b"), "=", "22"), clientv3.Compare(clientv3.Version("mw/c"), ">", 0)).
		Then(clientv3.OpPut("mw/d", "4"), clientv3.OpGet("mw/c")).Else(clientv3.OpDelete("mw/c")).Commit())
	check(cli.Txn(c).If(clientv3.Compare(clientv3.Value("mw/none"), "=", "x"), clientv3.Compare(clientv3.Version("mw/c"), ">", 0)).
		Then(clientv3.OpPut("mw/e", "5")).Else(clientv3.OpPut("mw/f", "6"), clientv3.OpGet("mw/b")).Commit())
	check(cli.Txn(c).If(clientv3.Compare(clientv3.CreateRevision("mw/b"), ">", 0)).
		Then(clientv3.OpGet("mw/b"), clientv3.OpGet("mw/c")).Else(clientv3.OpGet("mw/a")).Commit())
	check(cli.Txn(c).If(clientv3.Compare(clientv3.Version("mw/b"), ">", 0)).
		Then(clientv3.OpPut("mw/b", "", clientv3.WithIgnoreValue(), clientv3.WithLease(l.ID)),
			clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Version("mw/c"), ">", 0)},
				[]clientv3.Op{clientv3.OpPut("mw/g", "7", clientv3.WithPrevKV()), clientv3.OpGet("mw/d")}, nil)).Commit())
	check(cli.Revoke(c, l.ID))
	check(cli.Delete(c, "mw/e", clientv3.WithRange("mw/g")))
}

// mvccCounters are etcd's operation counters and key gauge.
var mvccCounters = []string{
	"etcd_mvcc_range_total", "etcd_mvcc_put_total", "etcd_mvcc_delete_total", "etcd_mvcc_txn_total",
	"etcd_debugging_mvcc_total_put_size_in_bytes", "etcd_debugging_mvcc_keys_total",
}

// TestMVCCCountersMatchEtcd: the same requests move etcd's MVCC operation
// counters and key gauge on Cairn as on etcd. etcd's series belong to its
// process, so this test runs on its own (not in parallel) and compares how
// much they moved.
func TestMVCCCountersMatchEtcd(t *testing.T) {
	movedAsEtcd(t, mvccCounters, mvccWorkload, func(want map[string]float64) bool {
		return want["etcd_mvcc_txn_total"] != 0 && want["etcd_mvcc_range_total"] != 0
	})
}

// TestWatchMetrics: etcd's watch series count a member's open streams and
// watchers, and the events sent, and return to zero when the streams end.
func TestWatchMetrics(t *testing.T) {
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		url := "http://" + m.clientEP + "/metrics"
		c, cancel := context.WithCancel(ctx(t))
		defer cancel()
		// clientv3 puts watches of one context on one stream; one that
		// requires a leader goes on another.
		chans := []clientv3.WatchChan{
			cli.Watch(c, "wm/a", clientv3.WithCreatedNotify()),
			cli.Watch(c, "wm/", clientv3.WithPrefix(), clientv3.WithCreatedNotify()),
			cli.Watch(clientv3.WithRequireLeader(c), "wm/a", clientv3.WithCreatedNotify()),
		}
		for _, wc := range chans {
			if wr := <-wc; !wr.Created {
				t.Fatalf("first response %+v, want created", wr)
			}
		}
		for _, v := range []string{"1", "2"} {
			if _, err := cli.Put(ctx(t), "wm/a", v); err != nil {
				t.Fatal(err)
			}
		}
		for _, wc := range chans {
			for got := 0; got < 2; {
				wr := <-wc
				if err := wr.Err(); err != nil {
					t.Fatal(err)
				}
				got += len(wr.Events)
			}
		}
		waitMetrics(t, url, map[string]float64{
			"etcd_debugging_mvcc_watch_stream_total": 2, "etcd_debugging_mvcc_watcher_total": 3,
			"etcd_debugging_mvcc_slow_watcher_total": 0, "etcd_debugging_mvcc_events_total": 6,
			"etcd_debugging_mvcc_pending_events_total": 0,
		})
		cancel()
		waitMetrics(t, url, map[string]float64{
			"etcd_debugging_mvcc_watch_stream_total": 0, "etcd_debugging_mvcc_watcher_total": 0,
			"etcd_debugging_mvcc_events_total": 6,
		})
	})
}

// TestWarningApplyDuration: with --warning-apply-duration=0 every request
// is slow, as in etcd: each applied one and each read served without raft
// is logged with etcd's message and counted in etcd_server_slow_apply_total.
func TestWarningApplyDuration(t *testing.T) {
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		m := startMember(t, engine, "--warning-apply-duration=0")
		url := "http://" + m.clientEP + "/metrics"
		_, before := scrape(t, url)
		cli := m.client(t)
		if _, err := cli.Put(ctx(t), "slow", "v"); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Get(ctx(t), "slow", clientv3.WithSerializable()); err != nil {
			t.Fatal(err)
		}
		_, after := scrape(t, url)
		if got := after["etcd_server_slow_apply_total"] - before["etcd_server_slow_apply_total"]; got < 2 {
			t.Errorf("slow requests counted %v for a put and a get, want at least 2", got)
		}
		logs := m.logs()
		for _, want := range []string{`"msg":"apply request took too long"`, `"prefix":"read-only range "`, `"expected-duration":"0s"`} {
			if !strings.Contains(logs, want) {
				t.Errorf("no %s in the member's log", want)
			}
		}
	})
}

// TestWarningUnaryRequestDuration: a unary call slower than
// --warning-unary-request-duration is logged as etcd logs it, "request
// stats" with the method, the counts and sizes and the request without
// its value; under the default (300ms) quick calls are not.
func TestWarningUnaryRequestDuration(t *testing.T) {
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		m := startMember(t, engine, "--warning-unary-request-duration=0")
		quiet := startMember(t, engine)
		for _, member := range []*member{m, quiet} {
			cli := member.client(t)
			if _, err := cli.Put(ctx(t), "stats", "secret"); err != nil {
				t.Fatal(err)
			}
			if _, err := cli.Get(ctx(t), "stats"); err != nil {
				t.Fatal(err)
			}
		}
		logs := m.logs()
		for _, want := range []string{`"msg":"request stats"`, `"response type":"/etcdserverpb.KV/Put"`, `"request count":1`,
			`"response type":"/etcdserverpb.KV/Range"`, `"response count":1`, `"time spent":`, `value_size:6`} {
			if !strings.Contains(logs, want) {
				t.Errorf("no %s in the log of a member with --warning-unary-request-duration=0", want)
			}
		}
		if strings.Contains(logs, "secret") {
			t.Error("a put's value in the request stats")
		}
		if strings.Contains(quiet.logs(), `"msg":"request stats"`) {
			t.Error("request stats of quick calls under the default threshold")
		}
	})
}

// TestClusterTxnRangesCountedWhereProposed: as in etcd 3.7, the members
// that did not propose a txn apply it without running its range
// operations, so only the proposing member counts them; every member
// counts the compares and the put.
func TestClusterTxnRangesCountedWhereProposed(t *testing.T) {
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		for _, m := range c.members {
			m.waitPeersActive(t, 2)
		}
		url := func(m *member) string { return "http://" + m.clientEP + "/metrics" }
		before := make([]map[string]float64, len(c.members))
		for i, m := range c.members {
			_, before[i] = scrape(t, url(m))
		}
		proposer := c.members[0]
		resp, err := proposer.client(t).Txn(ctx(t)).If(clientv3.Compare(clientv3.Version("tr/a"), "=", 0)).
			Then(clientv3.OpPut("tr/a", "1"), clientv3.OpGet("tr/a"), clientv3.OpGet("tr/", clientv3.WithPrefix())).Commit()
		if err != nil {
			t.Fatal(err)
		}
		if got := resp.Responses[2].GetResponseRange(); got == nil || got.Count != 1 {
			t.Fatalf("the proposer's range result: %v, want the key just put", got)
		}
		for i, m := range c.members {
			want := map[string]float64{"etcd_mvcc_put_total": 1, "etcd_mvcc_range_total": 1}
			if m == proposer {
				want["etcd_mvcc_range_total"] = 3
			}
			// Followers apply the entry once they learn it is committed.
			waitFor(10*time.Second, func() bool {
				_, after := scrape(t, url(m))
				return after["etcd_mvcc_put_total"]-before[i]["etcd_mvcc_put_total"] == 1
			})
			_, after := scrape(t, url(m))
			for n, w := range want {
				if got := after[n] - before[i][n]; got != w {
					t.Errorf("%s: %s moved by %v, want %v", m.name, n, got, w)
				}
			}
		}
	})
}

// waitMetrics scrapes url until every series of want has its value, for up
// to 10 s.
func waitMetrics(t *testing.T, url string, want map[string]float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, values := scrape(t, url)
		var off []string
		for n, v := range want {
			if values[n] != v {
				off = append(off, fmt.Sprintf("%s = %v, want %v", n, values[n], v))
			}
		}
		if len(off) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: %s", strings.Join(off, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPeerMetricsMatchEtcd: a member of a three-member cluster has etcd's
// peer series, labelled with the peers' IDs in hex. A lone etcd has no
// peers, so these are checked against etcd's declared names, types and
// labels (server/etcdserver/api/rafthttp/metrics.go).
func TestPeerMetricsMatchEtcd(t *testing.T) {
	want := map[string]struct {
		typ    string
		labels []string
	}{
		"etcd_network_peer_sent_bytes_total":        {"counter", []string{"To"}},
		"etcd_network_peer_received_bytes_total":    {"counter", []string{"From"}},
		"etcd_network_peer_sent_failures_total":     {"counter", []string{"To"}},
		"etcd_network_peer_round_trip_time_seconds": {"histogram", []string{"To"}},
		"etcd_network_active_peers":                 {"gauge", []string{"Local", "Remote"}},
	}
	c := startCluster(t, engines[0], 3)
	lead := c.leader()
	traffic(t, lead.client(t))
	var ids []string
	resp, err := lead.client(t).MemberList(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, mem := range resp.Members {
		ids = append(ids, strconv.FormatUint(mem.ID, 16))
	}
	local := strconv.FormatUint(resp.Header.MemberId, 16)
	url := "http://" + lead.clientEP + "/metrics"
	// The first probe of each peer comes when its stream is up.
	deadline := time.Now().Add(15 * time.Second)
	var body string
	for {
		body = httpAsk(t, "GET", url).Body
		if strings.Count(body, "etcd_network_peer_round_trip_time_seconds_count{") == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	page := scrapePage(t, url)
	// Every stream of the leader is up: each peer's active series is 1.
	up := 0
	for _, id := range ids {
		if strings.Contains(body, fmt.Sprintf("etcd_network_active_peers{Local=%q,Remote=%q} 1\n", local, id)) {
			up++
		}
	}
	if up != 2 {
		t.Errorf("active peer series of the leader at 1: %d, want 2", up)
	}
	for n, w := range want {
		if page.types[n] != w.typ || !slices.Equal(page.labels[n], w.labels) {
			t.Errorf("%s: type %q, labels %q; want %s, %q", n, page.types[n], page.labels[n], w.typ, w.labels)
		}
		// One series per peer, named by its ID in hex (and the leader's
		// own where etcd's has it).
		peers := 0
		for _, id := range ids {
			series := fmt.Sprintf("%s=%q", w.labels[0], id)
			if len(w.labels) == 2 {
				series = fmt.Sprintf("%s=%q,%s=%q", w.labels[0], local, w.labels[1], id)
			}
			if strings.Contains(body, n+"{"+series+"}") || strings.Contains(body, n+"_count{"+series+"}") {
				peers++
			}
		}
		if peers != 2 {
			t.Errorf("%s: series for %d of the leader's 2 peers (IDs %v)", n, peers, ids)
		}
	}
}

// TestListenMetricsURLs: --listen-metrics-urls serves /metrics and the
// health endpoints, and nothing else, as etcd does.
func TestListenMetricsURLs(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	m := startMember(t, engines[0], "--listen-metrics-urls", "http://"+addr)
	types, _ := scrape(t, "http://"+addr+"/metrics")
	if types["etcd_server_has_leader"] != "gauge" {
		t.Errorf("no etcd_server_has_leader on the metrics URL")
	}
	for _, path := range []string{"/readyz", "/livez", "/health"} {
		if a := httpAsk(t, "GET", "http://"+addr+path); a.Status != 200 {
			t.Errorf("GET %s on the metrics URL: %d %s", path, a.Status, a.Body)
		}
	}
	if a := httpAsk(t, "GET", "http://"+addr+"/version"); a.Status != 404 {
		t.Errorf("GET /version on the metrics URL: %d, want 404", a.Status)
	}
	if a := httpAsk(t, "GET", "http://"+m.clientEP+"/metrics"); a.Status != 200 {
		t.Errorf("GET /metrics on the client URL: %d", a.Status)
	}
}

// TestListenMetricsURLsTLSNeedsCertificate: an https:// metrics URL
// without the client certificate is refused at start, as etcd refuses it.
func TestListenMetricsURLsTLSNeedsCertificate(t *testing.T) {
	urls, _ := localURLs(t, "default")
	args := append(urls, "--data-dir", t.TempDir(), "--listen-metrics-urls", fmt.Sprintf("https://127.0.0.1:%d", freePort(t)))
	out, code := runCairn(t, nil, args...)
	if want := "must be provided for metrics secure url"; code == 0 || !strings.Contains(out, want) {
		t.Errorf("exit %d, output lacks %q:\n%s", code, want, out)
	}
}

// seriesDiff lists the series only in got (+) and only in want (-).
func seriesDiff(got, want []string) string {
	var b strings.Builder
	for _, g := range got {
		if !slices.Contains(want, g) {
			b.WriteString("+ " + g + "\n")
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			b.WriteString("- " + w + "\n")
		}
	}
	return b.String()
}

// operationsSeries are the series of compaction, defragmentation and
// snapshots that TestOperationsMetricsMatchEtcd compares.
var operationsSeries = []string{
	"etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds_count",
	"etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_count",
	"etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_count",
	"etcd_debugging_mvcc_db_compaction_keys_total",
	"etcd_disk_backend_defrag_duration_seconds_count",
	"etcd_disk_backend_snapshot_duration_seconds_count",
}

// operationsWorkload overwrites keys, compacts (waiting for the compaction
// to finish), defragments and reads a snapshot to its end, then waits for
// the server to time the snapshot, which it does once the stream is
// closed, after the client has read it.
func operationsWorkload(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	c := ctx(t)
	url := "http://" + strings.TrimPrefix(cli.Endpoints()[0], "http://") + "/metrics"
	snapshots := func() float64 {
		return labelledValues(t, url, "etcd_disk_backend_snapshot_duration_seconds_count")["etcd_disk_backend_snapshot_duration_seconds_count"]
	}
	before := snapshots()
	var last int64
	for i := range 6 {
		r, err := cli.Put(c, fmt.Sprintf("ops/%d", i%3), strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	if _, err := cli.Compact(c, last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Defragment(c, cli.Endpoints()[0]); err != nil {
		t.Fatal(err)
	}
	rc, err := cli.Snapshot(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		t.Fatal(err)
	}
	rc.Close()
	if !waitFor(5*time.Second, func() bool { return snapshots() > before }) {
		t.Fatal("the snapshot was not timed")
	}
}

// TestOperationsMetricsMatchEtcd: a compaction, a defragmentation and a
// snapshot move etcd's compaction, defragmentation and backend snapshot
// series on Cairn as on etcd.
func TestOperationsMetricsMatchEtcd(t *testing.T) {
	movedAsEtcd(t, operationsSeries, operationsWorkload, func(want map[string]float64) bool {
		return len(want) == len(operationsSeries)
	})
}

// TestOperationsGaugesMatchEtcd: the compaction, defragmentation and
// snapshot families have etcd's types, and after the work of
// operationsWorkload the time of the last compaction is set and nothing
// is left in flight.
func TestOperationsGaugesMatchEtcd(t *testing.T) {
	gauges := []string{"etcd_debugging_mvcc_db_compaction_last", "etcd_disk_defrag_inflight", "etcd_server_snapshot_apply_in_progress_total"}
	families := []string{
		"etcd_debugging_mvcc_index_compaction_pause_duration_milliseconds",
		"etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds",
		"etcd_debugging_mvcc_db_compaction_total_duration_milliseconds",
		"etcd_disk_backend_defrag_duration_seconds", "etcd_disk_backend_snapshot_duration_seconds",
	}
	etcdTypes, _ := scrape(t, "http://"+etcdEndpoint(startEtcd(t))+"/metrics")
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		url := "http://" + m.clientEP + "/metrics"
		_, fresh := scrape(t, url)
		if fresh["etcd_debugging_mvcc_db_compaction_last"] != 0 {
			t.Errorf("a fresh member's last compaction: %v, want 0", fresh["etcd_debugging_mvcc_db_compaction_last"])
		}
		start := time.Now().Unix()
		operationsWorkload(t, m.client(t))
		types, values := scrape(t, url)
		for _, n := range append(gauges, families...) {
			if etcdTypes[n] == "" || types[n] != etcdTypes[n] {
				t.Errorf("%s: type %q, etcd's %q", n, types[n], etcdTypes[n])
			}
		}
		if last := values["etcd_debugging_mvcc_db_compaction_last"]; last < float64(start) || last > float64(time.Now().Unix()) {
			t.Errorf("last compaction at %v, want between %d and now", last, start)
		}
		for _, n := range gauges[1:] {
			if values[n] != 0 {
				t.Errorf("%s = %v after the work, want 0", n, values[n])
			}
		}
	})
}

// TestCompactionFlagsMatchEtcd: --compaction-batch-limit and
// --compaction-sleep-interval pace a compaction as in etcd: with a limit
// of 2 the compaction of operationsWorkload takes as many engine batches
// as etcd's, with the pause between them.
func TestCompactionFlagsMatchEtcd(t *testing.T) {
	const sleep = 300 * time.Millisecond
	batches := "etcd_debugging_mvcc_db_compaction_pause_duration_milliseconds_count"
	total := "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds_sum"
	etcdCli := startEtcd(t, func(c *embed.Config) {
		c.CompactionBatchLimit = 2
		c.CompactionSleepInterval = sleep
	})
	want := seriesMoved(t, "http://"+etcdEndpoint(etcdCli)+"/metrics", []string{batches, total}, func() { operationsWorkload(t, etcdCli) })
	// Six revisions in batches of two, and the batch that finds none left.
	if want[batches] < 4 || want[total] < float64(3*sleep/time.Millisecond) {
		t.Fatalf("etcd's compaction: %v, want at least 4 batches and 3 pauses of %v", want, sleep)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine, "--compaction-batch-limit", "2", "--compaction-sleep-interval", sleep.String())
		cli := m.client(t)
		got := seriesMoved(t, "http://"+m.clientEP+"/metrics", []string{batches, total}, func() { operationsWorkload(t, cli) })
		if got[batches] != want[batches] {
			t.Errorf("compaction batches: %v, etcd's %v", got[batches], want[batches])
		}
		if got[total] < float64(3*sleep/time.Millisecond) {
			t.Errorf("compaction took %v ms, want at least 3 pauses of %v", got[total], sleep)
		}
	})
}

// TestClusterSeriesMatchEtcd: the series of what a member knows of its
// cluster read as etcd's: itself among the known peers, the auth
// revision moving with each auth change, and an active alarm, under
// etcd's names, types and labels.
func TestClusterSeriesMatchEtcd(t *testing.T) {
	type seen struct {
		known, alarm, alarmAfterDisarm float64
		authMoved                      float64
		types                          map[string]string
		labels                         map[string][]string
	}
	names := []string{"etcd_network_known_peers", "etcd_debugging_server_alarms", "etcd_debugging_auth_revision"}
	observe := func(t *testing.T, cli *clientv3.Client) seen {
		t.Helper()
		url := "http://" + strings.TrimPrefix(cli.Endpoints()[0], "http://") + "/metrics"
		st, err := cli.Status(ctx(t), cli.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		id := strconv.FormatUint(st.Header.MemberId, 16)
		var s seen
		s.known = labelledValues(t, url, names[0])[fmt.Sprintf("etcd_network_known_peers{Local=%q,Remote=%q}", id, id)]
		before := labelledValues(t, url, names[2])[names[2]]
		if _, err := cli.UserAdd(ctx(t), "metrics-user", "pw"); err != nil {
			t.Fatal(err)
		}
		if _, err := cli.RoleAdd(ctx(t), "metrics-role"); err != nil {
			t.Fatal(err)
		}
		s.authMoved = labelledValues(t, url, names[2])[names[2]] - before
		maint := pb.NewMaintenanceClient(cli.ActiveConnection())
		if _, err := maint.Alarm(ctx(t), &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: st.Header.MemberId, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			t.Fatal(err)
		}
		series := fmt.Sprintf("etcd_debugging_server_alarms{alarm_type=\"NOSPACE\",server_id=%q}", id)
		s.alarm = labelledValues(t, url, names[1])[series]
		page := scrapePage(t, url)
		s.types, s.labels = map[string]string{}, map[string][]string{}
		for _, n := range names {
			s.types[n], s.labels[n] = page.types[n], page.labels[n]
		}
		if _, err := cli.AlarmDisarm(ctx(t), &clientv3.AlarmMember{MemberID: st.Header.MemberId, Alarm: pb.AlarmType_NOSPACE}); err != nil {
			t.Fatal(err)
		}
		s.alarmAfterDisarm = labelledValues(t, url, names[1])[series]
		return s
	}
	want := observe(t, startEtcd(t))
	if want.known != 1 || want.alarm != 1 || want.authMoved != 2 {
		t.Fatalf("etcd's series: %+v", want)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		if got := observe(t, startMember(t, engine).client(t)); !reflect.DeepEqual(got, want) {
			t.Errorf("got  %+v\nwant %+v (etcd's)", got, want)
		}
	})
}

// TestStreamFailuresMatchEtcd: a watch or keep-alive stream that its
// client ends, or whose message does not decode (gRPC then ends the
// stream's context before the handler sees the error, so etcd takes it as
// the client's doing), is answered as etcd answers it and moves
// etcd_network_server_stream_failures_total no more than etcd's.
// (Failures counted there are unit-tested in etcdcompat: etcd's own
// counter moves only for errors of a stream whose context is still live.)
func TestStreamFailuresMatchEtcd(t *testing.T) {
	const series = "etcd_network_server_stream_failures_total"
	bad := []byte{0x0a, 0x05, 'k'} // a length-delimited field 1 that claims 5 bytes and has 1
	methods := []string{"/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"}
	answers := map[string][2]string{}
	movedAsEtcd(t, []string{series}, func(t *testing.T, cli *clientv3.Client) {
		wctx, stop := context.WithCancel(ctx(t))
		wc := cli.Watch(wctx, "k")
		if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
		<-wc
		stop()
		ep := strings.TrimPrefix(cli.Endpoints()[0], "http://")
		for _, m := range methods {
			status, msg := rawCall(t, ep, m, bad, "3.7")
			// protobuf-go puts a space or a no-break space after "proto:"
			// in its errors, chosen by a hash of the binary, to keep
			// callers from matching its text.
			msg = strings.ReplaceAll(msg, "%C2%A0", " ")
			if want, ok := answers[m]; !ok {
				answers[m] = [2]string{status, msg}
			} else if want != [2]string{status, msg} {
				t.Errorf("%s answered a message that does not decode with %s %q, etcd with %s %q", m, status, msg, want[0], want[1])
			}
		}
	}, func(map[string]float64) bool { return true })
}

// TestFeatureGatesMetricMatchesEtcd: etcd_server_feature_enabled lists
// etcd's server feature gates with their stages, on or off as etcd turns
// them with the same --feature-gates: by default, and with AllAlpha on and
// a beta gate off.
func TestFeatureGatesMetricMatchesEtcd(t *testing.T) {
	for _, gates := range []string{"", "AllAlpha=true,FastLeaseKeepAlive=false"} {
		series := func(url string) map[string]float64 {
			return labelledValues(t, url, "etcd_server_feature_enabled")
		}
		cli := startEtcd(t, func(c *embed.Config) {
			if gates != "" {
				if err := c.ServerFeatureGate.(featuregate.MutableFeatureGate).Set(gates); err != nil {
					t.Fatal(err)
				}
			}
		})
		want := series("http://" + etcdEndpoint(cli) + "/metrics")
		if len(want) < 9 {
			t.Fatalf("etcd lists %d gates: %v", len(want), want)
		}
		forEachEngine(t, func(t *testing.T, engine string) {
			var args []string
			if gates != "" {
				args = []string{"--feature-gates", gates}
			}
			if got := series("http://" + startMember(t, engine, args...).clientEP + "/metrics"); !reflect.DeepEqual(got, want) {
				t.Errorf("--feature-gates=%q:\n got %v\nwant %v (etcd's)", gates, got, want)
			}
		})
	}
}
