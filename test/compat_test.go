package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConformance runs test/compat's conformance checker, the one
// test/compat/run.sh runs, against a real etcd (which proves its
// expectations are etcd's) and against Cairn on both engines, as a lone
// member and as a 3-member cluster. Its Markdown reports go to the
// directory COMPAT_REPORT_DIR names, when set.
func TestConformance(t *testing.T) {
	reportDir := os.Getenv("COMPAT_REPORT_DIR")
	check := func(t *testing.T, title string, endpoints []string) {
		t.Helper()
		args := []string{"--endpoints", strings.Join(endpoints, ","), "--title", title}
		if reportDir != "" {
			args = append(args, "--report", filepath.Join(reportDir, strings.ReplaceAll(title, " ", "-")+".md"))
		}
		out, errOut, code := runTool(t, conformanceBin, args...)
		if code != 0 || !strings.Contains(out, " passed, 0 failed") {
			t.Errorf("conformance against %s: exit %d\n%s%s", title, code, out, errOut)
		}
	}
	t.Run("etcd", func(t *testing.T) {
		t.Parallel()
		check(t, "etcd 3.7.3", []string{etcdEndpoint(startEtcd(t))})
	})
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		t.Run("single", func(t *testing.T) {
			check(t, "cairn "+engine+" single member", []string{startMember(t, engine).clientEP})
		})
		t.Run("cluster", func(t *testing.T) {
			check(t, "cairn "+engine+" 3 members", startCluster(t, engine, 3).endpoints())
		})
	})
}
