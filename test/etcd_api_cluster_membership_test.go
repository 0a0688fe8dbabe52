package test

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// clusterAPI is a raw Cluster client, so requests the client library
// would refuse reach the server.
func clusterAPI(t *testing.T, endpoint string) pb.ClusterClient {
	t.Helper()
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewClusterClient(conn)
}

// errText is an error's gRPC code and message, or "ok".
func errText(err error) string {
	if err == nil {
		return "ok"
	}
	s, _ := status.FromError(err)
	return fmt.Sprintf("%s: %s", s.Code(), s.Message())
}

// memberShape is what a member list says, without IDs, which differ.
func memberShape(t *testing.T, c pb.ClusterClient) []string {
	t.Helper()
	resp, err := c.MemberList(ctx(t), &pb.MemberListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range resp.Members {
		out = append(out, fmt.Sprintf("%v learner=%v", m.PeerURLs, m.IsLearner))
	}
	slices.Sort(out)
	return out
}

// TestClusterAPIErrorsMatchEtcd sends the same bad membership requests to
// a lone etcd member and a lone Cairn member: the answers (code and
// message) are etcd's, and none of them changes the membership.
func TestClusterAPIErrorsMatchEtcd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		etcdEP := etcdEndpoint(startEtcd(t))
		m := startMember(t, engine)
		type request func(c pb.ClusterClient, self uint64) error
		cases := []struct {
			name string
			do   request
		}{
			{"remove unknown", func(c pb.ClusterClient, _ uint64) error {
				_, err := c.MemberRemove(ctx(t), &pb.MemberRemoveRequest{ID: 0x1234})
				return err
			}},
			{"update unknown", func(c pb.ClusterClient, _ uint64) error {
				_, err := c.MemberUpdate(ctx(t), &pb.MemberUpdateRequest{ID: 0x1234, PeerURLs: []string{"http://127.0.0.1:1"}})
				return err
			}},
			{"promote unknown", func(c pb.ClusterClient, _ uint64) error {
				_, err := c.MemberPromote(ctx(t), &pb.MemberPromoteRequest{ID: 0x1234})
				return err
			}},
			{"promote a voter", func(c pb.ClusterClient, self uint64) error {
				_, err := c.MemberPromote(ctx(t), &pb.MemberPromoteRequest{ID: self})
				return err
			}},
			{"add with no peer URL", func(c pb.ClusterClient, _ uint64) error {
				_, err := c.MemberAdd(ctx(t), &pb.MemberAddRequest{})
				return err
			}},
			{"add with a URL without port", func(c pb.ClusterClient, _ uint64) error {
				_, err := c.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1"}, IsLearner: true})
				return err
			}},
			{"add with a URL with a path", func(c pb.ClusterClient, _ uint64) error {
				_, err := c.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{"http://127.0.0.1:5/x"}, IsLearner: true})
				return err
			}},
			{"add own peer URL", func(c pb.ClusterClient, self uint64) error {
				resp, err := c.MemberList(ctx(t), &pb.MemberListRequest{})
				if err != nil {
					return err
				}
				_, err = c.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: resp.Members[0].PeerURLs, IsLearner: true})
				return err
			}},
		}
		run := func(ep string) (answers []string, before, after []string) {
			c := clusterAPI(t, ep)
			resp, err := c.MemberList(ctx(t), &pb.MemberListRequest{})
			if err != nil {
				t.Fatal(err)
			}
			self := resp.Members[0].ID
			before = memberShape(t, c)
			for _, tc := range cases {
				answers = append(answers, tc.name+": "+errText(tc.do(c, self)))
			}
			return answers, before, memberShape(t, c)
		}
		// The failed promotions also count under etcd's reasons.
		var want, got, before, after, etcdAfter []string
		promoteFailures := []string{"etcd_server_learner_promote_failures"}
		wantFailed := seriesMoved(t, "http://"+etcdEP+"/metrics", promoteFailures, func() { want, _, etcdAfter = run(etcdEP) })
		gotFailed := seriesMoved(t, "http://"+m.clientEP+"/metrics", promoteFailures, func() { got, before, after = run(m.clientEP) })
		if !reflect.DeepEqual(got, want) {
			t.Errorf("answers differ from etcd's:\n cairn %q\n  etcd %q", got, want)
		}
		if len(wantFailed) != 2 || !reflect.DeepEqual(gotFailed, wantFailed) {
			t.Errorf("promotion failures counted %v, etcd's %v (want its two)", gotFailed, wantFailed)
		}
		if !reflect.DeepEqual(after, before) || len(etcdAfter) != 1 {
			t.Errorf("bad requests changed the membership: before %v, after %v (etcd after %v)", before, after, etcdAfter)
		}

		// Then, on both: a learner is accepted and a second one is one too
		// many; a lone member takes a second voter (etcd's exception to
		// the strict reconfiguration check) but then, with that voter not
		// started, refuses a third as an unhealthy cluster.
		var steps [2][]string
		for i, ep := range []string{etcdEP, m.clientEP} {
			c := clusterAPI(t, ep)
			url := func() []string { return []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))} }
			add := func(learner bool) string {
				_, err := c.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: url(), IsLearner: learner})
				return errText(err)
			}
			steps[i] = []string{add(true), add(true), add(false), add(false)}
		}
		if !reflect.DeepEqual(steps[1], steps[0]) {
			t.Errorf("learner and voter additions:\n cairn %q\n  etcd %q", steps[1], steps[0])
		}
	})
}

// retryUnhealthy calls change until it is not refused as an unhealthy
// cluster, for up to 10s: as etcd's, the strict reconfiguration check
// counts only peers connected for the last 5 seconds, which a cluster or
// member that just started has not been.
func retryUnhealthy(change func() error) error {
	var err error
	waitFor(10*time.Second, func() bool {
		err = change()
		return rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCUnhealthy)
	})
	return err
}

// TestClusterLearnerLifecycle adds a learner to a three-member cluster,
// starts it with --initial-cluster-state existing, checks that it refuses
// writes and linearizable reads as etcd's learners do while it serves
// serializable reads, promotes it through a follower, writes through it,
// and removes it: the removed member stops by itself.
func TestClusterLearnerLifecycle(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		cli := clientOf(t, c.endpoints())
		if _, err := cli.Put(ctx(t), "before", "join"); err != nil {
			t.Fatal(err)
		}
		n := &member{
			t: t, engine: engine, dataDir: t.TempDir(), name: "learner",
			peerURL:  fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			clientEP: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			httpURL:  fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		}
		var added *clientv3.MemberAddResponse
		err := retryUnhealthy(func() (err error) {
			added, err = cli.MemberAddAsLearner(ctx(t), []string{n.peerURL})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		initial := c.members[0].clusterArgs[1] + ",learner=" + n.peerURL
		n.clusterArgs = []string{"--initial-cluster", initial, "--initial-cluster-token", "cairn-test", "--initial-cluster-state", "existing"}
		t.Cleanup(n.stop)
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
		lc := n.client(t)
		learnerErr := rpctypes.ErrorDesc(rpctypes.ErrGRPCNotSupportedForLearner)
		if _, err := lc.Put(ctx(t), "k", "v"); err == nil || rpctypes.ErrorDesc(err) != learnerErr {
			t.Errorf("put on a learner: %v, want %v", err, rpctypes.ErrGRPCNotSupportedForLearner)
		}
		if _, err := lc.Get(ctx(t), "before"); err == nil || rpctypes.ErrorDesc(err) != learnerErr {
			t.Errorf("linearizable get on a learner: %v, want %v", err, rpctypes.ErrGRPCNotSupportedForLearner)
		}
		if !waitFor(10*time.Second, func() bool {
			r, err := lc.Get(ctx(t), "before", clientv3.WithSerializable())
			return err == nil && len(r.Kvs) == 1
		}) {
			t.Fatal("the learner never served the key written before it joined")
		}
		st, err := n.status()
		if err != nil || !st.IsLearner {
			t.Errorf("learner status: %+v, %v", st, err)
		}
		// As in etcd, a learner serves Status and serializable ranges only.
		if _, err := lc.MemberList(ctx(t)); rpctypes.ErrorDesc(err) != learnerErr {
			t.Errorf("member list on a learner: %v, want %s", err, learnerErr)
		}
		if _, err := lc.Grant(ctx(t), 60); rpctypes.ErrorDesc(err) != learnerErr {
			t.Errorf("lease grant on a learner: %v, want %s", err, learnerErr)
		}
		wctx, wcancel := context.WithCancel(ctx(t))
		wr := <-lc.Watch(wctx, "before")
		wcancel()
		if rpctypes.ErrorDesc(wr.Err()) != learnerErr {
			t.Errorf("watch on a learner: %v, want %s", wr.Err(), learnerErr)
		}
		// The REST API follows the same rule: status and serializable
		// reads only, everything else 503 learner.
		var got restKey
		restOK(t, n, get_, "/v1/kv/before?serializable=true", "", &got)
		if got.Value != "join" {
			t.Errorf("serializable REST read on a learner: %+v, want join", got)
		}
		var rst struct {
			IsLearner bool `json:"is_learner"`
		}
		restOK(t, n, get_, "/v1/status", "", &rst)
		if !rst.IsLearner {
			t.Error("REST status of a learner does not say is_learner")
		}
		lease, err := cli.Grant(ctx(t), 60)
		if err != nil {
			t.Fatal(err)
		}
		leaseID := fmt.Sprint(int64(lease.ID))
		for _, r := range []struct{ method, path, body string }{
			{get_, "/v1/kv/before", ""},
			{get_, "/v1/kv/?prefix=true", ""},
			{put_, "/v1/kv/k", "v"},
			{del_, "/v1/kv/before", ""},
			{post_, "/v1/txn", `{"success":[{"get":{"key":"before"}}]}`},
			{get_, "/v1/watch/before", ""},
			{post_, "/v1/leases", `{"ttl": 60}`},
			{get_, "/v1/leases/" + leaseID, ""},
			{post_, "/v1/leases/" + leaseID + "/keepalive", ""},
			{del_, "/v1/leases/" + leaseID, ""},
		} {
			// A watch served by mistake would stream: cut it short.
			rctx, rcancel := context.WithTimeout(ctx(t), 5*time.Second)
			a := restCallContext(rctx, n, r.method, r.path, r.body)
			rcancel()
			if a.err != nil || a.status != http.StatusServiceUnavailable || a.errorCode() != "learner" {
				t.Errorf("REST %s %s on a learner: %v, want 503 learner", r.method, r.path, a)
			}
		}

		f := c.followers()[0]
		if _, err := f.client(t).MemberPromote(ctx(t), added.Member.ID); err != nil {
			t.Fatalf("promote through follower %s: %v", f.name, err)
		}
		// The leader decided it, and counts it, as etcd's does.
		lead := c.leader()
		for _, m := range c.members {
			_, values := scrape(t, "http://"+m.clientEP+"/metrics")
			want := 0.0
			if m == lead {
				want = 1
			}
			if got := values["etcd_server_learner_promote_successes"]; got != want {
				t.Errorf("%s: learner promotions counted %v, want %v", m.name, got, want)
			}
		}
		if !waitFor(10*time.Second, func() bool {
			_, err := lc.Put(ctx(t), "after", "promote")
			return err == nil
		}) {
			t.Fatal("the promoted member still refuses writes")
		}
		list, err := cli.MemberList(ctx(t))
		if err != nil || len(list.Members) != 4 {
			t.Fatalf("member list: %v %v", list, err)
		}
		for _, m := range list.Members {
			if m.IsLearner || m.Name == "" || len(m.ClientURLs) == 0 {
				t.Errorf("member after promotion: %+v", m)
			}
		}

		if err := retryUnhealthy(func() error {
			_, err := cli.MemberRemove(ctx(t), added.Member.ID)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-n.exited:
		case <-time.After(15 * time.Second):
			t.Fatalf("the removed member is still running:\n%s", n.logs())
		}
		n.cmd = nil
		list, err = cli.MemberList(ctx(t))
		if err != nil || len(list.Members) != 3 {
			t.Fatalf("member list after removal: %v %v", list, err)
		}
		if _, err := cli.Put(ctx(t), "after", "remove"); err != nil {
			t.Fatalf("put after removal: %v", err)
		}
	})
}

// TestClusterForceNewCluster recovers a cluster that lost its quorum for
// good, as etcd's --force-new-cluster does: one member of three restarts
// alone with its data, keys and revisions, keeps its ID, elects itself and
// takes writes; it stays alone when restarted without the flag; a member
// of the old cluster that comes back is refused and stops; a new member
// joins it.
func TestClusterForceNewCluster(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		cli := clientOf(t, c.endpoints())
		var last *clientv3.PutResponse
		for i := range 20 {
			r, err := cli.Put(ctx(t), fmt.Sprintf("k%02d", i), "v")
			if err != nil {
				t.Fatal(err)
			}
			last = r
		}
		cli.Close()
		survivor, gone := c.members[0], c.members[1]
		id := survivor.statusID(t)
		for _, m := range c.members {
			m.stop()
		}

		survivor.args = append(survivor.args, "--force-new-cluster")
		survivor.start()
		if !survivor.logContains("forcing restart as the only member") {
			t.Errorf("no log of the forced restart:\n%s", survivor.logs())
		}
		sc := survivor.client(t)
		list, err := sc.MemberList(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Members) != 1 || list.Members[0].ID != id || list.Members[0].Name != survivor.name {
			t.Fatalf("members after --force-new-cluster: %v, want only %s (%x)", list.Members, survivor.name, id)
		}
		r, err := sc.Get(ctx(t), "k", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kvs) != 20 || r.Kvs[19].ModRevision != last.Header.Revision {
			t.Fatalf("after --force-new-cluster: %d keys, last at revision %d; want 20, last at %d",
				len(r.Kvs), r.Kvs[len(r.Kvs)-1].ModRevision, last.Header.Revision)
		}
		if p, err := sc.Put(ctx(t), "after", "force"); err != nil || p.Header.Revision != last.Header.Revision+1 {
			t.Fatalf("put on the forced member: %v, %v", p, err)
		}
		st, err := survivor.status()
		if err != nil || st.Leader != id {
			t.Fatalf("status of the forced member: %+v, %v", st, err)
		}

		survivor.stop()
		survivor.args = slices.DeleteFunc(survivor.args, func(a string) bool { return a == "--force-new-cluster" })
		survivor.start()
		sc = survivor.client(t)
		if _, err := sc.Put(ctx(t), "after", "restart"); err != nil {
			t.Fatalf("put after restarting without the flag: %v", err)
		}

		// A member of the old cluster learns it was removed, and stops.
		if err := gone.launch(); err == nil {
			t.Errorf("a member removed by --force-new-cluster started")
		}
		select {
		case <-gone.exited:
		case <-time.After(20 * time.Second):
			t.Errorf("a member removed by --force-new-cluster is still running")
		}
		if !gone.logContains("permanently removed from the cluster") {
			t.Errorf("the removed member did not say why it stopped:\n%s", gone.logs())
		}
		gone.stop()

		n := &member{
			t: t, engine: engine, dataDir: t.TempDir(), name: "joiner",
			peerURL:  fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
			clientEP: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
			httpURL:  fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		}
		if _, err := sc.MemberAdd(ctx(t), []string{n.peerURL}); err != nil {
			t.Fatal(err)
		}
		initial := survivor.name + "=" + survivor.peerURL + ",joiner=" + n.peerURL
		n.clusterArgs = []string{"--initial-cluster", initial, "--initial-cluster-token", "cairn-test", "--initial-cluster-state", "existing"}
		t.Cleanup(n.stop)
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
		want := dumpSerializable(t, survivor)
		if !waitFor(10*time.Second, func() bool { return slices.Equal(dumpSerializable(t, n), want) }) {
			t.Errorf("the new member holds %d keys, the survivor %d", len(dumpSerializable(t, n)), len(want))
		}
	})
}

// TestClusterStrictReconfigUnhealthy: with a member of three down, the
// strict reconfiguration check refuses, with etcd's "unhealthy cluster",
// to add a voter (not every voter is connected) or to remove a running
// one (the active quorum would break), and changes nothing; the member
// that is down can be removed.
func TestClusterStrictReconfigUnhealthy(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startCluster(t, engine, 3)
		m0, m1, m2 := c.members[0], c.members[1], c.members[2]
		cl := clusterAPI(t, m0.clientEP)
		id1, id2 := m1.statusID(t), m2.statusID(t)
		// With m0's stream to m1 down, m1 would count as down and be
		// removable, by etcd's rule as by Cairn's.
		m0.waitPeersActive(t, 2)
		m2.kill9()
		unhealthy := rpctypes.ErrorDesc(rpctypes.ErrGRPCUnhealthy)
		var addErr error
		if !waitFor(15*time.Second, func() bool {
			_, addErr = cl.MemberAdd(ctx(t), &pb.MemberAddRequest{PeerURLs: []string{fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}})
			return rpctypes.ErrorDesc(addErr) == unhealthy
		}) {
			t.Fatalf("voter added with a member down: %v, want %s", addErr, unhealthy)
		}
		if s, _ := status.FromError(addErr); s.Code() != codes.Unavailable {
			t.Errorf("code %v, want Unavailable as etcd's", s.Code())
		}
		_, err := cl.MemberRemove(ctx(t), &pb.MemberRemoveRequest{ID: id1})
		if rpctypes.ErrorDesc(err) != unhealthy {
			t.Errorf("removing a running member with another down: %v, want %s", err, unhealthy)
		}
		if got := memberShape(t, cl); len(got) != 3 {
			t.Fatalf("refused changes changed the membership: %v", got)
		}
		if _, err := cl.MemberRemove(ctx(t), &pb.MemberRemoveRequest{ID: id2}); err != nil {
			t.Fatalf("removing the member that is down: %v", err)
		}
		m2.cmd = nil
		if got := memberShape(t, cl); len(got) != 2 {
			t.Fatalf("members after removing the one down: %v", got)
		}
	})
}
