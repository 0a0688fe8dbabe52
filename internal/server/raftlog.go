package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/enginelog"
	"github.com/cairn-kv/cairn/internal/raftlog/filelog"
	"github.com/cairn-kv/cairn/internal/storage"
)

// openRocksDBRaftLog opens the raft log of a member on RocksDB: a file log
// in dir/raft beside the database, as the memory engine has. Its appends
// go to a preallocated file, where RocksDB's WAL grew with every synced
// write and so paid a metadata update in each fdatasync.
//
// Members written by earlier versions keep their log in the engine's raft
// bucket; the first start moves it: it is copied into dir/raft.moving,
// which is renamed to dir/raft once complete (a crash before the rename
// leaves the bucket in charge and the copy is redone), and the bucket is
// emptied after.
func openRocksDBRaftLog(e storage.Engine, dir string, lg *zap.Logger) (raftlog.Log, error) {
	path := filepath.Join(dir, "raft")
	lg = lg.Named("raftlog")
	if _, err := os.Stat(path); err == nil {
		return filelog.Open(path, lg)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("raft log: %w", err)
	}
	old, err := enginelog.Open(e)
	if err != nil {
		return nil, err
	}
	defer old.Close()
	hs, _, err := old.InitialState()
	if err != nil {
		return nil, err
	}
	last, err := old.LastIndex()
	if err != nil {
		return nil, err
	}
	if raft.IsEmptyHardState(hs) && last == 0 {
		return filelog.Open(path, lg)
	}
	moving := path + ".moving"
	if err := os.RemoveAll(moving); err != nil {
		return nil, fmt.Errorf("raft log: %w", err)
	}
	l, err := filelog.Open(moving, lg)
	if err != nil {
		return nil, err
	}
	err = raftlog.Copy(l, old)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(moving, path)
	}
	if err == nil {
		err = fsutil.SyncDir(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("raft log: moving it out of the raft bucket: %w", err)
	}
	lg.Info("moved the raft log out of the storage engine", zap.String("dir", path), zap.Uint64("last-index", last))
	if err := clearBucket(e, storage.Raft); err != nil {
		lg.Warn("could not empty the raft bucket after moving the log", zap.Error(err))
	}
	return filelog.Open(path, lg)
}

// clearBucket deletes every key of bucket b in one synced batch.
func clearBucket(e storage.Engine, b storage.Bucket) error {
	batch := e.NewBatch()
	defer batch.Close()
	batch.DeleteRange(b, nil, nil)
	return batch.Commit(true)
}
