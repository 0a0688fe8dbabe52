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
	// Values a lone, idle member must agree on with etcd's. (etcd's
	// counters are global to its process, which here has run other
	// members: its leader changes are compared as "at least one".)
	same := []string{
		"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
		"etcd_server_proposals_pending", "etcd_server_quota_backend_bytes",
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
		for _, n := range same {
			if values[n] != etcdValues[n] {
				t.Errorf("%s = %v, etcd's %v", n, values[n], etcdValues[n])
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
