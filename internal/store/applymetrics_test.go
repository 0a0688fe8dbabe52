package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cairn-kv/cairn/internal/store"
)

// TestSlowApplyWarnsAndCounts: a request slower than the warning threshold
// is logged with etcd's message and fields and counted in
// etcd_server_slow_apply_total, applied requests and reads served without
// raft alike; every applied request is timed in
// etcd_server_apply_duration_seconds by kind and outcome.
func TestSlowApplyWarnsAndCounts(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		core, logs := observer.New(zap.WarnLevel)
		// A threshold of 0 makes every request slow, as in etcd.
		m := startAs(t, 1, open, t.TempDir(), 0, nil, func(c *store.Config) { c.Logger = zap.New(core) })
		defer m.stop()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(m.c.Collectors()...)
		slow := func() float64 { return slowApplies(t, reg) }
		before := slow()
		put(t, m.c, "k", "v")
		get(t, m.c, "k", true)
		if _, err := m.c.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), IgnoreValue: true, Lease: 99}); err == nil {
			t.Fatal("put with a missing lease succeeded")
		}
		if got := slow() - before; got != 3 {
			t.Errorf("slow requests counted %v, want 3", got)
		}
		prefixes := map[string]int{}
		for _, e := range logs.FilterMessage("apply request took too long").All() {
			f := e.ContextMap()
			if _, ok := f["took"]; !ok || f["expected-duration"] == nil {
				t.Errorf("warning without took or expected-duration: %v", f)
			}
			prefixes[f["prefix"].(string)]++
		}
		if prefixes["read-only range "] != 1 || prefixes[""] < 2 {
			t.Errorf("warnings by prefix %v, want one read-only range and the two puts", prefixes)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		timed := map[string]uint64{}
		for _, mf := range mfs {
			if mf.GetName() != "etcd_server_apply_duration_seconds" {
				continue
			}
			for _, s := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range s.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				timed[labels["version"]+" "+labels["op"]+" "+labels["success"]] = s.GetHistogram().GetSampleCount()
			}
		}
		if timed["v3 Put true"] != 1 || timed["v3 Put false"] != 1 {
			t.Errorf("apply durations by version, op and success: %v, want one Put each way", timed)
		}
	})
}

// TestFastApplyNotCounted: under etcd's default threshold, 100ms, a quick
// put is neither logged nor counted as slow; a request that fails to
// apply is logged as such, as etcd logs it, and one at a compacted
// revision is no failure.
func TestFastApplyNotCounted(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		core, logs := observer.New(zap.WarnLevel)
		m := startAs(t, 1, open, t.TempDir(), 0, nil, func(c *store.Config) {
			c.Logger = zap.New(core)
			c.WarningApplyDuration = 100 * time.Millisecond
		})
		defer m.stop()
		put(t, m.c, "k", "v")
		rev := put(t, m.c, "k", "w").Header.Revision
		get(t, m.c, "k", true)
		if _, err := m.c.Put(context.Background(), &pb.PutRequest{Key: []byte("k"), Lease: 99}); err == nil {
			t.Fatal("put with a missing lease succeeded")
		}
		for range 2 {
			// The second finds the revision compacted already.
			_, _ = m.c.Compact(context.Background(), &pb.CompactionRequest{Revision: rev})
		}
		failed := logs.FilterMessage("failed to apply request").All()
		if len(failed) != 1 {
			t.Fatalf("%d failed-apply warnings, want 1 (the put with a missing lease): %v", len(failed), failed)
		}
		if f := failed[0].ContextMap(); !strings.HasPrefix(f["request"].(string), "put:") || f["response"] != "" || f["error"] == nil || f["took"] == nil {
			t.Errorf("failed-apply warning %v, want the put, no response, its error and the time taken", f)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(m.c.Collectors()...)
		if got := slowApplies(t, reg); got != 0 {
			t.Errorf("slow requests counted %v under the default threshold", got)
		}
		if n := logs.FilterMessage("apply request took too long").Len(); n != 0 {
			t.Errorf("%d slow-apply warnings under the default threshold", n)
		}
	})
}

// slowApplies reads etcd_server_slow_apply_total from reg.
func slowApplies(t *testing.T, reg prometheus.Gatherer) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_server_slow_apply_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no etcd_server_slow_apply_total")
	return 0
}
