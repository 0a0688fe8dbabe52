package tlsconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testPKI is a CA made for one test, issuing certificates into dir.
type testPKI struct {
	t    *testing.T
	dir  string
	ca   *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // the CA certificate
	next int64  // serial of the next certificate
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{t: t, dir: t.TempDir(), next: 2}
	p.ca, p.key = p.create(&x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}, "ca")
	p.file = filepath.Join(p.dir, "ca.pem")
	return p
}

// create signs tmpl (with the CA, or itself for the CA) and writes
// name.pem and name-key.pem.
func (p *testPKI) create(tmpl *x509.Certificate, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	p.t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		p.t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	parent, signer := tmpl, key
	if p.ca != nil {
		parent, signer = p.ca, p.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		p.t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(name+".pem", "CERTIFICATE", der)
	p.write(name+"-key.pem", "PRIVATE KEY", keyDER)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		p.t.Fatal(err)
	}
	return cert, key
}

func (p *testPKI) write(name, typ string, der []byte) {
	p.t.Helper()
	if err := os.WriteFile(filepath.Join(p.dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// issue writes name.pem for Common Name cn with IP SANs ips, usable by
// servers and clients, and returns its serial number.
func (p *testPKI) issue(name, cn string, ips ...string) *big.Int {
	p.t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.next), Subject: pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	p.next++
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	p.create(tmpl, name)
	return tmpl.SerialNumber
}

// info is a side whose certificate is name's, trusting the CA.
func (p *testPKI) info(name string) Info {
	return Info{
		CertFile:      filepath.Join(p.dir, name+".pem"),
		KeyFile:       filepath.Join(p.dir, name+"-key.pem"),
		TrustedCAFile: p.file,
	}
}

// handshake runs one TLS handshake over loopback TCP between a listener
// configured by server and a dialler configured by client, and returns
// the listener's error.
func handshake(t *testing.T, server, client Info) error {
	t.Helper()
	scfg, err := server.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := client.ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- tls.Server(c, scfg).Handshake()
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), ccfg)
	if err == nil {
		c.Close()
	}
	return <-done
}

// TestServerChecks: a listener refuses a client certificate that its CRL
// revokes, whose Common Name or hostname is not allowed, or (with
// VerifyClientSAN) whose SANs do not name the connection's address.
func TestServerChecks(t *testing.T) {
	p := newPKI(t)
	p.issue("server", "server", "127.0.0.1")
	p.issue("member", "member", "127.0.0.1")
	revoked := p.issue("revoked", "member", "127.0.0.1")
	p.issue("elsewhere", "member", "10.0.0.1")
	p.issue("nosan", "member")
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revoked, RevocationTime: time.Now()}},
	}, p.ca, p.key)
	if err != nil {
		t.Fatal(err)
	}
	p.write("crl.pem", "X509 CRL", crl)

	with := func(f func(*Info)) Info {
		i := p.info("server")
		i.ClientCertAuth = true
		f(&i)
		return i
	}
	tests := []struct {
		name    string
		server  Info
		client  string
		wantErr string // "" for success
	}{
		{"trusted", with(func(*Info) {}), "member", ""},
		{"CRL, not revoked", with(func(i *Info) { i.CRLFile = filepath.Join(p.dir, "crl.pem") }), "member", ""},
		{"CRL, revoked", with(func(i *Info) { i.CRLFile = filepath.Join(p.dir, "crl.pem") }), "revoked", "revoked"},
		{"allowed CN", with(func(i *Info) { i.AllowedCNs = []string{"other", "member"} }), "member", ""},
		{"CN not allowed", with(func(i *Info) { i.AllowedCNs = []string{"other"} }), "member", "client certificate authentication failed"},
		{"allowed hostname", with(func(i *Info) { i.AllowedHostnames = []string{"127.0.0.1"} }), "member", ""},
		{"hostname not allowed", with(func(i *Info) { i.AllowedHostnames = []string{"10.0.0.1"} }), "member", "client certificate authentication failed"},
		{"SAN names the address", with(func(i *Info) { i.VerifyClientSAN = true }), "member", ""},
		{"SAN names another address", with(func(i *Info) { i.VerifyClientSAN = true }), "elsewhere", "do not name 127.0.0.1"},
		{"no SAN to check", with(func(i *Info) { i.VerifyClientSAN = true }), "nosan", ""},
		{"SAN not checked", with(func(*Info) {}), "elsewhere", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := handshake(t, tt.server, p.info(tt.client))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("handshake: %v, want success", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("handshake: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestCertificateReload: a listener serves, and a dialler presents, what
// the files hold at each handshake.
func TestCertificateReload(t *testing.T) {
	p := newPKI(t)
	p.issue("server", "server", "127.0.0.1")
	p.issue("member", "member", "127.0.0.1")
	server := p.info("server")
	server.ClientCertAuth = true
	scfg, err := server.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	ccfg, err := p.info("member").ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	renewed := p.issue("server", "server", "127.0.0.1")
	cert, err := scfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || cert.Leaf.SerialNumber.Cmp(renewed) != 0 {
		t.Errorf("served certificate %v, %v; want serial %v", cert.Leaf.SerialNumber, err, renewed)
	}
	renewed = p.issue("member", "member", "127.0.0.1")
	cert, err = ccfg.GetClientCertificate(&tls.CertificateRequestInfo{})
	if err != nil || cert.Leaf.SerialNumber.Cmp(renewed) != 0 {
		t.Errorf("presented certificate %v, %v; want serial %v", cert.Leaf.SerialNumber, err, renewed)
	}
}

// TestConfigErrors: settings that cannot work fail when the configuration
// is made, before anything listens.
func TestConfigErrors(t *testing.T) {
	p := newPKI(t)
	p.issue("server", "server", "127.0.0.1")
	missing := p.info("server")
	missing.KeyFile = filepath.Join(p.dir, "nope.pem")
	both := p.info("server")
	both.AllowedCNs, both.AllowedHostnames = []string{"a"}, []string{"b"}
	badCA := p.info("server")
	badCA.TrustedCAFile = filepath.Join(p.dir, "server-key.pem")
	for name, i := range map[string]Info{"missing key": missing, "CNs and hostnames": both, "CA file without certificates": badCA} {
		if _, err := i.ServerConfig(); err == nil {
			t.Errorf("%s: ServerConfig succeeded", name)
		}
	}
	if _, err := (Info{KeyFile: "k.pem"}).ServerConfig(); err == nil {
		t.Error("ServerConfig without a certificate succeeded")
	}
}
