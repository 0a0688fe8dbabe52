// Package server assembles a Cairn member: storage engine, raft log, MVCC
// state, the raft and store actors, and the front ends (etcd gRPC and HTTP
// on the client URLs, the REST API on its own address).
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/clientmux"
	"github.com/cairn-kv/cairn/internal/compactor"
	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/corruptcheck"
	"github.com/cairn-kv/cairn/internal/lease"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/internal/transport"
	"github.com/cairn-kv/cairn/internal/watch"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
	"github.com/cairn-kv/cairn/pkg/httpapi"
)

// Server is a running member.
type Server struct {
	cfg *config.Config
	lg  *zap.Logger

	sys    *actors.System
	engine storage.Engine
	rlog   raftlog.Log
	kv     *mvcc.KV
	store  *store.Client
	watch  *watch.Hub
	lease  *lease.Lessor
	// compactor is the auto-compaction, nil when it is off.
	compactor *compactor.Compactor
	// corrupt runs the leader's corruption checks, nil when they are off.
	corrupt *corruptcheck.Monitor

	grpcSrv  *grpc.Server
	gwConn   *grpc.ClientConn
	selfMu   sync.Mutex
	self     *clientv3.Client
	httpSrvs []*http.Server
	closers  []func() error

	selfID        uint64
	cluster       *cluster
	leaderConns   *leaderConns
	removed       chan struct{}
	removedOnce   sync.Once
	peers         *peerHandler
	transport     *transport.Transport
	peerSrv       *grpc.Server
	peerListeners []net.Listener

	tls tlsConfigs
	// metrics is the member's Prometheus registry and the series fed to it.
	metrics *memberMetrics

	clientAddrs []string
	// selfTarget is the client listener the member's own connections
	// dial (an address, or unix:// and a socket path), and selfTLS the
	// configuration to dial it with, nil when it is plain text.
	selfTarget string
	selfTLS    *tls.Config
	httpAddr   string
}

// Start opens the member's storage under cfg.DataDir and starts serving.
// It returns once every listener accepts connections and the member has
// replayed its log.
func Start(cfg *config.Config, lg *zap.Logger) (*Server, error) {
	s := &Server{cfg: cfg, lg: lg, sys: actors.NewSystem(), removed: make(chan struct{})}
	var err error
	if s.tls, err = newTLSConfigs(cfg, lg); err != nil {
		return nil, err
	}
	if err := s.start(); err != nil {
		// Release whatever was opened: listeners, actors, storage.
		s.Stop()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	cfg, lg := s.cfg, s.lg
	s.metrics = newMemberMetrics(cfg.Metrics == "extensive", s.sys, lg)
	if err := s.openStorage(); err != nil {
		return err
	}
	members, err := initialMembers(cfg)
	if err != nil {
		return err
	}
	boot, err := s.identify(members)
	if err != nil {
		return err
	}
	selfID := s.selfID
	s.cluster = &cluster{s: s, initial: boot.members}
	s.leaderConns = s.newLeaderConns()
	cl := s.cluster
	// Like etcd, watch responses are fragmented above the gRPC receive
	// limit: --max-request-bytes plus 512 KiB of framing allowance.
	s.watch = watch.NewHub(s.sys, s.kv, watch.Options{
		MaxRequestBytes:        int(cfg.MaxRequestBytes) + 512<<10,
		ProgressNotifyInterval: cfg.WatchProgressNotifyInterval,
	})
	s.lease = lease.Start(s.sys, lease.Config{
		Leases:             s.kv.Leases(),
		Checkpoint:         cfg.LeaseCheckpoint,
		CheckpointInterval: cfg.LeaseCheckpointInterval,
		Extend:             cfg.ElectionTimeout,
		Forwarder:          s.forwarder(),
		Logger:             lg.Named("lease"),
	})
	if err := s.openPeers(boot.clusterID, boot.peers); err != nil {
		return err
	}
	s.transport.ServeHashKV(s.serveHashKV)
	if err := s.initialCorruptCheck(boot.peers); err != nil {
		return err
	}
	// Users, roles and the auth switch are replicated state in the engine;
	// the store applies auth entries to it and reloads it with snapshots.
	authStore, err := auth.Open(s.engine, auth.Options{
		BcryptCost: cfg.BcryptCost,
		TokenTTL:   cfg.AuthTokenTTL,
		Tokens:     cfg.AuthToken,
		Logger:     lg.Named("auth"),
	})
	if err != nil {
		return err
	}
	s.store, err = store.Start(s.sys, store.Config{
		Auth:                 authStore,
		Publish:              s.watch.Publish,
		LeaseApplied:         s.lease.Applied,
		MinLeaseTTL:          store.MinLeaseTTL(cfg.HeartbeatInterval, cfg.ElectionTimeout),
		Engine:               s.engine,
		KV:                   s.kv,
		ClusterID:            boot.clusterID,
		MemberID:             selfID,
		MaxRequestBytes:      int(cfg.MaxRequestBytes),
		MaxTxnOps:            int(cfg.MaxTxnOps),
		QuotaBackendBytes:    cfg.QuotaBackendBytes,
		SnapshotCount:        cfg.SnapshotCount,
		RequestTimeout:       s.requestTimeout(),
		ElectionTimeout:      cfg.ElectionTimeout,
		ActiveSince:          s.transport.ActiveSince,
		Logger:               lg.Named("store"),
		MembersChanged:       s.membersChanged,
		MaxLearners:          cfg.MaxLearners,
		StrictReconfigCheck:  cfg.StrictReconfigCheck,
		WarningApplyDuration: cfg.WarningApplyDuration,
		// A follower that restored its leader's snapshot rebuilds what is
		// derived from the state: lease expiries, watchers' positions.
		Restored: func() {
			s.lease.Reset(s.kv.Leases())
			s.watch.Resync()
			s.forgetRemoved()
		},
		StartRaft: func(commit func([]*raftpb.Entry)) (store.Raft, error) {
			n, err := raftnode.Start(s.sys, raftnode.Config{
				ID:                     selfID,
				Peers:                  boot.raftPeers,
				PeerContexts:           boot.contexts,
				Log:                    s.rlog,
				TickInterval:           cfg.HeartbeatInterval,
				ElectionTicks:          int(cfg.ElectionTimeout / cfg.HeartbeatInterval),
				SnapshotCatchUpEntries: cfg.SnapshotCatchUpEntries,
				NoPreVote:              !cfg.PreVote,
				AdvanceTicks:           advanceTicks(cfg),
				Transport:              s.transport,
				Commit:                 commit,
				Logger:                 lg.Named("raft"),
			})
			if err == nil {
				s.peers.node.Store(n)
			}
			return n, err
		},
	})
	if err != nil {
		return err
	}
	s.peers.store.Store(s.store)
	s.servePeers()
	s.lease.Attach(s.store)
	readyCtx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// A peer may answer that this member was removed while it waits.
	go func() {
		select {
		case <-s.removed:
			cancel()
		case <-readyCtx.Done():
		}
	}()
	if err := s.store.WaitReady(readyCtx); err != nil {
		if s.isRemoved() {
			return errRemoved
		}
		return fmt.Errorf("member did not become ready: %w", err)
	}
	s.lease.Ready()
	if err := s.store.RecordMembership(readyCtx, selfID, urlStrings(cfg.InitialAdvertisePeerURLs)); err != nil {
		return fmt.Errorf("member did not record the membership: %w", err)
	}
	if err := s.publish(readyCtx, selfID); err != nil {
		return fmt.Errorf("member did not publish its attributes: %w", err)
	}
	if err := s.serveClients(cl); err != nil {
		return err
	}
	if err := s.serveMetricsURLs(); err != nil {
		return err
	}
	if err := s.serveREST(); err != nil {
		return err
	}
	if r := cfg.AutoCompactionRetention; r > 0 {
		lg.Info("starting auto-compaction", zap.String("auto-compaction-mode", cfg.AutoCompactionMode),
			zap.Duration("auto-compaction-retention", r), zap.String("auto-compaction-interval", r.String()))
		s.compactor, err = compactor.Start(compactor.Config{
			Mode:      cfg.AutoCompactionMode,
			Retention: r,
			Store:     s.store,
			Logger:    lg.Named("compactor"),
		})
		if err != nil {
			return err
		}
	}
	s.corrupt = s.startCorruptChecks()
	lg.Info("ready to serve client requests")
	return nil
}

func (s *Server) openStorage() error {
	dir := s.cfg.EngineDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot access data directory: %w", err)
	}
	removeSnapshotLeftovers(s.cfg.DataDir)
	e, err := openEngine(s.cfg, s.lg)
	if err != nil {
		return err
	}
	s.engine = e
	// The memory engine keeps the raft log in a file of its own; RocksDB
	// keeps it in its Raft bucket.
	var l raftlog.Log
	if s.cfg.StorageEngine == "memory" {
		var fl *filelog.Log
		if fl, err = filelog.Open(filepath.Join(dir, "raft"), s.lg.Named("raftlog")); err == nil {
			l = fl
		}
	} else {
		l, err = openRocksDBRaftLog(e, dir, s.lg)
	}
	if err != nil {
		return err
	}
	s.rlog = l
	if s.cfg.UnsafeNoFsync {
		if l, ok := s.rlog.(*filelog.Log); ok {
			l.SetUnsafeNoSync(true)
			s.lg.Warn("--unsafe-no-fsync: the raft log is not fsynced; a machine crash can lose acknowledged writes")
		}
	}
	s.instrumentStorage()
	// Put events carry no PrevKv: a watcher that asks for prev_kv has its
	// stream actor read it at rev-1, off the write path, as etcd does.
	kv, err := mvcc.Open(s.engine, mvcc.Options{
		MaxTxnOps:               int(s.cfg.MaxTxnOps),
		CompactionBatchLimit:    s.cfg.CompactionBatchLimit,
		CompactionSleepInterval: s.cfg.CompactionSleepInterval,
		Logger:                  s.lg.Named("mvcc"),
	})
	if err != nil {
		return err
	}
	s.kv = kv
	s.lg.Info("opened storage", zap.String("engine", s.cfg.StorageEngine), zap.String("dir", dir),
		zap.Int64("current-revision", kv.Rev()), zap.Uint64("applied-index", kv.AppliedIndex()))
	return nil
}

// serveClients listens on every --listen-client-urls address, serving gRPC
// and HTTP on each: in plain text for http:// (gRPC on its native
// transport, or through net/http under GODEBUG=http2debug, see http2Debug),
// over TLS for https:// (gRPC through net/http, as etcd serves it there).
func (s *Server) serveClients(cl etcdcompat.Cluster) error {
	s.grpcSrv = etcdcompat.NewServer(s.store, cl, etcdcompat.Options{
		MaxRequestBytes:             int(s.cfg.MaxRequestBytes),
		Watch:                       s.watch,
		Lease:                       s.lease,
		Self:                        s.selfClient,
		Leadership:                  s.store,
		Snapshots:                   snapshots{s},
		ElectionTimeout:             s.cfg.ElectionTimeout,
		ClientCertAuth:              s.cfg.ClientTLS.ClientCertAuth,
		Requests:                    s.metrics.requests,
		MaxConcurrentStreams:        s.cfg.MaxConcurrentStreams,
		WarningUnaryRequestDuration: &s.cfg.WarningUnaryRequestDuration,
		Keepalive: &etcdcompat.Keepalive{
			MinTime: s.cfg.GRPCKeepAliveMinTime, Interval: s.cfg.GRPCKeepAliveInterval, Timeout: s.cfg.GRPCKeepAliveTimeout,
		},
		Logger:        s.lg.Named("etcdcompat"),
		ServerOptions: s.metrics.grpcServerOptions(),
	})
	// etcd registers the lock and election services after it creates the
	// other services' series, so theirs appear only once used.
	s.metrics.grpc.Preregister(s.grpcSrv, "v3lockpb.Lock", "v3electionpb.Election")
	var listeners []net.Listener
	for _, u := range s.cfg.ListenClientURLs {
		l, err := listenClient(s.cfg, u)
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return fmt.Errorf("listen on client URL %s: %w", u.String(), err)
		}
		listeners = append(listeners, l)
		s.clientAddrs = append(s.clientAddrs, l.Addr().String())
	}
	// The member's own connections (the gateway's, the lock and election
	// client's) go to a TCP listener if there is one.
	self := slices.IndexFunc(s.cfg.ListenClientURLs, func(u url.URL) bool { return !isUnix(u) })
	if self < 0 {
		self = 0
	}
	// gRPC names a socket "unix:path", clientv3 "unix://path".
	gwTarget := s.clientAddrs[self]
	s.selfTarget = gwTarget
	if isUnix(s.cfg.ListenClientURLs[self]) {
		s.selfTarget, gwTarget = "unix://"+s.clientAddrs[self], "unix:"+s.clientAddrs[self]
	}
	creds := insecure.NewCredentials()
	if isSecure(s.cfg.ListenClientURLs[self]) {
		s.selfTLS = s.tls.clientDial
		creds = credentials.NewTLS(s.selfTLS)
	}
	conn, err := grpc.NewClient(gwTarget,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(1<<31-1)))
	if err != nil {
		return err
	}
	s.gwConn = conn
	mux := http.NewServeMux()
	if err := etcdcompat.RegisterHTTP(context.Background(), mux, s.store, conn, s.metrics.health); err != nil {
		return err
	}
	mux.Handle("/metrics", s.metricsHandler())
	mux.HandleFunc("/debug/actors", etcdcompat.GetOnly(s.debugActors))
	if s.cfg.EnablePprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	handler := etcdcompat.AccessControl(mux, etcdcompat.Access{
		CORS: s.cfg.CORS, Hosts: s.cfg.HostWhitelist, ClientCertAuth: s.cfg.ClientTLS.ClientCertAuth,
		AuthEnabled: func() bool { return s.store.AuthState().Enabled() },
	}, s.lg)
	for i, l := range listeners {
		if u := s.cfg.ListenClientURLs[i]; isSecure(u) {
			s.serveClientTLS(l, handler)
			continue
		} else if s.tls.client != nil {
			s.lg.Warn("scheme is http or unix while key and cert files are present; ignoring key and cert files", zap.String("client-url", u.String()))
		}
		s.lg.Warn("serving client traffic insecurely; this is strongly discouraged!", zap.String("address", l.Addr().String()))
		if http2Debug {
			s.serveClientH2C(l, handler)
			continue
		}
		grpcL, httpL, closeAll := clientmux.Split(l, s.lg)
		s.closers = append(s.closers, closeAll)
		hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
		s.httpSrvs = append(s.httpSrvs, hs)
		go func() { _ = s.grpcSrv.Serve(grpcL) }()
		go func() { _ = hs.Serve(httpL) }()
	}
	return nil
}

// isUnix reports whether a client URL names a unix socket, as etcd's
// unix:// and unixs:// URLs do: its path is the URL's host and path
// together ("unix://localhost:2379" is the file localhost:2379).
func isUnix(u url.URL) bool { return u.Scheme == "unix" || u.Scheme == "unixs" }

// isSecure reports whether a client URL is served over TLS.
func isSecure(u url.URL) bool { return u.Scheme == "https" || u.Scheme == "unixs" }

// listenClient listens on client URL u: a TCP address, with the socket
// options cfg asks for, or a unix socket whose stale file, left by a
// member that did not stop cleanly, is removed first, as etcd does.
func listenClient(cfg *config.Config, u url.URL) (net.Listener, error) {
	if !isUnix(u) {
		return listenTCP(cfg, u.Host)
	}
	path := u.Host + u.Path
	if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", path)
}

// serveClientTLS serves gRPC and HTTP over TLS on l. One net/http server
// takes every connection and hands gRPC requests (HTTP/2 with a gRPC
// content type) to the gRPC server: a TLS connection's protocol is known
// only once its requests are, and curl's HTTP/2 requests for /health
// must not reach gRPC.
func (s *Server) serveClientTLS(l net.Listener, mux http.Handler) {
	// Refused handshakes are the clients' errors, not the member's.
	errLog, _ := zap.NewStdLogAt(s.lg.Named("client-tls"), zapcore.DebugLevel)
	hs := s.clientHTTPServer(mux)
	hs.TLSConfig = s.tls.client
	hs.ErrorLog = errLog
	s.httpSrvs = append(s.httpSrvs, hs)
	// The certificate comes from TLSConfig.GetCertificate, read at each
	// handshake.
	go func() { _ = hs.ServeTLS(l, "", "") }()
	s.lg.Info("serving client traffic securely", zap.String("address", l.Addr().String()))
}

// serveClientH2C serves gRPC and HTTP in plain text on l through one
// net/http server, taking HTTP/1 and unencrypted HTTP/2 (the way gRPC
// clients speak to http:// and unix:// URLs): under GODEBUG=http2debug, so
// that net/http logs the clients' HTTP/2 (see http2Debug).
func (s *Server) serveClientH2C(l net.Listener, mux http.Handler) {
	hs := s.clientHTTPServer(mux)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	hs.Protocols = &p
	s.httpSrvs = append(s.httpSrvs, hs)
	go func() { _ = hs.Serve(l) }()
}

// clientHTTPServer returns a net/http server for a client listener that
// hands gRPC requests (HTTP/2 with a gRPC content type) to the gRPC server
// and the rest to mux.
func (s *Server) clientHTTPServer(mux http.Handler) *http.Server {
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				s.grpcSrv.ServeHTTP(w, r)
				return
			}
			mux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		// --max-concurrent-streams here too, as etcd sets it: by default a
		// client's streams (watches, keep-alives) are not capped at
		// net/http's 1000.
		HTTP2: &http.HTTP2Config{MaxConcurrentStreams: int(s.cfg.MaxConcurrentStreams)},
	}
}

// publish records this member's name and client URLs through raft, unless
// they are already recorded, retrying until ctx ends as etcd does.
func (s *Server) publish(ctx context.Context, selfID uint64) error {
	urls := urlStrings(s.cfg.AdvertiseClientURLs)
	if a := s.store.MemberAttrs()[selfID]; a != nil && a.GetName() == s.cfg.Name && slices.Equal(a.GetClientUrls(), urls) {
		return nil
	}
	for {
		err := s.store.PublishMember(ctx, selfID, s.cfg.Name, urls)
		if err == nil || ctx.Err() != nil {
			return err
		}
		s.lg.Warn("failed to publish member attributes; retrying", zap.Error(err))
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// advanceTicks is how many election ticks a member skips at start: all
// but one with --initial-election-tick-advance, as etcd does.
func advanceTicks(cfg *config.Config) int {
	if !cfg.InitialElectionTickAdvance {
		return 0
	}
	return int(cfg.ElectionTimeout/cfg.HeartbeatInterval) - 1
}

// serveREST starts Cairn's REST API on --http-listen-addr, over TLS with
// the client certificate settings when there are. Without the flag there
// is no REST API: etcd opens no such port.
func (s *Server) serveREST() error {
	if s.cfg.HTTPListenAddr == "" {
		return nil
	}
	l, err := net.Listen("tcp", s.cfg.HTTPListenAddr)
	if err != nil {
		return fmt.Errorf("listen on --http-listen-addr %s: %w", s.cfg.HTTPListenAddr, err)
	}
	if s.tls.client != nil {
		// The REST server speaks HTTP/1.1 only.
		cfg := s.tls.client.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		l = tls.NewListener(l, cfg)
	}
	s.httpAddr = l.Addr().String()
	hs := httpapi.NewServer(httpapi.New(s.store, httpapi.Options{
		Logger:          s.lg.Named("httpapi"),
		MaxRequestBytes: int64(s.cfg.MaxRequestBytes),
		MaxTxnOps:       int(s.cfg.MaxTxnOps),
		Watch: func(send func(*pb.WatchResponse) error) httpapi.WatchStream {
			return s.watch.Open(send)
		},
		Leases:  s.lease,
		Auth:    s.store,
		Learner: s.store,
	}))
	s.httpSrvs = append(s.httpSrvs, hs)
	go func() { _ = hs.Serve(httpapi.Listener(l)) }()
	s.lg.Info("serving REST API", zap.String("address", s.httpAddr))
	return nil
}

// debugActors serves /debug/actors: every actor's mailbox depth, messages
// processed and handling times, as JSON.
func (s *Server) debugActors(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"actors": s.sys.Snapshot()})
}

// selfClient returns the member's client of itself, made on first use, for
// the lock and election services.
func (s *Server) selfClient() (*clientv3.Client, error) {
	s.selfMu.Lock()
	defer s.selfMu.Unlock()
	if s.self != nil {
		return s.self, nil
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{s.selfTarget},
		TLS:         s.selfTLS,
		DialTimeout: 5 * time.Second,
		Logger:      s.lg.Named("self-client"),
	})
	if err != nil {
		return nil, err
	}
	s.self = cli
	return cli, nil
}

// ClientAddrs returns the addresses the client listeners are bound to.
func (s *Server) ClientAddrs() []string { return s.clientAddrs }

// HTTPAddr returns the address the REST API is bound to, or "" when
// --http-listen-addr is not set and no REST API is served.
func (s *Server) HTTPAddr() string { return s.httpAddr }

// Stop shuts the member down: front ends first, so no new request enters,
// then the store and raft actors, then storage. Safe on a partly started
// server.
func (s *Server) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Shutdown closes the listeners at once, then waits for requests in
	// flight, among them gRPC streams served over TLS, which end below.
	var shutdowns sync.WaitGroup
	for _, hs := range s.httpSrvs {
		shutdowns.Go(func() { _ = hs.Shutdown(ctx) })
	}
	if s.watch != nil {
		// Watch streams never end by themselves; end them so the graceful
		// stop below does not wait for them.
		s.watch.Close()
	}
	if s.grpcSrv != nil {
		stopped := make(chan struct{})
		go func() { s.grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			s.grpcSrv.Stop()
		}
	}
	shutdowns.Wait()
	for _, c := range s.closers {
		_ = c()
	}
	// Peers next: no snapshot is being restored into the store below once
	// the transport has stopped.
	if s.peerSrv != nil {
		s.peerSrv.Stop()
	}
	for _, l := range s.peerListeners {
		_ = l.Close() // not served if the start failed before servePeers
	}
	if s.transport != nil {
		s.transport.Stop()
	}
	if s.leaderConns != nil {
		s.leaderConns.Close()
	}
	if s.gwConn != nil {
		_ = s.gwConn.Close()
	}
	s.selfMu.Lock()
	if s.self != nil {
		_ = s.self.Close()
	}
	s.selfMu.Unlock()
	if s.corrupt != nil {
		s.corrupt.Stop()
	}
	if s.compactor != nil {
		s.compactor.Stop()
	}
	if s.store != nil {
		s.store.Stop()
	}
	if s.lease != nil {
		s.lease.Stop()
	}
	if s.kv != nil {
		if err := s.kv.Close(); err != nil {
			s.lg.Warn("closing mvcc", zap.Error(err))
		}
	}
	if s.rlog != nil {
		if err := s.rlog.Close(); err != nil {
			s.lg.Warn("closing raft log", zap.Error(err))
		}
	}
	if s.engine != nil {
		if err := s.engine.Close(); err != nil {
			s.lg.Warn("closing storage engine", zap.Error(err))
		}
	}
}
