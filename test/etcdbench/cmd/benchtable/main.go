// Command benchtable turns the raw output of test/etcdbench/run.sh into the
// comparison table: for every row, the median over the rounds of each
// target's throughput, server CPU per operation and p99 latency, and Cairn's
// ratios to etcd. It prints the table and, with -doc, replaces the section
// "## etcd's benchmark tool (`make bench-etcd`)" of that Markdown file (and
// leaves the rest of the file alone).
//
// Its input (-in) is the tab-separated file run.sh writes, one line per run:
//
//	row  label  round  target  exit-status  server-cpu-ticks  clk-tck  raw-output-file  args
//	machine-busy-ticks  tool-cpu-seconds  wall-seconds  server-rss-kib
//
// The three after args (optional) give the load the rest of the machine
// added during each run: busy CPU time of all cores minus the server's and
// the tool's, over the run's wall time. The last (optional) is the servers'
// resident memory after the run; the memory rows (memRows) are shown by it,
// in a table of their own.
// The raw output is what etcd's benchmark tool printed on stdout. The figures
// come from its last "Summary:" block (for the watch rows, the one after
// "Watch events received summary:"): Requests/sec, Total and the 50% and 99%
// latency lines. The number of operations of a run is Requests/sec × Total,
// which is the number of results the tool counted (puts, ranges, txns,
// keep-alives; for the watch rows, events received), and the server's CPU per
// operation is its utime+stime over the run divided by that number.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// sectionTitle is the heading of the section benchtable owns in -doc.
const sectionTitle = "## etcd's benchmark tool (`make bench-etcd`)"

// insertBefore is the heading the section goes before when -doc lacks it.
const insertBefore = "## Where Cairn is below 1.0×"

// noLatency lists the rows whose latency figures are left out: in the watch
// fan-out rows the tool times each event from when its watch response
// arrived to when the tool had counted it, which measures the tool, not the
// server (watch-latency times events from the put).
var noLatency = map[string]bool{"watch-1key": true, "watch-100keys": true}

// memRows lists the rows measured by the servers' resident memory after the
// run rather than by their throughput.
var memRows = map[string]bool{"rss-100k": true}

// targets in table order; the first is the baseline of every ratio.
var targets = []string{"etcd", "cairn-rocksdb", "cairn-memory"}

// run is one benchmark run: one row, one round, one target.
type run struct {
	row, label, target, args string
	round, exit              int
	cpuSec                   float64
	other, tool              float64 // cores used by other processes and by the tool; -1 when unknown
	restSec                  float64 // CPU seconds the rest of the machine (tool and others) used; -1 when unknown
	busy                     float64 // cores the whole machine used; -1 when unknown
	rssMiB                   float64 // the servers' resident memory after the run; -1 when unknown
	summary
}

// summary holds the figures of one "Summary:" block of the tool's output.
type summary struct {
	ok                   bool
	total, rps, p50, p99 float64 // seconds, requests/s, seconds, seconds
	errors               int
	hasP99, hasP50       bool
}

// ops is the number of operations the tool counted in the summary.
func (s summary) ops() float64 { return s.rps * s.total }

func main() {
	in := flag.String("in", "", "results file written by run.sh (required)")
	doc := flag.String("doc", "", "Markdown file whose bench-etcd section to replace (none: print only)")
	commit := flag.String("commit", "unknown", "commit measured (git rev-parse --short HEAD)")
	command := flag.String("command", "make bench-etcd", "command line to show in the report")
	versions := flag.String("versions", "", "server and tool versions, one per line")
	scale := flag.String("scale", "1", "SCALE the run used")
	rounds := flag.Int("rounds", 0, "ROUNDS the run used")
	note := flag.String("note", "", "extra note for the report (for instance a busy machine)")
	flag.Parse()
	if *in == "" {
		log.Fatal("benchtable: -in is required")
	}
	runs, err := readRuns(*in)
	if err != nil {
		log.Fatal(err)
	}
	table := render(runs)
	fmt.Print(table)
	if *doc == "" {
		return
	}
	section := docSection(table, runs, *commit, *command, *versions, *scale, *rounds, *note)
	if err := replaceSection(*doc, section); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\nwrote section %q of %s\n", sectionTitle, *doc)
}

// readRuns reads the results file and parses each run's raw output.
func readRuns(path string) ([]run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var runs []run
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Split(line, "\t")
		if len(fs) != 9 && len(fs) != 12 && len(fs) != 13 {
			return nil, fmt.Errorf("%s: want 9, 12 or 13 tab-separated fields, got %d: %q", path, len(fs), line)
		}
		r := run{row: fs[0], label: fs[1], target: fs[3], args: fs[8]}
		r.round, _ = strconv.Atoi(fs[2])
		r.exit, _ = strconv.Atoi(fs[4])
		ticks, _ := strconv.ParseFloat(fs[5], 64)
		hz, _ := strconv.ParseFloat(fs[6], 64)
		if hz > 0 {
			r.cpuSec = ticks / hz
		}
		r.other, r.tool, r.rssMiB, r.restSec, r.busy = -1, -1, -1, -1, -1
		if len(fs) == 13 {
			kib, _ := strconv.ParseFloat(fs[12], 64)
			r.rssMiB = kib / 1024
		}
		if len(fs) >= 12 && hz > 0 {
			busy, _ := strconv.ParseFloat(fs[9], 64)
			toolSec, _ := strconv.ParseFloat(fs[10], 64)
			wall, _ := strconv.ParseFloat(fs[11], 64)
			if wall > 0 {
				r.tool = toolSec / wall
				r.other = max(0, (busy/hz-r.cpuSec-toolSec)/wall)
				r.restSec = max(0, busy/hz-r.cpuSec)
				r.busy = busy / hz / wall
			}
		}
		raw := fs[7]
		if !filepath.IsAbs(raw) {
			raw = filepath.Join(filepath.Dir(path), raw)
		}
		out, err := os.Open(raw)
		if err != nil {
			return nil, err
		}
		r.summary = parseSummary(out)
		out.Close()
		runs = append(runs, r)
	}
	return runs, sc.Err()
}

// parseSummary returns the last "Summary:" block of the benchmark tool's
// output. The progress bar may share a line with the text (it redraws with
// \r), so lines are matched by what they contain.
func parseSummary(r io.Reader) summary {
	var cur, last summary
	inErrors := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.LastIndex(line, "\r"); i >= 0 {
			line = line[i+1:]
		}
		t := strings.TrimSpace(line)
		switch {
		case strings.Contains(t, "events received summary:"):
			// The watch rows print the watch creation summary first;
			// only what follows this line counts.
			cur, last = summary{}, summary{}
			inErrors = false
		case strings.HasSuffix(t, "Summary:"):
			if cur.ok {
				last = cur
			}
			cur = summary{}
			inErrors = false
		case strings.HasPrefix(t, "Total:"):
			cur.total = secs(t)
		case strings.HasPrefix(t, "Requests/sec:"):
			cur.rps = num(strings.TrimPrefix(t, "Requests/sec:"))
			cur.ok = true
		case strings.HasPrefix(t, "50% in"):
			cur.p50, cur.hasP50 = secs(t), true
		case strings.HasPrefix(t, "99% in"):
			cur.p99, cur.hasP99 = secs(t), true
		case strings.HasPrefix(t, "Error distribution:"):
			inErrors = true
		case inErrors && strings.HasPrefix(t, "["):
			if j := strings.Index(t, "]"); j > 0 {
				n, _ := strconv.Atoi(t[1:j])
				cur.errors += n
			}
		}
	}
	if cur.ok {
		last = cur
	}
	return last
}

// secs parses the figure in "Total:\t1.2345 secs." or "99% in 0.0123 secs.".
func secs(s string) float64 {
	s = strings.TrimSuffix(strings.TrimSpace(s), ".")
	s = strings.TrimSuffix(s, "secs")
	fs := strings.Fields(s)
	if len(fs) == 0 {
		return 0
	}
	return num(fs[len(fs)-1])
}

func num(s string) float64 {
	v, _ := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return v
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// cell is one target's medians in one row.
type cell struct {
	rps, cpuMs, p99 []float64 // per round
	restMs, busy    []float64 // the rest of the machine's CPU ms per op, and the cores busy, per round
	rss             []float64 // MiB, per round
	failed, errs    int
	byRound         map[int]float64 // requests/s by round
}

// rowData is one row of the table.
type rowData struct {
	name, label, args string
	cells             map[string]*cell
}

// collect groups runs by row, in the order rows first appear.
func collect(runs []run) []*rowData {
	var rows []*rowData
	byName := map[string]*rowData{}
	for _, r := range runs {
		rd := byName[r.row]
		if rd == nil {
			rd = &rowData{name: r.row, label: r.label, args: r.args, cells: map[string]*cell{}}
			byName[r.row] = rd
			rows = append(rows, rd)
		}
		c := rd.cells[r.target]
		if c == nil {
			c = &cell{byRound: map[int]float64{}}
			rd.cells[r.target] = c
		}
		if r.exit != 0 || !r.ok || r.ops() <= 0 {
			c.failed++
			continue
		}
		c.errs += r.errors
		c.rps = append(c.rps, r.rps)
		c.byRound[r.round] = r.rps
		c.cpuMs = append(c.cpuMs, r.cpuSec*1000/r.ops())
		if r.restSec >= 0 {
			c.restMs = append(c.restMs, r.restSec*1000/r.ops())
			c.busy = append(c.busy, r.busy)
		}
		if r.rssMiB > 0 {
			c.rss = append(c.rss, r.rssMiB)
		}
		if r.hasP99 && !noLatency[r.row] {
			c.p99 = append(c.p99, r.p99)
		}
	}
	return rows
}

// failures lists the row's targets that had failed runs or request errors.
func (rd *rowData) failures() []string {
	var out []string
	for _, t := range targets {
		if c := rd.cells[t]; c != nil && (c.failed > 0 || c.errs > 0) {
			out = append(out, fmt.Sprintf("%s on %s: %d failed runs, %d request errors", rd.label, t, c.failed, c.errs))
		}
	}
	return out
}

// render formats the table in Markdown.
func render(runs []run) string {
	rows := collect(runs)
	var b strings.Builder
	b.WriteString("| row | etcd req/s | Cairn rocksdb req/s | ratio (per round) | Cairn memory req/s | ratio (per round) | server CPU ms/op etcd / rocksdb / memory | CPU/op ratio rocksdb / memory | p99 etcd | p99 ratio rocksdb / memory |\n")
	b.WriteString("|---|---:|---:|---|---:|---|---|---|---:|---|\n")
	var notes []string
	var mem []*rowData
	for _, rd := range rows {
		if memRows[rd.name] {
			mem = append(mem, rd)
			continue
		}
		base := rd.cells["etcd"]
		fmt.Fprintf(&b, "| %s | %s", rd.label, fmtRate(base))
		for _, t := range targets[1:] {
			c := rd.cells[t]
			fmt.Fprintf(&b, " | %s | %s", fmtRate(c), fmtRatio(base, c))
		}
		var cpus, cpuRatios []string
		for _, t := range targets {
			c := rd.cells[t]
			if c == nil || len(c.cpuMs) == 0 {
				cpus = append(cpus, "–")
				continue
			}
			cpus = append(cpus, fmtMs(median(c.cpuMs)))
		}
		for _, t := range targets[1:] {
			cpuRatios = append(cpuRatios, ratio(base, rd.cells[t], func(c *cell) []float64 { return c.cpuMs }))
		}
		p99 := "–"
		if base != nil && len(base.p99) > 0 {
			p99 = fmtMs(median(base.p99)*1000) + " ms"
		}
		var p99Ratios []string
		for _, t := range targets[1:] {
			p99Ratios = append(p99Ratios, ratio(base, rd.cells[t], func(c *cell) []float64 { return c.p99 }))
		}
		fmt.Fprintf(&b, " | %s | %s | %s | %s |\n", strings.Join(cpus, " / "), strings.Join(cpuRatios, " / "), p99, strings.Join(p99Ratios, " / "))
		notes = append(notes, rd.failures()...)
	}
	if len(mem) > 0 {
		b.WriteString("\n| memory row | etcd RSS | Cairn rocksdb RSS | ratio | Cairn memory RSS | ratio |\n")
		b.WriteString("|---|---:|---:|---|---:|---|\n")
		rssOf := func(c *cell) []float64 { return c.rss }
		for _, rd := range mem {
			base := rd.cells["etcd"]
			fmt.Fprintf(&b, "| %s | %s", rd.label, fmtMiB(base))
			for _, t := range targets[1:] {
				fmt.Fprintf(&b, " | %s | %s", fmtMiB(rd.cells[t]), ratio(base, rd.cells[t], rssOf))
			}
			b.WriteString(" |\n")
			notes = append(notes, rd.failures()...)
		}
	}
	b.WriteString(bounds(rows))
	if len(notes) > 0 {
		b.WriteString("\nFailures (left out of the medians): " + strings.Join(notes, "; ") + ".\n")
	}
	var other, tool []float64
	for _, r := range runs {
		if r.other >= 0 {
			other = append(other, r.other)
			tool = append(tool, r.tool)
		}
	}
	if len(other) > 0 {
		sort.Float64s(other)
		fmt.Fprintf(&b, "\nDuring the runs the benchmark tool used %.2f cores (median) and other processes %.2f cores (median; highest %.2f).\n",
			median(tool), median(other), other[len(other)-1])
		if median(other) > 0.25 {
			b.WriteString("Warning: the machine was busy; the ratios are less trustworthy than usual.\n")
		}
	}
	return b.String()
}

func fmtRate(c *cell) string {
	if c == nil || len(c.rps) == 0 {
		return "–"
	}
	v := median(c.rps)
	if v >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'f', 1, 64)
}

// fmtMiB is the median resident memory of c's runs.
func fmtMiB(c *cell) string {
	if c == nil || len(c.rss) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MiB", median(c.rss))
}

func fmtMs(v float64) string {
	switch {
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 0.1:
		return strconv.FormatFloat(v, 'f', 3, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// fmtRatio is the ratio of medians of requests/s and, in brackets, the
// lowest and highest ratio within one round.
func fmtRatio(base, c *cell) string {
	if base == nil || c == nil || len(base.rps) == 0 || len(c.rps) == 0 {
		return "–"
	}
	s := fmt.Sprintf("%.2f×", median(c.rps)/median(base.rps))
	lo, hi := 0.0, 0.0
	n := 0
	for round, v := range c.byRound {
		if bv, ok := base.byRound[round]; ok && bv > 0 {
			r := v / bv
			if n == 0 || r < lo {
				lo = r
			}
			if n == 0 || r > hi {
				hi = r
			}
			n++
		}
	}
	if n > 1 {
		s += fmt.Sprintf(" (%.2f–%.2f)", lo, hi)
	}
	return s
}

// ratio is median(f(c)) / median(f(base)), formatted.
func ratio(base, c *cell, f func(*cell) []float64) string {
	if base == nil || c == nil || len(f(base)) == 0 || len(f(c)) == 0 || median(f(base)) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", median(f(c))/median(f(base)))
}

// machine describes the host: CPU model and count, memory, kernel.
func machine() string {
	model := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if i := strings.Index(l, ":"); i >= 0 {
					model = strings.TrimSpace(l[i+1:])
				}
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		fs := strings.Fields(string(b))
		if len(fs) > 1 && fs[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(fs[1], 64)
			mem = fmt.Sprintf(", %.0f GiB RAM", kb/(1<<20))
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs (%s)%s%s, %s", runtime.NumCPU(), model, mem, kernel, runtime.Version())
}

// docSection is the Markdown of the bench-etcd section.
func docSection(table string, runs []run, commit, command, versions, scale string, rounds int, note string) string {
	var b strings.Builder
	b.WriteString(sectionTitle + "\n\n")
	b.WriteString("etcd's own `benchmark` tool (`go.etcd.io/etcd/v3/tools/benchmark`, from\n" +
		"etcd's root module at v3.7.0, the newest release of that module the\n" +
		"module proxy serves) run unchanged against a reference etcd 3.7.3 and\n" +
		"against Cairn on each engine. Every run gets a fresh single-member server\n" +
		"(three members for the cluster row, all three given to the tool), each\n" +
		"member in its own process, started the same way: default flags (fsync on, default\n" +
		"`--quota-backend-bytes`), a new data directory under `$TMPDIR`, client and\n" +
		"peer URLs on free loopback ports, and for Cairn `--storage-engine rocksdb`\n" +
		"or `memory`. For each row and round the three targets run one after\n" +
		"another, the first target changing from round to round. Figures are\n" +
		"medians over the rounds; ratios are Cairn/etcd of those medians, with the\n" +
		"lowest and highest single-round ratio in brackets. Server CPU per\n" +
		"operation is the server process's utime+stime (`/proc/PID/stat`) over the\n" +
		"run divided by the operations the tool counted; for the watch rows an\n" +
		"operation is an event received and req/s is events/s (in watch-latency\n" +
		"set by its put rate). p99 is the tool's 99th-percentile latency: per\n" +
		"request, and in watch-latency from a put's response to each watcher's\n" +
		"event; the watch fan-out rows have none (the tool times only its own\n" +
		"hand-off of an event there). The put and txn-put rows write one key over\n" +
		"and over (the tool's default `--key-space-size=1`, as in etcd's\n" +
		"op-guide). Above 1.0× is better for req/s, below 1.0× for CPU and p99.\n" +
		"The tool and the server share the machine's cores; the line under the\n" +
		"table gives how many cores the tool and other processes used. The memory\n" +
		"rows give the server's resident memory (`VmRSS`) 2 s after the tool's\n" +
		"last request, below 1.0× is better.\n\n" +
		"The third table says what this machine allows. Where etcd's runs kept\n" +
		"the cores busy (80 % or more), the tool and the server split them, and\n" +
		"req/s is the cores over the CPU both spend per operation: the rest of\n" +
		"the machine's CPU per operation (the tool's, mostly, taken from the\n" +
		"busy time of `/proc/stat` less the server's) plus the server's. With\n" +
		"etcd's figures that model gives the req/s ratio a server of a given CPU\n" +
		"per operation reaches, checked against Cairn's measured ratio in the\n" +
		"same row; the ratio of a server that used no CPU at all; and the server\n" +
		"CPU per operation, as a multiple of etcd's, that the Performance issue's\n" +
		"target ratio would take on this machine.\n\n")
	fmt.Fprintf(&b, "Run of %s at commit `%s`, SCALE=%s, ROUNDS=%d; machine: %s.\n", time.Now().UTC().Format("2006-01-02 15:04 MST"), commit, scale, rounds, machine())
	if versions != "" {
		b.WriteString("\nVersions:\n\n")
		for _, v := range strings.Split(strings.TrimSpace(versions), "\n") {
			fmt.Fprintf(&b, "- %s\n", strings.TrimSpace(v))
		}
	}
	if note != "" {
		b.WriteString("\n" + note + "\n")
	}
	b.WriteString("\n" + table + "\n")
	b.WriteString("Commands (`EP` is the server's client URL, the members' URLs\n" +
		"comma-separated for the cluster row; range rows first put `foo`, a\n" +
		"256-byte value, with etcdctl):\n\n```sh\n" + command + "\n")
	seen := map[string]bool{}
	for _, r := range runs {
		if seen[r.row] {
			continue
		}
		seen[r.row] = true
		fmt.Fprintf(&b, "benchmark --endpoints=EP --precise %s   # %s\n", r.args, r.label)
	}
	b.WriteString("```\n")
	return b.String()
}

// replaceSection replaces sectionTitle's section of the Markdown file at
// path (up to the next "## " heading) with section, or inserts it before
// insertBefore, or at the end.
func replaceSection(path, section string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	lines := strings.SplitAfter(string(b), "\n")
	start, end := -1, len(lines)
	inFence := false
	for i, l := range lines {
		t := strings.TrimRight(l, "\n")
		if strings.HasPrefix(t, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if start < 0 && t == sectionTitle {
			start = i
			continue
		}
		if start >= 0 && strings.HasPrefix(t, "## ") {
			end = i
			break
		}
	}
	if start < 0 {
		start, end = len(lines), len(lines)
		inFence = false
		for i, l := range lines {
			t := strings.TrimRight(l, "\n")
			if strings.HasPrefix(t, "```") {
				inFence = !inFence
			}
			if !inFence && strings.HasPrefix(t, insertBefore) {
				start, end = i, i
				break
			}
		}
	}
	var out strings.Builder
	for _, l := range lines[:start] {
		out.WriteString(l)
	}
	if start > 0 && !strings.HasSuffix(out.String(), "\n\n") {
		out.WriteString("\n")
	}
	out.WriteString(section)
	if end < len(lines) {
		out.WriteString("\n")
	}
	for _, l := range lines[end:] {
		out.WriteString(l)
	}
	return os.WriteFile(path, []byte(out.String()), 0o644)
}

// issueTargets is the req/s ratio the Performance issue asks of each row.
var issueTargets = map[string]float64{
	"put-1": 1.2, "put-64": 1.5, "range-l": 1.5, "range-s": 1.5, "txn-put": 1.5,
	"watch-1key": 1.5, "watch-100keys": 1.5, "lease-keepalive": 1.2, "put-cluster": 1.5,
}

// cpuBound is the share of the machine's cores above which a run counts as
// bound by the machine's CPU. The busy time includes the tool's start and
// finish, when few requests are in flight, so a machine-bound run shows
// 80-90 % of the cores busy, a latency-bound one (one client) 60-70 %.
const cpuBound = 0.8

// bounds renders what the machine allows each row: when etcd's runs kept
// the cores busy, the tool (and anything else running) and the server
// split the cores, so req/s is the cores over the CPU both spend per
// operation. With the rest's CPU per operation r and etcd's server s, a
// server that used no CPU at all would reach (s+r)/r times etcd's req/s,
// and the issue's target T needs a server CPU per operation of at most
// ((s+r)/T − r), shown as a multiple of s. The model takes the machine as
// the only limit; the idle 10-20 % of a machine-bound run (start, finish,
// fsync waits) make it a little generous to the server. Rows whose runs
// left more cores idle are bound by latency instead (one request in
// flight, or a fixed rate).
func bounds(rows []*rowData) string {
	var b strings.Builder
	cores := float64(runtime.NumCPU())
	for _, rd := range rows {
		base := rd.cells["etcd"]
		target, ok := issueTargets[rd.name]
		if !ok || base == nil || len(base.busy) == 0 || len(base.cpuMs) == 0 {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\n| row (what the machine allows) | cores busy, etcd's runs (of %.0f) | rest of the machine, CPU ms/op | etcd server CPU ms/op | req/s ratio the model gives Cairn's CPU/op, rocksdb / memory (measured) | req/s ratio of a server using no CPU | target | server CPU/op the target needs |\n", cores)
			b.WriteString("|---|---:|---:|---:|---|---:|---:|---|\n")
		}
		busy, rest, srv := median(base.busy), median(base.restMs), median(base.cpuMs)
		fmt.Fprintf(&b, "| %s | %.2f | %s | %s", rd.label, busy, fmtMs(rest), fmtMs(srv))
		if busy < cpuBound*cores || rest <= 0 {
			fmt.Fprintf(&b, " | – | – (latency-bound) | %.1f× | – |\n", target)
			continue
		}
		var model []string
		for _, t := range targets[1:] {
			c := rd.cells[t]
			if c == nil || len(c.cpuMs) == 0 || len(c.rps) == 0 {
				model = append(model, "–")
				continue
			}
			model = append(model, fmt.Sprintf("%.2f× (%.2f×)", (srv+rest)/(median(c.cpuMs)+rest), median(c.rps)/median(base.rps)))
		}
		fmt.Fprintf(&b, " | %s", strings.Join(model, " / "))
		need := ((srv+rest)/target - rest) / srv
		needs := fmt.Sprintf("≤ %.2f× etcd's", need)
		if need <= 0 {
			needs = "none: out of reach"
		}
		fmt.Fprintf(&b, " | %.2f× | %.1f× | %s |\n", (srv+rest)/rest, target, needs)
	}
	return b.String()
}
