// Command costreport turns the output of `go test -bench` over Cairn's cost
// guards into growth factors. A cost guard is a benchmark that runs one
// operation at several sizes, as sub-benchmarks that differ only in a name
// element n=<size> (BenchmarkCostTxnValidate/flat/n=50, /n=500, /n=5000),
// and reports a unit that stays flat across the sizes when the operation
// costs what it should: ns/item for work proportional to n, ns/op for work
// that should not depend on n at all.
//
// It reads the benchmark output on stdin, groups the sub-benchmarks of one
// parent by their n, and prints for each parent its value at each size, the
// growth per 10× step of size, and the growth from the smallest size to the
// largest. A parent whose growth per 10× of size, from the smallest size
// to the largest, exceeds -threshold is flagged superlinear: a linear path
// stays near 1×, an O(n log n) one near 1.3×, and a quadratic one near 10×
// (less at small sizes, where its linear part still counts). The verdict
// does not rest on one step alone, as one step of a loaded machine or of a
// working set that leaves the cache can grow 2-3× on its own.
// `make bench-cost` runs the guards through it:
//
//	go test -run '^$' -bench '^BenchmarkCost' -benchtime 100ms -count 3 ./internal/mvcc/ ./internal/watch/ | go run ./test/bench/costreport
//
// When a benchmark ran more than once (-count), the fastest run counts, as
// it is the one least disturbed by the rest of the machine. costreport
// exits with status 1 if the output reports a failure or holds no cost
// guard, and, with -fail, if a guard is flagged.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// point is the value of one guard's unit at one size.
type point struct {
	n int
	v float64
}

// series is one cost guard: the sub-benchmarks of one parent, by size.
type series struct {
	pkg    string // import path of the package, if the output named it
	parent string // the benchmark name without its n= element
	unit   string
	points []point // ordered by n
}

// growth is what the report says about one series.
type growth struct {
	steps       []float64 // growth per 10× of size between consecutive sizes
	total       float64   // value at the largest size over value at the smallest
	perDecade   float64   // total, per 10× of size
	superlinear bool
}

// analyze computes the growth of s, flagging it when the growth per 10×
// of size from its smallest size to its largest exceeds threshold. s must
// have at least two sizes.
func analyze(s series, threshold float64) growth {
	var g growth
	perDecade := func(a, b point) float64 {
		return math.Pow(b.v/a.v, 1/math.Log10(float64(b.n)/float64(a.n)))
	}
	for i := 1; i < len(s.points); i++ {
		g.steps = append(g.steps, perDecade(s.points[i-1], s.points[i]))
	}
	first, last := s.points[0], s.points[len(s.points)-1]
	g.total = last.v / first.v
	g.perDecade = perDecade(first, last)
	g.superlinear = g.perDecade > threshold
	return g
}

// sizeElem matches the name element that carries a guard's size.
var sizeElem = regexp.MustCompile(`^n=(\d+)$`)

// procsSuffix matches the -GOMAXPROCS suffix go test appends to names.
var procsSuffix = regexp.MustCompile(`-\d+$`)

// measurement is one benchmark result line.
type measurement struct {
	pkg, name string             // name without its -GOMAXPROCS suffix
	values    map[string]float64 // by unit
}

// parsed is what parse found in the benchmark output.
type parsed struct {
	results []measurement
	// failures holds the lines that report a failure: a failed test or
	// benchmark, a package that failed or did not build, a panic.
	failures []string
}

// parse reads go test -bench output. It understands the result lines of
// benchmarks, including a name printed on a line of its own (when the
// benchmark logged something before its result), and the pkg: lines that
// say which package the results that follow belong to.
func parse(r io.Reader) (parsed, error) {
	var (
		p       parsed
		pkg     string
		pending string // a benchmark name whose result line is still to come
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0:
			continue
		case strings.HasPrefix(line, "pkg:"):
			pkg = strings.TrimSpace(strings.TrimPrefix(line, "pkg:"))
			continue
		case fields[0] == "FAIL" || strings.HasPrefix(line, "--- FAIL") || strings.HasPrefix(line, "panic:"):
			p.failures = append(p.failures, line)
			continue
		case strings.HasPrefix(fields[0], "Benchmark"):
			if len(fields) == 1 {
				pending = fields[0]
				continue
			}
			if m, ok := parseResult(fields[0], fields[1:]); ok {
				m.pkg = pkg
				p.results = append(p.results, m)
			}
			pending = ""
		case pending != "":
			if m, ok := parseResult(pending, fields); ok {
				m.pkg = pkg
				p.results = append(p.results, m)
				pending = ""
			}
		}
	}
	return p, sc.Err()
}

// parseResult parses the fields after a benchmark's name: its iteration
// count, then value and unit pairs. ok is false if they are not that.
func parseResult(name string, fields []string) (m measurement, ok bool) {
	if len(fields) < 3 || len(fields)%2 != 1 {
		return m, false
	}
	if _, err := strconv.ParseInt(fields[0], 10, 64); err != nil {
		return m, false
	}
	m.name = procsSuffix.ReplaceAllString(name, "")
	m.values = make(map[string]float64)
	for i := 1; i+1 < len(fields); i += 2 {
		v, err := strconv.ParseFloat(fields[i], 64)
		if err != nil {
			return m, false
		}
		m.values[fields[i+1]] = v
	}
	return m, true
}

// group gathers the results of cost guards into series, in the order their
// parents first appear. A result whose name has no n= element is not a
// guard's and is left out. The unit of a series is unit if every size of it
// reports unit, ns/op otherwise; a size measured more than once counts its
// lowest value. A series with fewer than two sizes is left out.
func group(results []measurement, unit string) []series {
	type key struct{ pkg, parent string }
	var order []key
	bySize := make(map[key]map[int][]map[string]float64)
	for _, m := range results {
		elems := strings.Split(m.name, "/")
		i := slices.IndexFunc(elems, sizeElem.MatchString)
		if i < 0 {
			continue
		}
		n, err := strconv.Atoi(sizeElem.FindStringSubmatch(elems[i])[1])
		if err != nil || n <= 0 {
			continue
		}
		k := key{m.pkg, strings.Join(slices.Delete(elems, i, i+1), "/")}
		if bySize[k] == nil {
			bySize[k] = make(map[int][]map[string]float64)
			order = append(order, k)
		}
		bySize[k][n] = append(bySize[k][n], m.values)
	}
	var out []series
	for _, k := range order {
		s := series{pkg: k.pkg, parent: k.parent, unit: unit}
		for _, runs := range bySize[k] {
			for _, vs := range runs {
				if _, ok := vs[s.unit]; !ok {
					s.unit = "ns/op"
				}
			}
		}
		for n, runs := range bySize[k] {
			best := math.Inf(1)
			for _, vs := range runs {
				if v, ok := vs[s.unit]; ok && v > 0 {
					best = min(best, v)
				}
			}
			if !math.IsInf(best, 1) {
				s.points = append(s.points, point{n: n, v: best})
			}
		}
		if len(s.points) < 2 {
			continue
		}
		slices.SortFunc(s.points, func(a, b point) int { return a.n - b.n })
		out = append(out, s)
	}
	return out
}

// formatValue prints v with about three significant digits, without an
// exponent.
func formatValue(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// formatFactor prints a growth factor.
func formatFactor(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) + "×" }

// report writes the table of ss to w; it returns how many are flagged.
func report(w io.Writer, ss []series, threshold float64) (flagged int, err error) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "PKG\tBENCHMARK\tUNIT\tSIZES\tVALUES\tPER 10× STEP\tTOTAL\tPER 10×\tVERDICT\n")
	for _, s := range ss {
		g := analyze(s, threshold)
		var sizes, values, steps []string
		for _, p := range s.points {
			sizes = append(sizes, strconv.Itoa(p.n))
			values = append(values, formatValue(p.v))
		}
		for _, f := range g.steps {
			steps = append(steps, formatFactor(f))
		}
		verdict := "ok"
		if g.superlinear {
			verdict = fmt.Sprintf("SUPERLINEAR (> %s per 10×)", formatFactor(threshold))
			flagged++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", path.Base(s.pkg), s.parent, s.unit,
			strings.Join(sizes, " "), strings.Join(values, " "), strings.Join(steps, " "),
			formatFactor(g.total), formatFactor(g.perDecade), verdict)
	}
	return flagged, tw.Flush()
}

func main() {
	threshold := flag.Float64("threshold", 3, "growth per 10× of size above which a guard is flagged superlinear")
	unit := flag.String("unit", "ns/item", "unit to compare across sizes; ns/op for a guard that does not report it")
	failFlagged := flag.Bool("fail", false, "exit with status 1 if a guard is flagged superlinear")
	flag.Parse()

	p, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "costreport: reading benchmark output:", err)
		os.Exit(1)
	}
	ss := group(p.results, *unit)
	flagged, err := report(os.Stdout, ss, *threshold)
	if err != nil {
		fmt.Fprintln(os.Stderr, "costreport:", err)
		os.Exit(1)
	}
	switch {
	case len(p.failures) > 0:
		fmt.Fprintln(os.Stderr, "costreport: the benchmark run failed:")
		for _, l := range p.failures {
			fmt.Fprintln(os.Stderr, "  "+l)
		}
		os.Exit(1)
	case len(ss) == 0:
		fmt.Fprintln(os.Stderr, "costreport: no cost guard (benchmarks with n=<size> sub-benchmarks) in the input")
		os.Exit(1)
	case flagged > 0:
		fmt.Printf("%d of %d cost guards grow faster than %s per 10× of size\n", flagged, len(ss), formatFactor(*threshold))
		if *failFlagged {
			os.Exit(1)
		}
	}
}
