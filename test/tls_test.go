package test

// TLS with etcd's flags: clients (gRPC, the HTTP endpoints and the REST
// API on TLS, client certificates required, certificates rotated on disk),
// --auto-tls, and a cluster whose members talk over TLS and refuse peers
// they do not trust. Certificates come from a CA made by each test.

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// testCA is a certificate authority made for one test, its certificate
// written to file.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
}

// leaf is a certificate issued by a testCA, written to cert and key.
type leaf struct {
	cert, key string
	serial    *big.Int
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{cert: cert, key: key, file: filepath.Join(dir, name+".pem")}
	writePEM(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a certificate for Common Name cn, valid for 127.0.0.1 and
// localhost as server and client, to dir/name.pem and dir/name-key.pem
// (replacing what is there).
func (ca *testCA) issue(t *testing.T, dir, name, cn string) leaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := leaf{cert: filepath.Join(dir, name+".pem"), key: filepath.Join(dir, name+"-key.pem"), serial: serial}
	writePEM(t, l.key, "PRIVATE KEY", keyDER)
	writePEM(t, l.cert, "CERTIFICATE", der)
	return l
}

// writePEM replaces file at once, so that a handshake reading it never
// sees half of it.
func writePEM(t *testing.T, file, typ string, der []byte) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// config returns a client configuration trusting ca and presenting l,
// or no certificate when l is nil.
func (ca *testCA) config(t *testing.T, l *leaf) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	cfg := &tls.Config{RootCAs: pool}
	if l != nil {
		pair, err := tls.LoadX509KeyPair(l.cert, l.key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// startTLSMember starts a single member whose client URLs are https://.
func startTLSMember(t *testing.T, engine string, extra ...string) *member {
	t.Helper()
	m := &member{t: t, engine: engine, dataDir: t.TempDir(), args: extra, clientScheme: "https"}
	m.start()
	t.Cleanup(m.stop)
	return m
}

// tlsClient returns an etcd client of endpoint over TLS with cfg.
func tlsClient(t *testing.T, endpoint string, cfg *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint}, TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// refused checks that a Get through a client made with each of cfgs (nil:
// plain text) fails. The clients try at once, each for a second.
func refused(t *testing.T, endpoint string, cfgs ...*tls.Config) {
	t.Helper()
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		wg.Go(func() {
			cli, err := clientv3.New(clientv3.Config{
				Endpoints: []string{endpoint}, TLS: cfg, DialTimeout: time.Second, Logger: zap.NewNop(),
			})
			if err != nil {
				return
			}
			defer cli.Close()
			c, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			if _, err := cli.Get(c, "k"); err == nil {
				t.Errorf("client %d: Get succeeded, want the connection refused", i)
			}
		})
	}
	wg.Wait()
}

// httpsGet GETs url with cfg, over HTTP/2 if h2, and returns the status
// and body.
func httpsGet(t *testing.T, url string, cfg *tls.Config, h2 bool) (int, string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: cfg.Clone(), ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if h2 && resp.ProtoMajor != 2 {
		t.Errorf("GET %s: protocol %s, want HTTP/2", url, resp.Proto)
	}
	return resp.StatusCode, string(b), err
}

// TestTLSClient: a member with --cert-file, --key-file, --trusted-ca-file
// and --client-cert-auth serves gRPC, the HTTP endpoints and the gateway
// on its https:// client URL, and the REST API, to clients with a trusted
// certificate only; plain text and untrusted clients are refused without
// harm; a certificate replaced on disk is served at the next handshake.
func TestTLSClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		ca := newTestCA(t, dir, "ca")
		srv := ca.issue(t, dir, "server", "cairn-server")
		alice := ca.issue(t, dir, "client", "alice")
		other := newTestCA(t, dir, "other-ca")
		mallory := other.issue(t, dir, "stranger", "mallory")
		m := startTLSMember(t, engine, "--cert-file", srv.cert, "--key-file", srv.key,
			"--trusted-ca-file", ca.file, "--client-cert-auth")
		trusted := ca.config(t, &alice)
		cli := tlsClient(t, m.clientEP, trusted)

		t.Run("grpc", func(t *testing.T) {
			if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
				t.Fatal(err)
			}
			resp, err := cli.Get(ctx(t), "k")
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
				t.Fatalf("Get = %v, %v", resp, err)
			}
			// The lock service answers through the member's own client of
			// its client port, over TLS too.
			locks := v3lockpb.NewLockClient(cli.ActiveConnection())
			lease, err := cli.Grant(ctx(t), 30)
			if err != nil {
				t.Fatal(err)
			}
			l, err := locks.Lock(ctx(t), &v3lockpb.LockRequest{Name: []byte("l"), Lease: int64(lease.ID)})
			if err != nil {
				t.Fatalf("Lock: %v", err)
			}
			if _, err := locks.Unlock(ctx(t), &v3lockpb.UnlockRequest{Key: l.Key}); err != nil {
				t.Fatalf("Unlock: %v", err)
			}
		})
		t.Run("refused", func(t *testing.T) {
			// Plain text, no certificate, an untrusted one, and (etcd's
			// clients verify the server) a client trusting another CA.
			refused(t, m.clientEP, nil, ca.config(t, nil), other.config(t, &mallory), other.config(t, &alice))
			resp, err := http.Get("http://" + m.clientEP + "/health")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					t.Error("plain-text GET /health on the TLS port succeeded")
				}
			}
			if _, _, err := httpsGet(t, "https://"+m.clientEP+"/health", ca.config(t, nil), false); err == nil {
				t.Error("GET /health without a client certificate succeeded")
			}
		})
		t.Run("http", func(t *testing.T) {
			for _, h2 := range []bool{false, true} {
				for _, path := range []string{"/health", "/version", "/metrics"} {
					code, body, err := httpsGet(t, "https://"+m.clientEP+path, trusted, h2)
					if err != nil || code != http.StatusOK {
						t.Errorf("GET %s (HTTP/2 %v) = %d %.80q, %v; want 200", path, h2, code, body, err)
					}
				}
			}
			// The JSON gateway dials the gRPC server over TLS.
			tr := &http.Transport{TLSClientConfig: trusted}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Post("https://"+m.clientEP+"/v3/kv/range", "application/json",
				strings.NewReader(`{"key":"aw=="}`)) // "k"
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"value":"dg=="`) {
				t.Errorf("gateway range = %d %s, want k=v", resp.StatusCode, b)
			}
		})
		t.Run("etcdctl", func(t *testing.T) {
			out, errOut, exit := etcdctlAt("https://"+m.clientEP, "", "--cacert", ca.file, "--cert", alice.cert, "--key", alice.key, "get", "k")
			if exit != 0 || out != "k\nv\n" {
				t.Errorf("etcdctl get = exit %d, %q %s", exit, out, errOut)
			}
			_, _, exit = etcdctlAt("https://"+m.clientEP, "", "--cacert", ca.file, "--dial-timeout", "1s", "--command-timeout", "1s", "get", "k")
			if exit == 0 {
				t.Error("etcdctl get without a client certificate succeeded")
			}
		})
		t.Run("rest", func(t *testing.T) {
			url := "https://" + strings.TrimPrefix(m.httpURL, "http://") + "/v1/kv/k"
			code, body, err := httpsGet(t, url, trusted, false)
			if err != nil || code != http.StatusOK || !strings.Contains(body, `"v"`) {
				t.Errorf("REST GET = %d %s, %v; want 200 with v", code, body, err)
			}
			if _, _, err := httpsGet(t, url, ca.config(t, nil), false); err == nil {
				t.Error("REST GET without a client certificate succeeded")
			}
		})
		t.Run("reload", func(t *testing.T) {
			renewed := ca.issue(t, dir, "server", "cairn-server")
			conn, err := tls.Dial("tcp", m.clientEP, trusted)
			if err != nil {
				t.Fatal(err)
			}
			got := conn.ConnectionState().PeerCertificates[0].SerialNumber
			conn.Close()
			if got.Cmp(renewed.serial) != 0 {
				t.Errorf("served certificate serial %x after the files were replaced, want the new %x (old %x)", got, renewed.serial, srv.serial)
			}
			// New clients still work with the new certificate.
			if _, err := tlsClient(t, m.clientEP, trusted).Get(ctx(t), "k"); err != nil {
				t.Errorf("Get after the certificate was replaced: %v", err)
			}
		})
		// Nothing refused above harmed the member.
		if _, err := cli.Get(ctx(t), "k"); err != nil {
			t.Errorf("Get at the end: %v", err)
		}
	})
}

// TestTLSAutoTLS: --auto-tls serves a generated certificate, kept under
// <data-dir>/fixtures/client.
func TestTLSAutoTLS(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startTLSMember(t, engine, "--auto-tls", "--self-signed-cert-validity", "2")
		cfg := &tls.Config{InsecureSkipVerify: true}
		cli := tlsClient(t, m.clientEP, cfg)
		if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
		if code, _, err := httpsGet(t, "https://"+m.clientEP+"/health", cfg, false); err != nil || code != http.StatusOK {
			t.Errorf("GET /health = %d, %v", code, err)
		}
		conn, err := tls.Dial("tcp", m.clientEP, cfg)
		if err != nil {
			t.Fatal(err)
		}
		cert := conn.ConnectionState().PeerCertificates[0]
		conn.Close()
		if years := cert.NotAfter.Sub(cert.NotBefore).Hours() / 24 / 365; years < 1.9 || years > 2.1 {
			t.Errorf("generated certificate valid %.1f years, want 2", years)
		}
		if _, err := os.Stat(filepath.Join(m.dataDir, "fixtures", "client", "cert.pem")); err != nil {
			t.Errorf("generated certificate not kept: %v", err)
		}
		refused(t, m.clientEP, nil)
	})
}

// TestTLSPeers: three members whose peer URLs are https://, each with its
// own certificate and requiring its peers' (--peer-client-cert-auth,
// --peer-cert-allowed-cn), replicate writes and forward lease keep-alives
// to their leader; a peer with an untrusted certificate, one whose Common
// Name is not allowed, and a plain-text one are refused.
func TestTLSPeers(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		dir := t.TempDir()
		ca := newTestCA(t, dir, "ca")
		// Each member has its own certificate.
		c := startClusterOpts(t, engine, 3, clusterOpts{
			peerScheme: "https",
			memberArgs: func(name string) []string {
				cert := ca.issue(t, dir, name+"-peer", "member")
				return []string{"--peer-cert-file", cert.cert, "--peer-key-file", cert.key}
			},
		}, "--peer-trusted-ca-file", ca.file, "--peer-client-cert-auth", "--peer-cert-allowed-cn", "member")

		followers := c.followers()
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{followers[0].clientEP}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
		other := followers[1].client(t)
		if resp, err := other.Get(ctx(t), "k"); err != nil || len(resp.Kvs) != 1 {
			t.Fatalf("Get on another member = %v, %v", resp, err)
		}
		lease, err := cli.Grant(ctx(t), 30)
		if err != nil {
			t.Fatal(err)
		}
		// A follower forwards keep-alives to its leader's peer URL.
		if ka, err := cli.KeepAliveOnce(ctx(t), lease.ID); err != nil || ka.TTL != 30 {
			t.Fatalf("KeepAliveOnce on a follower = %v, %v", ka, err)
		}

		peer := strings.TrimPrefix(c.members[0].peerURL, "https://")
		memberList := func(creds credentials.TransportCredentials) error {
			conn, err := grpc.NewClient(peer, grpc.WithTransportCredentials(creds))
			if err != nil {
				return err
			}
			defer conn.Close()
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			_, err = pb.NewClusterClient(conn).MemberList(c, &pb.MemberListRequest{})
			return err
		}
		member := ca.issue(t, dir, "visitor", "member")
		if err := memberList(credentials.NewTLS(ca.config(t, &member))); err != nil {
			t.Fatalf("MemberList on the peer URL with a member's certificate: %v", err)
		}
		intruder := ca.issue(t, dir, "intruder", "intruder")
		stranger := newTestCA(t, dir, "other-ca").issue(t, dir, "stranger", "member")
		for name, creds := range map[string]credentials.TransportCredentials{
			"a Common Name not allowed": credentials.NewTLS(ca.config(t, &intruder)),
			"an untrusted certificate":  credentials.NewTLS(ca.config(t, &stranger)),
			"no certificate":            credentials.NewTLS(ca.config(t, nil)),
			"plain text":                insecure.NewCredentials(),
		} {
			if err := memberList(creds); err == nil {
				t.Errorf("MemberList on the peer URL with %s succeeded", name)
			}
		}
		// The cluster is unharmed.
		if _, err := cli.Put(ctx(t), "k", "v2"); err != nil {
			t.Fatalf("Put at the end: %v", err)
		}
	})
}

// TestTLSPeerAutoTLS: members with https peer URLs and --peer-auto-tls
// (self-signed peer certificates, as etcd's) replicate, and a learner
// added later joins over https, catches up and is promoted.
func TestTLSPeerAutoTLS(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		c := startClusterOpts(t, engine, 3, clusterOpts{peerScheme: "https"}, "--peer-auto-tls")
		cli := clientOf(t, c.endpoints())
		if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
			t.Fatal(err)
		}
		for _, m := range c.members {
			if r, err := m.client(t).Get(ctx(t), "k"); err != nil || len(r.Kvs) != 1 {
				t.Fatalf("get on %s: %v, %v", m.name, r, err)
			}
		}

		n := c.newJoiner("joiner")
		var added *clientv3.MemberAddResponse
		if err := retryUnhealthy(func() (err error) {
			added, err = cli.MemberAddAsLearner(ctx(t), []string{n.peerURL})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.stop)
		if err := n.launch(); err != nil {
			t.Fatal(err)
		}
		if !waitFor(10*time.Second, func() bool {
			r, err := n.client(t).Get(ctx(t), "k", clientv3.WithSerializable())
			return err == nil && len(r.Kvs) == 1
		}) {
			t.Fatal("the member that joined over https never served the key")
		}
		if !waitFor(10*time.Second, func() bool {
			_, err := cli.MemberPromote(ctx(t), added.Member.ID)
			return err == nil
		}) {
			t.Fatal("the learner that joined over https was never promoted")
		}
	})
}

// TestTLSGatewayCommonName: with --client-cert-auth, the JSON gateway
// serves /v3beta/ paths as /v3/ ones, and once auth is enabled refuses a
// request that presents a certificate with a common name (its calls could
// not be made as that user) while the gRPC API keeps taking the name as
// the user; compared with an etcd started with the same certificates.
func TestTLSGatewayCommonName(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	srv := ca.issue(t, dir, "server", "cairn-server")
	root := ca.issue(t, dir, "root", "root")
	cfg := ca.config(t, &root)
	etcdEP := etcdEndpoint(startEtcd(t, func(c *embed.Config) {
		c.ListenClientUrls[0].Scheme, c.AdvertiseClientUrls[0].Scheme = "https", "https"
		c.ClientTLSInfo = transport.TLSInfo{CertFile: srv.cert, KeyFile: srv.key, TrustedCAFile: ca.file, ClientCertAuth: true}
	}))
	want := gatewayCommonNameSteps(t, etcdEP, cfg)
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startTLSMember(t, engine, "--cert-file", srv.cert, "--key-file", srv.key,
			"--trusted-ca-file", ca.file, "--client-cert-auth")
		got := gatewayCommonNameSteps(t, m.clientEP, cfg)
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("step %d:\n cairn: %s\n  etcd: %s", i, got[i], want[i])
			}
		}
	})
}

// gatewayCommonNameSteps puts k=v as the certificate's user, ranges k
// through /v3/ and /v3beta/, enables auth with that user as root, ranges
// again through both, and through gRPC and /health, and returns what each
// step saw (status and body; the header's IDs and term left out).
func gatewayCommonNameSteps(t *testing.T, ep string, cfg *tls.Config) []string {
	t.Helper()
	cli := tlsClient(t, ep, cfg)
	tr := &http.Transport{TLSClientConfig: cfg}
	t.Cleanup(tr.CloseIdleConnections)
	post := func(path string) string {
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Post("https://"+ep+path,
			"application/json", strings.NewReader(`{"key":"aw=="}`)) // "k"
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// protojson's spacing depends on the binary (etcd's varies from
		// build to build; Cairn compacts it), so bodies compare compacted.
		var compact bytes.Buffer
		if json.Compact(&compact, b) == nil {
			b = compact.Bytes()
		}
		body := string(b)
		if i := strings.Index(body, `"kvs"`); i >= 0 {
			body = body[i:] // past the header, whose IDs differ
		}
		return fmt.Sprintf("POST %s: %d %s", path, resp.StatusCode, body)
	}
	var out []string
	if _, err := cli.Put(ctx(t), "k", "v"); err != nil {
		t.Fatal(err)
	}
	out = append(out, post("/v3/kv/range"), post("/v3beta/kv/range"))
	for _, f := range []func() error{
		func() error { _, err := cli.UserAdd(ctx(t), "root", ""); return err },
		func() error { _, err := cli.RoleAdd(ctx(t), "root"); return err },
		func() error { _, err := cli.UserGrantRole(ctx(t), "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx(t)); return err },
	} {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
	out = append(out, post("/v3/kv/range"), post("/v3beta/kv/range"))
	keys := -1
	resp, err := cli.Get(ctx(t), "k")
	if err == nil {
		keys = len(resp.Kvs)
	}
	out = append(out, fmt.Sprintf("gRPC Get as the certificate's user: %d keys, %v", keys, err))
	code, body, err := httpsGet(t, "https://"+ep+"/health", cfg, false)
	out = append(out, fmt.Sprintf("GET /health: %d %s %v", code, body, err))
	return out
}
