// Command report turns the `go test -json` stream of a run of etcd's
// tests/common suite into the Markdown page docs/compatibility.md: a summary,
// hand-written findings, failures grouped by their first error line, and a
// per-test table. Given the stream of a run against the reference etcd as
// -baseline, the table shows both results side by side and the summary counts
// the tests that pass on etcd but not on the target, which is the number the
// project drives to zero.
//
// Usage:
//
//	report -in out/cairn.json [-baseline out/etcd.json] [-notes findings.md]
//	       [-target cairn] [-command "make test-etcd"] [-log out/cairn.log]
//	       -out docs/compatibility.md
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Time    time.Time
	Action  string
	Package string
	Test    string
	Elapsed float64
	Output  string
}

// result is the outcome of one test or subtest.
type result struct {
	Name    string
	Status  string // PASS, FAIL, SKIP or RUN (never finished: timeout or crash)
	Elapsed float64
	Output  []string
	Cause   string // first failure line, for FAIL and unfinished tests
}

// run is every result of one stream, in the order the tests started.
type run struct {
	Order   []string
	Results map[string]*result
	// Tail is output not attributed to a test, such as a build failure or
	// the panic of a timed-out binary.
	Tail []string
	// Text is the whole output in order, as go test without -json prints it.
	Text strings.Builder
}

func readRun(path string) (*run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &run{Results: map[string]*result{}}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			// go test prints build errors as plain text before any JSON.
			r.Tail = append(r.Tail, sc.Text())
			r.Text.WriteString(sc.Text() + "\n")
			continue
		}
		if e.Action == "output" {
			r.Text.WriteString(e.Output)
		}
		if e.Test == "" {
			if e.Action == "output" {
				r.Tail = append(r.Tail, strings.TrimRight(e.Output, "\n"))
			}
			continue
		}
		res := r.Results[e.Test]
		if res != nil && e.Action == "run" {
			// A later run of the same test (run.sh --append) replaces it.
			res.Status, res.Output, res.Cause = "RUN", nil, ""
		}
		if res == nil {
			res = &result{Name: e.Test, Status: "RUN"}
			r.Results[e.Test] = res
			r.Order = append(r.Order, e.Test)
		}
		switch e.Action {
		case "output":
			res.Output = append(res.Output, strings.TrimRight(e.Output, "\n"))
		case "pass":
			res.Status, res.Elapsed = "PASS", e.Elapsed
		case "fail":
			res.Status, res.Elapsed = "FAIL", e.Elapsed
		case "skip":
			res.Status, res.Elapsed = "SKIP", e.Elapsed
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, res := range r.Results {
		switch res.Status {
		case "FAIL", "RUN":
			res.Cause = firstCause(res.Output)
		case "SKIP":
			if c := firstCause(res.Output); c != "" {
				res.Cause = "skipped: " + c
			}
		}
		if res.Status == "RUN" && res.Cause == "" {
			res.Cause = "did not finish (timeout or crash of the test binary)"
		}
	}
	return r, nil
}

var (
	goLine       = regexp.MustCompile(`^\s*[\w.-]+\.go:\d+: ?(.*)$`)
	errorLine    = regexp.MustCompile(`^\s*Error:\s*(.*)$`)
	traceLine    = regexp.MustCompile(`^\s*Error Trace:\s*(\S+)`)
	contLine     = regexp.MustCompile(`^\s{8,}\t?\s*(\S.*)$`)
	messagesLine = regexp.MustCompile(`^\s*Messages:\s*(.*)$`)
	testifyKeys  = regexp.MustCompile(`^\s*(Test|Messages|Error Trace):`)
	noise        = regexp.MustCompile(`^(=== |--- |\s*logger\.go|\{"level")|Changing working directory`)
)

// firstCause picks the line that best says why a test failed: testify's
// "Error:" with its first continuation and the source line that raised it,
// else the first t.Fatal/t.Error line, else a panic.
func firstCause(out []string) string {
	for i, l := range out {
		m := errorLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		msg := strings.TrimSpace(m[1])
		for j := i + 1; j < len(out) && j < i+4; j++ {
			if testifyKeys.MatchString(out[j]) {
				break
			}
			if c := contLine.FindStringSubmatch(out[j]); c != nil {
				msg += " " + strings.TrimSpace(c[1])
				break
			}
		}
		// assert.Truef and friends say "Should be true"; their message
		// says what was compared.
		for j := i + 1; j < len(out) && j < i+8; j++ {
			if m := messagesLine.FindStringSubmatch(out[j]); m != nil {
				msg += ": " + strings.TrimSpace(m[1])
				break
			}
			if traceLine.MatchString(out[j]) {
				break
			}
		}
		where := ""
		for j := i - 1; j >= 0 && j >= i-8; j-- {
			if t := traceLine.FindStringSubmatch(out[j]); t != nil {
				where = t[1][strings.LastIndex(t[1], "/")+1:]
				break
			}
		}
		if where != "" {
			return where + ": " + msg
		}
		return msg
	}
	for _, l := range out {
		if noise.MatchString(l) {
			continue
		}
		if m := goLine.FindStringSubmatch(l); m != nil && strings.TrimSpace(m[1]) != "" {
			return strings.TrimSpace(l)
		}
	}
	for _, l := range out {
		if strings.HasPrefix(strings.TrimSpace(l), "panic:") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

var (
	numbers = regexp.MustCompile(`\b\d+\b|0x[0-9a-f]+`)
	paths   = regexp.MustCompile(`/tmp/\S+|TestLeaseGrant\S*|127\.0\.0\.1:\d+`)
)

// causeKey folds causes that differ only in numbers, temp paths and ports
// into one group.
func causeKey(c string) string {
	if i := strings.Index(c, ": "); i > 0 && strings.Contains(c[:i], ".go:") {
		c = c[i+2:]
	}
	c = paths.ReplaceAllString(c, "…")
	c = numbers.ReplaceAllString(c, "N")
	if len(c) > 160 {
		c = c[:160] + "…"
	}
	return c
}

// tally counts results by status: PASS, FAIL, SKIP, anything else
// unfinished.
type tally struct{ pass, fail, skip, unfinished int }

func (t *tally) add(status string) {
	switch status {
	case "PASS":
		t.pass++
	case "FAIL":
		t.fail++
	case "SKIP":
		t.skip++
	default:
		t.unfinished++
	}
}

func counts(r *run) (pass, fail, skip, unfinished int) {
	var t tally
	for _, name := range r.Order {
		t.add(r.Results[name].Status)
	}
	return t.pass, t.fail, t.skip, t.unfinished
}

// cell escapes text for a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	s = strings.ReplaceAll(s, "`", "'")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func main() {
	in := flag.String("in", "", "go test -json output of the target run")
	baseline := flag.String("baseline", "", "go test -json output of the reference etcd run (optional)")
	notes := flag.String("notes", "", "Markdown file of hand-written findings to include (optional)")
	target := flag.String("target", "cairn", "name of the server under test")
	command := flag.String("command", "", "command lines that produced the run, one a line, for the record")
	baseCommand := flag.String("baseline-command", "", "command lines of the baseline run, one a line, for the record")
	pattern := flag.String("run", "", "the -run pattern of the run, for the record")
	outPath := flag.String("out", "", "Markdown file to write (default stdout)")
	logPath := flag.String("log", "", "plain-text log of the run to write (optional)")
	flag.Parse()
	if *in == "" {
		log.Fatal("report: -in is required")
	}
	r, err := readRun(*in)
	if err != nil {
		log.Fatalf("report: %v", err)
	}
	if *logPath != "" {
		if err := os.WriteFile(*logPath, []byte(r.Text.String()), 0o644); err != nil {
			log.Fatalf("report: %v", err)
		}
	}
	var base *run
	if *baseline != "" && *baseline != *in {
		if base, err = readRun(*baseline); err != nil {
			log.Printf("report: baseline ignored: %v", err)
			base = nil
		}
	}

	var w io.Writer = os.Stdout
	if *outPath != "" {
		f, err := os.Create(*outPath)
		if err != nil {
			log.Fatalf("report: %v", err)
		}
		defer f.Close()
		w = f
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }

	p("# Compatibility with etcd's own test suite\n\n")
	p("etcd v3.7.3's `tests/common` suite (module `go.etcd.io/etcd/tests/v3`, e2e mode) run with `%s` as the `etcd` binary, next to the real `etcdctl` and `etcdutl` v3.7.3 built from the module proxy. ", *target)
	p("Generated by `test/etcdsuite/run.sh` on %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	if *command != "" {
		p("Commands (from the repository root; later runs with `--append` replace the results of the tests they rerun):\n\n")
		for _, c := range strings.Split(strings.TrimSpace(*command), "\n") {
			p("- `%s`\n", c)
		}
		if *baseCommand != "" && base != nil {
			p("\nReference runs, on etcd 3.7.3 built from `etcdmain` (its `main` written by `test/etcdsuite/run.sh` into the ignored `out/etcdmain`):\n\n")
			for _, c := range strings.Split(strings.TrimSpace(*baseCommand), "\n") {
				p("- `%s`\n", c)
			}
		}
		if *pattern != "" {
			p("\nTests matching `%s`.\n", *pattern)
		}
		p("\n")
	}

	pass, fail, skip, unf := counts(r)
	p("## Summary\n\n")
	p("| run | tests and subtests | pass | fail | skip | unfinished |\n|---|---|---|---|---|---|\n")
	p("| %s | %d | %d | %d | %d | %d |\n", *target, len(r.Order), pass, fail, skip, unf)
	if base != nil {
		bp, bf, bs, bu := counts(base)
		p("| etcd 3.7.3 (reference) | %d | %d | %d | %d | %d |\n", len(base.Order), bp, bf, bs, bu)
		regressions := 0
		for _, name := range r.Order {
			if b := base.Results[name]; b != nil && b.Status == "PASS" && r.Results[name].Status != "PASS" {
				regressions++
			}
		}
		p("\nTests and subtests that pass on etcd 3.7.3 but not on %s: **%d**.\n", *target, regressions)
	}
	tp, tf, ts, tu := topCounts(r)
	p("\nTop-level tests on %s: %d run, %d pass, %d fail, %d skip, %d unfinished", *target, tp+tf+ts+tu, tp, tf, ts, tu)
	if base != nil {
		bp, bf, bs, bu := topCounts(base)
		p("; on etcd 3.7.3: %d run, %d pass, %d fail, %d skip, %d unfinished", bp+bf+bs+bu, bp, bf, bs, bu)
	}
	p(".\n\n")

	if *notes != "" {
		if b, err := os.ReadFile(*notes); err == nil {
			p("%s\n", strings.TrimSpace(string(b)))
			p("\n")
		} else {
			log.Printf("report: notes ignored: %v", err)
		}
	}

	// Group failing leaf tests by their cause. A parent fails when any
	// subtest fails, so parents with failing children are not counted twice.
	hasFailingChild := map[string]bool{}
	for _, name := range r.Order {
		if st := r.Results[name].Status; st == "FAIL" || st == "RUN" {
			if i := strings.LastIndex(name, "/"); i > 0 {
				hasFailingChild[name[:i]] = true
			}
		}
	}
	groups := map[string][]string{}
	example := map[string]string{}
	for _, name := range r.Order {
		res := r.Results[name]
		if (res.Status != "FAIL" && res.Status != "RUN") || hasFailingChild[name] {
			continue
		}
		k := causeKey(res.Cause)
		if k == "" {
			k = "(no failure line found; see the log)"
		}
		groups[k] = append(groups[k], name)
		if _, ok := example[k]; !ok {
			example[k] = res.Cause
		}
	}
	if len(groups) > 0 {
		keys := make([]string, 0, len(groups))
		for k := range groups {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if len(groups[keys[i]]) != len(groups[keys[j]]) {
				return len(groups[keys[i]]) > len(groups[keys[j]])
			}
			return keys[i] < keys[j]
		})
		p("## Failures grouped by first error line (generated)\n\n")
		for _, k := range keys {
			names := groups[k]
			shown := names
			if len(shown) > 6 {
				shown = shown[:6]
			}
			more := ""
			if len(names) > len(shown) {
				more = fmt.Sprintf(", and %d more", len(names)-len(shown))
			}
			p("- **%d**: `%s`  \n  e.g. %s%s\n", len(names), cell(example[k]), strings.Join(shown, ", "), more)
		}
		p("\n")
	}

	p("## Per test\n\n")
	p("One row per test and per cluster shape; deeper subtests (the cases of a table test) are counted in the row above them.\n\n")
	if base != nil {
		p("| test | etcd 3.7.3 | %s | first failure on %s |\n|---|---|---|---|\n", *target, *target)
	} else {
		p("| test | %s | first failure |\n|---|---|---|\n", *target)
	}
	rows := rollUp(r)
	var baseRows map[string]row
	if base != nil {
		baseRows = map[string]row{}
		for _, br := range rollUp(base) {
			baseRows[br.Name] = br
		}
	}
	for _, rw := range rows {
		if base != nil {
			bs := "—"
			if b, ok := baseRows[rw.Name]; ok {
				bs = b.Status
			}
			p("| %s | %s | %s | %s |\n", cell(rw.Name), bs, rw.Status, cell(rw.Cause))
		} else {
			p("| %s | %s | %s |\n", cell(rw.Name), rw.Status, cell(rw.Cause))
		}
	}
	if len(r.Order) == 0 && len(r.Tail) > 0 {
		p("\nNo test ran. Output:\n\n```\n")
		tail := r.Tail
		if len(tail) > 40 {
			tail = tail[len(tail)-40:]
		}
		p("%s\n```\n", strings.Join(tail, "\n"))
	}
}

// row is a test or a cluster-shape subtest with its deeper subtests folded
// in: Status gains "(k/n subtests)" when some of n deeper subtests did not
// pass, and Cause is the first failure among them when the row has none.
type row struct {
	Name, Status, Cause string
}

func rollUp(r *run) []row {
	var rows []row
	for _, name := range grouped(r.Order) {
		if strings.Count(name, "/") > 1 {
			continue
		}
		res := r.Results[name]
		st, cause := res.Status, res.Cause
		if st == "RUN" {
			st = "UNFINISHED"
		}
		n, bad := 0, 0
		prefix := name + "/"
		for _, other := range r.Order {
			if !strings.HasPrefix(other, prefix) {
				continue
			}
			// Cluster-shape subtests get rows of their own.
			if strings.Count(name, "/") == 0 && strings.Count(other, "/") == 1 && isShape(other) {
				continue
			}
			n++
			o := r.Results[other]
			if o.Status == "FAIL" || o.Status == "RUN" {
				bad++
				if cause == "" || strings.HasPrefix(cause, "execute.go") {
					cause = strings.TrimPrefix(other, prefix) + ": " + o.Cause
				}
			}
		}
		if cause == "" && (st == "FAIL" || st == "UNFINISHED") {
			for _, other := range r.Order {
				if o := r.Results[other]; strings.HasPrefix(other, prefix) && (o.Status == "FAIL" || o.Status == "RUN") && o.Cause != "" {
					cause = strings.TrimPrefix(other, prefix) + ": " + o.Cause
					break
				}
			}
		}
		if bad > 0 {
			if st == "PASS" {
				// A rerun (--append) passed, an earlier part did not.
				st = "FAIL"
			}
			st = fmt.Sprintf("%s (%d/%d subtests fail)", st, bad, n)
		}
		rows = append(rows, row{Name: name, Status: st, Cause: cause})
	}
	return rows
}

// isShape says whether a first-level subtest is one of the suite's cluster
// shapes (e2e_test.go's clusterTestCases and the TLS variants tests name).
func isShape(name string) bool {
	base := name[strings.Index(name, "/")+1:]
	switch base {
	case "NoTLS", "PeerTLS_and_ClientTLS", "PeerAutoTLS_and_ClientAutoTLS", "PeerTLS", "PeerAutoTLS", "ClientTLS", "ClientAutoTLS", "MinorityLastVersion", "QuorumLastVersion":
		return true
	}
	return false
}

// grouped orders names by their top-level test, in the order the top-level
// tests first started, so that subtests added by a later run (--append) sit
// with their test.
func grouped(order []string) []string {
	byTop := map[string][]string{}
	var tops []string
	for _, name := range order {
		top, _, _ := strings.Cut(name, "/")
		if _, ok := byTop[top]; !ok {
			tops = append(tops, top)
		}
		byTop[top] = append(byTop[top], name)
	}
	out := make([]string, 0, len(order))
	for _, top := range tops {
		out = append(out, byTop[top]...)
	}
	return out
}

// topCounts counts top-level tests only, with a test's status rolled up from
// its subtests as in the table.
func topCounts(r *run) (pass, fail, skip, unfinished int) {
	var t tally
	for _, rw := range rollUp(r) {
		if !strings.Contains(rw.Name, "/") {
			st, _, _ := strings.Cut(rw.Status, " ")
			t.add(st)
		}
	}
	return t.pass, t.fail, t.skip, t.unfinished
}
