package main

import (
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/cairn-kv/cairn/internal/store"
)

// capture runs f with os.Stdout and os.Stderr redirected and returns what
// was written to each.
func capture(t *testing.T, f func()) (stdout, stderr string) {
	t.Helper()
	read := func(p **os.File) (restore func() string) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := *p
		*p = w
		out := make(chan string)
		go func() {
			b, _ := io.ReadAll(r)
			out <- string(b)
		}()
		return func() string {
			*p = old
			w.Close()
			s := <-out
			r.Close()
			return s
		}
	}
	restoreOut := read(&os.Stdout)
	restoreErr := read(&os.Stderr)
	defer func() {
		stdout, stderr = restoreOut(), restoreErr()
	}()
	f()
	return
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		environ    []string
		wantCode   int
		wantStdout []string // substrings
		wantStderr []string
	}{
		{
			name:     "version",
			args:     []string{"--version"},
			wantCode: 0,
			wantStdout: []string{
				"etcd Version: " + store.Version + "\n",
				"Git SHA: ",
				"Go Version: " + runtime.Version() + "\n",
				"Go OS/Arch: " + runtime.GOOS + "/" + runtime.GOARCH + "\n",
				"Cairn Version: " + cairnVersion + "\n",
			},
		},
		{
			name:       "help",
			args:       []string{"--help"},
			wantCode:   0,
			wantStderr: []string{"-storage-engine"},
		},
		{
			name:       "unknown flag",
			args:       []string{"--no-such-flag"},
			wantCode:   2,
			wantStderr: []string{"flag provided but not defined: -no-such-flag"},
		},
		{
			name:       "bad value",
			args:       []string{"--storage-engine=bolt"},
			wantCode:   1,
			wantStderr: []string{"cairn: --storage-engine must be"},
		},
		{
			name:       "positional argument",
			args:       []string{"start"},
			wantCode:   1,
			wantStderr: []string{"is not a valid flag"},
		},
		{
			name:       "environment shadowed by flag",
			args:       []string{"--name=a"},
			environ:    []string{"ETCD_NAME=b"},
			wantCode:   1,
			wantStderr: []string{`conflicting environment variable "ETCD_NAME" is shadowed`},
		},
		{
			name:       "bad log level",
			args:       []string{"--log-level=loud", "--storage-engine=memory", "--data-dir=" + t.TempDir()},
			wantCode:   1,
			wantStderr: []string{"--log-level"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			stdout, stderr := capture(t, func() { code = run(tt.args, tt.environ) })
			if code != tt.wantCode {
				t.Errorf("run(%q) = %d, want %d\nstdout: %s\nstderr: %s", tt.args, code, tt.wantCode, stdout, stderr)
			}
			for _, s := range tt.wantStdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("stdout does not contain %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.wantStderr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not contain %q:\n%s", s, stderr)
				}
			}
			if tt.wantStdout == nil && stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}
