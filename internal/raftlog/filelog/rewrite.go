package filelog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/fsutil"
)

const (
	// swapBytes is how much of the log, written while a rewrite copied,
	// may be left for the raft goroutine to copy when it swaps the files:
	// the rewrite goes on copying while more than this is left.
	swapBytes = 1 << 20
	// catchUpRounds bounds those rounds, for a log written faster than it
	// is copied.
	catchUpRounds = 8
)

// errStopped ends a rewrite that Close stopped.
var errStopped = errors.New("rewrite stopped")

// rewrite is the copy of the log file that reclaims what a compaction
// dropped. CreateSnapshot records the compaction in the log file itself,
// then starts a rewrite: a goroutine writes raft.wal.tmp with a base frame
// holding the log as it is after the compaction, then appends, verbatim,
// the frames the log file received since. The raft goroutine swaps the
// files at its next Save once the copy is done: it copies the last frames
// (at most about swapBytes), fsyncs, and renames the copy over raft.wal.
// Until then raft.wal is the whole log; a crash leaves it so.
type rewrite struct {
	// done is closed when the goroutine returns; until then only it
	// touches the fields below.
	done chan struct{}
	stop atomic.Bool

	f     *os.File // the copy; nil if the rewrite failed
	first uint64   // index of the entry locs[0] locates
	locs  []loc    // where the base frame's entries lie in f
	// p0 is where the frames to copy verbatim begin in the log file, and
	// base where they go in f; from and to are how far they are copied.
	p0, base, from, to int64
	size               int64 // f's preallocated size
	err                error
}

// startRewrite starts rewriting the log file as it stands after a
// compaction, unless a rewrite is already running (it copies this
// compaction's record with the other new frames; the next compaction
// starts another).
func (l *Log) startRewrite() error {
	if l.job != nil {
		return nil
	}
	snap, err := l.ms.Snapshot()
	if err != nil {
		return err
	}
	first, _ := l.ms.FirstIndex()
	startTerm, err := l.ms.Term(first - 1)
	if err != nil {
		return err
	}
	hs, _, err := l.ms.InitialState()
	if err != nil {
		return err
	}
	kept := make([]loc, len(l.slots))
	for i, s := range l.slots {
		kept[i] = s.loc
	}
	j := &rewrite{done: make(chan struct{}), first: first, p0: l.end, from: l.end}
	l.job = j
	go j.run(l.dir, l.f, &l.published, proto.CloneOf(snap), first-1, startTerm, kept, proto.CloneOf(hs))
	return nil
}

// run writes the copy, leaving it open in j.f, or removes it and sets j.err.
func (j *rewrite) run(dir string, src *os.File, published *atomic.Int64, snap *raftpb.Snapshot, start, startTerm uint64, kept []loc, hs *raftpb.HardState) {
	defer close(j.done)
	tmp := filepath.Join(dir, tmpFile)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o600)
	if err != nil {
		j.err = err
		return
	}
	if j.err = j.copy(f, src, published, snap, start, startTerm, kept, hs); j.err != nil {
		f.Close()
		os.Remove(tmp)
		return
	}
	j.f = f
}

func (j *rewrite) copy(f, src *os.File, published *atomic.Int64, snap *raftpb.Snapshot, start, startTerm uint64, kept []loc, hs *raftpb.HardState) error {
	locs, size, err := writeBase(f, src, snap, start, startTerm, kept, hs)
	if err != nil {
		return err
	}
	j.locs, j.base, j.to = locs, size, size
	if err := j.catchUp(f, src, published); err != nil {
		return err
	}
	j.size = j.to + preallocBytes
	if err := syscall.Fallocate(int(f.Fd()), 0, 0, j.size); err != nil {
		return err
	}
	return f.Sync()
}

// catchUp copies the frames written to src since the copy began, in
// rounds, until at most swapBytes of them are left (or catchUpRounds
// rounds are done).
func (j *rewrite) catchUp(f, src *os.File, published *atomic.Int64) error {
	for range catchUpRounds {
		if j.stop.Load() {
			return errStopped
		}
		end := published.Load()
		if end-j.from <= swapBytes {
			return nil
		}
		if err := copyRange(f, j.to, src, j.from, end); err != nil {
			return err
		}
		j.to += end - j.from
		j.from = end
	}
	return nil
}

// copyRange copies src's bytes [from, to) to dst at offset at.
func copyRange(dst *os.File, at int64, src *os.File, from, to int64) error {
	buf := make([]byte, min(to-from, 1<<20))
	for from < to {
		n := min(to-from, int64(len(buf)))
		if _, err := src.ReadAt(buf[:n], from); err != nil {
			return fmt.Errorf("reading frames to copy: %w", err)
		}
		if _, err := dst.WriteAt(buf[:n], at); err != nil {
			return err
		}
		from, at = from+n, at+n
	}
	return nil
}

// settleRewrite swaps in the rewritten file if the rewrite is done (with
// wait, once it is). A rewrite that failed, or whose copy could not be
// completed, is dropped and its error returned: the log file is still
// whole, and the next compaction tries again. A failure once the copy has
// replaced the log file fails the log.
func (l *Log) settleRewrite(wait bool) error {
	j := l.job
	if j == nil {
		return nil
	}
	if wait {
		<-j.done
	} else {
		select {
		case <-j.done:
		default:
			return nil
		}
	}
	l.job = nil
	start, oldEnd := time.Now(), l.end
	err := j.err
	if err == nil {
		err = l.complete(j)
	}
	if err != nil {
		return fmt.Errorf("raftlog: rewrite: %w", err)
	}
	if err := l.install(j); err != nil {
		return l.fail(fmt.Errorf("rewrite: %w", err))
	}
	l.lg.Info("rewrote raft log without its compacted entries",
		zap.String("path", filepath.Join(l.dir, walFile)), zap.Int64("old-size", oldEnd), zap.Int64("new-size", l.end),
		zap.Int64("copied-at-swap", oldEnd-j.from), zap.Duration("took", time.Since(start)))
	return nil
}

// complete copies the frames the log file received since the rewrite last
// copied, makes the copy durable and renames it over the log file. On
// error the copy is removed and the log file is untouched.
func (l *Log) complete(j *rewrite) error {
	tmp := filepath.Join(l.dir, tmpFile)
	err := func() error {
		end := j.to + l.end - j.from
		grown := end > j.size
		if grown {
			j.size = end + preallocBytes
			if err := syscall.Fallocate(int(j.f.Fd()), 0, 0, j.size); err != nil {
				return err
			}
		}
		if err := copyRange(j.f, j.to, l.f, j.from, l.end); err != nil {
			return err
		}
		// A new size is metadata, which fdatasync does not commit.
		switch {
		case grown:
			if err := j.f.Sync(); err != nil {
				return err
			}
		case !l.noSync:
			if err := syscall.Fdatasync(int(j.f.Fd())); err != nil {
				return err
			}
		}
		return os.Rename(tmp, filepath.Join(l.dir, walFile))
	}()
	if err != nil {
		j.f.Close()
		os.Remove(tmp)
	}
	return err
}

// install makes the renamed copy the log's file: it closes the old one and
// moves every entry's location to where the copy holds it.
func (l *Log) install(j *rewrite) error {
	// The old file must not be used again. Its last close frees its
	// blocks, which takes tens of milliseconds for a large file: not on
	// the raft goroutine.
	go l.f.Close()
	l.f = j.f
	first, _ := l.ms.FirstIndex()
	for i := range l.slots {
		s := &l.slots[i]
		if s.off >= j.p0 {
			s.off += j.base - j.p0
			continue
		}
		k := first + uint64(i) - j.first
		if k >= uint64(len(j.locs)) {
			return fmt.Errorf("entry %d is in neither the base frame nor the frames after it", first+uint64(i))
		}
		s.off = j.locs[k].off
	}
	l.end, l.size = j.to+l.end-j.from, j.size
	l.published.Store(l.end)
	return fsutil.SyncDir(l.dir)
}

// stopRewrite stops a running rewrite and removes its copy. A copy of the
// kept entries under way is finished first (at most the catch-up bytes a
// compaction keeps).
func (l *Log) stopRewrite() {
	j := l.job
	if j == nil {
		return
	}
	l.job = nil
	j.stop.Store(true)
	<-j.done
	if j.f != nil {
		j.f.Close()
		os.Remove(filepath.Join(l.dir, tmpFile))
	}
}

// settle swaps in a finished rewrite. A rewrite that failed is logged and
// the log goes on in its file; the error returned is the log's own failure.
func (l *Log) settle() error {
	if err := l.settleRewrite(false); err != nil {
		if l.err != nil {
			return err
		}
		l.lg.Warn("raft log rewrite failed; the log keeps its file until the next compaction",
			zap.String("path", filepath.Join(l.dir, walFile)), zap.Error(err))
	}
	return nil
}
