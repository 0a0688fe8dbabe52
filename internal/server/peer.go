package server

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/cairn-kv/cairn/internal/raftnode"
	"github.com/cairn-kv/cairn/internal/store"
	"github.com/cairn-kv/cairn/internal/transport"
	"github.com/cairn-kv/cairn/pkg/etcdcompat"
)

// peerHandler is the receiving side of the peer transport: raft messages go
// to the raft node, snapshots to the store. Both are set once started;
// what arrives before is dropped, and raft sends it again.
type peerHandler struct {
	dir     string        // where an incoming snapshot is spooled
	applied func() uint64 // the state machine's applied index
	// applying is etcd_server_snapshot_apply_in_progress_total: 1 while
	// an incoming snapshot is restored.
	applying prometheus.Gauge
	node     atomic.Pointer[raftnode.Node]
	store    atomic.Pointer[store.Client]
	lg       *zap.Logger
}

// Step implements transport.Handler.
func (h *peerHandler) Step(m *raftpb.Message) {
	if n := h.node.Load(); n != nil {
		n.Step(m)
	}
}

// Snapshot implements transport.Handler: the leader's state is spooled to
// a file first, so the store actor, which restores it, never waits on the
// network.
func (h *peerHandler) Snapshot(m *raftpb.Message, data io.Reader) error {
	st := h.store.Load()
	if st == nil {
		return fmt.Errorf("snapshot from %x: member not started yet", m.GetFrom())
	}
	if index := m.GetSnapshot().GetMetadata().GetIndex(); h.applied() >= index {
		// Raft ignores a snapshot it has already passed; the state must
		// not be replaced either, least of all by an older one.
		h.lg.Info("ignored a snapshot this member has already passed",
			zap.Uint64("snapshot-index", index), zap.Uint64("applied-index", h.applied()))
		_, err := io.Copy(io.Discard, data)
		return err
	}
	// A file of its own: an old and a new leader may send at once.
	f, err := os.CreateTemp(h.dir, "snapshot.incoming.*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	n, err := io.Copy(f, data)
	if err != nil {
		return fmt.Errorf("receiving snapshot: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	h.lg.Info("received snapshot", zap.String("from", fmt.Sprintf("%x", m.GetFrom())),
		zap.Uint64("snapshot-index", m.GetSnapshot().GetMetadata().GetIndex()), zap.Int64("bytes", n))
	h.applying.Set(1)
	defer h.applying.Set(0)
	return st.Restore(bufio.NewReaderSize(f, 1<<20))
}

// ReportUnreachable implements transport.Handler.
func (h *peerHandler) ReportUnreachable(id uint64) {
	if n := h.node.Load(); n != nil {
		n.ReportUnreachable(id)
	}
}

// ReportSnapshot implements transport.Handler.
func (h *peerHandler) ReportSnapshot(id uint64, failed bool) {
	if n := h.node.Load(); n != nil {
		n.ReportSnapshot(id, failed)
	}
}

// openPeers starts the peer transport, sending to peers, and binds the
// peer listeners on --listen-peer-urls. Nothing is served on them until
// servePeers: raft retries what the other members send meanwhile.
func (s *Server) openPeers(clusterID uint64, peers []*pb.Member) error {
	if s.cfg.SocketReuseAddress || s.cfg.SocketReusePort {
		s.lg.Info("configuring socket options",
			zap.Bool("reuse-address", s.cfg.SocketReuseAddress), zap.Bool("reuse-port", s.cfg.SocketReusePort))
	}
	s.peers = &peerHandler{dir: s.cfg.EngineDir(), applied: s.kv.AppliedIndex, applying: s.metrics.snapshotApplying, lg: s.lg.Named("peer")}
	// Snapshots a crash cut off while they were being received.
	left, _ := filepath.Glob(filepath.Join(s.peers.dir, "snapshot.incoming.*"))
	for _, f := range left {
		_ = os.Remove(f)
	}
	t, err := transport.New(transport.Config{
		ID:        s.selfID,
		ClusterID: clusterID,
		Handler:   s.peers,
		Snapshots: s.engine.WriteSnapshot,
		Removed:   s.markRemoved,
		Logger:    s.lg.Named("transport"),
		TLS:       s.tls.peerDial,
	})
	if err != nil {
		return err
	}
	s.transport = t
	for _, m := range peers {
		if m.ID != s.selfID {
			if err := t.AddPeer(m.ID, m.PeerURLs); err != nil {
				return err
			}
		}
	}
	s.forgetRemoved()
	s.peerSrv = grpc.NewServer(append(transport.ServerOptions(), etcdcompat.PeerServerOptions()...)...)
	t.Register(s.peerSrv)
	for _, u := range s.cfg.ListenPeerURLs {
		l, err := listenTCP(s.cfg, u.Host)
		if err != nil {
			return fmt.Errorf("listen on peer URL %s: %w", u.String(), err)
		}
		switch {
		case u.Scheme == "https":
			// The handshake runs on the gRPC server's goroutine for the
			// connection, so a slow one holds up no other.
			l = tls.NewListener(l, s.tls.peer)
		case s.tls.peer != nil:
			s.lg.Warn("scheme is HTTP while key and cert files are present; ignoring key and cert files", zap.String("peer-url", u.String()))
		}
		s.peerListeners = append(s.peerListeners, l)
	}
	return nil
}

// forgetRemoved tells the transport which members were removed from the
// cluster, as the members table records them, so that it answers them
// that they were, and drops any connection to them for forwarded requests
// (a restored snapshot may carry removals this member never applied).
func (s *Server) forgetRemoved() {
	for _, id := range store.RemovedOf(s.engine) {
		if id != s.selfID {
			s.transport.RemovePeer(id)
			if s.leaderConns != nil {
				s.leaderConns.forget(id)
			}
		}
	}
}

// servePeers serves the peer listeners: the raft transport, and etcd's
// Lease and Cluster services for the requests followers send their leader
// (keep-alives, promotions) and for members joining. The store must have
// started.
func (s *Server) servePeers() {
	etcdcompat.RegisterLease(s.peerSrv, s.lease)
	etcdcompat.RegisterCluster(s.peerSrv, s.store, s.cluster)
	for _, l := range s.peerListeners {
		s.lg.Info("serving peer traffic", zap.String("address", l.Addr().String()))
		go func() { _ = s.peerSrv.Serve(l) }()
	}
}
