package loadgen

import (
	"math"
	"slices"
	"time"
)

// summarise sorts lats in place and returns its summary; an empty slice
// gives the zero Latency.
func summarise(lats []time.Duration) Latency {
	if len(lats) == 0 {
		return Latency{}
	}
	slices.Sort(lats)
	var sum time.Duration
	for _, d := range lats {
		sum += d
	}
	return Latency{
		Min:  lats[0],
		Mean: sum / time.Duration(len(lats)),
		P50:  percentile(lats, 50),
		P90:  percentile(lats, 90),
		P99:  percentile(lats, 99),
		P999: percentile(lats, 99.9),
		Max:  lats[len(lats)-1],
	}
}

// percentile returns the nearest-rank p-th percentile of sorted, which
// must not be empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	// Nearest rank: the smallest value with at least p% of values at or
	// below it.
	rank := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}
