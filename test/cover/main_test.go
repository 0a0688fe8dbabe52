package main

import (
	"strings"
	"testing"
)

const unitProfile = `mode: atomic
example.com/m/a/x.go:1.1,2.1 3 0
example.com/m/a/x.go:3.1,4.1 1 2
example.com/m/a/x.go:1.1,2.1 3 0
example.com/m/b/y.go:1.1,2.1 4 1
`

// The integration profile covers a's first block, which the unit profile
// has twice (two test binaries) without covering it.
const integrationProfile = `mode: set
example.com/m/a/x.go:1.1,2.1 3 1
example.com/m/a/x.go:3.1,4.1 1 0
example.com/m/b/y.go:1.1,2.1 4 0
`

func mustRead(t *testing.T, s string) profile {
	t.Helper()
	p, err := readProfile(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReportMergesProfiles(t *testing.T) {
	ps := []profile{mustRead(t, unitProfile), mustRead(t, integrationProfile)}
	var out strings.Builder
	failed := report(&out, []string{"unit", "integration"}, ps, "example.com/m", []string{"a", "b"}, 80)
	if len(failed) != 0 {
		t.Errorf("failed = %v, want none:\n%s", failed, out.String())
	}
	for _, want := range []string{
		// a: 1 of 4 statements by unit, 3 by integration, all 4 together.
		"a        4           25.0%  75.0%        100.0%  pass",
		"b        4           100.0%  0.0%        100.0%  pass",
	} {
		fields := strings.Fields(want)
		found := false
		for _, line := range strings.Split(out.String(), "\n") {
			if strings.Join(strings.Fields(line), " ") == strings.Join(fields, " ") {
				found = true
			}
		}
		if !found {
			t.Errorf("no row %q in\n%s", strings.Join(fields, " "), out.String())
		}
	}
}

func TestReportGate(t *testing.T) {
	ps := []profile{mustRead(t, unitProfile)}
	var out strings.Builder
	// a is at 25%, b at 100%; neither c nor d/... matches a package.
	failed := report(&out, []string{"unit"}, ps, "example.com/m", []string{"a", "b", "c", "d/..."}, 80)
	if got, want := strings.Join(failed, ","), "a,c,d/..."; got != want {
		t.Errorf("failed = %s, want %s:\n%s", got, want, out.String())
	}
	if !strings.Contains(out.String(), "c: not in any profile") {
		t.Errorf("missing key package not reported:\n%s", out.String())
	}
}

func TestIsKey(t *testing.T) {
	keys := []string{"internal/raftlog/...", "pkg/httpapi"}
	for pkg, want := range map[string]bool{
		"internal/raftlog":         true,
		"internal/raftlog/filelog": true,
		"internal/raftlogx":        false,
		"pkg/httpapi":              true,
		"pkg/httpapi/sub":          false,
	} {
		if got := isKey(pkg, keys); got != want {
			t.Errorf("isKey(%q) = %v, want %v", pkg, got, want)
		}
	}
}

func TestReadProfileRejectsMalformed(t *testing.T) {
	for _, s := range []string{"mode: set\nx.go:1.1,2.1 3\n", "mode: set\nx.go 1 2 3\n", "mode: set\nx.go:1.1 3 1\n"} {
		if _, err := readProfile(strings.NewReader(s)); err == nil {
			t.Errorf("readProfile(%q) accepted it", s)
		}
	}
}
