package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/store"
)

// asMain is the variable under which the test binary runs main instead of
// the tests, so that a test can start the real command as a process.
const asMain = "CAIRN_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMain) == "1" {
		main()
	}
	os.Exit(m.Run())
}

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

// freePort returns a TCP port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestEtcdE2EFlags starts the command with the flags etcd's e2e framework
// (tests/framework/e2e/cluster.go) gives a plain, one-member cluster, as it
// spells them today and as earlier releases did, and checks that it serves
// and stops cleanly: no flag stops it at parsing.
func TestEtcdE2EFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a member")
	}
	variants := []struct {
		name string
		args func(name, curl, purl, dir string) []string
	}{
		{
			// etcd 3.6 and 3.7: "--flag=value"; the initial cluster token is
			// given twice, once with the member's flags and once from the
			// config values that differ from etcd's defaults.
			name: "current",
			args: func(name, curl, purl, dir string) []string {
				return []string{
					"--name=" + name,
					"--listen-client-urls=" + curl,
					"--advertise-client-urls=" + curl,
					"--listen-peer-urls=" + purl,
					"--initial-advertise-peer-urls=" + purl,
					"--initial-cluster-token=new",
					"--data-dir=" + dir,
					"--snapshot-count=10000",
					"--initial-cluster-token=new",
					"--initial-cluster=" + name + "=" + purl,
					"--initial-cluster-state=new",
				}
			},
		},
		{
			// Earlier releases: "--flag value", a bare --strict-reconfig-check,
			// the quota and the logger flags.
			name: "earlier",
			args: func(name, curl, purl, dir string) []string {
				return []string{
					"--name", name,
					"--listen-client-urls", curl,
					"--advertise-client-urls", curl,
					"--listen-peer-urls", purl,
					"--initial-advertise-peer-urls", purl,
					"--initial-cluster-token", "new",
					"--data-dir", dir,
					"--snapshot-count", "100000",
					"--strict-reconfig-check",
					"--quota-backend-bytes", "8589934592",
					"--logger", "zap",
					"--log-level", "info",
					"--log-outputs", "stderr",
					"--initial-cluster", name + "=" + purl,
					"--initial-cluster-state", "new",
				}
			},
		},
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			name := "TestEtcdE2EFlags-test-0"
			curl := fmt.Sprintf("http://localhost:%d", freePort(t))
			purl := fmt.Sprintf("http://localhost:%d", freePort(t))
			cmd := exec.Command(exe, v.args(name, curl, purl, t.TempDir())...)
			// Cairn's own settings come from the environment, so that the
			// command line is exactly etcd's; the framework also sets
			// ETCD_UNSUPPORTED_ARCH. No ETCD_HTTP_LISTEN_ADDR: without it
			// Cairn opens no REST port, as etcd opens none.
			cmd.Env = []string{
				asMain + "=1",
				"ETCD_UNSUPPORTED_ARCH=" + runtime.GOARCH,
				"ETCD_STORAGE_ENGINE=memory",
			}
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan bool, 1)
			var log strings.Builder
			go func() {
				sc := bufio.NewScanner(stderr)
				sc.Buffer(nil, 1<<20)
				said := false
				for sc.Scan() {
					log.WriteString(sc.Text() + "\n")
					if !said && strings.Contains(sc.Text(), "ready to serve client requests") {
						said = true
						ready <- true
					}
				}
				if !said {
					ready <- false
				}
			}()
			select {
			case ok := <-ready:
				if !ok {
					err := cmd.Wait()
					t.Fatalf("exited before serving (%v); its log:\n%s", err, log.String())
				}
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
				t.Fatalf("not serving after 30s; its log:\n%s", log.String())
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			// Exit status 0, or death by the signal itself: main installs its
			// handler only once the server has started, a moment after it
			// says it is ready.
			if err := cmd.Wait(); err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatal(err)
				}
				if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
					t.Errorf("after SIGTERM: %v, want exit status 0", err)
				}
			}
			if strings.Contains(log.String(), "has no effect") {
				t.Errorf("warnings about flags without effect at the framework's values:\n%s", log.String())
			}
		})
	}
}

// TestLogOutputsAndFormat: --log-outputs and --log-format act as in etcd:
// files, stdout and stderr (default), each once, /dev/null silencing the
// rest, systemd/journal only alone; JSON or console lines.
func TestLogOutputsAndFormat(t *testing.T) {
	for _, tc := range []struct {
		outputs []string
		want    []string
		err     bool
	}{
		{[]string{"default"}, []string{"stderr"}, false},
		{[]string{"stderr", "default", "stdout"}, []string{"stderr", "stdout"}, false},
		{[]string{"/var/log/a", "/dev/null", "stderr"}, []string{"/dev/null"}, false},
		{[]string{"systemd/journal"}, []string{"stderr"}, false},
		{[]string{"systemd/journal", "default"}, nil, true},
	} {
		got, err := logPaths(tc.outputs)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("logPaths(%q) = %q, %v; want %q, error %v", tc.outputs, got, err, tc.want, tc.err)
		}
	}
	for format, want := range map[string]string{"json": `{"level":"info",`, "console": "\tinfo\t"} {
		file := filepath.Join(t.TempDir(), "log")
		lg, err := newLogger("info", format, []string{file}, rotation{})
		if err != nil {
			t.Fatal(err)
		}
		lg.Info("hello", zap.String("k", "v"))
		_ = lg.Sync()
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if line := string(b); !strings.Contains(line, want) || !strings.Contains(line, "hello") {
			t.Errorf("--log-format=%s wrote %q, want a line with %q", format, line, want)
		}
	}
}

// TestLogRotation: --enable-log-rotation rotates the one file output as
// --log-rotation-config-json says, with etcd's refusals of other outputs
// and of settings that do not parse.
func TestLogRotation(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "member.log")
	lg, err := newLogger("info", "json", []string{file, "stderr"}, rotation{true, `{"maxsize": 1, "maxbackups": 2}`})
	if err != nil {
		t.Fatal(err)
	}
	// 3 MB of lines: more than two files of 1 MB.
	line := strings.Repeat("x", 1000)
	for range 3000 {
		lg.Info(line)
	}
	_ = lg.Sync()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// lumberjack keeps the file and at most two backups (member-<time>.log),
	// removing older ones in the background.
	if len(names) < 2 || len(names) > 4 || !slices.Contains(names, "member.log") {
		t.Errorf("files after 3 MB logged with maxsize 1, maxbackups 2: %v", names)
	}
	if fi, err := os.Stat(file); err != nil || fi.Size() > 1<<20 {
		t.Errorf("the current file: %v, %v; want at most 1 MiB", fi, err)
	}
	for _, tc := range []struct {
		outputs []string
		json    string
		want    string
	}{
		{[]string{"stderr"}, `{}`, "--log-outputs requires a single file path when --log-rotate-config-json is defined"},
		{[]string{filepath.Join(dir, "a"), filepath.Join(dir, "b")}, `{}`, "--log-outputs requires a single file path when --log-rotate-config-json is defined"},
		{[]string{file}, `{"maxsize": 1`, "improperly formatted log rotation config: unexpected end of JSON input"},
		{[]string{file}, `{"maxsize": "1"}`, "invalid log rotation config: json: cannot unmarshal string into Go struct field logRotationConfig.Logger.maxsize of type int"},
	} {
		_, err := newLogger("info", "json", tc.outputs, rotation{true, tc.json})
		if err == nil || err.Error() != tc.want {
			t.Errorf("outputs %q, settings %s: %v, want %q", tc.outputs, tc.json, err, tc.want)
		}
	}
}
