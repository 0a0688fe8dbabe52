package test

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// scrape reads a Prometheus text page into type by name and value by
// series (unlabelled series only).
func scrape(t *testing.T, url string) (types map[string]string, values map[string]float64) {
	t.Helper()
	a := httpAsk(t, "GET", url)
	if a.Status != 200 {
		t.Fatalf("GET %s: %d", url, a.Status)
	}
	types, values = map[string]string{}, map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(a.Body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 4 && f[0] == "#" && f[1] == "TYPE":
			types[f[2]] = f[3]
		case len(f) == 2 && !strings.HasPrefix(f[0], "#"):
			if v, err := strconv.ParseFloat(f[1], 64); err == nil {
				values[f[0]] = v
			}
		}
	}
	return types, values
}

// TestMetricsMatchEtcd: the series etcd's dashboards and alerts read about
// leadership, proposals, quota and database size exist on Cairn's /metrics
// with etcd's names and types, and a lone member reports what etcd's does.
func TestMetricsMatchEtcd(t *testing.T) {
	names := []string{
		"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
		"etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total",
		"etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
		"etcd_server_quota_backend_bytes", "etcd_mvcc_db_total_size_in_bytes",
		"etcd_mvcc_db_total_size_in_use_in_bytes", "etcd_debugging_mvcc_current_revision",
	}
	// What a lone, idle member reports, as a lone etcd member does. These
	// are not read from the reference etcd: its gauges and counters are
	// global to its process, which here runs other tests' members at the
	// same time, so its values describe whichever member set them last.
	idle := map[string]float64{
		"etcd_server_has_leader": 1, "etcd_server_is_leader": 1, "etcd_server_is_learner": 0,
		"etcd_server_proposals_pending": 0, "etcd_server_quota_backend_bytes": 2 << 30,
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
