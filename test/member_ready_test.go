package test

// etcd logs "ready to serve client requests" only once it can serve them:
// a single member has elected itself and published its attributes through
// raft first. Tests that are about something else start members with
// startServingMember, which waits for a leader as well, so that a slow
// election fails TestReadyMeansServing alone rather than every test.

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// startServingMember is startMember followed by waitServing.
func startServingMember(t *testing.T, engine string, extra ...string) *member {
	t.Helper()
	m := startMember(t, engine, extra...)
	m.waitServing(t)
	return m
}

// startServing is m.start followed by waitServing, for restarts.
func (m *member) startServing(t *testing.T) {
	t.Helper()
	m.start()
	m.waitServing(t)
}

// waitServing waits until the member answers a linearizable read, which
// needs a leader, without writing anything.
func (m *member) waitServing(t *testing.T) {
	t.Helper()
	waitEndpointServing(t, m.clientEP, m.logs)
}

// waitEndpointServing waits until endpoint answers a linearizable read;
// logs gives what to show if it never does.
func waitEndpointServing(t *testing.T, endpoint string, logs func() string) {
	t.Helper()
	kv := rawKV(t, endpoint)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := kv.Range(c, &pb.RangeRequest{Key: []byte("health")})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member cannot serve a read 30s after start: %v\n%s", err, logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestReadyMeansServing(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		// The first requests after the ready line must succeed, as they do
		// on etcd; a client must not have to retry "no leader".
		kv := rawKV(t, m.clientEP)
		if _, err := kv.Range(ctx(t), &pb.RangeRequest{Key: []byte("k")}); err != nil {
			t.Errorf("read right after %q: %v", "ready to serve client requests", err)
		}
		if _, err := kv.Put(ctx(t), put("k", "v")); err != nil {
			t.Errorf("write right after %q: %v", "ready to serve client requests", err)
		}
		if code, body := m.httpDo(t, "GET", "/v1/kv/k?serializable=true", nil); code != 200 && code != 404 {
			t.Errorf("REST read right after ready: %d %s", code, body)
		}
		// And after a restart on existing data.
		m.waitServing(t)
		m.restart()
		kv = rawKV(t, m.clientEP)
		if _, err := kv.Put(ctx(t), put("k", "v2")); err != nil {
			t.Errorf("write right after a restart's %q: %v", "ready to serve client requests", err)
		}
	})
}
