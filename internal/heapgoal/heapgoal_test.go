package heapgoal

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		live uint64
		want int
	}{
		{0, 100},
		{10 * mib, 100},
		{32 * mib, 100},
		{40 * mib, 80},   // headroom 32 MiB
		{64 * mib, 50},   // headroom 32 MiB
		{128 * mib, 25},  // a quarter from here on
		{1024 * mib, 25}, // headroom 256 MiB, not 1 GiB
		{128*mib + 3, 25},
	} {
		if got := gcPercent(tt.live); got != tt.want {
			t.Errorf("gcPercent(%d MiB) = %d, want %d", tt.live/mib, got, tt.want)
		}
	}
}

func TestConfigured(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want bool
	}{
		{nil, false},
		{[]string{"PATH=/bin", "GOGCX=1", "MYGOGC=50"}, false},
		{[]string{"GOGC=50"}, true},
		{[]string{"GOGC=off"}, true},
		{[]string{"HOME=/", "GOMEMLIMIT=1GiB"}, true},
	} {
		if got := Configured(tt.env); got != tt.want {
			t.Errorf("Configured(%q) = %v, want %v", tt.env, got, tt.want)
		}
	}
}

// TestStartLowersThePercentForALargeLiveHeap: with 96 MiB live the tuner
// sets the percentage that leaves 32 MiB of headroom.
func TestStartLowersThePercentForALargeLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	live := make([][]byte, 96)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	// The tuner must have stopped before the percentage is restored.
	stop, exited := make(chan struct{}), make(chan struct{})
	defer func() { close(stop); <-exited }()
	go func() { run(zap.NewNop(), stop); close(exited) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		time.Sleep(2 * checkEvery)
		p := debug.SetGCPercent(100)
		debug.SetGCPercent(p)
		if p >= 25 && p <= 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GC percent with 96 MiB live is %d, want about 33", p)
		}
	}
	runtime.KeepAlive(live)
}
