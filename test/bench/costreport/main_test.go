package main

import (
	"bytes"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// cannedOutput is go test -bench output over two packages: a quadratic
// guard (txn validation before its rewrite), an O(n log n) one, a linear
// one run twice (-count 2), one reporting ns/op only, whose result is
// printed on the line after its name, a benchmark that is not a guard, and
// the lines around them that are not results.
const cannedOutput = `goos: linux
goarch: amd64
pkg: github.com/cairn-kv/cairn/internal/mvcc
cpu: AMD EPYC
BenchmarkCostTxnValidate/flat/n=50-2    	    9794	     20000 ns/op	       200.0 ns/item
BenchmarkCostTxnValidate/flat/n=500-2   	     117	   1712147 ns/op	      1712 ns/item
BenchmarkCostTxnValidate/flat/n=5000-2  	       2	 118181229 ns/op	     11818 ns/item
BenchmarkCostTxnValidate/nested/n=50-2  	    8000	     25000 ns/op	       250.0 ns/item
BenchmarkCostTxnValidate/nested/n=500-2 	     600	    330000 ns/op	       330.0 ns/item
BenchmarkCostTxnValidate/nested/n=5000-2         	      50	   4100000 ns/op	       410.0 ns/item
BenchmarkCostRange/window/n=100-2                	    3000	     50000 ns/op	       500.0 ns/item
BenchmarkCostRange/window/n=100-2                	    3000	     45000 ns/op	       450.0 ns/item
BenchmarkCostRange/window/n=1000-2               	     400	    430000 ns/op	       430.0 ns/item
BenchmarkCostRange/window/n=1000-2               	     400	    440000 ns/op	       440.0 ns/item
BenchmarkCostRange/window/n=10000-2              	      40	   5400000 ns/op	       540.0 ns/item
BenchmarkCostRange/window/n=10000-2              	      40	   5500000 ns/op	       550.0 ns/item
BenchmarkPut/memory-2                            	  100000	      1500 ns/op	     300 B/op	       5 allocs/op
PASS
ok  	github.com/cairn-kv/cairn/internal/mvcc	12.345s
goos: linux
goarch: amd64
pkg: github.com/cairn-kv/cairn/internal/watch
cpu: AMD EPYC
BenchmarkCostWatchCreate/key/n=100-2   	   62361	      3681 ns/op
BenchmarkCostWatchCreate/key/n=1000-2  	   98961	      2923 ns/op
BenchmarkCostWatchCreate/key/n=10000
    cost_bench_test.go:42: a line the benchmark logged
BenchmarkCostWatchCreate/key/n=10000-2 	   62540	      3924 ns/op
PASS
ok  	github.com/cairn-kv/cairn/internal/watch	2.498s
`

// TestParseAndGroup: results are grouped by parent and size, non-guards
// left out, the lowest of repeated runs kept, ns/op used where ns/item is
// missing, and a name printed apart from its result still parsed.
func TestParseAndGroup(t *testing.T) {
	p, err := parse(strings.NewReader(cannedOutput))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.failures) != 0 {
		t.Errorf("failures = %q, want none", p.failures)
	}
	if len(p.results) != 16 {
		t.Errorf("%d results, want 16", len(p.results))
	}
	got := group(p.results, "ns/item")
	const mvcc, watch = "github.com/cairn-kv/cairn/internal/mvcc", "github.com/cairn-kv/cairn/internal/watch"
	want := []series{
		{mvcc, "BenchmarkCostTxnValidate/flat", "ns/item", []point{{50, 200}, {500, 1712}, {5000, 11818}}},
		{mvcc, "BenchmarkCostTxnValidate/nested", "ns/item", []point{{50, 250}, {500, 330}, {5000, 410}}},
		// The lowest of two runs counts.
		{mvcc, "BenchmarkCostRange/window", "ns/item", []point{{100, 450}, {1000, 430}, {10000, 540}}},
		{watch, "BenchmarkCostWatchCreate/key", "ns/op", []point{{100, 3681}, {1000, 2923}, {10000, 3924}}},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(series{}, point{})); diff != "" {
		t.Errorf("series (-want +got):\n%s", diff)
	}
}

// TestAnalyzeFlagsSuperlinear: growth is per 10× of size, and a guard is
// flagged when its growth from the smallest size to the largest exceeds
// the threshold.
func TestAnalyzeFlagsSuperlinear(t *testing.T) {
	for _, c := range []struct {
		name        string
		points      []point
		perDecade   float64
		superlinear bool
	}{
		{"linear", []point{{100, 500}, {1000, 480}, {10000, 520}}, math.Sqrt(520.0 / 500), false},
		{"nlogn", []point{{50, 250}, {500, 330}, {5000, 410}}, math.Sqrt(410.0 / 250), false},
		{"quadratic", []point{{50, 200}, {500, 1712}, {5000, 11818}}, math.Sqrt(11818.0 / 200), true},
		// One noisy step alone does not make a guard superlinear.
		{"noisy-step", []point{{100, 500}, {1000, 480}, {10000, 1550}}, math.Sqrt(3.1), false},
		{"quadratic-late", []point{{100, 1000}, {1000, 3000}, {10000, 30000}}, math.Sqrt(30), true},
		// Two sizes 100× apart: growth is per 10× of size.
		{"two-sizes", []point{{10, 100}, {1000, 400}}, 2, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := analyze(series{points: c.points}, 3)
			if math.Abs(g.perDecade-c.perDecade) > 1e-9 {
				t.Errorf("per decade = %v, want %v", g.perDecade, c.perDecade)
			}
			if g.superlinear != c.superlinear {
				t.Errorf("superlinear = %v, want %v (steps %v)", g.superlinear, c.superlinear, g.steps)
			}
		})
	}
}

// TestReport: one row per guard, the quadratic one flagged.
func TestReport(t *testing.T) {
	p, err := parse(strings.NewReader(cannedOutput))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	flagged, err := report(&out, group(p.results, "ns/item"), 3)
	if err != nil {
		t.Fatal(err)
	}
	if flagged != 1 {
		t.Errorf("flagged %d, want 1", flagged)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("report has %d lines, want a header and 4 rows:\n%s", len(lines), out.String())
	}
	for _, c := range []struct {
		row   int
		parts []string
	}{
		{1, []string{"mvcc", "BenchmarkCostTxnValidate/flat ", "ns/item", "50 500 5000", "200 1712 11818", "8.6× 6.9×", "59.1×", "7.7×", "SUPERLINEAR"}},
		{2, []string{"BenchmarkCostTxnValidate/nested ", "1.6×", "ok"}},
		{4, []string{"watch", "BenchmarkCostWatchCreate/key ", "ns/op", "3681 2923 3924", "ok"}},
	} {
		for _, part := range c.parts {
			if !strings.Contains(lines[c.row], part) {
				t.Errorf("row %d lacks %q:\n%s", c.row, part, lines[c.row])
			}
		}
	}
}

// TestParseFailures: failed benchmarks and packages are reported.
func TestParseFailures(t *testing.T) {
	const failed = `pkg: github.com/cairn-kv/cairn/internal/mvcc
BenchmarkCostRange/window/n=100-2   	    3000	     50000 ns/op	       500.0 ns/item
--- FAIL: BenchmarkCostRange/prefix/n=100
    cost_bench_test.go:140: range returned 99 keys, want 100
FAIL
exit status 1
FAIL	github.com/cairn-kv/cairn/internal/mvcc	0.312s
FAIL	github.com/cairn-kv/cairn/internal/watch [build failed]
`
	p, err := parse(strings.NewReader(failed))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--- FAIL: BenchmarkCostRange/prefix/n=100",
		"FAIL",
		"FAIL\tgithub.com/cairn-kv/cairn/internal/mvcc\t0.312s",
		"FAIL\tgithub.com/cairn-kv/cairn/internal/watch [build failed]",
	}
	if diff := cmp.Diff(want, p.failures); diff != "" {
		t.Errorf("failures (-want +got):\n%s", diff)
	}
}
