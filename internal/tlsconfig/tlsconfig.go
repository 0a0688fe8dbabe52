// Package tlsconfig turns etcd's TLS flags into crypto/tls configurations:
// one Info for the client URLs (--cert-file, --trusted-ca-file, ...) and
// one for the peer URLs (--peer-cert-file, ...), each giving the listener's
// configuration (ServerConfig) and the configuration for dialling a
// listener of that side (ClientConfig).
//
// As in etcd, certificates and keys are read from disk at every handshake,
// so replacing the files rotates them without a restart; the CA bundle is
// read once, when the configuration is made, and a CRL file at every
// handshake.
package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.uber.org/zap"
)

// Info is one side's TLS settings, as etcd's flags give them.
type Info struct {
	// CertFile and KeyFile are the listener's certificate and key, PEM.
	CertFile string
	KeyFile  string
	// ClientCertFile and ClientKeyFile are the certificate and key this
	// member presents when it dials a listener of this side; CertFile and
	// KeyFile when empty.
	ClientCertFile string
	ClientKeyFile  string
	// TrustedCAFile is the CA bundle that certificates of the other end
	// must chain to. On a listener, giving it requires client
	// certificates, as ClientCertAuth does (etcd's rule).
	TrustedCAFile  string
	ClientCertAuth bool
	// CRLFile is a certificate revocation list (DER or PEM); a client
	// certificate whose serial number it lists is refused.
	CRLFile string
	// AllowedCNs and AllowedHostnames, at most one of them set, restrict
	// the certificates of the other end to these Common Names, or to those
	// valid for one of these hostnames.
	AllowedCNs       []string
	AllowedHostnames []string
	// VerifyClientSAN has a listener check that a client certificate with
	// SANs names the address the connection comes from (etcd does so on
	// peer listeners unless --peer-skip-client-san-verification).
	VerifyClientSAN bool
	// CipherSuites, MinVersion and MaxVersion bound the handshake; zero
	// values leave Go's defaults, except MinVersion, which is at least
	// TLS 1.2.
	CipherSuites []uint16
	MinVersion   uint16
	MaxVersion   uint16
	// SelfSigned marks a generated certificate (--auto-tls): a dialler of
	// this side does not verify the certificate of the other end.
	SelfSigned bool
}

// Empty reports whether no certificate is configured: the side serves
// plain text.
func (i Info) Empty() bool { return i.CertFile == "" && i.KeyFile == "" }

// ServerConfig returns the configuration of a listener. It fails if the
// certificate cannot be loaded now or the settings contradict each other.
func (i Info) ServerConfig() (*tls.Config, error) {
	if i.CertFile == "" || i.KeyFile == "" {
		return nil, fmt.Errorf("KeyFile and CertFile must both be present[key: %v, cert: %v]", i.KeyFile, i.CertFile)
	}
	cfg, err := i.base(i.CertFile, i.KeyFile)
	if err != nil {
		return nil, err
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return loadPair(i.CertFile, i.KeyFile)
	}
	if i.TrustedCAFile != "" || i.ClientCertAuth {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if i.TrustedCAFile != "" {
		if cfg.ClientCAs, err = loadPool(i.TrustedCAFile); err != nil {
			return nil, err
		}
	}
	allowed := cfg.VerifyConnection
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if allowed != nil {
			if err := allowed(cs); err != nil {
				return err
			}
		}
		if i.CRLFile != "" && len(cs.PeerCertificates) > 0 {
			return checkCRL(i.CRLFile, cs.PeerCertificates)
		}
		return nil
	}
	if i.VerifyClientSAN {
		// The connection's address is known only here.
		cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c := cfg.Clone()
			c.GetConfigForClient = nil
			verify := c.VerifyConnection
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				if err := verify(cs); err != nil {
					return err
				}
				if len(cs.PeerCertificates) == 0 {
					return nil
				}
				return checkClientSAN(hello.Context(), cs.PeerCertificates[0], hello.Conn.RemoteAddr())
			}
			return c, nil
		}
	}
	// gRPC clients insist on negotiating HTTP/2.
	cfg.NextProtos = []string{"h2"}
	return cfg, nil
}

// ClientConfig returns the configuration for dialling a listener of this
// side: it presents ClientCertFile (or CertFile) when asked for a
// certificate, and verifies the listener's against TrustedCAFile (the
// system's roots when empty) unless SelfSigned.
func (i Info) ClientConfig() (*tls.Config, error) {
	certFile, keyFile := i.CertFile, i.KeyFile
	if i.ClientCertFile != "" || i.ClientKeyFile != "" {
		certFile, keyFile = i.ClientCertFile, i.ClientKeyFile
	}
	cfg, err := i.base(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	if certFile != "" {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return loadPair(certFile, keyFile)
		}
	}
	if i.TrustedCAFile != "" {
		if cfg.RootCAs, err = loadPool(i.TrustedCAFile); err != nil {
			return nil, err
		}
	}
	cfg.InsecureSkipVerify = i.SelfSigned
	return cfg, nil
}

// base is what both ends share: versions, cipher suites and the allowed
// names of the other end's certificate. certFile and keyFile, if given,
// must load now, so that a bad file stops the start rather than every
// handshake.
func (i Info) base(certFile, keyFile string) (*tls.Config, error) {
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("a TLS certificate and its key must be given together: cert %q, key %q", certFile, keyFile)
	}
	if certFile != "" {
		if _, err := loadPair(certFile, keyFile); err != nil {
			return nil, err
		}
	}
	if len(i.AllowedCNs) > 0 && len(i.AllowedHostnames) > 0 {
		return nil, fmt.Errorf("AllowedCNs and AllowedHostnames are mutually exclusive (cns=%q, hostnames=%q)", i.AllowedCNs, i.AllowedHostnames)
	}
	cfg := &tls.Config{
		MinVersion:   max(i.MinVersion, tls.VersionTLS12),
		MaxVersion:   i.MaxVersion,
		CipherSuites: i.CipherSuites,
	}
	var allowed func(*x509.Certificate) bool
	switch {
	case len(i.AllowedCNs) > 0:
		allowed = func(c *x509.Certificate) bool { return slices.Contains(i.AllowedCNs, c.Subject.CommonName) }
	case len(i.AllowedHostnames) > 0:
		allowed = func(c *x509.Certificate) bool {
			return slices.ContainsFunc(i.AllowedHostnames, func(h string) bool { return c.VerifyHostname(h) == nil })
		}
	}
	if allowed != nil {
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			for _, chain := range cs.VerifiedChains {
				if len(chain) > 0 && allowed(chain[0]) {
					return nil
				}
			}
			return errors.New("client certificate authentication failed")
		}
	}
	return cfg, nil
}

func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	return pool, nil
}

// checkCRL refuses certs if the revocation list in file names one of them.
// The file is read at each handshake, so an updated list applies at once.
func checkCRL(file string, certs []*x509.Certificate) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if block, _ := pem.Decode(b); block != nil {
		b = block.Bytes
	}
	crl, err := x509.ParseRevocationList(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	for _, c := range certs {
		for _, r := range crl.RevokedCertificateEntries {
			if r.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return fmt.Errorf("certificate serial %x revoked", c.SerialNumber)
			}
		}
	}
	return nil
}

// checkClientSAN accepts a certificate without SANs, or one whose SANs
// name the connection's address: an IP SAN equal to it, or a DNS name
// that resolves to it or that it resolves back to.
func checkClientSAN(ctx context.Context, cert *x509.Certificate, remote net.Addr) error {
	if len(cert.IPAddresses) == 0 && len(cert.DNSNames) == 0 {
		return nil
	}
	host, _, err := net.SplitHostPort(remote.String())
	if err != nil {
		return err
	}
	if cert.VerifyHostname(host) == nil {
		return nil
	}
	ip := net.ParseIP(host)
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, name := range cert.DNSNames {
		if strings.HasPrefix(name, "*.") {
			continue
		}
		addrs, _ := net.DefaultResolver.LookupHost(ctx, name)
		if slices.ContainsFunc(addrs, func(a string) bool { return net.ParseIP(a).Equal(ip) }) {
			return nil
		}
	}
	names, _ := net.DefaultResolver.LookupAddr(ctx, host)
	for _, n := range names {
		if cert.VerifyHostname(strings.TrimSuffix(n, ".")) == nil {
			return nil
		}
	}
	return fmt.Errorf("tls: client certificate's SANs (IPs %v, DNS names %q) do not name %s", cert.IPAddresses, cert.DNSNames, host)
}

// WithSelfCert returns i serving a self-signed certificate for hosts
// (host:port), valid for years, as --auto-tls and --peer-auto-tls ask: the
// one in dir if there is one (so a restart keeps it), else a new one
// written there.
func (i Info) WithSelfCert(lg *zap.Logger, dir string, hosts []string, years uint) (Info, error) {
	self, err := transport.SelfCert(lg, dir, hosts, years)
	if err != nil {
		return i, err
	}
	i.CertFile, i.KeyFile = self.CertFile, self.KeyFile
	i.SelfSigned = true
	return i, nil
}
