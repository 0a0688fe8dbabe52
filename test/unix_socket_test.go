package test

import (
	"crypto/tls"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// unixClient is a clientv3 client of the socket at the absolute path;
// tlsConf is nil for unix://, set for unixs://.
func unixClient(t *testing.T, scheme, path string, tlsConf *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{scheme + "://" + path}, // path starts with "/"
		TLS:         tlsConf,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestUnixSocketClients serves clients on unix:// and unixs:// listen
// URLs as etcd does: a key written over a socket is read over TCP, and
// the lock service, which runs through the member's own client, works
// over a socket alone, in plain text and over TLS (--auto-tls).
func TestUnixSocketClients(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		// As etcd's, a unix URL is host:port-shaped: the socket is the file
		// of that name in the member's working directory.
		name := fmt.Sprintf("localhost:%d", freePort(t))
		m := &member{t: t, engine: engine, dataDir: t.TempDir(), workDir: t.TempDir()}
		sock := filepath.Join(m.workDir, name)
		// The harness picks the member's TCP port; this list replaces its.
		tcpEP := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		m.args = []string{"--listen-client-urls", "http://" + tcpEP + ",unix://" + name}
		m.start()
		t.Cleanup(m.stop)
		uc := unixClient(t, "unix", sock, nil)
		if _, err := uc.Put(ctx(t), "over", "socket"); err != nil {
			t.Fatalf("put over the socket: %v", err)
		}
		tcp, err := clientv3.New(clientv3.Config{Endpoints: []string{tcpEP}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer tcp.Close()
		r, err := tcp.Get(ctx(t), "over")
		if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "socket" {
			t.Fatalf("get over TCP of a key put over the socket: %v %v", r, err)
		}

		for _, scheme := range []string{"unix", "unixs"} {
			name := fmt.Sprintf("localhost:%d", freePort(t))
			only := &member{t: t, engine: engine, dataDir: t.TempDir(), workDir: t.TempDir()}
			sock := filepath.Join(only.workDir, name)
			only.args = []string{"--listen-client-urls", scheme + "://" + name, "--advertise-client-urls", scheme + "://" + name}
			var tlsConf *tls.Config
			if scheme == "unixs" {
				only.args = append(only.args, "--auto-tls")
				tlsConf = &tls.Config{InsecureSkipVerify: true}
			}
			only.start()
			t.Cleanup(only.stop)
			cli := unixClient(t, scheme, sock, tlsConf)
			s, err := concurrency.NewSession(cli)
			if err != nil {
				t.Fatalf("%s: session: %v", scheme, err)
			}
			mu := concurrency.NewMutex(s, "lk/")
			if err := mu.Lock(ctx(t)); err != nil {
				t.Fatalf("%s: lock: %v", scheme, err)
			}
			if err := mu.Unlock(ctx(t)); err != nil {
				t.Fatalf("%s: unlock: %v", scheme, err)
			}
			s.Close()
		}
	})
}
