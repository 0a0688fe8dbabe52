package test

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	examples := []struct {
		name string
		// args are the flags after -endpoints; short TTLs and waits keep
		// the test quick.
		args func(m *member) []string
		// want are lines, or parts of lines, the output holds in this order.
		want []string
		// again runs the example a second time on the same member, for
		// those that undo what they set up.
		again bool
	}{
		{name: "connect", want: []string{"member ", "version=3.7.3"}},
		{name: "putget", want: []string{"put examples/putget at revision 2", `= "hello from cairn"`, "deleted 1 key(s) at revision 3"}},
		{name: "txn", want: []string{"swap v1 -> v2: succeeded=true", "swap v1 -> v3: succeeded=false", "final value: v2"}},
		{name: "watch", want: []string{
			"watching examples/watch from revision 2",
			`event PUT examples/watch = "v1" at revision 2`,
			`event DELETE examples/watch = "" at revision 3 (prev_kv "v1")`,
		}},
		{
			name: "lease",
			args: func(*member) []string { return []string{"-ttl", "2", "-keepalive", "3s"} },
			want: []string{
				"with TTL 2s",
				"TimeToLive after grant: ttl=",
				"granted_ttl=2 keys=[examples/lease]",
				"examples/lease still exists: true",
				"examples/lease is gone",
				"TimeToLive after expiry: ttl=-1 granted_ttl=0 keys=[]",
			},
		},
		{
			name: "lock",
			args: func(*member) []string { return []string{"-hold", "500ms"} },
			want: []string{"1: session 1 holds the lock", "2: session 2 waits", "3: session 1 unlocks", "4: session 2 holds the lock"},
		},
		{
			name: "election",
			args: func(*member) []string { return []string{"-wait", "500ms"} },
			want: []string{"observe: leader is alice", "bob campaigns and waits", "alice resigns", "observe: leader is bob", "leader is bob"},
		},
		{
			name: "auth",
			want: []string{
				"auth enabled: true",
				"app puts examples/auth/key: err=<nil>",
				"app puts examples/outside: err=etcdserver: permission denied",
				"auth disabled; users and roles deleted",
			},
			again: true,
		},
		{
			name: "rest",
			args: func(m *member) []string { return []string{"-http", m.httpURL} },
			want: []string{
				"REST PUT examples/rest/from-rest at revision 2",
				`clientv3 Get examples/rest/from-rest = "written over REST" (mod_revision 2)`,
				"clientv3 Put examples/rest/from-grpc at revision 3",
				`REST GET examples/rest/from-grpc = "written over gRPC" (mod_revision 3)`,
				`REST watch: put examples/rest/from-rest = "written over REST" at revision 2`,
				`REST watch: put examples/rest/from-grpc = "written over gRPC" at revision 3`,
			},
		},
	}
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		for _, ex := range examples {
			m := startMember(t, engine)
			args := []string{"-endpoints", m.clientEP}
			if ex.args != nil {
				args = append(args, ex.args(m)...)
			}
			runs := 1
			if ex.again {
				runs = 2
			}
			for range runs {
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				out, err := exec.CommandContext(ctx, filepath.Join(bin, ex.name), args...).CombinedOutput()
				cancel()
				if err != nil {
					t.Fatalf("%s: %v\n%s", ex.name, err, out)
				}
				rest := string(out)
				for _, w := range ex.want {
					i := strings.Index(rest, w)
					if i < 0 {
						t.Errorf("%s: output lacks %q (or has it out of order):\n%s", ex.name, w, out)
						break
					}
					rest = rest[i+len(w):]
				}
			}
		}
	})
}
