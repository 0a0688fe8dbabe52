// Package test holds Cairn's integration tests. Each test starts real
// members (the bin/cairn binary, built once by TestMain) on both storage
// engines and talks to them with the official etcd client, etcdctl and
// plain HTTP; differential tests also start an embedded etcd as the
// reference.
package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// engines are the storage engines every integration test runs on.
var engines = []string{"memory", "rocksdb"}

var (
	cairnBin    string
	etcdctlBin  string
	cairnutlBin string
	etcdutlBin  string
	// conformanceBin is test/compat's conformance checker.
	conformanceBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "cairn-test-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cairnBin = filepath.Join(dir, "cairn")
	etcdctlBin = filepath.Join(dir, "etcdctl")
	cairnutlBin = filepath.Join(dir, "cairnutl")
	etcdutlBin = filepath.Join(dir, "etcdutl")
	conformanceBin = filepath.Join(dir, "conformance")
	// With GOCOVERDIR set (make cover, make test), Cairn's own binaries are
	// built with coverage instrumentation of Cairn's packages, and every
	// process started from them (they inherit the environment) writes its
	// counters there when it exits; a member killed with SIGKILL writes
	// none.
	var cover []string
	if d := os.Getenv("GOCOVERDIR"); d != "" {
		abs, err := filepath.Abs(d)
		if err == nil {
			err = os.MkdirAll(abs, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		// Members run in other working directories.
		os.Setenv("GOCOVERDIR", abs)
		cover = []string{"-cover", "-coverpkg=github.com/cairn-kv/cairn/internal/...,github.com/cairn-kv/cairn/pkg/...,github.com/cairn-kv/cairn/cmd/..."}
	}
	for _, b := range []struct {
		out, pkg string
		cover    bool
	}{
		{cairnBin, "github.com/cairn-kv/cairn/cmd/cairn", true},
		{etcdctlBin, "go.etcd.io/etcd/etcdctl/v3", false},
		{cairnutlBin, "github.com/cairn-kv/cairn/cmd/cairnutl", true},
		{etcdutlBin, "go.etcd.io/etcd/etcdutl/v3", false},
		{conformanceBin, "github.com/cairn-kv/cairn/test/compat/conformance", false},
	} {
		args := []string{"build", "-o", b.out}
		if b.cover {
			args = append(args, cover...)
		}
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n", b.pkg, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// forEachEngine runs fn as a subtest per storage engine.
func forEachEngine(t *testing.T, fn func(t *testing.T, engine string)) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { fn(t, e) })
	}
}

// forEachEngineParallel is forEachEngine with the engines' subtests run at
// once (t.Parallel), for tests that mostly wait (on TTLs, version changes,
// a reference etcd) with members of their own: it saves make test's time
// without putting timing-sensitive tests under each other's load.
func forEachEngineParallel(t *testing.T, fn func(t *testing.T, engine string)) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) {
			t.Parallel()
			fn(t, e)
		})
	}
}

// member is a cairn process started by a test.
type member struct {
	t       *testing.T
	engine  string
	dataDir string
	args    []string
	// workDir, if set, is the process's working directory, where
	// etcd-style unix socket URLs ("unix://localhost:2379") put their file.
	workDir string

	cmd      *exec.Cmd
	exited   chan struct{}
	logMu    sync.Mutex
	log      bytes.Buffer
	clientEP string // host:port of the etcd API
	// clientScheme is the client URLs' scheme: "https" for TLS, "http"
	// when empty.
	clientScheme string
	// httpURL is http://host:port of the REST API; empty, the member is
	// started without --http-listen-addr and serves none.
	httpURL string
	// env are environment variables the process gets beyond the test's
	// own (less its ETCD_* ones).
	env []string
	// portRetries counts starts redone because a port was taken.
	portRetries int

	// Members of a cluster keep their name, ports and --initial-cluster
	// across restarts, since their peers know them by those; clusterArgs
	// are their naming flags. A lone member has none and gets new ports
	// at every start.
	name        string
	peerURL     string
	clusterArgs []string
}

// startMember starts a single-member cluster on engine with a fresh data
// directory; extra are additional command-line flags.
func startMember(t *testing.T, engine string, extra ...string) *member {
	t.Helper()
	m := &member{t: t, engine: engine, dataDir: t.TempDir(), args: extra}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// handedOut remembers every port freePort has returned in this process.
// The kernel may give a just-closed port out again, and two members of one
// cluster on the same port fail to start.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// freePort returns a loopback port that is free now and that no earlier
// call in this test process has returned.
func freePort(t *testing.T) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
}

// start launches the process, on new ports unless it is a cluster member,
// and waits for etcd's readiness log line.
func (m *member) start() {
	m.t.Helper()
	if err := m.launch(); err != nil {
		m.t.Fatal(err)
	}
}

// launch is start returning its failure instead of failing the test, so
// that several members can be started at once.
func (m *member) launch() error {
	name, peer := m.name, m.peerURL
	if m.clusterArgs == nil {
		t := m.t
		cport, pport, hport := freePort(t), freePort(t), freePort(t)
		m.clientEP = fmt.Sprintf("127.0.0.1:%d", cport)
		m.httpURL = fmt.Sprintf("http://127.0.0.1:%d", hport)
		name, peer = "m1", fmt.Sprintf("http://127.0.0.1:%d", pport)
	}
	scheme := "http"
	if m.clientScheme != "" {
		scheme = m.clientScheme
	}
	args := []string{
		"--name", name,
		"--data-dir", m.dataDir,
		"--storage-engine", m.engine,
		"--listen-client-urls", scheme + "://" + m.clientEP,
		"--advertise-client-urls", scheme + "://" + m.clientEP,
		"--listen-peer-urls", peer,
		"--initial-advertise-peer-urls", peer,
	}
	if m.httpURL != "" {
		args = append(args, "--http-listen-addr", strings.TrimPrefix(m.httpURL, "http://"))
	}
	if m.clusterArgs == nil {
		args = append(args, "--initial-cluster", "m1="+peer)
	}
	args = append(append(args, m.clusterArgs...), m.args...)
	cmd := exec.Command(cairnBin, args...)
	cmd.Env = append(cleanEnv(), m.env...)
	cmd.Dir = m.workDir
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd = cmd
	m.exited = make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			m.logMu.Lock()
			m.log.WriteString(line + "\n")
			m.logMu.Unlock()
			if strings.Contains(line, "ready to serve client requests") {
				once.Do(func() { close(ready) })
			}
		}
	}()
	exited := m.exited
	go func() {
		_ = cmd.Wait()
		pw.Close()
		close(exited)
	}()
	select {
	case <-ready:
		return nil
	case <-exited:
		// A port found free may have been taken by another process before
		// the member bound it: start again on new ports.
		if m.clusterArgs == nil && m.portRetries < 4 && strings.Contains(m.logs(), "address already in use") {
			m.portRetries++
			return m.launch()
		}
		return fmt.Errorf("cairn %s exited before becoming ready:\n%s", name, m.logs())
	case <-time.After(60 * time.Second):
		return fmt.Errorf("cairn %s not ready after 60s:\n%s", name, m.logs())
	}
}

// cleanEnv drops ETCD_* variables of the test runner's environment, which
// would otherwise configure the member.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	return env
}

func (m *member) logs() string {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return m.log.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (m *member) stop() {
	if m.cmd == nil {
		return
	}
	select {
	case <-m.exited:
	default:
		_ = m.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-m.exited:
		case <-time.After(20 * time.Second):
			_ = m.cmd.Process.Kill()
			<-m.exited
			m.t.Errorf("cairn did not stop within 20s of SIGTERM:\n%s", m.logs())
		}
	}
	m.cmd = nil
}

// kill9 kills the process without warning, as a crash would.
func (m *member) kill9() {
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

// restart starts the process again on the same data directory.
func (m *member) restart() {
	m.stop()
	m.start()
}

// client returns an etcd client for the member, closed at test end.
func (m *member) client(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{m.clientEP},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// httpDo sends an HTTP request to the REST API and returns status and body.
func (m *member) httpDo(t *testing.T, method, path string, body io.Reader) (int, []byte) {
	t.Helper()
	resp, b := httpRequest(t, nil, method, m.httpURL+path, body, nil)
	return resp.StatusCode, b
}

// httpRequest sends one request with body (nil for none) and header
// through c (http.DefaultClient when nil), bounded by ctx(t), and returns
// the answer and its body, read and closed. No answer, or a body that
// cannot be read, fails the test. The test helpers that send a request
// and wait for the whole answer all go through it.
func httpRequest(t *testing.T, c *http.Client, method, url string, body io.Reader, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx(t), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// ctx returns a context bounded by a generous timeout for one test step.
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}
