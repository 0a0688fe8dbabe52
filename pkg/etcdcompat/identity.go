package etcdcompat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/lease"
)

// Who sends a call is decided here, as etcd decides it, and handed to the
// store in the call's context, which resolves it only when the request
// needs an identity: a bad token fails the requests that check
// permissions, and no others. In order:
//   - the "token" metadata clientv3 sends or, from the JSON gateway, the
//     "authorization" header, with or without "Bearer " (auth.WithToken);
//   - on the peer server, the user a member forwards a request for
//     (forwardedUserKey): members trust each other there, as etcd's peer
//     endpoints do;
//   - from the member's own client (lock and election), which proves
//     itself with selfKeyKey, the user it acts for, or nobody: never the
//     common name of the member's own certificate;
//   - with --client-cert-auth, the common name of the client's verified
//     certificate, except on calls through the JSON gateway, which carry
//     the member's own certificate (etcd tells them by their
//     "grpcgateway-accept" metadata).

// Metadata keys of the identities Cairn's members forward.
const (
	// forwardedUserKey names the user a request is forwarded for when the
	// caller has no token: a certificate's user.
	forwardedUserKey = "cairn-user"
	// selfKeyKey carries the secret of the member's own client, drawn at
	// start, so that its calls are told from a client's.
	selfKeyKey = "cairn-self"
	// gatewayKey is in the metadata of calls from the JSON gateway.
	gatewayKey = "grpcgateway-accept"
)

// identity puts the caller of every incoming call in its context.
type identity struct {
	// certAuth: --client-cert-auth is on, so a verified certificate names
	// the user of a call without a token.
	certAuth bool
	// selfKey is the secret of the member's own client; "" if none.
	selfKey string
	// peer: the peer server, which trusts forwardedUserKey.
	peer bool
}

// newSelfKey draws the secret of a member's own client.
func newSelfKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	return hex.EncodeToString(b)
}

// firstOf is the call's first metadata value of key (lower case), or "".
// It reads the metadata in place: FromIncomingContext would copy all of it
// on every call.
func firstOf(ctx context.Context, key string) string {
	if v := metadata.ValueFromIncomingContext(ctx, key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// caller returns ctx carrying the call's token or user; on the peer
// server, marked as forwarded by another member (lease.WithForwarded).
func (p identity) caller(ctx context.Context) context.Context {
	if p.peer {
		ctx = lease.WithForwarded(ctx)
	}
	token := firstOf(ctx, rpctypes.TokenFieldNameGRPC)
	if token == "" {
		token = firstOf(ctx, rpctypes.TokenFieldNameSwagger)
	}
	if token != "" {
		return auth.WithToken(ctx, strings.TrimPrefix(token, "Bearer "))
	}
	if p.peer || (p.selfKey != "" && firstOf(ctx, selfKeyKey) == p.selfKey) {
		if u := firstOf(ctx, forwardedUserKey); u != "" {
			return auth.WithUser(ctx, u)
		}
		return ctx
	}
	if p.certAuth && len(metadata.ValueFromIncomingContext(ctx, gatewayKey)) == 0 {
		if u := certUser(ctx); u != "" {
			return auth.WithUser(ctx, u)
		}
	}
	return ctx
}

// certUser is the common name of the call's verified client certificate,
// or "" without one.
func certUser(ctx context.Context) string {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ""
	}
	for _, chain := range info.State.VerifiedChains {
		if len(chain) > 0 {
			return chain[0].Subject.CommonName
		}
	}
	return ""
}

func (p identity) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	return handler(p.caller(ctx), req)
}

func (p identity) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &callerStream{ServerStream: ss, ctx: p.caller(ss.Context())})
}

// callerStream is a stream whose context carries its caller.
type callerStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *callerStream) Context() context.Context { return s.ctx }

// PeerServerOptions are the options of a member's peer gRPC server that
// serves etcd's Lease and Cluster services (RegisterLease,
// RegisterCluster): they take the caller a member forwards a request for
// from its metadata (ForwardIdentity), so that the leader checks
// forwarded keep-alives, TimeToLive and promotions as the member that
// took them did.
func PeerServerOptions() []grpc.ServerOption {
	p := identity{peer: true}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(p.unary), grpc.ChainStreamInterceptor(p.stream)}
}

// ForwardIdentity returns ctx set to send the identity of the caller in
// ctx (its token, or else its user) with the calls a member makes to
// another member's peer server on the caller's behalf.
func ForwardIdentity(ctx context.Context) context.Context {
	if t := auth.TokenFrom(ctx); t != "" {
		return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, t)
	}
	if u := auth.UserFrom(ctx); u != "" {
		return metadata.AppendToOutgoingContext(ctx, forwardedUserKey, u)
	}
	return ctx
}

// asCaller returns ctx set to make the calls of the member's own client
// (selfKey's) as the caller in ctx: with its token, or its user, or as
// nobody, as etcd's lock and election services call its KV, Lease and
// Watch services with the caller's context.
func asCaller(ctx context.Context, selfKey string) context.Context {
	return metadata.AppendToOutgoingContext(ForwardIdentity(ctx), selfKeyKey, selfKey)
}
