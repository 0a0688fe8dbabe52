// Package heapgoal bounds the garbage collector's headroom for a server
// whose live heap is mostly long-lived data.
//
// Go's collector lets the heap grow to twice its live size (GOGC=100)
// before it collects. For a member whose heap holds the data itself (the
// memory engine), that doubles the memory the data costs. The tuner (Start) lowers the GC percentage as the live heap
// grows, so that the headroom is the live heap while it is small, 32 MiB
// once the live heap passes 32 MiB, and a quarter of the live heap from
// 128 MiB on. Small heaps behave as under GOGC=100; large ones spend
// more CPU on collection for less memory. Setting GOGC or GOMEMLIMIT in
// the environment leaves the collector as the operator configured it.
package heapgoal

import (
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"
)

// floor is the live heap up to which the headroom is the live heap
// itself (GOGC=100), and the least headroom above it.
const floor = 32 << 20

// checkEvery is how often the tuner looks for a finished collection.
const checkEvery = 500 * time.Millisecond

// gcPercent is the GC percentage for a live heap of live bytes: a headroom
// of live (100) up to floor, then of floor, then of a quarter of live (25).
func gcPercent(live uint64) int {
	if live <= floor {
		return 100
	}
	headroom := max(uint64(floor), live/4)
	return max(int(headroom*100/live), 25)
}

// Configured reports whether environ sets the collector's own knobs, in
// which case the tuner must not run.
func Configured(environ []string) bool {
	return slices.ContainsFunc(environ, func(kv string) bool {
		return strings.HasPrefix(kv, "GOGC=") || strings.HasPrefix(kv, "GOMEMLIMIT=")
	})
}

// Start runs the tuner until stop is closed: after every collection it
// sets the GC percentage for the live heap that collection found.
func Start(lg *zap.Logger, stop <-chan struct{}) {
	go run(lg, stop)
}

func run(lg *zap.Logger, stop <-chan struct{}) {
	samples := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}, {Name: "/gc/heap/live:bytes"}}
	t := time.NewTicker(checkEvery)
	defer t.Stop()
	var cycles uint64
	percent := 100
	for {
		select {
		case <-t.C:
		case <-stop:
			return
		}
		metrics.Read(samples)
		if samples[0].Value.Kind() != metrics.KindUint64 || samples[1].Value.Kind() != metrics.KindUint64 {
			return // not measured by this runtime
		}
		n := samples[0].Value.Uint64()
		if n == cycles {
			continue
		}
		cycles = n
		live := samples[1].Value.Uint64()
		if p := gcPercent(live); p != percent {
			debug.SetGCPercent(p)
			lg.Debug("set the GC percentage", zap.Int("gc-percent", p), zap.Uint64("live-heap-bytes", live))
			percent = p
		}
	}
}
