package server

import (
	"io"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

// TestTimedEngine: each committed batch is one observation of
// etcd_disk_backend_commit_duration_seconds; a closed one is none.
func TestTimedEngine(t *testing.T) {
	raw, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "h"})
	e := timedEngine{Engine: raw, m: backendMetrics{commits: h}}
	defer e.Close()
	for range 3 {
		b := e.NewBatch()
		b.Put(storage.KV, []byte("k"), []byte("v"))
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
	}
	b := e.NewBatch()
	b.Put(storage.KV, []byte("k"), []byte("w"))
	b.Close()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 3 {
		t.Errorf("%d commits observed, want 3", n)
	}
}

// TestTimedEngineDefragAndSnapshot: a defragmentation and a snapshot
// written for a peer are timed once each, and the in-flight gauge of
// defragmentation is back at 0 afterwards.
func TestTimedEngineDefragAndSnapshot(t *testing.T) {
	raw, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	bm := newMemberMetrics(false, actors.NewSystem(), nil).backend
	e := timedEngine{Engine: raw, m: bm}
	defer e.Close()
	if err := e.Defragment(); err != nil {
		t.Fatal(err)
	}
	if err := e.WriteSnapshot(io.Discard); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]prometheus.Histogram{"defragmentations": bm.defrags, "snapshots": bm.snapshots} {
		var m dto.Metric
		if err := h.Write(&m); err != nil {
			t.Fatal(err)
		}
		if n := m.GetHistogram().GetSampleCount(); n != 1 {
			t.Errorf("%s observed: %d, want 1", name, n)
		}
	}
	if v := testutil.ToFloat64(bm.defragging); v != 0 {
		t.Errorf("defragmentations in flight after the last: %v", v)
	}
}

// TestActorCollector: actors are counted by kind, one series per kind
// however many watch streams there are.
func TestActorCollector(t *testing.T) {
	sys := actors.NewSystem()
	idle := func(actor.Context) {}
	refs := []*actors.Ref{sys.Spawn("store", 0, idle), sys.Spawn("watch-stream-1", 0, idle), sys.Spawn("watch-stream-12", 0, idle)}
	defer func() {
		for _, r := range refs {
			r.Stop()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(actorCollector{sys})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "cairn_actors" {
			continue
		}
		for _, m := range f.GetMetric() {
			counts[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if counts["store"] != 1 || counts["watch-stream"] != 2 || len(counts) != 2 {
		t.Errorf("cairn_actors by kind: %v, want store 1, watch-stream 2", counts)
	}
}
