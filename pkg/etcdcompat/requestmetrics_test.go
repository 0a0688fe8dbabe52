package etcdcompat

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestClientVersionsBounded: calls are counted by the version their client
// sends, as etcd counts them, but a client cannot make the member keep a
// series for every version string it invents: past maxClientVersions,
// new versions count as "unknown".
func TestClientVersionsBounded(t *testing.T) {
	m := NewRequestMetrics()
	m.count(false, "3.7")
	m.count(true, "3.7")
	for i := range 2 * maxClientVersions {
		m.count(false, fmt.Sprintf("v%d", i))
	}
	m.count(false, "3.7")
	if got := testutil.CollectAndCount(m.requests); got != maxClientVersions+2 {
		// 3.7 twice (unary and stream), the other versions up to the
		// bound, and unknown.
		t.Errorf("%d series, want %d", got, maxClientVersions+2)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("unary", "3.7")); got != 2 {
		t.Errorf("unary calls of 3.7: %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.requests.WithLabelValues("unary", "unknown")); got != maxClientVersions+1 {
		t.Errorf("unary calls counted as unknown: %v, want %d", got, maxClientVersions+1)
	}
}
