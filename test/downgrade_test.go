package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

// downgradeSide is one server a downgrade scenario runs against: the
// reference etcd or a Cairn member, by its client endpoint (host:port).
type downgradeSide struct {
	cli *clientv3.Client
	ep  string
}

// downgradeStep is one step of the scenario; run renders what a client
// observes, to be compared between etcd and Cairn.
type downgradeStep struct {
	name string
	run  func(t *testing.T, s downgradeSide) string
}

// downgradeCall is Maintenance.Downgrade, asked on the bare gRPC
// connection (clientv3 hides the status code, and refuses unknown actions
// itself): the version answered (and the header's revision), or the
// error's code and message.
func downgradeCall(action pb.DowngradeRequest_DowngradeAction, version string) func(*testing.T, downgradeSide) string {
	return func(t *testing.T, s downgradeSide) string {
		resp, err := pb.NewMaintenanceClient(s.cli.ActiveConnection()).Downgrade(ctx(t), &pb.DowngradeRequest{Action: action, Version: version})
		if err != nil {
			st := status.Convert(err)
			return fmt.Sprintf("error %s: %s", st.Code(), st.Message())
		}
		return fmt.Sprintf("version %q, revision %d", resp.Version, resp.Header.GetRevision())
	}
}

// downgradeCtl runs etcdctl and renders its exit code, its output and the
// errors it prints (the client's log lines before them carry times and
// ports).
func downgradeCtl(args ...string) func(*testing.T, downgradeSide) string {
	return func(t *testing.T, s downgradeSide) string {
		out, stderr, exit := etcdctlAt(s.ep, "", args...)
		var errs []string
		for _, l := range strings.Split(stderr, "\n") {
			if strings.HasPrefix(l, "Error:") {
				errs = append(errs, l)
			}
		}
		return fmt.Sprintf("exit %d: %q %q", exit, out, errs)
	}
}

// versionBody is the body of the client port's /version.
func versionBody(t *testing.T, ep string) string {
	resp, err := http.Get("http://" + ep + "/version")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitClusterVersion waits, up to 20 s, for /version to report cluster
// and storage version want, as the leader moves the one and every member
// the other after it, and renders the body.
func waitClusterVersion(want string) func(*testing.T, downgradeSide) string {
	return func(t *testing.T, s downgradeSide) string {
		deadline := time.Now().Add(20 * time.Second)
		for {
			body := versionBody(t, s.ep)
			if strings.Contains(body, fmt.Sprintf(`"etcdcluster":%q,"storage":%q`, want, want)) || time.Now().After(deadline) {
				return body
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// downgradeStatus is Maintenance.Status's versions and downgrade state;
// withStorage false leaves out the storage version, which follows the
// cluster version a little later.
func downgradeStatus(withStorage bool) func(*testing.T, downgradeSide) string {
	return func(t *testing.T, s downgradeSide) string {
		st, err := s.cli.Status(ctx(t), s.ep)
		if err != nil {
			t.Fatal(err)
		}
		out := fmt.Sprintf("version %q, downgrade target %q enabled %v",
			st.Version, st.DowngradeInfo.GetTargetVersion(), st.DowngradeInfo.GetEnabled())
		if withStorage {
			out += fmt.Sprintf(", storage version %q", st.StorageVersion)
		}
		return out
	}
}

// downgradeEndpointStatus is the versions and downgrade state of
// `etcdctl endpoint status -w json`.
func downgradeEndpointStatus(t *testing.T, s downgradeSide) string {
	var st []struct {
		Status struct {
			Version        string `json:"version"`
			StorageVersion string `json:"storageVersion"`
			DowngradeInfo  *struct {
				Enabled       bool   `json:"enabled"`
				TargetVersion string `json:"targetVersion"`
			} `json:"downgradeInfo"`
		}
	}
	ctlJSON(t, s.ep, &st, "endpoint", "status")
	if len(st) != 1 {
		t.Fatalf("endpoint status: %d endpoints", len(st))
	}
	b, _ := json.Marshal(st[0].Status)
	return string(b)
}

// downgradeSteps is the scenario: validations, an enable, what the
// cluster reports while the downgrade is on, and its cancellation. The
// steps that follow the leader's moves of the cluster version wait for
// them first, since etcd makes them up to 4 s later.
var downgradeSteps = []downgradeStep{
	{"version at start", waitClusterVersion("3.7.0")},
	{"status at start", downgradeStatus(true)},
	{"validate 3.6", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.6")},
	{"validate 3.6.1", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.6.1")},
	{"validate 3.6.0-alpha", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.6.0-alpha")},
	{"validate 3.5", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.5")},
	{"validate 3.7", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.7")},
	{"validate 3.8", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.8")},
	{"validate bad", downgradeCall(pb.DowngradeRequest_VALIDATE, "bad")},
	{"validate v3.6", downgradeCall(pb.DowngradeRequest_VALIDATE, "v3.6")},
	{"validate empty", downgradeCall(pb.DowngradeRequest_VALIDATE, "")},
	{"unknown action", downgradeCall(pb.DowngradeRequest_DowngradeAction(7), "3.6")},
	{"enable 3.5", downgradeCall(pb.DowngradeRequest_ENABLE, "3.5")},
	{"cancel with none enabled", downgradeCall(pb.DowngradeRequest_CANCEL, "")},
	{"etcdctl validate 3.6", downgradeCtl("downgrade", "validate", "3.6")},
	{"etcdctl validate 3.5", downgradeCtl("downgrade", "validate", "3.5")},
	{"etcdctl validate bad", downgradeCtl("downgrade", "validate", "bad")},
	{"etcdctl cancel with none enabled", downgradeCtl("downgrade", "cancel")},
	{"status before enabling", downgradeStatus(true)},
	{"enable 3.6", downgradeCall(pb.DowngradeRequest_ENABLE, "3.6")},
	{"status once enabled", downgradeStatus(false)},
	{"cluster version moves to the target", waitClusterVersion("3.6.0")},
	{"status while downgrading", downgradeStatus(true)},
	{"endpoint status while downgrading", downgradeEndpointStatus},
	{"enable again", downgradeCall(pb.DowngradeRequest_ENABLE, "3.6")},
	{"validate 3.6 while downgrading", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.6")},
	{"validate 3.5 while downgrading", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.5")},
	{"enable 3.5 while downgrading", downgradeCall(pb.DowngradeRequest_ENABLE, "3.5")},
	{"etcdctl enable again", downgradeCtl("downgrade", "enable", "3.6")},
	{"etcdctl validate 3.5 while downgrading", downgradeCtl("downgrade", "validate", "3.5")},
	{"cancel", downgradeCall(pb.DowngradeRequest_CANCEL, "")},
	{"status once cancelled", downgradeStatus(false)},
	{"cluster version moves back", waitClusterVersion("3.7.0")},
	{"status after the downgrade", downgradeStatus(true)},
	{"endpoint status after the downgrade", downgradeEndpointStatus},
	{"cancel again", downgradeCall(pb.DowngradeRequest_CANCEL, "")},
	{"etcdctl cancel again", downgradeCtl("downgrade", "cancel")},
	{"etcdctl enable", downgradeCtl("downgrade", "enable", "3.6")},
	{"cluster version moves to the target again", waitClusterVersion("3.6.0")},
	{"etcdctl cancel", downgradeCtl("downgrade", "cancel")},
	{"status at the end", downgradeStatus(false)},
	{"cluster version moves back again", waitClusterVersion("3.7.0")},
	{"validate at the end", downgradeCall(pb.DowngradeRequest_VALIDATE, "3.6")},
}

// TestDowngradeDifferential runs the downgrade scenario against etcd and
// against a Cairn member of each engine, and compares every step.
func TestDowngradeDifferential(t *testing.T) {
	etcdCli := startEtcd(t)
	etcdSide := downgradeSide{cli: etcdCli, ep: etcdEndpoint(etcdCli)}
	want := make([]string, len(downgradeSteps))
	for i, s := range downgradeSteps {
		want[i] = s.run(t, etcdSide)
		t.Logf("etcd, %s: %s", s.name, want[i])
	}
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		side := downgradeSide{cli: m.client(t), ep: m.clientEP}
		for i, s := range downgradeSteps {
			if got := s.run(t, side); got != want[i] {
				t.Errorf("%s:\n cairn: %s\n  etcd: %s", s.name, got, want[i])
			}
		}
	})
}

// TestDowngradeCluster: a downgrade enabled through one member of three
// shows in every member's Status and /version, and so does its
// cancellation through another.
func TestDowngradeCluster(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		fs := c.followers()
		out, stderr, exit := etcdctlAt(fs[0].clientEP, "", "downgrade", "enable", "3.6")
		if exit != 0 || out != "Downgrade enable success, cluster version 3.7\n" {
			t.Fatalf("etcdctl downgrade enable: exit %d: %s%s", exit, out, stderr)
		}
		waitMembers(t, c, "3.6.0", "3.6.0", true)
		out, stderr, exit = etcdctlAt(c.leader().clientEP, "", "downgrade", "cancel")
		if exit != 0 || out != "Downgrade cancel success, cluster version 3.6\n" {
			t.Fatalf("etcdctl downgrade cancel: exit %d: %s%s", exit, out, stderr)
		}
		waitMembers(t, c, "3.7.0", "", false)
	})
}

// waitMembers waits, up to 20 s, for every member to report cluster and
// storage version cv and the downgrade state (target, enabled).
func waitMembers(t *testing.T, c *cluster, cv, target string, enabled bool) {
	t.Helper()
	wantBody := fmt.Sprintf(`{"etcdserver":"3.7.3","etcdcluster":%q,"storage":%q}`, cv, cv)
	for _, m := range c.members {
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := m.status()
			body := versionBody(t, m.clientEP)
			if err == nil && st.StorageVersion == cv && st.DowngradeInfo.GetEnabled() == enabled &&
				st.DowngradeInfo.GetTargetVersion() == target && body == wantBody {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("member %s: status %v, %v; /version %s; want cluster version %s, downgrade %q %v",
					m.name, st, err, body, cv, target, enabled)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}
