package test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestExamples builds and runs every program under examples/ against a
// running member, on both engines, and checks what each prints.
func TestExamples(t *testing.T) {
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./examples/...")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building examples: %v\n%s", err, out)
	}
	want := map[string][]string{
		"connect": {"member ", "version=3.7.3"},
		"putget":  {"put examples/putget at revision 2", `= "hello from cairn"`, "deleted 1 key(s) at revision 3"},
		"txn":     {"swap v1 -> v2: succeeded=true", "swap v1 -> v3: succeeded=false", "final value: v2"},
	}
	forEachEngine(t, func(t *testing.T, engine string) {
		for _, name := range []string{"connect", "putget", "txn"} {
			m := startMember(t, engine)
			out, err := exec.Command(filepath.Join(bin, name), "-endpoints", m.clientEP).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", name, err, out)
			}
			for _, w := range want[name] {
				if !strings.Contains(string(out), w) {
					t.Errorf("%s: output lacks %q:\n%s", name, w, out)
				}
			}
		}
	})
}
