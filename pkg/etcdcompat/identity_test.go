package etcdcompat

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"reflect"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/cairn-kv/cairn/internal/auth"
)

// TestCaller: who a call is made as, by its metadata and certificate, on
// the client server (with and without --client-cert-auth) and the peer
// server.
func TestCaller(t *testing.T) {
	client := identity{selfKey: "secret"}
	certAuth := identity{certAuth: true, selfKey: "secret"}
	peerSrv := identity{peer: true}
	for _, tt := range []struct {
		name        string
		who         identity
		md          []string
		cn          string
		token, user string
	}{
		{name: "token", who: certAuth, md: []string{"token", "t"}, cn: "alice", token: "t"},
		{name: "gateway bearer token", who: client, md: []string{"authorization", "Bearer t"}, token: "t"},
		{name: "certificate", who: certAuth, cn: "alice", user: "alice"},
		{name: "certificate without --client-cert-auth", who: client, cn: "alice"},
		{name: "certificate through the gateway", who: certAuth, md: []string{"grpcgateway-accept", "*/*"}, cn: "alice"},
		{name: "forwarded user from a client", who: certAuth, md: []string{"cairn-user", "root"}, cn: "alice", user: "alice"},
		{name: "forwarded user with a wrong key", who: client, md: []string{"cairn-user", "root", "cairn-self", "guess"}},
		{name: "own client for a user", who: certAuth, md: []string{"cairn-user", "bob", "cairn-self", "secret"}, cn: "member", user: "bob"},
		{name: "own client for nobody", who: certAuth, md: []string{"cairn-self", "secret"}, cn: "member"},
		{name: "peer forwarding a user", who: peerSrv, md: []string{"cairn-user", "bob"}, user: "bob"},
		{name: "peer forwarding a token", who: peerSrv, md: []string{"token", "t"}, token: "t"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(tt.md...))
			if tt.cn != "" {
				leaf := &x509.Certificate{Subject: pkix.Name{CommonName: tt.cn}}
				state := tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf}}}
				ctx = peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: state}})
			}
			ctx = tt.who.caller(ctx)
			if got := auth.TokenFrom(ctx); got != tt.token {
				t.Errorf("token %q, want %q", got, tt.token)
			}
			if got := auth.UserFrom(ctx); got != tt.user {
				t.Errorf("user %q, want %q", got, tt.user)
			}
		})
	}
}

// TestForwardIdentity: what a member sends on for its caller.
func TestForwardIdentity(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  context.Context
		want metadata.MD
	}{
		{"token", auth.WithToken(context.Background(), "t"), metadata.Pairs("token", "t")},
		{"user", auth.WithUser(context.Background(), "bob"), metadata.Pairs("cairn-user", "bob")},
		{"nobody", context.Background(), metadata.MD{}},
	} {
		md, _ := metadata.FromOutgoingContext(ForwardIdentity(tt.ctx))
		if !reflect.DeepEqual(metadata.Join(md), tt.want) {
			t.Errorf("%s: sent %v, want %v", tt.name, md, tt.want)
		}
	}
}
