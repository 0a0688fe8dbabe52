package test

// The cairn command line behaves as etcd's: the same --version output,
// flags, ETCD_* environment variables and signals.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"golang.org/x/sys/unix"
)

// runCairn runs cairn to completion with args and extra environment
// variables on top of a clean environment, and returns its output and
// exit code.
func runCairn(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(c, cairnBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit) && c.Err() == nil:
		return string(out), exit.ExitCode()
	default:
		t.Fatalf("cairn %s: %v\n%s", strings.Join(args, " "), err, out)
		return "", -1
	}
}

// syncBuffer is a bytes.Buffer safe for a process writing and a test
// reading at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// localURLs returns flags that put a member named name on free local ports,
// without --name and --data-dir, and its client endpoint.
func localURLs(t *testing.T, name string) ([]string, string) {
	client := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	return []string{
		"--listen-client-urls", "http://" + client,
		"--advertise-client-urls", "http://" + client,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
		"--initial-cluster", name + "=" + peer,
		"--http-listen-addr", fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}, client
}

func TestCLIVersion(t *testing.T) {
	out, code := runCairn(t, nil, "--version")
	if code != 0 {
		t.Fatalf("cairn --version: exit %d\n%s", code, out)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "etcd Version: 3.7.3" {
		t.Errorf("cairn --version first line %q, want %q\n%s", first, "etcd Version: 3.7.3", out)
	}
	// etcd prints these lines next, in this order.
	for i, prefix := range []string{"Git SHA: ", "Go Version: ", "Go OS/Arch: "} {
		lines := strings.Split(out, "\n")
		if len(lines) < i+2 || !strings.HasPrefix(lines[i+1], prefix) {
			t.Errorf("cairn --version line %d does not start with %q:\n%s", i+2, prefix, out)
		}
	}
}

func TestCLIFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    []string
		args   []string
		exit   int // 0: any non-zero code
		output []string
	}{
		{
			name: "unknown flag exits 2 as etcd does",
			args: []string{"--no-such-flag"},
			exit: 2, output: []string{"no-such-flag"},
		},
		{
			name:   "a stray argument is not a valid flag",
			args:   []string{"stray"},
			output: []string{"stray", "is not a valid flag"},
		},
		{
			name: "an environment variable and its flag together are refused",
			env:  []string{"ETCD_NAME=from-env"},
			args: []string{"--name", "default"},
			output: []string{"conflicting environment variable", "ETCD_NAME",
				"shadowed by corresponding command-line flag (either unset environment variable or disable flag)"},
		},
		{
			name:   "an unknown storage engine is refused",
			args:   []string{"--storage-engine", "bbolt"},
			output: []string{"storage-engine"},
		},
		{
			name:   "an environment variable with a bad value is refused",
			env:    []string{"ETCD_SNAPSHOT_COUNT=lots"},
			output: []string{"ETCD_SNAPSHOT_COUNT"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Were the configuration accepted, the member would serve on
			// free ports until runCairn's timeout rather than collide.
			urls, _ := localURLs(t, "default")
			args := append(append(append([]string{}, tc.args...), "--data-dir", t.TempDir()), urls...)
			out, code := runCairn(t, tc.env, args...)
			switch {
			case code == 0:
				t.Errorf("cairn %s: exit 0, want an error", strings.Join(args, " "))
			case tc.exit != 0 && code != tc.exit:
				t.Errorf("cairn %s: exit %d, want %d", strings.Join(args, " "), code, tc.exit)
			}
			for _, s := range tc.output {
				if !strings.Contains(out, s) {
					t.Errorf("cairn %s: output lacks %q:\n%s", strings.Join(args, " "), s, out)
				}
			}
			if strings.Contains(out, "ready to serve client requests") {
				t.Errorf("cairn served despite the bad configuration:\n%s", out)
			}
		})
	}
}

func TestCLIEnvironmentConfiguresMember(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dataDir := t.TempDir()
		flags, client := localURLs(t, "from-env")
		cmd := exec.Command(cairnBin, append(flags, "--storage-engine", engine)...)
		cmd.Env = append(cleanEnv(), "ETCD_NAME=from-env", "ETCD_DATA_DIR="+dataDir)
		// Run elsewhere than dataDir, where the default from-env.etcd would
		// appear if ETCD_DATA_DIR were ignored.
		cmd.Dir = t.TempDir()
		var out syncBuffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		}()
		deadline := time.After(60 * time.Second)
		for !strings.Contains(out.String(), "ready to serve client requests") {
			select {
			case <-exited:
				t.Fatalf("cairn exited before becoming ready:\n%s", out.String())
			case <-deadline:
				t.Fatalf("cairn not ready after 60s:\n%s", out.String())
			case <-time.After(50 * time.Millisecond):
			}
		}
		waitEndpointServing(t, client, out.String)
		ctlOut, _, code := etcdctlAt(client, "", "member", "list")
		if code != 0 || !strings.Contains(ctlOut, ", started, from-env, ") {
			t.Errorf("member list (exit %d) does not show the member named by ETCD_NAME:\n%s", code, ctlOut)
		}
		if _, _, code := etcdctlAt(client, "", "put", "k", "v"); code != 0 {
			t.Errorf("put failed with exit %d", code)
		}
		entries, err := os.ReadDir(dataDir)
		if err != nil || len(entries) == 0 {
			t.Errorf("ETCD_DATA_DIR %s holds nothing (%v): the member wrote its data elsewhere", dataDir, err)
		}
		if _, err := os.Stat(filepath.Join(cmd.Dir, "from-env.etcd")); err == nil {
			t.Errorf("the member created the default data dir from-env.etcd in its working directory")
		}
	})
}

func TestCLISignals(t *testing.T) {
	for _, sig := range []struct {
		name string
		syscall.Signal
	}{{"SIGTERM", syscall.SIGTERM}, {"SIGINT", syscall.SIGINT}} {
		t.Run(sig.name, func(t *testing.T) {
			forEachEngine(t, func(t *testing.T, engine string) {
				m := startServingMember(t, engine)
				if out, code := m.etcdctlStdin("", "put", "k", "v"); code != 0 {
					t.Fatalf("put: exit %d\n%s", code, out)
				}
				cmd := m.cmd
				if err := cmd.Process.Signal(sig.Signal); err != nil {
					t.Fatal(err)
				}
				select {
				case <-m.exited:
				case <-time.After(20 * time.Second):
					t.Fatalf("cairn still running 20s after %s:\n%s", sig.name, m.logs())
				}
				m.cmd = nil
				if code := cmd.ProcessState.ExitCode(); code != 0 {
					t.Errorf("cairn exited %d after %s, want 0:\n%s", code, sig.name, m.logs())
				}
				if !strings.Contains(m.logs(), "ready to serve client requests") {
					t.Errorf("log lacks etcd's %q:\n%s", "ready to serve client requests", m.logs())
				}
				// A clean stop keeps the data.
				m.startServing(t)
				out, _, code := etcdctlAt(m.clientEP, "", "get", "k", "--print-value-only")
				if code != 0 || strings.TrimSpace(out) != "v" {
					t.Errorf("after restart, get k = %q, exit %d; want v", out, code)
				}
			})
		})
	}
}

// reusePortBinds reports whether a listener with SO_REUSEPORT can bind
// addr, which some listener holds: only if that one set it too.
func reusePortBinds(t *testing.T, addr string) bool {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var opErr error
		if err := c.Control(func(fd uintptr) {
			opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return opErr
	}}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// TestSocketReusePortFlag: with --socket-reuse-port, as with etcd's, another
// socket that sets SO_REUSEPORT can bind the client and peer ports the
// member listens on; without it, it cannot.
func TestSocketReusePortFlag(t *testing.T) {
	for _, reuse := range []bool{false, true} {
		cli := startEtcd(t, func(c *embed.Config) { c.SocketOpts.ReusePort = reuse })
		if got := reusePortBinds(t, strings.TrimPrefix(etcdEndpoint(cli), "http://")); got != reuse {
			t.Fatalf("etcd with reuse-port %v: a second SO_REUSEPORT socket binds its client port: %v", reuse, got)
		}
		forEachEngine(t, func(t *testing.T, engine string) {
			var args []string
			if reuse {
				args = []string{"--socket-reuse-port", "--socket-reuse-address"}
			}
			m := startCluster(t, engine, 1, args...).members[0]
			for _, ep := range []string{m.clientEP, strings.TrimPrefix(m.peerURL, "http://")} {
				if got := reusePortBinds(t, ep); got != reuse {
					t.Errorf("--socket-reuse-port %v: a second SO_REUSEPORT socket binds %s: %v", reuse, ep, got)
				}
			}
			if reuse && !m.logContains(`"msg":"configuring socket options","reuse-address":true,"reuse-port":true`) {
				t.Errorf("no socket options logged:\n%s", m.logs())
			}
		})
	}
}
