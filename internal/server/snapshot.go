package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/etcdformat"
	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
	"github.com/cairn-kv/cairn/internal/storage/rocksdb"
)

// snapshotDirPattern names the scratch directories of snapshots being
// streamed, inside the data directory; a start removes leftovers.
const snapshotDirPattern = "snapshot-*.tmp"

// snapshots serves Maintenance.Snapshot for a member.
type snapshots struct{ s *Server }

// Snapshot writes an etcd backend database of the member's state at one
// moment (an engine view, taken while writes go on) into a scratch file,
// then streams it as etcd does, followed by its SHA-256.
func (sn snapshots) Snapshot(ctx context.Context, send func(*pb.SnapshotResponse) error) error {
	s := sn.s
	start := time.Now()
	dir, err := os.MkdirTemp(s.cfg.DataDir, snapshotDirPattern)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	view, err := s.engine.NewView()
	if err != nil {
		return err
	}
	// Timed from the view to the end of the stream, as etcd times a
	// backend snapshot until it is closed.
	defer since(s.metrics.backend.snapshots, time.Now())
	path := filepath.Join(dir, "db")
	err = etcdformat.Write(ctx, path, view, etcdformat.Info{Term: s.store.Header().RaftTerm})
	view.Close()
	if err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.lg.Info("sending database snapshot to client")
	total, version, err := etcdformat.Stream(path, send)
	if err != nil {
		s.lg.Warn("failed to send database snapshot", zap.Error(err))
		return err
	}
	s.lg.Info("successfully sent database snapshot to client", zap.Int64("total-bytes", total),
		zap.Duration("took", time.Since(start)), zap.String("storage-version", version))
	return nil
}

// removeSnapshotLeftovers removes the scratch directories of snapshots a
// crash interrupted.
func removeSnapshotLeftovers(dataDir string) {
	dirs, _ := filepath.Glob(filepath.Join(dataDir, snapshotDirPattern))
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

// RestoreOptions are etcdutl snapshot restore's options beyond the
// member's configuration.
type RestoreOptions struct {
	// SkipHashCheck accepts a file without a SHA-256 trailer (a member's
	// db file) or with a wrong one.
	SkipHashCheck bool
	// BumpRevision raises the revision by this much, with MarkCompacted,
	// so that clients never see it go back.
	BumpRevision uint64
	// MarkCompacted marks the (bumped) revision compacted, so that
	// watchers and reads of older revisions are told so.
	MarkCompacted bool
}

// RestoreSnapshot makes cfg.DataDir a new member's data directory holding
// the state of an etcd snapshot (from Cairn or etcd) or of a stopped etcd
// member's db file, as etcdutl snapshot restore does for etcd: the member
// started with the same --name, --initial-cluster, --initial-cluster-token
// and --initial-advertise-peer-urls bootstraps a new cluster with that
// state. Every member of the new cluster is restored from the same file.
// The directory is built beside cfg.DataDir and renamed into place at the
// end, so a failure leaves no half-made data directory.
func RestoreSnapshot(cfg *config.Config, path string, opts RestoreOptions, lg *zap.Logger) (etcdformat.Restored, error) {
	var out etcdformat.Restored
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 || err != nil && !errors.Is(err, os.ErrNotExist) {
		return out, fmt.Errorf("data-dir %q not empty or could not be read", cfg.DataDir)
	}
	members, err := initialMembers(cfg)
	if err != nil {
		return out, err
	}
	var self uint64
	ids := make([]uint64, len(members))
	for i, m := range members {
		ids[i] = m.ID
		if m.Name == cfg.Name {
			self = m.ID
		}
	}
	tmp := filepath.Clean(cfg.DataDir) + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return out, err
	}
	defer os.RemoveAll(tmp)
	built := *cfg
	built.DataDir = tmp
	if err := os.MkdirAll(built.EngineDir(), 0o700); err != nil {
		return out, err
	}
	f, err := etcdformat.Open(path, tmp, opts.SkipHashCheck)
	if err != nil {
		return out, err
	}
	defer f.Close()
	e, err := openEngine(&built, lg)
	if err != nil {
		return out, err
	}
	out, err = f.Restore(e)
	if err == nil && opts.MarkCompacted && opts.BumpRevision > 0 {
		err = bumpRevision(e, &out, int64(opts.BumpRevision))
	}
	if cerr := e.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = writeIdentity(built.EngineDir(), self, clusterIDOf(ids))
	}
	if err != nil {
		return out, err
	}
	f.Close()
	os.Remove(cfg.DataDir) // an empty directory, if any
	if err := os.Rename(tmp, cfg.DataDir); err != nil {
		return out, err
	}
	if err := fsutil.SyncDir(filepath.Dir(filepath.Clean(cfg.DataDir))); err != nil {
		return out, err
	}
	lg.Info("restored snapshot", zap.String("path", path), zap.String("data-dir", cfg.DataDir),
		zap.String("storage-engine", cfg.StorageEngine), zap.Int64("revision", out.Revision),
		zap.String("member-id", fmt.Sprintf("%x", self)), zap.String("cluster-id", fmt.Sprintf("%x", clusterIDOf(ids))))
	return out, nil
}

// bumpRevision raises the restored revision by amount and schedules a
// compaction there, as etcdutl's --bump-revision with --mark-compacted.
func bumpRevision(e storage.Engine, out *etcdformat.Restored, amount int64) error {
	out.Revision += amount
	b := e.NewBatch()
	defer b.Close()
	mvcc.PutCompaction(b, out.Revision, 0)
	if err := b.Commit(true); err != nil {
		return err
	}
	return e.Checkpoint()
}

// openEngine opens the storage engine cfg names in its engine directory.
func openEngine(cfg *config.Config, lg *zap.Logger) (storage.Engine, error) {
	if cfg.StorageEngine == "memory" {
		return memory.Open(cfg.EngineDir())
	}
	return rocksdb.Open(cfg.EngineDir(), rocksdb.Options{Logger: lg.Named("rocksdb")})
}
