// Package filelog is the raftlog.Log that keeps raft's log in a write-ahead
// file of its own, for the in-memory state engine, which has no log to host
// it.
//
// # File format
//
// The directory holds one file, raft.wal (and, only while CreateSnapshot
// rewrites it, raft.wal.tmp). All integers are little-endian.
//
//	file   = magic base frame*
//	magic  = "CAIRNRL" 0x01             (8 bytes; the last byte is the version)
//	base   = frame                      (written whole before the file is named)
//	frame  = length:u32 crc:u32 body    (crc is CRC-32C of body; length = len(body))
//	body   = record+
//	record = type:u8 n:u32 payload      (payload is n bytes)
//
// Each Save appends exactly one frame and fsyncs once, so a frame is the unit
// that is either durable or lost. The file is preallocated with zeros in
// chunks ahead of the frames (as etcd preallocates its WAL segments): an
// append then never changes the file's size, and fdatasync has no metadata
// to commit. Zeros after the last frame are free space, not damage. The record types, replayed in order:
//
//	1 snapshot   start-index:u64 start-term:u64 raftpb.Snapshot (protobuf)
//	             The snapshot becomes current and the log is reset to start
//	             after start-index: every entry is dropped. Save writes it
//	             with start = the snapshot's own index and term; a rewrite
//	             writes it first, with the compaction point as start.
//	2 truncate   index:u64
//	             Drops every entry with an index >= index.
//	3 entry      raftpb.Entry (protobuf); its index must be last index + 1.
//	4 hard state raftpb.HardState (protobuf)
//
// Within a frame, Save writes snapshot, truncate, entries, then hard state,
// so that a hard state never points at entries that are not there.
//
// Every file is created whole: magic and a base frame holding a snapshot
// record (start = the compaction point), the entries after it and the hard
// state are written to raft.wal.tmp, fsynced, renamed over raft.wal, and the
// directory fsynced. A new log's base frame holds an empty snapshot at 0;
// CreateSnapshot rewrites the file this way with only what compaction
// leaves, so it shrinks back to the size of the retained log.
//
// # Recovery
//
// Open replays every frame. The log ends at the first position holding only
// zeros to the end of the file (the preallocated space). A frame after the
// base that is incomplete or fails its checksum ends the log when no valid
// frame follows it anywhere in the file: it is the torn tail of a Save that crashed before its fsync, so
// the file is truncated there. If a valid frame does follow, an acknowledged
// Save was damaged and Open fails with raftlog.ErrCorrupt. So it does when
// the base frame is damaged, which cannot be torn, and when a frame passes
// its checksum but does not replay (an entry out of place, say).
package filelog

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/fsutil"
	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/internal/memlog"
)

const (
	walFile = "raft.wal"
	tmpFile = walFile + ".tmp"
	// preallocBytes is how far ahead of the last frame the file is
	// extended with zeros at a time.
	preallocBytes = 16 << 20
)

// readPath names the embedded read path; raft.Storage's methods are promoted
// while MemoryStorage's mutators stay out of Log's method set.
type readPath = raft.Storage

// Log is a raftlog.Log kept in a write-ahead file. Create it with Open.
type Log struct {
	readPath
	ms  *raft.MemoryStorage
	dir string
	f   *os.File
	// end is where the next frame goes; size is the file's (preallocated)
	// size.
	end, size int64
	buf       []byte // the frame being encoded, reused across Saves
	// err, once set, fails every later Save and CreateSnapshot: after a
	// failed write or fsync the file's content is no longer known.
	err error
	// noSync skips the fdatasync of Save (etcd's --unsafe-no-fsync).
	noSync bool
	// metrics observes the file's writes and syncs.
	metrics Metrics
}

// Metrics receives what Save does to the log's file, for monitoring (the
// rewrite of CreateSnapshot is not reported). The funcs are called from
// Save, on its caller's goroutine (raft's), and must return at once; either
// may be nil.
type Metrics struct {
	// Synced is called after each fsync of the file with its duration.
	Synced func(time.Duration)
	// Wrote is called after each append with the number of bytes written.
	Wrote func(bytes int)
}

// SetMetrics makes the log report its writes and fsyncs to m. Call it
// before the log is used.
func (l *Log) SetMetrics(m Metrics) { l.metrics = m }

// sync fsyncs the file (only its data with dataOnly) and reports the time
// it took.
func (l *Log) sync(dataOnly bool) error {
	start := time.Now()
	var err error
	if dataOnly {
		err = syscall.Fdatasync(int(l.f.Fd()))
	} else {
		err = l.f.Sync()
	}
	if err == nil && l.metrics.Synced != nil {
		l.metrics.Synced(time.Since(start))
	}
	return err
}

// SetUnsafeNoSync makes Save return without fsyncing what it wrote, as
// etcd's --unsafe-no-fsync does: faster, but a crash of the machine (not of
// the process alone) can lose entries raft was told were durable, so a
// member of a cluster may come back inconsistent with the others. Only for
// tests and throwaway clusters.
func (l *Log) SetUnsafeNoSync(on bool) { l.noSync = on }

var _ raftlog.Log = (*Log)(nil)

// Open loads the log kept in dir, creating dir and an empty log if needed.
// A torn tail left by a crash is cut off and logged as a warning; damage
// anywhere else fails with an error wrapping raftlog.ErrCorrupt. lg may be
// nil.
func Open(dir string, lg *zap.Logger) (*Log, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	// A leftover temporary file is a rewrite that crashed before its
	// rename; raft.wal is still the whole log.
	if err := os.Remove(filepath.Join(dir, tmpFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	path := filepath.Join(dir, walFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if data, err = newFile(&raftpb.Snapshot{}, 0, 0, nil, nil); err == nil {
			if err = replaceFile(dir, data); err == nil {
				err = fsutil.SyncDir(dir)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	st, end, err := replay(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ms, err := memlog.Load(st)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if end < len(data) && !allZero(data[end:]) {
		lg.Warn("raft log has a torn tail, truncating it",
			zap.String("path", path), zap.Int("offset", end), zap.Int("dropped-bytes", len(data)-end))
		if err := truncate(f, int64(end)); err != nil {
			f.Close()
			return nil, fmt.Errorf("raftlog: truncate torn tail: %w", err)
		}
		data = data[:end]
	}
	return &Log{readPath: ms, ms: ms, dir: dir, f: f, end: int64(end), size: int64(len(data))}, nil
}

// write puts buf at the end of the log, extending the preallocated space
// first when buf does not fit in it.
func (l *Log) write(buf []byte) error {
	if need := l.end + int64(len(buf)); need > l.size {
		size := need + preallocBytes
		if err := syscall.Fallocate(int(l.f.Fd()), 0, l.size, size-l.size); err != nil {
			return err
		}
		// The new size is metadata: make it durable now, once per chunk,
		// so that later appends need only fdatasync.
		if err := l.sync(false); err != nil {
			return err
		}
		l.size = size
	}
	if _, err := l.f.WriteAt(buf, l.end); err != nil {
		return err
	}
	l.end += int64(len(buf))
	if l.metrics.Wrote != nil {
		l.metrics.Wrote(len(buf))
	}
	return nil
}

// Save implements raftlog.Log: it appends one frame and fsyncs it. A Save
// with nothing to persist touches nothing.
func (l *Log) Save(st *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	if l.err != nil {
		return l.err
	}
	p, err := memlog.PlanSave(l.ms, st, ents, snap)
	if err != nil {
		return err
	}
	if p.Snapshot == nil && len(p.Entries) == 0 && p.HardState == nil {
		return nil
	}
	if l.buf, err = appendSave(l.buf[:0], p); err != nil {
		return err
	}
	if err := l.write(l.buf); err != nil {
		return l.fail(err)
	}
	if p.MustSync && !l.noSync {
		if err := l.sync(true); err != nil {
			return l.fail(err)
		}
	}
	if err := p.Apply(l.ms); err != nil {
		return l.fail(err)
	}
	return nil
}

// CreateSnapshot implements raftlog.Log by rewriting the file with only what
// is left after compaction.
func (l *Log) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte, compactTo uint64) (*raftpb.Snapshot, error) {
	if l.err != nil {
		return nil, l.err
	}
	p, err := memlog.PlanSnapshot(l.ms, index, cs, data, compactTo)
	if err != nil {
		return nil, err
	}
	var ents []*raftpb.Entry
	if last, _ := l.ms.LastIndex(); last > p.StartIndex {
		if ents, err = l.ms.Entries(p.StartIndex+1, last+1, math.MaxUint64); err != nil {
			return nil, err
		}
	}
	hs, _, err := l.ms.InitialState()
	if err != nil {
		return nil, err
	}
	buf, err := newFile(p.Snapshot, p.StartIndex, p.StartTerm, ents, hs)
	if err != nil {
		return nil, err
	}
	if err := replaceFile(l.dir, buf); err != nil {
		return nil, fmt.Errorf("raftlog: rewrite: %w", err)
	}
	// raft.wal is now the new file: the old descriptor must not be written,
	// and from here on a failure leaves the log in an unknown state.
	l.f.Close()
	l.f = nil
	if err := p.Apply(l.ms); err != nil {
		return nil, l.fail(err)
	}
	if err := fsutil.SyncDir(l.dir); err != nil {
		return nil, l.fail(err)
	}
	if l.f, err = os.OpenFile(filepath.Join(l.dir, walFile), os.O_WRONLY, 0); err != nil {
		return nil, l.fail(err)
	}
	l.end, l.size = int64(len(buf)), int64(len(buf))
	return p.Snapshot, nil
}

// Close implements raftlog.Log.
func (l *Log) Close() error {
	if errors.Is(l.err, raftlog.ErrClosed) {
		return nil
	}
	l.err = raftlog.ErrClosed
	if l.f == nil {
		return nil
	}
	return l.f.Close()
}

// fail makes err sticky and returns it.
func (l *Log) fail(err error) error {
	l.err = fmt.Errorf("raftlog: %s: %w", filepath.Join(l.dir, walFile), err)
	return l.err
}

// replaceFile atomically replaces dir's log with data: it writes a
// temporary file, fsyncs it and renames it over the log. On error the old
// log is intact. The rename is durable only after syncDir.
func replaceFile(dir string, data []byte) error {
	tmp := filepath.Join(dir, tmpFile)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, walFile))
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func truncate(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}
