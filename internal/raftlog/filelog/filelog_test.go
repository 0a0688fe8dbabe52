package filelog

import (
	"bytes"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/internal/memlog"
	"github.com/cairn-kv/cairn/internal/raftlog/raftlogtest"
)

func open(t testing.TB, dir string) raftlog.Log {
	t.Helper()
	l, err := Open(dir, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestConformance(t *testing.T) { raftlogtest.Run(t, open) }

// TestConformanceUncached runs the scenarios with every entry read back
// from the file.
func TestConformanceUncached(t *testing.T) {
	raftlogtest.Run(t, func(t testing.TB, dir string) raftlog.Log {
		l := open(t, dir).(*Log)
		l.setCacheBytes(0)
		return l
	})
}

func BenchmarkSave(b *testing.B) { raftlogtest.BenchmarkSave(b, open) }

func entry(i, term uint64) *raftpb.Entry {
	return &raftpb.Entry{Index: new(i), Term: new(term), Data: []byte("some data")}
}

// writeLog saves one entry per frame, entries 1..n, and returns where the
// frames end after each Save: sizes[i] is the end of the frame holding
// entry i+1. The file itself is larger: preallocated zeros follow.
func writeLog(t *testing.T, dir string, n uint64) (sizes []int64) {
	t.Helper()
	l := open(t, dir)
	defer l.Close()
	for i := uint64(1); i <= n; i++ {
		if err := l.Save(&raftpb.HardState{Term: new(uint64(1)), Commit: new(i)}, []*raftpb.Entry{entry(i, 1)}, nil); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, l.(*Log).end)
	}
	return sizes
}

// rewriteDamaged replaces the log's frames (data up to end) with damaged,
// followed by zeros as preallocation leaves them: the layout a torn or
// damaged write leaves in a preallocated file.
func rewriteDamaged(t *testing.T, dir string, damaged []byte) {
	t.Helper()
	padded := append(damaged[:len(damaged):len(damaged)], make([]byte, 64<<10)...)
	if err := os.WriteFile(filepath.Join(dir, walFile), padded, 0o600); err != nil {
		t.Fatal(err)
	}
}

// frames reads the log file and returns its frames, without the
// preallocated zeros after end.
func frames(t *testing.T, dir string, end int64) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, walFile))
	if err != nil {
		t.Fatal(err)
	}
	if !allZero(data[end:]) {
		t.Fatalf("bytes after the last frame (offset %d) are not zeros", end)
	}
	return data[:end]
}

func lastIndex(t *testing.T, l raftlog.Log) uint64 {
	t.Helper()
	last, _ := l.LastIndex()
	return last
}

func fileSize(t *testing.T, dir string) int64 {
	t.Helper()
	fi, err := os.Stat(filepath.Join(dir, walFile))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// A Save cut short by a crash, or followed by junk, is dropped at open: the
// log ends at the last complete frame and later Saves append after it.
func TestTornTail(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(data []byte, sizes []int64) []byte
	}{
		{"short by a few bytes", func(d []byte, _ []int64) []byte { return d[:len(d)-3] }},
		{"header cut", func(d []byte, s []int64) []byte { return d[:s[3]+5] }},
		{"last frame flipped", func(d []byte, _ []int64) []byte { d[len(d)-2] ^= 0x40; return d }},
		{"last length flipped", func(d []byte, s []int64) []byte { d[s[3]+1] ^= 0x01; return d }},
		{"zeros appended", func(d []byte, _ []int64) []byte { return append(d[:len(d):len(d)], make([]byte, 4096)...) }},
		{"garbage appended", func(d []byte, _ []int64) []byte {
			return append(d[:len(d):len(d)], bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef, 7}, 100)...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sizes := writeLog(t, dir, 5)
			data := frames(t, dir, sizes[4])
			damaged := tc.damage(data, sizes)
			rewriteDamaged(t, dir, damaged)
			// Damage past the fifth frame keeps all five.
			want, wantSize := uint64(4), sizes[3]
			if len(damaged) > len(data) {
				want, wantSize = 5, sizes[4]
			}
			l := open(t, dir)
			if got := lastIndex(t, l); got != want {
				t.Fatalf("last index %d after damage, want %d", got, want)
			}
			// The damaged bytes are gone: only zeros (or nothing) follow the
			// last good frame.
			frames(t, dir, wantSize)
			if err := l.Save(nil, []*raftpb.Entry{entry(want+1, 2)}, nil); err != nil {
				t.Fatal(err)
			}
			l.Close()
			l = open(t, dir)
			defer l.Close()
			if got := lastIndex(t, l); got != want+1 {
				t.Fatalf("last index %d after a Save past the cut and a reopen, want %d", got, want+1)
			}
			if hs, _, _ := l.InitialState(); hs.GetCommit() != want {
				t.Fatalf("commit %d, want %d", hs.GetCommit(), want)
			}
		})
	}
}

// Damage to a frame that other valid frames follow was acknowledged data:
// Open must refuse the log rather than drop it.
func TestCorruptionFailsOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(data []byte, sizes []int64) []byte
	}{
		{"body byte flipped", func(d []byte, s []int64) []byte { d[s[1]+frameHeaderLen+7] ^= 0x01; return d }},
		{"checksum flipped", func(d []byte, s []int64) []byte { d[s[1]+5] ^= 0x80; return d }},
		{"length made huge", func(d []byte, s []int64) []byte { d[s[1]+3] = 0x7f; return d }},
		{"length made zero", func(d []byte, s []int64) []byte { copy(d[s[1]:], []byte{0, 0, 0, 0}); return d }},
		{"frame missing", func(d []byte, s []int64) []byte {
			return append(d[:s[1]:s[1]], d[s[2]:]...)
		}},
		{"bad magic", func(d []byte, _ []int64) []byte { d[0] = 'X'; return d }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			sizes := writeLog(t, dir, 5)
			rewriteDamaged(t, dir, tc.damage(frames(t, dir, sizes[4]), sizes))
			l, err := Open(dir, zaptest.NewLogger(t))
			if !errors.Is(err, raftlog.ErrCorrupt) {
				if l != nil {
					l.Close()
				}
				t.Fatalf("Open of a damaged log: %v, want ErrCorrupt", err)
			}
			t.Log(err)
		})
	}
}

// A frame whose checksum holds but whose records do not fit the log is
// corruption, not a torn tail.
func TestInconsistentRecordFailsOpen(t *testing.T) {
	dir := t.TempDir()
	sizes := writeLog(t, dir, 3)
	f, err := os.OpenFile(filepath.Join(dir, walFile), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	frame, _, err := appendSave(nil, memlog.SavePlan{Entries: []*raftpb.Entry{entry(7, 1)}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(frame, sizes[2]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(dir, zaptest.NewLogger(t)); !errors.Is(err, raftlog.ErrCorrupt) {
		t.Fatalf("Open of a log with a gap: %v, want ErrCorrupt", err)
	}
}

// CreateSnapshot is durable before the file is rewritten; the rewrite
// leaves one compact file; a temporary file left by a rewrite that
// crashed is ignored and removed.
func TestRewrite(t *testing.T) {
	dir := t.TempDir()
	sizes := writeLog(t, dir, 100)
	l := open(t, dir).(*Log)
	if _, err := l.CreateSnapshot(100, nil, nil, 95); err != nil {
		t.Fatal(err)
	}
	// A crash now: the old file, with the compaction appended, is the log.
	crashed := t.TempDir()
	data, err := os.ReadFile(filepath.Join(dir, walFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(crashed, walFile), data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := open(t, crashed)
	if first, _ := c.FirstIndex(); first != 96 || lastIndex(t, c) != 100 {
		t.Fatalf("log is [%d, %d] after a crash before the rewrite, want [96, 100]", first, lastIndex(t, c))
	}
	c.Close()

	if err := l.settleRewrite(true); err != nil {
		t.Fatal(err)
	}
	if l.end >= sizes[10] {
		t.Fatalf("frames end at %d after compaction to 5 entries, want less than 11 Saves took (%d)", l.end, sizes[10])
	}
	frames(t, dir, l.end)
	if err := l.Save(nil, []*raftpb.Entry{entry(101, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	l.Close()

	tmp := filepath.Join(dir, tmpFile)
	if err := os.WriteFile(tmp, []byte("half a rewrite"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := open(t, dir)
	defer r.Close()
	if first, _ := r.FirstIndex(); first != 96 || lastIndex(t, r) != 101 {
		t.Fatalf("log is [%d, %d] after reopen, want [96, 101]", first, lastIndex(t, r))
	}
	if ents, err := r.Entries(96, 102, math.MaxUint64); err != nil || len(ents) != 6 {
		t.Fatalf("Entries(96, 102) = %d entries, %v", len(ents), err)
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file still there: %v", err)
	}
}

// What raft saves while the file is rewritten (appends, an overwrite, a
// snapshot from a leader, another compaction) is carried into the new
// file, which serves the same log before and after a reopen.
func TestWritesDuringRewrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		// during runs while the rewrite of the first compaction copies.
		during func(t *testing.T, l *Log, save func(lo, hi, term uint64))
	}{
		{"appends", func(t *testing.T, l *Log, save func(lo, hi, term uint64)) {
			save(201, 400, 1)
		}},
		{"overwrite", func(t *testing.T, l *Log, save func(lo, hi, term uint64)) {
			save(180, 220, 2)
		}},
		{"compaction", func(t *testing.T, l *Log, save func(lo, hi, term uint64)) {
			save(201, 260, 1)
			if _, err := l.CreateSnapshot(250, nil, nil, 240); err != nil {
				t.Fatal(err)
			}
			save(261, 300, 1)
		}},
		{"snapshot from a leader", func(t *testing.T, l *Log, save func(lo, hi, term uint64)) {
			snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(uint64(500)), Term: new(uint64(3)),
				ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}
			if err := l.Save(&raftpb.HardState{Term: new(uint64(3)), Commit: new(uint64(500))}, nil, snap); err != nil {
				t.Fatal(err)
			}
			save(501, 520, 3)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			l := open(t, dir).(*Log)
			l.setCacheBytes(0)
			save := func(lo, hi, term uint64) {
				t.Helper()
				for i := lo; i <= hi; i += 10 {
					var ents []*raftpb.Entry
					for k := i; k <= min(i+9, hi); k++ {
						ents = append(ents, bigEntry(k, term, 8000))
					}
					if err := l.Save(nil, ents, nil); err != nil {
						t.Fatal(err)
					}
				}
			}
			save(1, 200, 1)
			if _, err := l.CreateSnapshot(150, nil, nil, 100); err != nil {
				t.Fatal(err)
			}
			// The placeholder stands for a rewrite still copying, so that
			// Save and CreateSnapshot leave it be.
			j := l.job
			l.job = &rewrite{done: make(chan struct{})}
			tc.during(t, l, save)
			<-j.done
			// What the copy's goroutine does with frames written meanwhile.
			if err := j.catchUp(j.f, l.f, &l.published); err != nil {
				t.Fatal(err)
			}
			if l.end-j.from > swapBytes {
				t.Fatalf("%d bytes left to copy at the swap, want at most %d", l.end-j.from, swapBytes)
			}
			l.job = j
			want := readState(t, l)
			if err := l.settleRewrite(true); err != nil {
				t.Fatal(err)
			}
			if got := readState(t, l); !got.equal(want) {
				t.Fatalf("after the swap the log serves\n%v\nwant\n%v", got, want)
			}
			frames(t, dir, l.end)
			l.Close()
			l = open(t, dir).(*Log)
			defer l.Close()
			if got := readState(t, l); !got.equal(want) {
				t.Fatalf("after reopen the log serves\n%v\nwant\n%v", got, want)
			}
		})
	}
}

// A swap that fails before its rename drops the copy and leaves the log
// in its file, usable.
func TestFailedSwapKeepsTheLog(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 20)
	l := open(t, dir).(*Log)
	defer func() { l.Close() }()
	if _, err := l.CreateSnapshot(20, nil, nil, 15); err != nil {
		t.Fatal(err)
	}
	<-l.job.done
	l.job.f.Close() // makes the swap's copy fail
	if err := l.settleRewrite(true); err == nil {
		t.Fatal("swap into a closed copy succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, tmpFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("copy left after the failed swap: %v", err)
	}
	if err := l.Save(nil, []*raftpb.Entry{entry(21, 1)}, nil); err != nil {
		t.Fatalf("Save after the failed swap: %v", err)
	}
	want := readState(t, l)
	l.Close()
	l = open(t, dir).(*Log)
	if got := readState(t, l); !got.equal(want) || len(got.ents) != 6 {
		t.Fatalf("after reopen the log serves\n%v\nwant\n%v", got, want)
	}
}

// After a failed write the file's content is unknown: every later write
// fails with the same error.
func TestWriteFailureIsSticky(t *testing.T) {
	l, err := Open(t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.f.Close() // makes the next write fail
	first := l.Save(nil, []*raftpb.Entry{entry(1, 1)}, nil)
	if first == nil {
		t.Fatal("Save on a closed file succeeded")
	}
	if err := l.Save(nil, []*raftpb.Entry{entry(1, 1)}, nil); err != first {
		t.Fatalf("second Save: %v, want the first failure %v", err, first)
	}
	if _, err := l.CreateSnapshot(0, nil, nil, 0); err != first {
		t.Fatalf("CreateSnapshot: %v, want the first failure %v", err, first)
	}
	if last := lastIndex(t, l); last != 0 {
		t.Fatalf("failed Save is visible: last index %d", last)
	}
}

// The base frame is written before the file is named, so damage to it is
// never a torn write, even with nothing after it.
func TestDamagedBaseFailsOpen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(data []byte) []byte
	}{
		{"flipped", func(d []byte) []byte { d[len(d)-1] ^= 0x01; return d }},
		{"cut", func(d []byte) []byte { return d[:len(d)-1] }},
		{"missing", func(d []byte) []byte { return d[:len(magic)] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, 0)
			path := filepath.Join(dir, walFile)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tc.damage(data), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(dir, zaptest.NewLogger(t)); !errors.Is(err, raftlog.ErrCorrupt) {
				t.Fatalf("Open with a damaged base: %v, want ErrCorrupt", err)
			}
		})
	}
}

// The zeros preallocated after the last frame are free space: a reopen
// keeps every entry, does not cut the file, and appends where the frames
// end.
func TestPreallocatedSpaceIsNotATornTail(t *testing.T) {
	dir := t.TempDir()
	sizes := writeLog(t, dir, 3)
	before := fileSize(t, dir)
	if before <= sizes[2] {
		t.Fatalf("file is %d bytes, frames end at %d: nothing preallocated", before, sizes[2])
	}
	l := open(t, dir)
	if got := lastIndex(t, l); got != 3 {
		t.Fatalf("last index %d after reopen, want 3", got)
	}
	if got := fileSize(t, dir); got != before {
		t.Fatalf("reopen changed the file from %d to %d bytes", before, got)
	}
	if err := l.Save(nil, []*raftpb.Entry{entry(4, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	if end := l.(*Log).end; end <= sizes[2] || end > before {
		t.Fatalf("frame written at end %d, want just after %d within the %d preallocated bytes", end, sizes[2], before)
	}
	l.Close()
	l = open(t, dir)
	defer l.Close()
	if got := lastIndex(t, l); got != 4 {
		t.Fatalf("last index %d after a Save and a reopen, want 4", got)
	}
}

// TestUnsafeNoSyncStillWrites: without its fsyncs, Save still writes every
// frame, so a log reopened after a clean close holds every entry.
func TestUnsafeNoSyncStillWrites(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnsafeNoSync(true)
	for i := uint64(1); i <= 100; i++ {
		typ := raftpb.EntryNormal
		e := &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(i), Type: &typ, Data: []byte{byte(i)}}
		st := &raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(i)}
		if err := l.Save(st, []*raftpb.Entry{e}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if last, _ := l.LastIndex(); last != 100 {
		t.Fatalf("last index after reopening: %d, want 100", last)
	}
	ents, err := l.Entries(1, 101, math.MaxUint64)
	if err != nil || len(ents) != 100 || ents[99].GetData()[0] != 100 {
		t.Fatalf("entries after reopening: %d, %v", len(ents), err)
	}
}

// TestMetrics: every synced Save reports one fsync and the bytes it
// appended; a Save that only advances the commit index reports no fsync.
func TestMetrics(t *testing.T) {
	l, err := Open(t.TempDir(), zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var syncs, written int
	l.SetMetrics(Metrics{
		Synced: func(time.Duration) { syncs++ },
		Wrote:  func(n int, _ time.Duration) { written += n },
	})
	if err := l.Save(&raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(0)}, []*raftpb.Entry{entry(1, 1)}, nil); err != nil {
		t.Fatal(err)
	}
	// The first append also syncs the file's preallocated size.
	if syncs < 1 || written <= 0 {
		t.Fatalf("after a synced Save: %d fsyncs, %d bytes; want at least 1 and some", syncs, written)
	}
	before, wroteBefore := syncs, written
	if err := l.Save(&raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(1)}, nil, nil); err != nil {
		t.Fatal(err)
	}
	if syncs != before || written <= wroteBefore {
		t.Errorf("after a commit-only Save: %d fsyncs (was %d), %d bytes (was %d); want no fsync, more bytes", syncs, before, written, wroteBefore)
	}
}

// bigEntry is an entry with size bytes of data that tell its index and term.
func bigEntry(i, term uint64, size int) *raftpb.Entry {
	data := bytes.Repeat([]byte{byte(i), byte(term)}, size/2)
	return &raftpb.Entry{Index: new(i), Term: new(term), Type: raftpb.EntryNormal.Enum(), Data: data}
}

// Entries beyond the cache bound are read back from the file, across
// overwrites, a rewrite by CreateSnapshot and a reopen, and the cache holds
// only the newest ones.
func TestEntriesReadBack(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir).(*Log)
	one := proto.Size(bigEntry(10, 1, 1000))
	l.setCacheBytes(3 * one)
	var model []*raftpb.Entry // entries 1.. in order
	save := func(lo, hi, term uint64, perFrame int) {
		t.Helper()
		for i := lo; i <= hi; {
			var ents []*raftpb.Entry
			for ; i <= hi && len(ents) < perFrame; i++ {
				ents = append(ents, bigEntry(i, term, 1000))
			}
			if err := l.Save(&raftpb.HardState{Term: new(term), Commit: new(i - 1)}, ents, nil); err != nil {
				t.Fatal(err)
			}
			model = append(model[:ents[0].GetIndex()-1], ents...)
		}
	}
	check := func(when string) {
		t.Helper()
		first, _ := l.FirstIndex()
		last, _ := l.LastIndex()
		if last != uint64(len(model)) {
			t.Fatalf("%s: last index %d, want %d", when, last, len(model))
		}
		ents, err := l.Entries(first, last+1, math.MaxUint64)
		if err != nil {
			t.Fatalf("%s: Entries(%d, %d): %v", when, first, last+1, err)
		}
		for i, e := range ents {
			if !proto.Equal(e, model[first-1+uint64(i)]) {
				t.Fatalf("%s: entry %d is %v, want %v", when, first+uint64(i), e, model[first-1+uint64(i)])
			}
		}
		// A bounded read from the middle, as a follower's catch-up does.
		if got, err := l.Entries(first+1, last+1, uint64(2*one)); err != nil || len(got) != 2 || !proto.Equal(got[1], model[first+1]) {
			t.Fatalf("%s: Entries(%d, %d, 2 entries' size) = %d entries, %v", when, first+1, last+1, len(got), err)
		}
		if got := l.cached; got > l.cacheBytes {
			t.Fatalf("%s: %d bytes cached, bound %d", when, got, l.cacheBytes)
		}
	}

	save(1, 50, 1, 3)
	if got := l.cached; got != 3*one {
		t.Fatalf("%d bytes cached after 50 entries, want the last 3 (%d)", got, 3*one)
	}
	check("after appends")
	save(40, 45, 2, 4) // overwrites 40..50
	check("after an overwrite")
	if _, err := l.CreateSnapshot(45, nil, nil, 20); err != nil {
		t.Fatal(err)
	}
	check("after a rewrite")
	save(46, 60, 2, 5)
	check("after appends to the rewritten file")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Entries(21, 22, math.MaxUint64); !errors.Is(err, raftlog.ErrClosed) {
		t.Fatalf("Entries of an evicted entry after Close: %v, want ErrClosed", err)
	}
	l = open(t, dir).(*Log)
	defer l.Close()
	if got := l.cached; got != 40*one {
		t.Fatalf("%d bytes cached after reopen, want all 40 entries (%d)", got, 40*one)
	}
	check("after reopen")
	l.setCacheBytes(0)
	if got := l.cached; got != 0 {
		t.Fatalf("%d bytes cached with a bound of 0", got)
	}
	check("uncached")
}

// Entries handed to the state machine leave the cache, oldest first, while
// it holds more than the handed bound; entries not yet handed stay
// whatever that bound is, and every entry reads back the same.
func TestHandedEntriesLeaveTheCache(t *testing.T) {
	l := open(t, t.TempDir()).(*Log)
	defer l.Close()
	one := proto.Size(bigEntry(10, 1, 1000))
	l.setHandedBytes(2 * one)
	var model []*raftpb.Entry
	for i := uint64(1); i <= 10; i++ {
		model = append(model, bigEntry(i, 1, 1000))
	}
	if err := l.Save(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(10))}, model, nil); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		handed uint64
		cached int
	}{
		{0, 10 * one}, // nothing handed: the whole-cache bound alone
		{5, 5 * one},  // 1..5 handed, over their bound: all go
		{3, 5 * one},  // an older index changes nothing
		{9, 2 * one},  // 6..8 go, back within the bound
		{10, 2 * one}, // 9, 10 stay
	} {
		l.Handed(step.handed)
		if l.cached != step.cached {
			t.Fatalf("after Handed(%d): %d bytes cached, want %d", step.handed, l.cached, step.cached)
		}
		ents, err := l.Entries(1, 11, math.MaxUint64)
		if err != nil {
			t.Fatalf("after Handed(%d): %v", step.handed, err)
		}
		for i, e := range ents {
			if !proto.Equal(e, model[i]) {
				t.Fatalf("after Handed(%d): entry %d is %v, want %v", step.handed, i+1, e, model[i])
			}
		}
	}
}

// Open caches the newest entries up to defaultCacheBytes.
func TestOpenCachesNewest(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir)
	const n, size = 24, 1 << 20
	for i := uint64(1); i <= n; i++ {
		if err := l.Save(nil, []*raftpb.Entry{bigEntry(i, 1, size)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	fl := open(t, dir).(*Log)
	defer fl.Close()
	one := proto.Size(bigEntry(1, 1, size))
	if got, want := fl.cached, defaultCacheBytes/one*one; got != want {
		t.Fatalf("%d bytes cached after reopen, want %d", got, want)
	}
	for i := uint64(1); i <= n; i++ {
		ents, err := fl.Entries(i, i+1, math.MaxUint64)
		if err != nil || !proto.Equal(ents[0], bigEntry(i, 1, size)) {
			t.Fatalf("entry %d after reopen: %v", i, err)
		}
	}
}

// An entry damaged on disk after Open is not served: reading it back, or
// copying it into the rewritten file, fails with ErrCorrupt; a failed
// rewrite leaves the log in its file.
func TestDamageAfterOpenIsDetected(t *testing.T) {
	dir := t.TempDir()
	l := open(t, dir).(*Log)
	defer l.Close()
	l.setCacheBytes(0)
	for i := uint64(1); i <= 10; i++ {
		if err := l.Save(nil, []*raftpb.Entry{bigEntry(i, 1, 100)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	damaged := l.slots[4] // entry 5
	f, err := os.OpenFile(filepath.Join(dir, walFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// The last data byte: the entry still decodes, with other data.
	if _, err := f.WriteAt([]byte{0xee}, damaged.off+int64(damaged.size)-1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := l.Entries(4, 7, math.MaxUint64); !errors.Is(err, raftlog.ErrCorrupt) {
		t.Fatalf("Entries over a damaged entry: %v, want ErrCorrupt", err)
	}
	if ents, err := l.Entries(6, 11, math.MaxUint64); err != nil || len(ents) != 5 {
		t.Fatalf("Entries after the damaged one: %d entries, %v", len(ents), err)
	}
	if _, err := l.CreateSnapshot(10, nil, nil, 2); err != nil {
		t.Fatal(err)
	}
	if err := l.settleRewrite(true); !errors.Is(err, raftlog.ErrCorrupt) {
		t.Fatalf("rewrite keeping a damaged entry: %v, want ErrCorrupt", err)
	}
	if _, err := os.Stat(filepath.Join(dir, tmpFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left by the failed rewrite: %v", err)
	}
	if ents, err := l.Entries(6, 11, math.MaxUint64); err != nil || len(ents) != 5 {
		t.Fatalf("Entries after the failed rewrite: %d entries, %v", len(ents), err)
	}
	if err := l.Save(nil, []*raftpb.Entry{bigEntry(11, 1, 100)}, nil); err != nil {
		t.Fatalf("Save after the failed rewrite: %v", err)
	}
}
