package lease

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestMetrics: grants and revokes are counted as applied, with each
// grant's TTL in the histogram; renewals are counted on the leader only;
// an expired lease the leader revokes is counted as expired, one a client
// revokes is not.
func TestMetrics(t *testing.T) {
	ctx := context.Background()
	l, _ := start(t, Config{Tick: 20 * time.Millisecond}, true)
	m := l.metrics
	if _, err := l.Grant(ctx, &pb.LeaseGrantRequest{ID: 1, TTL: 60}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Grant(ctx, &pb.LeaseGrantRequest{ID: 2, TTL: 1}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := l.Renew(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Revoke(ctx, &pb.LeaseRevokeRequest{ID: 1}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.expired) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("lease 2 was not counted expired")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for name, want := range map[string]struct {
		c    prometheus.Collector
		want float64
	}{
		"granted": {m.granted, 2}, "revoked": {m.revoked, 2}, "renewed": {m.renewed, 3}, "expired": {m.expired, 1},
	} {
		if got := testutil.ToFloat64(want.c); got != want.want {
			t.Errorf("%s: %v, want %v", name, got, want.want)
		}
	}
	var h dto.Metric
	if err := m.ttls.Write(&h); err != nil {
		t.Fatal(err)
	}
	if got := h.GetHistogram(); got.GetSampleCount() != 2 || got.GetSampleSum() != 61 {
		t.Errorf("TTL histogram: %d samples summing to %v, want 2 summing to 61", got.GetSampleCount(), got.GetSampleSum())
	}

	fl, _ := start(t, Config{Forwarder: &forwardTo{}}, false)
	if _, err := fl.Renew(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(fl.metrics.renewed); got != 0 {
		t.Errorf("a follower counted %v renewals, want 0: the leader counts them", got)
	}
}
