// Package filelog is the raftlog.Log that keeps raft's log in a write-ahead
// file of its own, beside either storage engine. In memory it keeps only
// the log's index and its newest entries; raft's other reads go to the file
// (see Log).
//
// # File format
//
// The directory holds one file, raft.wal (and, while a rewrite runs,
// raft.wal.tmp). All integers are little-endian.
//
//	file   = magic base frame*
//	magic  = "CAIRNRL" 0x01             (8 bytes; the last byte is the version)
//	base   = frame                      (written whole before the file is named)
//	frame  = length:u32 crc:u32 body    (crc is CRC-32C of body; length = len(body))
//	body   = record+
//	record = type:u8 n:u32 payload      (payload is n bytes)
//
// Each Save and each CreateSnapshot appends exactly one frame and fsyncs
// once, so a frame is the unit that is either durable or lost. The file is
// preallocated with zeros in chunks ahead of the frames (as etcd
// preallocates its WAL segments): an append then never changes the file's
// size, and fdatasync has no metadata to commit. Zeros after the last frame
// are free space, not damage. The record types, replayed in order:
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
//	5 compaction start-index:u64 start-term:u64 raftpb.Snapshot (protobuf)
//	             Written by CreateSnapshot: the snapshot becomes current and
//	             the entries up to start-index are dropped; those after it
//	             stay. start-index must lie in the log, with that term.
//
// Within a frame, Save writes snapshot, truncate, entries, then hard state,
// so that a hard state never points at entries that are not there.
//
// Every file is created whole: magic and a base frame holding a snapshot
// record (start = the compaction point), the entries after it and the hard
// state are written to raft.wal.tmp, fsynced, renamed over raft.wal, and the
// directory fsynced. A new log's base frame holds an empty snapshot at 0.
//
// After CreateSnapshot has appended its compaction record, a goroutine
// rewrites the file so that it shrinks back to the size of the retained
// log: it writes raft.wal.tmp with a base frame holding the log as the
// compaction left it, then copies the frames appended since, byte for
// byte, and fsyncs. The raft goroutine puts the new file in place at its
// next Save: it copies the few frames appended after the goroutine
// finished, fsyncs them and renames the file over raft.wal. Either file
// replays to the same log, so a crash at any point loses nothing, and the
// raft goroutine never waits for the copy (see rewrite).
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
//
// Entries read back from the file after Open are checked against a CRC-32C
// of their encoding kept in memory, taken when they were written or
// replayed: damage that happens while the log is open fails the read, or
// the rewrite that would copy the entry, with raftlog.ErrCorrupt.
package filelog

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"
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
// while MemoryStorage's mutators stay out of Log's method set. Log's own
// Entries takes the place of MemoryStorage's.
type readPath = raft.Storage

// Log is a raftlog.Log kept in a write-ahead file. Create it with Open.
//
// In memory it keeps the hard state, the snapshot, each entry's index and
// term (in a MemoryStorage, whose entries are stubs without data) and where
// each entry lies in the file; the entries themselves only while they are
// among the newest cacheBytes of encoding, and once raft has handed them
// to the state machine (Handed), only while the cache holds at most
// handedBytes. Raft's older reads, a lagging follower's or a restart's, go
// to the file.
type Log struct {
	readPath
	ms  *raft.MemoryStorage
	dir string
	// f is the file, open for reading and writing; nil after Close.
	f *os.File
	// end is where the next frame goes; size is the file's (preallocated)
	// size.
	end, size int64
	buf       []byte // the frame being encoded, reused across Saves
	locs      []loc  // where the entries of the frame in buf lie
	rbuf      []byte // read buffer, reused across reads
	// slots[i] is entry FirstIndex()+i; slots[:evicted] are not cached;
	// cached is the encoded size of the entries that are.
	slots      []slot
	evicted    int
	cached     int
	cacheBytes int
	// handed is the last index raft handed to the state machine (Handed);
	// entries up to it stay cached only while cached <= handedBytes.
	handed      uint64
	handedBytes int
	// err, once set, fails every later Save and CreateSnapshot: after a
	// failed write or fsync the file's content is no longer known.
	err error
	// noSync skips the fdatasync of Save (etcd's --unsafe-no-fsync).
	noSync bool
	// metrics observes the file's writes and syncs.
	metrics Metrics
	lg      *zap.Logger
	// job is the rewrite of the file since the last compaction, while it
	// runs or waits to be swapped in; published is end, for it to read.
	job       *rewrite
	published atomic.Int64
}

// Metrics receives what Save and CreateSnapshot do to the log's file, for
// monitoring (the rewrite after a compaction is not reported). The funcs
// are called from the raft goroutine and must return at once; either may
// be nil.
type Metrics struct {
	// Synced is called after each fsync of the file with its duration.
	Synced func(time.Duration)
	// Wrote is called after each append with the number of bytes written
	// and the time the write took.
	Wrote func(bytes int, took time.Duration)
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
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := createEmpty(dir); err != nil {
			return nil, fmt.Errorf("raftlog: %w", err)
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	l, err := load(f, dir, lg)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// load reads the log in f back: its state into a MemoryStorage, where each
// entry lies, and the newest entries into the cache. A torn tail is cut
// off.
func load(f *os.File, dir string, lg *zap.Logger) (*Log, error) {
	info, err := f.Stat()
	if err != nil {
		return nil, err
	}
	st, end, torn, err := replay(f, info.Size())
	if err != nil {
		return nil, err
	}
	ms, err := memlog.Load(st.State)
	if err != nil {
		return nil, err
	}
	size := info.Size()
	if torn {
		lg.Warn("raft log has a torn tail, truncating it",
			zap.String("path", f.Name()), zap.Int64("offset", end), zap.Int64("dropped-bytes", size-end))
		if err := truncate(f, end); err != nil {
			return nil, fmt.Errorf("truncate torn tail: %w", err)
		}
		size = end
	}
	l := &Log{readPath: ms, ms: ms, dir: dir, f: f, end: end, size: size, cacheBytes: defaultCacheBytes,
		handedBytes: handedCacheBytes, lg: lg}
	l.published.Store(end)
	l.slots = make([]slot, len(st.locs))
	for i, at := range st.locs {
		l.slots[i].loc = at
	}
	// Cache the newest entries, as if they had just been saved.
	n, bytes := 0, 0
	for n < len(l.slots) && bytes+l.slots[len(l.slots)-1-n].size <= l.cacheBytes {
		bytes += l.slots[len(l.slots)-1-n].size
		n++
	}
	l.evicted = len(l.slots) - n
	if n > 0 {
		ents := make([]*raftpb.Entry, n)
		first, _ := ms.FirstIndex()
		if err := l.read(ents, l.slots[l.evicted:], first+uint64(l.evicted)); err != nil {
			return nil, err
		}
		for i, e := range ents {
			l.slots[l.evicted+i].ent = e
		}
		l.cached = bytes
	}
	return l, nil
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
	start := time.Now()
	if _, err := l.f.WriteAt(buf, l.end); err != nil {
		return err
	}
	l.end += int64(len(buf))
	l.published.Store(l.end)
	if l.metrics.Wrote != nil {
		l.metrics.Wrote(len(buf), time.Since(start))
	}
	return nil
}

// Save implements raftlog.Log: it appends one frame and fsyncs it. A Save
// with nothing to persist touches nothing.
func (l *Log) Save(st *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	if l.err != nil {
		return l.err
	}
	if err := l.settle(); err != nil {
		return err
	}
	p, err := memlog.PlanSave(l.ms, st, ents, snap)
	if err != nil {
		return err
	}
	if p.Snapshot == nil && len(p.Entries) == 0 && p.HardState == nil {
		return nil
	}
	if l.buf, l.locs, err = appendSave(l.buf[:0], p, l.locs[:0]); err != nil {
		return err
	}
	at := l.end
	if err := l.write(l.buf); err != nil {
		return l.fail(err)
	}
	if p.MustSync && !l.noSync {
		if err := l.sync(true); err != nil {
			return l.fail(err)
		}
	}
	// The MemoryStorage gets stubs; the entries go to the cache.
	full := p.Entries
	if len(full) > 0 {
		p.Entries = make([]*raftpb.Entry, len(full))
		for i, e := range full {
			p.Entries[i] = stub(e)
		}
	}
	if err := p.Apply(l.ms); err != nil {
		return l.fail(err)
	}
	if p.Snapshot != nil {
		l.truncateSlots(0)
	}
	if p.Truncate != 0 {
		first, _ := l.ms.FirstIndex()
		l.truncateSlots(int(p.Truncate - first))
	}
	for i := range l.locs {
		l.locs[i].off += at
	}
	l.appendSlots(full, l.locs)
	return nil
}

// CreateSnapshot implements raftlog.Log: it appends a frame recording the
// snapshot and the compaction, and fsyncs it. The file is then rewritten
// without what was dropped, in the background (see rewrite).
func (l *Log) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte, compactTo uint64) (*raftpb.Snapshot, error) {
	if l.err != nil {
		return nil, l.err
	}
	if err := l.settle(); err != nil {
		return nil, err
	}
	p, err := memlog.PlanSnapshot(l.ms, index, cs, data, compactTo)
	if err != nil {
		return nil, err
	}
	if l.buf, err = appendCompact(l.buf[:0], p.Snapshot, p.StartIndex, p.StartTerm); err != nil {
		return nil, err
	}
	if err := l.write(l.buf); err != nil {
		return nil, l.fail(err)
	}
	if !l.noSync {
		if err := l.sync(true); err != nil {
			return nil, l.fail(err)
		}
	}
	first, _ := l.ms.FirstIndex()
	if err := p.Apply(l.ms); err != nil {
		return nil, l.fail(err)
	}
	l.dropSlots(int(p.StartIndex + 1 - first))
	if err := l.startRewrite(); err != nil {
		return nil, l.fail(err)
	}
	return p.Snapshot, nil
}

// Close implements raftlog.Log. Entries no longer cached can no longer be
// read: Entries fails with raftlog.ErrClosed for them.
func (l *Log) Close() error {
	if errors.Is(l.err, raftlog.ErrClosed) {
		return nil
	}
	l.err = raftlog.ErrClosed
	l.stopRewrite()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	return f.Close()
}

// fail makes err sticky and returns it.
func (l *Log) fail(err error) error {
	l.err = fmt.Errorf("raftlog: %s: %w", filepath.Join(l.dir, walFile), err)
	return l.err
}

// createEmpty makes dir's log a new, empty one: the magic and a base frame
// with an empty snapshot at 0, written to a temporary file, fsynced and
// renamed into place, and the directory fsynced. On error no log is left
// half-written.
func createEmpty(dir string) error {
	tmp := filepath.Join(dir, tmpFile)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	_, _, err = writeBase(f, nil, &raftpb.Snapshot{}, 0, 0, nil, nil)
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
		return err
	}
	return fsutil.SyncDir(dir)
}

func truncate(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}
