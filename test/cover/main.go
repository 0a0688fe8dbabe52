// Command cover merges Go coverage profiles and prints statement coverage
// per package, with a gate on the key packages.
//
// Each argument is NAME=FILE, a text coverage profile (go test
// -coverprofile, or go tool covdata textfmt) labelled NAME. The table has
// one column per profile and a last column, "all", in which a statement
// counts as covered when any profile covered it. Key packages (-key, a
// comma-separated list of import paths; a path ending in "/..." also
// matches the packages below it) pass the gate when their "all" coverage is
// at least -min percent. With -module, key paths and the table's package
// names are relative to that module path. The table goes to standard output
// and to -o; the exit status is 1 when a key package is below -min or
// missing, 2 on bad input.
//
//	go run ./test/cover -min 80 -module github.com/x/y -key internal/mvcc,internal/raftlog/... \
//		-o coverage/coverage.txt unit=coverage/unit.out integration=coverage/integration.out
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
)

// block is one basic block of a profile: file:start,end of a source file.
type block struct {
	file  string // import path of the package plus file name
	start string // line.col
	end   string // line.col
}

// profile maps each block of one profile to its statement count and
// whether any run executed it.
type profile map[block]blockCount

type blockCount struct {
	stmts   int
	covered bool
}

// readProfile parses a text coverage profile. The same block may appear
// several times (one per test binary); it counts as covered when any
// occurrence has a nonzero count.
func readProfile(r io.Reader) (profile, error) {
	p := profile{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "mode:") {
			continue
		}
		// file:l.c,l.c stmts count; the file name may contain colons.
		colon := strings.LastIndexByte(text, ':')
		fields := strings.Fields(text[colon+1:])
		if colon < 0 || len(fields) != 3 {
			return nil, fmt.Errorf("line %d: malformed %q", line, text)
		}
		span := strings.SplitN(fields[0], ",", 2)
		stmts, err1 := strconv.Atoi(fields[1])
		count, err2 := strconv.ParseInt(fields[2], 10, 64)
		if len(span) != 2 || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %d: malformed %q", line, text)
		}
		b := block{file: text[:colon], start: span[0], end: span[1]}
		c := p[b]
		c.stmts = stmts
		c.covered = c.covered || count > 0
		p[b] = c
	}
	return p, sc.Err()
}

// coverage is the statement count and covered statements of one package.
type coverage struct{ stmts, covered int }

func (c coverage) percent() float64 {
	if c.stmts == 0 {
		return 0
	}
	return 100 * float64(c.covered) / float64(c.stmts)
}

// byPackage sums a profile's statements per package (the directory of each
// block's file), named relative to module when the package is in it.
func byPackage(p profile, module string) map[string]coverage {
	out := map[string]coverage{}
	for b, c := range p {
		pkg := path.Dir(b.file)
		if rel, ok := strings.CutPrefix(pkg, module+"/"); ok && module != "" {
			pkg = rel
		}
		cv := out[pkg]
		cv.stmts += c.stmts
		if c.covered {
			cv.covered += c.stmts
		}
		out[pkg] = cv
	}
	return out
}

// merge returns the union of profiles: a block is covered when any of them
// covered it.
func merge(ps []profile) profile {
	out := profile{}
	for _, p := range ps {
		for b, c := range p {
			m := out[b]
			m.stmts = c.stmts
			m.covered = m.covered || c.covered
			out[b] = m
		}
	}
	return out
}

// isKey reports whether pkg is one of the key patterns.
func isKey(pkg string, keys []string) bool {
	for _, k := range keys {
		if base, ok := strings.CutSuffix(k, "/..."); ok {
			if pkg == base || strings.HasPrefix(pkg, base+"/") {
				return true
			}
		} else if pkg == k {
			return true
		}
	}
	return false
}

// report writes the table to w and returns the key packages (or patterns
// matching none) that fail the gate.
func report(w io.Writer, names []string, ps []profile, module string, keys []string, min float64) []string {
	cols := make([]map[string]coverage, len(ps))
	for i, p := range ps {
		cols[i] = byPackage(p, module)
	}
	all := byPackage(merge(ps), module)
	pkgs := make([]string, 0, len(all))
	for pkg := range all {
		pkgs = append(pkgs, pkg)
	}
	sort.Strings(pkgs)

	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprint(tw, "package\tstatements\t")
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	fmt.Fprintf(tw, "all\tgate (key >= %g%%)\n", min)
	var failed []string
	for _, pkg := range pkgs {
		fmt.Fprintf(tw, "%s\t%d\t", pkg, all[pkg].stmts)
		for _, c := range cols {
			fmt.Fprintf(tw, "%.1f%%\t", c[pkg].percent())
		}
		gate := "-"
		if isKey(pkg, keys) {
			gate = "pass"
			if all[pkg].percent() < min {
				gate = "FAIL"
				failed = append(failed, pkg)
			}
		}
		fmt.Fprintf(tw, "%.1f%%\t%s\n", all[pkg].percent(), gate)
	}
	tw.Flush()
	// A key package with no statements in any profile was not measured at
	// all, which must not pass silently.
	for _, k := range keys {
		found := false
		for _, pkg := range pkgs {
			if isKey(pkg, []string{k}) {
				found = true
				break
			}
		}
		if !found {
			fmt.Fprintf(w, "%s: not in any profile\n", k)
			failed = append(failed, k)
		}
	}
	return failed
}

func main() {
	min := flag.Float64("min", 80, "minimum statement coverage, in percent, of each key package")
	keyList := flag.String("key", "", "comma-separated import paths of the key packages; a trailing /... matches subpackages")
	outFile := flag.String("o", "", "also write the table to this file")
	module := flag.String("module", "", "module path that key paths and package names are relative to")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: cover [-min N] [-module path] [-key paths] [-o file] NAME=PROFILE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	var keys []string
	for _, k := range strings.Split(*keyList, ",") {
		if k = strings.TrimSpace(k); k != "" {
			keys = append(keys, k)
		}
	}
	var names []string
	var ps []profile
	for _, arg := range flag.Args() {
		name, file, ok := strings.Cut(arg, "=")
		if !ok {
			fmt.Fprintf(os.Stderr, "cover: %q is not NAME=PROFILE\n", arg)
			os.Exit(2)
		}
		f, err := os.Open(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, "cover:", err)
			os.Exit(2)
		}
		p, err := readProfile(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(os.Stderr, "cover: %s: %v\n", file, err)
			os.Exit(2)
		}
		names = append(names, name)
		ps = append(ps, p)
	}

	var sb strings.Builder
	failed := report(&sb, names, ps, *module, keys, *min)
	if len(failed) > 0 {
		fmt.Fprintf(&sb, "coverage gate failed: %s below %g%%\n", strings.Join(failed, ", "), *min)
	}
	fmt.Print(sb.String())
	if *outFile != "" {
		if err := os.WriteFile(*outFile, []byte(sb.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "cover:", err)
			os.Exit(2)
		}
	}
	if len(failed) > 0 {
		os.Exit(1)
	}
}
