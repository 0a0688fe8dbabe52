package server

import (
	"crypto/tls"
	"net/url"
	"path/filepath"

	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/tlsconfig"
)

// tlsConfigs are a member's TLS configurations, made once at start: for
// its https:// client and peer listeners, and for dialling them. Each is
// nil when its side has no certificate.
type tlsConfigs struct {
	client *tls.Config
	// clientDial is for the member's own clients of its client port (the
	// JSON gateway, the lock and election services).
	clientDial *tls.Config
	peer       *tls.Config
	peerDial   *tls.Config
}

// newTLSConfigs builds the configurations from the flags, generating the
// --auto-tls and --peer-auto-tls certificates under
// <data-dir>/fixtures/{client,peer} as etcd does. Unreadable certificates
// and contradictory settings fail here, before anything listens.
func newTLSConfigs(cfg *config.Config, lg *zap.Logger) (tlsConfigs, error) {
	var out tlsConfigs
	client, err := withAutoTLS(cfg.ClientTLS, cfg.ClientAutoTLS, cfg, "client", cfg.ListenClientURLs, lg)
	if err != nil {
		return out, err
	}
	if !client.Empty() {
		if out.client, err = client.ServerConfig(); err != nil {
			return out, err
		}
		if out.clientDial, err = client.ClientConfig(); err != nil {
			return out, err
		}
		// The member dials its own listener, whose certificate need not
		// name the address dialled (a wildcard listen address, a
		// certificate for a DNS name only, a generated one).
		out.clientDial.InsecureSkipVerify = true
	}
	peer, err := withAutoTLS(cfg.PeerTLS, cfg.PeerAutoTLS, cfg, "peer", cfg.ListenPeerURLs, lg)
	if err != nil {
		return out, err
	}
	if !peer.Empty() {
		if out.peer, err = peer.ServerConfig(); err != nil {
			return out, err
		}
		if out.peerDial, err = peer.ClientConfig(); err != nil {
			return out, err
		}
	}
	return out, nil
}

// withAutoTLS returns info with a generated certificate if auto asks for
// one and info has none of its own.
func withAutoTLS(info tlsconfig.Info, auto bool, cfg *config.Config, side string, listen []url.URL, lg *zap.Logger) (tlsconfig.Info, error) {
	if !auto {
		return info, nil
	}
	if !info.Empty() {
		lg.Warn("ignoring " + side + " auto TLS since certs given")
		return info, nil
	}
	hosts := make([]string, 0, len(listen))
	for _, u := range listen {
		hosts = append(hosts, u.Host)
	}
	return info.WithSelfCert(lg, filepath.Join(cfg.DataDir, "fixtures", side), hosts, cfg.SelfSignedCertValidity)
}

// peerCreds returns the credentials for dialling a member at peer URL u:
// TLS for https://, with the peer certificate settings when there are.
func (t tlsConfigs) peerCreds(u *url.URL) credentials.TransportCredentials {
	if u.Scheme == "https" {
		return credentials.NewTLS(t.peerDial)
	}
	return insecure.NewCredentials()
}
