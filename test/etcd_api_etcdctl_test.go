package test

// etcdctl end to end: the same etcdctl sessions run against a fresh etcd
// and a fresh Cairn member per engine must print the same thing and exit
// the same way. Commands whose output names the member (endpoint status,
// endpoint health, member list) are checked field by field instead.

import (
	"encoding/json"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// ctlStep is one etcdctl invocation; stdin feeds `etcdctl txn`.
type ctlStep struct {
	args  string
	stdin string
}

// ctlResult is what an invocation printed, normalised, and its exit code.
type ctlResult struct {
	out  string
	exit int
}

func (s ctlStep) run(endpoint string) ctlResult {
	stdout, stderr, exit := etcdctlAt(endpoint, s.stdin, strings.Fields(s.args)...)
	return ctlResult{normaliseCtlOutput(stdout+stderr, endpoint), exit}
}

// clientLogLine matches the JSON log lines the etcd client library writes
// on a failed call; they carry timestamps and ports.
var clientLogLine = regexp.MustCompile(`^\{"level":`)

// normaliseCtlOutput drops client log lines and clears what differs
// between two servers in otherwise equal output: the endpoint, and the
// cluster ID, member ID and raft term in JSON headers.
func normaliseCtlOutput(out, endpoint string) string {
	var lines []string
	for _, line := range strings.Split(out, "\n") {
		if clientLogLine.MatchString(line) {
			continue
		}
		if strings.HasPrefix(line, "{") || strings.HasPrefix(line, "[") {
			var v any
			if json.Unmarshal([]byte(line), &v) == nil {
				clearJSONIdentity(v)
				b, _ := json.Marshal(v)
				line = string(b)
			}
		}
		lines = append(lines, strings.ReplaceAll(line, endpoint, "ENDPOINT"))
	}
	return strings.Join(lines, "\n")
}

// clearJSONIdentity zeroes cluster_id, member_id and raft_term in every
// object of v.
func clearJSONIdentity(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			switch k {
			case "cluster_id", "member_id", "raft_term":
				v[k] = 0
			default:
				clearJSONIdentity(e)
			}
		}
	case []any:
		for _, e := range v {
			clearJSONIdentity(e)
		}
	}
}

func TestEtcdctlMatchesEtcd(t *testing.T) {
	session := []ctlStep{
		{args: "put foo bar"},
		{args: "put foo/a 1"},
		{args: "put foo/b 2"},
		{args: "put fop 3"},
		{args: "get foo"},
		{args: "get foo -w json"},
		{args: "get nokey"},
		{args: "get nokey -w json"},
		{args: "get --prefix foo"},
		{args: "get --prefix foo -w json"},
		{args: "get --prefix foo --keys-only"},
		{args: "get --prefix foo --print-value-only"},
		{args: "get --prefix foo --limit 1 -w json"},
		{args: "get --prefix foo --count-only -w json"},
		{args: "get --prefix foo --sort-by=MODIFY --order=DESCEND"},
		{args: "get --prefix foo --sort-by=VALUE --order=ASCEND -w json"},
		{args: "get --from-key foo/a"},
		{args: "get foo fop"},
		{args: "get foo --rev 1 -w json"},
		{args: "get foo --rev 2"},
		{args: "get foo --rev 100"},
		{args: "put foo baz --prev-kv"},
		{args: "put foo --ignore-value"},
		{args: "put foo bax --ignore-value"},
		{args: "put foo qux --lease 1234"},
		{args: "get foo -w json"},
		{args: "del foo/a"},
		{args: "del nokey"},
		{args: "del --prefix foo --prev-kv"},
		{args: "get --from-key a"},
		{args: "txn", stdin: "value(\"fop\") = \"3\"\n\nput fop 4\nget fop\n\nput fop failed\n\n"},
		{args: "txn", stdin: "value(\"fop\") = \"3\"\n\nput fop 5\n\nput fop failed\nget fop\n\n"},
		{args: "txn -w json", stdin: "mod(\"fop\") > \"0\"\nversion(\"fop\") = \"3\"\n\nput x 1\ndel fop\nget x\n\nput y 1\n\n"},
		{args: "txn -w json", stdin: "create(\"nokey\") = \"0\"\n\nput nokey now\n\n\n"},
		{args: "txn", stdin: "\nput a 1\nput a 2\n\n\n"}, // duplicate key
		{args: "get --from-key a -w json"},
		{args: "compaction 3"},
		{args: "get foo --rev 2"},
		{args: "compaction 3"},
		{args: "compaction --physical 5"},
		{args: "compaction 1000"},
		{args: "get --from-key a --rev 5 -w json"},
	}
	etcdEP := etcdEndpoint(startEtcd(t))
	want := make([]ctlResult, len(session))
	for i, s := range session {
		want[i] = s.run(etcdEP)
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		for i, s := range session {
			got := s.run(m.clientEP)
			if got != want[i] {
				t.Errorf("step %d: etcdctl %s (stdin %q)\n--- etcd (exit %d):\n%s\n--- cairn (exit %d):\n%s",
					i+1, s.args, s.stdin, want[i].exit, want[i].out, got.exit, got.out)
			}
		}
	})
}

// ctlJSON runs etcdctl with -w json and decodes its output into v.
func ctlJSON(t *testing.T, endpoint string, v any, args ...string) {
	t.Helper()
	out, stderr, exit := etcdctlAt(endpoint, "", append(args, "-w", "json")...)
	if exit != 0 {
		t.Fatalf("etcdctl %s: exit %d:\n%s%s", strings.Join(args, " "), exit, out, stderr)
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("etcdctl %s -w json: %v:\n%s", strings.Join(args, " "), err, out)
	}
}

// jsonPaths lists the key paths of a decoded JSON document, such as
// "Status.header.revision", with list indexes dropped: the shape of the
// document without its values.
func jsonPaths(v any, prefix string, out map[string]bool) map[string]bool {
	if out == nil {
		out = map[string]bool{}
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			out[prefix+k] = true
			jsonPaths(e, prefix+k+".", out)
		}
	case []any:
		for _, e := range v {
			jsonPaths(e, prefix, out)
		}
	}
	return out
}

func sortedKeys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// sameShape reports the key paths one of two JSON documents has and the
// other lacks.
func sameShape(t *testing.T, what string, etcd, cairn any) {
	t.Helper()
	w, g := jsonPaths(etcd, "", nil), jsonPaths(cairn, "", nil)
	var missing, extra []string
	for _, k := range sortedKeys(w) {
		if !g[k] {
			missing = append(missing, k)
		}
	}
	for _, k := range sortedKeys(g) {
		if !w[k] {
			extra = append(extra, k)
		}
	}
	if len(missing)+len(extra) > 0 {
		t.Errorf("%s: JSON fields etcd prints but Cairn does not: %v; Cairn prints but etcd does not: %v", what, missing, extra)
	}
}

// endpointStatus is `etcdctl endpoint status -w json` for one endpoint.
type endpointStatus struct {
	Endpoint string
	Status   struct {
		Header struct {
			ClusterID uint64 `json:"cluster_id"`
			MemberID  uint64 `json:"member_id"`
			Revision  int64  `json:"revision"`
			RaftTerm  uint64 `json:"raft_term"`
		} `json:"header"`
		Version          string `json:"version"`
		StorageVersion   string `json:"storageVersion"`
		DBSize           int64  `json:"dbSize"`
		Leader           uint64 `json:"leader"`
		RaftIndex        uint64 `json:"raftIndex"`
		RaftTerm         uint64 `json:"raftTerm"`
		RaftAppliedIndex uint64 `json:"raftAppliedIndex"`
		DBSizeQuota      int64  `json:"dbSizeQuota"`
		IsLearner        bool   `json:"isLearner"`
		Errors           []string
	}
}

func TestEtcdctlEndpointAndMember(t *testing.T) {
	etcdCli := startEtcd(t)
	etcdEP := etcdEndpoint(etcdCli)
	if _, err := etcdCli.Put(ctx(t), "foo", "bar"); err != nil {
		t.Fatal(err)
	}
	var etcdStatus, etcdMembers, etcdHealth any
	ctlJSON(t, etcdEP, &etcdStatus, "endpoint", "status")
	ctlJSON(t, etcdEP, &etcdMembers, "member", "list")
	ctlJSON(t, etcdEP, &etcdHealth, "endpoint", "health")
	etcdStatusTable, _, _ := etcdctlAt(etcdEP, "", "endpoint", "status")

	forEachEngine(t, func(t *testing.T, engine string) {
		m := startServingMember(t, engine)
		if out, exit := m.etcdctlStdin("", "put", "foo", "bar"); exit != 0 {
			t.Fatalf("etcdctl put: exit %d\n%s", exit, out)
		}

		t.Run("endpoint status -w json", func(t *testing.T) {
			var st []endpointStatus
			ctlJSON(t, m.clientEP, &st, "endpoint", "status")
			if len(st) != 1 {
				t.Fatalf("want 1 endpoint, got %d", len(st))
			}
			s := st[0]
			if s.Endpoint != m.clientEP {
				t.Errorf("Endpoint = %q, want %q", s.Endpoint, m.clientEP)
			}
			if s.Status.Version != "3.7.3" {
				t.Errorf("version = %q, want 3.7.3", s.Status.Version)
			}
			if s.Status.StorageVersion != "3.7.0" {
				t.Errorf("storageVersion = %q, want 3.7.0 as etcd 3.7.3 reports", s.Status.StorageVersion)
			}
			if s.Status.Leader == 0 || s.Status.Leader != s.Status.Header.MemberID {
				t.Errorf("leader = %x, member_id = %x: a single member must lead itself", s.Status.Leader, s.Status.Header.MemberID)
			}
			if s.Status.Header.ClusterID == 0 {
				t.Error("cluster_id is 0")
			}
			if s.Status.Header.Revision != 2 {
				t.Errorf("revision = %d after one put, want 2", s.Status.Header.Revision)
			}
			if s.Status.RaftTerm == 0 || s.Status.Header.RaftTerm != s.Status.RaftTerm {
				t.Errorf("raftTerm = %d, header raft_term = %d: want equal and non-zero", s.Status.RaftTerm, s.Status.Header.RaftTerm)
			}
			if s.Status.RaftIndex == 0 || s.Status.RaftAppliedIndex != s.Status.RaftIndex {
				t.Errorf("raftIndex = %d, raftAppliedIndex = %d: want equal and non-zero on an idle member", s.Status.RaftIndex, s.Status.RaftAppliedIndex)
			}
			if s.Status.DBSizeQuota != 2<<30 {
				t.Errorf("dbSizeQuota = %d, want etcd's default %d", s.Status.DBSizeQuota, 2<<30)
			}
			if s.Status.IsLearner || len(s.Status.Errors) > 0 {
				t.Errorf("isLearner = %v, errors = %v; want false, none", s.Status.IsLearner, s.Status.Errors)
			}
			var raw any
			ctlJSON(t, m.clientEP, &raw, "endpoint", "status")
			sameShape(t, "endpoint status -w json", etcdStatus, raw)
		})

		t.Run("endpoint status table", func(t *testing.T) {
			out, stderr, exit := etcdctlAt(m.clientEP, "", "endpoint", "status")
			if exit != 0 {
				t.Fatalf("exit %d\n%s%s", exit, out, stderr)
			}
			got := strings.Split(strings.TrimSpace(out), ", ")
			want := strings.Split(strings.TrimSpace(etcdStatusTable), ", ")
			if len(got) != len(want) {
				t.Fatalf("%d columns, etcd prints %d:\n%s\netcd:\n%s", len(got), len(want), out, etcdStatusTable)
			}
			// endpoint, id, version, storage version, …, is leader, is learner, raft term, …
			if got[0] != m.clientEP || got[2] != "3.7.3" || got[3] != "3.7.0" || got[8] != "true" || got[9] != "false" {
				t.Errorf("endpoint status:\n%s\nwant endpoint %s, version 3.7.3, storage version 3.7.0, leader true, learner false (etcd prints:\n%s)", out, m.clientEP, etcdStatusTable)
			}
		})

		t.Run("endpoint health", func(t *testing.T) {
			out, stderr, exit := etcdctlAt(m.clientEP, "", "endpoint", "health")
			if exit != 0 {
				t.Fatalf("exit %d\n%s%s", exit, out, stderr)
			}
			if !strings.HasPrefix(out, m.clientEP+" is healthy: successfully committed proposal: took = ") {
				t.Errorf("endpoint health printed %q", out)
			}
			var health []struct {
				Endpoint string `json:"endpoint"`
				Health   bool   `json:"health"`
				Error    string `json:"error"`
			}
			ctlJSON(t, m.clientEP, &health, "endpoint", "health")
			if len(health) != 1 || !health[0].Health || health[0].Endpoint != m.clientEP || health[0].Error != "" {
				t.Errorf("endpoint health -w json = %+v, want one healthy %s", health, m.clientEP)
			}
			var raw any
			ctlJSON(t, m.clientEP, &raw, "endpoint", "health")
			sameShape(t, "endpoint health -w json", etcdHealth, raw)
		})

		t.Run("member list", func(t *testing.T) {
			out, stderr, exit := etcdctlAt(m.clientEP, "", "member", "list")
			if exit != 0 {
				t.Fatalf("exit %d\n%s%s", exit, out, stderr)
			}
			f := strings.Split(strings.TrimSpace(out), ", ")
			if len(f) != 6 || f[1] != "started" || f[2] != "m1" || f[4] != "http://"+m.clientEP || f[5] != "false" {
				t.Errorf("member list printed %q; want \"<id>, started, m1, <peer URL>, http://%s, false\"", out, m.clientEP)
			}
			var ml struct {
				Header struct {
					ClusterID uint64 `json:"cluster_id"`
					MemberID  uint64 `json:"member_id"`
				} `json:"header"`
				Members []struct {
					ID         uint64
					Name       string   `json:"name"`
					PeerURLs   []string `json:"peerURLs"`
					ClientURLs []string `json:"clientURLs"`
				} `json:"members"`
			}
			ctlJSON(t, m.clientEP, &ml, "member", "list")
			if len(ml.Members) != 1 {
				t.Fatalf("member list -w json: %d members, want 1", len(ml.Members))
			}
			mem := ml.Members[0]
			if mem.ID == 0 || mem.ID != ml.Header.MemberID || mem.Name != "m1" ||
				!slices.Equal(mem.ClientURLs, []string{"http://" + m.clientEP}) || len(mem.PeerURLs) != 1 {
				t.Errorf("member list -w json: %+v (header member_id %x)", ml.Members, ml.Header.MemberID)
			}
			if got := strconv.FormatUint(mem.ID, 16); f[0] != got {
				t.Errorf("member list prints ID %s, -w json says %s", f[0], got)
			}
			var raw any
			ctlJSON(t, m.clientEP, &raw, "member", "list")
			sameShape(t, "member list -w json", etcdMembers, raw)
		})

		// A restarted member is the same member, on whatever ports it now
		// listens (etcd keeps the member ID from its data directory). The
		// restart happens here rather than in a subtest because the
		// member belongs to this test.
		var before, after []endpointStatus
		ctlJSON(t, m.clientEP, &before, "endpoint", "status")
		m.stop()
		m.startServing(t)
		ctlJSON(t, m.clientEP, &after, "endpoint", "status")
		b, a := before[0].Status, after[0].Status
		if a.Header.ClusterID != b.Header.ClusterID || a.Header.MemberID != b.Header.MemberID {
			t.Errorf("cluster/member ID changed across restart: %x/%x then %x/%x", b.Header.ClusterID, b.Header.MemberID, a.Header.ClusterID, a.Header.MemberID)
		}
		if a.Header.Revision != b.Header.Revision {
			t.Errorf("revision %d before restart, %d after", b.Header.Revision, a.Header.Revision)
		}
		if a.RaftTerm < b.RaftTerm || a.Leader != a.Header.MemberID {
			t.Errorf("after restart raftTerm %d (was %d), leader %x, member %x", a.RaftTerm, b.RaftTerm, a.Leader, a.Header.MemberID)
		}
	})
}
