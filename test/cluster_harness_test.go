package test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// cluster is a set of members started together with one --initial-cluster.
type cluster struct {
	t       *testing.T
	engine  string
	opts    clusterOpts
	extra   []string
	members []*member
}

// clusterOpts are what startClusterOpts varies beyond startCluster.
type clusterOpts struct {
	// peerScheme is the peer URLs' scheme: "https" for TLS, "http" when
	// empty.
	peerScheme string
	// memberArgs, if set, returns the flags of the member named name
	// beyond the cluster's common ones (per-member certificates, for
	// example). It is called from the test goroutine, once per member.
	memberArgs func(name string) []string
	// env are environment variables of every member (see member.env).
	env []string
	// noREST starts the members without --http-listen-addr.
	noREST bool
}

// startCluster starts n members of engine at once (each waits for a quorum
// before it reports ready) and stops them at test end; extra are flags of
// every member.
func startCluster(t *testing.T, engine string, n int, extra ...string) *cluster {
	t.Helper()
	return startClusterOpts(t, engine, n, clusterOpts{}, extra...)
}

// startClusterOpts is startCluster with the variations of o.
func startClusterOpts(t *testing.T, engine string, n int, o clusterOpts, extra ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, engine: engine, opts: o, extra: extra}
	var initial []string
	for i := range n {
		m := c.newMember(fmt.Sprintf("c%d", i))
		initial = append(initial, m.name+"="+m.peerURL)
		c.members = append(c.members, m)
	}
	for _, m := range c.members {
		m.clusterArgs = []string{"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-token", "cairn-test"}
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			m.stop()
		}
		if t.Failed() {
			// What the members' peer streams and raft did, for a failure
			// that only a loaded machine shows; the logs go with the test.
			for _, m := range c.members {
				t.Logf("warnings, errors and peer stream events of %s:\n%s", m.name, notableLines(m.logs()))
			}
		}
	})
	c.launch(c.members...)
	return c
}

// notableLines keeps the lines of a member's log that tell what went wrong
// in a cluster: warnings, errors, and the transport's and raft's own.
func notableLines(log string) string {
	var b strings.Builder
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"level":"warn"`) || strings.Contains(line, `"level":"error"`) ||
			strings.Contains(line, `"logger":"transport"`) || strings.Contains(line, `"logger":"raft"`) {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// newMember returns a member named name with c's engine, flags and peer
// scheme on new ports, not started and without clusterArgs: one of c's
// initial members, or one a test adds to c later (it is not in
// c.members then).
func (c *cluster) newMember(name string) *member {
	t := c.t
	t.Helper()
	scheme := cmp.Or(c.opts.peerScheme, "http")
	args := c.extra
	if c.opts.memberArgs != nil {
		args = append(slices.Clip(args), c.opts.memberArgs(name)...)
	}
	m := &member{
		t: t, engine: c.engine, dataDir: t.TempDir(), args: args, name: name,
		peerURL:  fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t)),
		clientEP: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		env:      c.opts.env,
	}
	if !c.opts.noREST {
		m.httpURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	}
	return m
}

// newJoiner returns newMember(name) with the flags to join c as a member
// added after c started (--initial-cluster-state existing); the test adds
// it to c's membership before it launches it.
func (c *cluster) newJoiner(name string) *member {
	c.t.Helper()
	n := c.newMember(name)
	initial := c.members[0].clusterArgs[1] + "," + name + "=" + n.peerURL
	n.clusterArgs = []string{"--initial-cluster", initial, "--initial-cluster-token", "cairn-test", "--initial-cluster-state", "existing"}
	return n
}

// launch starts ms at once and waits until each is ready.
func (c *cluster) launch(ms ...*member) {
	c.t.Helper()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.launch()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			// The others' logs tell why this one found no leader.
			for _, m := range c.members {
				if !slices.Contains(ms, m) || m.cmd != nil {
					c.t.Logf("log of %s:\n%s", m.name, m.logs())
				}
			}
			c.t.Fatal(err)
		}
	}
}

// endpoints are the client endpoints of every member.
func (c *cluster) endpoints() []string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientEP)
	}
	return eps
}

// leader returns the member every running member agrees leads, waiting
// up to 20 s for an election to settle.
func (c *cluster) leader() *member {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var leader uint64
		agreed := true
		for _, m := range c.members {
			if m.cmd == nil {
				continue
			}
			st, err := m.status()
			if err != nil || st.Leader == 0 || (leader != 0 && st.Leader != leader) {
				agreed = false
				break
			}
			leader = st.Leader
		}
		if agreed && leader != 0 {
			for _, m := range c.members {
				if st, err := m.status(); m.cmd != nil && err == nil && st.Header.MemberId == leader {
					return m
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatal("no leader agreed on within 20s")
	return nil
}

// followers are the running members other than the leader.
func (c *cluster) followers() []*member {
	l := c.leader()
	var out []*member
	for _, m := range c.members {
		if m != l && m.cmd != nil {
			out = append(out, m)
		}
	}
	return out
}

// status is the member's Maintenance.Status, asked of it alone.
func (m *member) status() (*clientv3.StatusResponse, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.clientEP}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return cli.Status(ctx, m.clientEP)
}

// waitPeersActive waits up to 15 s until m's streams to n peers are up,
// as its etcd_network_active_peers series say. A member's stream to a
// peer that started after it may still be in its retry backoff when the
// cluster is ready, and etcd's reconfiguration checks count only peers
// whose stream is up.
func (m *member) waitPeersActive(t *testing.T, n int) {
	t.Helper()
	url := "http://" + m.clientEP + "/metrics"
	up := 0
	if !waitFor(15*time.Second, func() bool {
		up = 0
		for _, line := range strings.Split(httpAsk(t, "GET", url).Body, "\n") {
			if strings.HasPrefix(line, "etcd_network_active_peers{") && strings.HasSuffix(line, "} 1") {
				up++
			}
		}
		return up == n
	}) {
		t.Fatalf("%s: streams to %d peers up, want %d", m.name, up, n)
	}
}
