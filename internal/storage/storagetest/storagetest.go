// Package storagetest is the conformance suite of storage.Engine. Every
// engine's tests call Run, so that both engines are held to one written
// contract, and its benchmarks call the Bench functions, so that their
// numbers compare.
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Run runs the conformance suite against the engines that open returns.
// open must open the engine under test in dir or fail t; given a dir that an
// engine of the same kind used before, it must recover the state of the last
// Checkpoint. Every engine the suite opens is closed before the test ends.
func Run(t *testing.T, open func(t *testing.T, dir string) storage.Engine) {
	s := suite{open: open}
	cases := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"GetMissing", s.getMissing},
		{"PutGetDelete", s.putGetDelete},
		{"EmptyValues", s.emptyValues},
		{"BinaryKeys", s.binaryKeys},
		{"BucketIsolation", s.bucketIsolation},
		{"Iterate", s.iterate},
		{"IterateStopsEarly", s.iterateStopsEarly},
		{"BatchOrderAndLen", s.batchOrderAndLen},
		{"BatchCloseAppliesNothing", s.batchCloseAppliesNothing},
		{"BatchesAfterClose", s.batchesAfterClose},
		{"DeleteRange", s.deleteRange},
		{"ViewIsolation", s.viewIsolation},
		{"Closed", s.closed},
		{"SnapshotRoundTrip", s.snapshotRoundTrip},
		{"RestoreEmptySnapshot", s.restoreEmptySnapshot},
		{"CorruptSnapshot", s.corruptSnapshot},
		{"Reopen", s.reopen},
		{"Stats", s.stats},
		{"ConcurrentReadersAndWriters", s.concurrent},
		{"Defragment", s.defragment},
	}
	for _, c := range cases {
		t.Run(c.name, c.fn)
	}
}

type suite struct {
	open func(t *testing.T, dir string) storage.Engine
}

// dataBuckets are the buckets that snapshots carry and every engine keeps
// across a reopen; the Raft bucket is kept only by some engines.
var dataBuckets = []storage.Bucket{storage.Meta, storage.KV, storage.Lease, storage.Auth}

// engine opens a fresh engine in a temporary directory.
func (s suite) engine(t *testing.T) storage.Engine {
	t.Helper()
	return s.engineIn(t, t.TempDir())
}

func (s suite) engineIn(t *testing.T, dir string) storage.Engine {
	t.Helper()
	e := s.open(t, dir)
	t.Cleanup(func() { e.Close() })
	return e
}

// kv is one entry, as "key=value" with both quoted, so that failures print
// binary keys readably and nil and empty values compare equal. A long value
// is shown by its start, length and checksum.
func kv(key, value string) string {
	if len(value) > 32 {
		return fmt.Sprintf("%q=%q...(%d bytes, crc32 %08x)", key, value[:8], len(value), crc32.ChecksumIEEE([]byte(value)))
	}
	return strconv.Quote(key) + "=" + strconv.Quote(value)
}

func commit(t *testing.T, e storage.Engine, fill func(storage.Batch)) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	fill(b)
	if err := b.Commit(false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
}

func put(t *testing.T, e storage.Engine, bk storage.Bucket, pairs ...string) {
	t.Helper()
	if len(pairs)%2 != 0 {
		t.Fatalf("put: odd number of arguments")
	}
	commit(t, e, func(b storage.Batch) {
		for i := 0; i < len(pairs); i += 2 {
			b.Put(bk, []byte(pairs[i]), []byte(pairs[i+1]))
		}
	})
}

// get returns the value of key and whether it is present.
func get(t *testing.T, r storage.Reader, bk storage.Bucket, key string) (string, bool) {
	t.Helper()
	v, err := r.Get(bk, []byte(key))
	if err != nil {
		t.Fatalf("Get(%v, %q): %v", bk, key, err)
	}
	return string(v), v != nil
}

func wantValue(t *testing.T, r storage.Reader, bk storage.Bucket, key, want string) {
	t.Helper()
	got, ok := get(t, r, bk, key)
	if !ok || got != want {
		t.Errorf("Get(%v, %q) = %q, present %t; want %q", bk, key, got, ok, want)
	}
}

func wantAbsent(t *testing.T, r storage.Reader, bk storage.Bucket, key string) {
	t.Helper()
	if got, ok := get(t, r, bk, key); ok {
		t.Errorf("Get(%v, %q) = %q; want absent", bk, key, got)
	}
}

// scan returns the entries Iterate yields, as kv strings.
func scan(t *testing.T, r storage.Reader, bk storage.Bucket, start, end []byte, reverse bool) []string {
	t.Helper()
	out := []string{}
	err := r.Iterate(bk, start, end, reverse, func(k, v []byte) bool {
		out = append(out, kv(string(k), string(v)))
		return true
	})
	if err != nil {
		t.Fatalf("Iterate(%v, %q, %q, %t): %v", bk, start, end, reverse, err)
	}
	return out
}

func wantScan(t *testing.T, r storage.Reader, bk storage.Bucket, start, end []byte, reverse bool, want ...string) {
	t.Helper()
	if want == nil {
		want = []string{}
	}
	if got := scan(t, r, bk, start, end, reverse); !slices.Equal(got, want) {
		t.Errorf("Iterate(%v, %q, %q, reverse %t)\n got %q\nwant %q", bk, start, end, reverse, got, want)
	}
}

// dump returns the content of every data bucket.
func dump(t *testing.T, r storage.Reader) map[storage.Bucket][]string {
	t.Helper()
	m := make(map[storage.Bucket][]string)
	for _, b := range dataBuckets {
		m[b] = scan(t, r, b, nil, nil, false)
	}
	return m
}

func wantDump(t *testing.T, r storage.Reader, want map[storage.Bucket][]string) {
	t.Helper()
	got := dump(t, r)
	for _, b := range dataBuckets {
		if !slices.Equal(got[b], want[b]) {
			t.Errorf("bucket %v\n got %q\nwant %q", b, got[b], want[b])
		}
	}
}

func (s suite) getMissing(t *testing.T) {
	e := s.engine(t)
	for b := range storage.NumBuckets {
		v, err := e.Get(b, []byte("missing"))
		if v != nil || err != nil {
			t.Errorf("Get(%v, missing) = %q, %v; want nil, nil", b, v, err)
		}
	}
	put(t, e, storage.KV, "k", "v")
	commit(t, e, func(b storage.Batch) { b.Delete(storage.KV, []byte("k")) })
	if v, err := e.Get(storage.KV, []byte("k")); v != nil || err != nil {
		t.Errorf("Get of a deleted key = %q, %v; want nil, nil", v, err)
	}
}

func (s suite) putGetDelete(t *testing.T) {
	e := s.engine(t)
	put(t, e, storage.KV, "k", "v1")
	wantValue(t, e, storage.KV, "k", "v1")
	put(t, e, storage.KV, "k", "v2")
	wantValue(t, e, storage.KV, "k", "v2")

	// Get returns a copy.
	v, _ := e.Get(storage.KV, []byte("k"))
	v[0] = 'X'
	wantValue(t, e, storage.KV, "k", "v2")

	// The batch copies what Put is given.
	key, val := []byte("reused"), []byte("before")
	commit(t, e, func(b storage.Batch) {
		b.Put(storage.KV, key, val)
		copy(key, "XXXXXX")
		copy(val, "after!")
	})
	wantValue(t, e, storage.KV, "reused", "before")

	commit(t, e, func(b storage.Batch) {
		b.Delete(storage.KV, []byte("k"))
		b.Delete(storage.KV, []byte("never-written"))
	})
	wantAbsent(t, e, storage.KV, "k")
	wantAbsent(t, e, storage.KV, "never-written")
}

func (s suite) emptyValues(t *testing.T) {
	e := s.engine(t)
	commit(t, e, func(b storage.Batch) {
		b.Put(storage.KV, []byte("empty"), []byte{})
		b.Put(storage.KV, []byte("nil"), nil)
	})
	for _, k := range []string{"empty", "nil"} {
		v, err := e.Get(storage.KV, []byte(k))
		if err != nil || v == nil || len(v) != 0 {
			t.Errorf("Get(%q) = %#v, %v; want a non-nil empty value", k, v, err)
		}
	}
	wantScan(t, e, storage.KV, nil, nil, false, kv("empty", ""), kv("nil", ""))
}

func (s suite) binaryKeys(t *testing.T) {
	e := s.engine(t)
	sorted := []string{"", "\x00", "\x00\x00", "\x00\xff", "a", "a\x00", "\xff", "\xff\x00", "\xff\xff"}
	var want []string
	for _, k := range sorted {
		want = append(want, kv(k, "v"+k))
	}
	commit(t, e, func(b storage.Batch) {
		for _, i := range []int{5, 2, 8, 0, 7, 3, 1, 6, 4} {
			b.Put(storage.KV, []byte(sorted[i]), []byte("v"+sorted[i]))
		}
	})
	for _, k := range sorted {
		wantValue(t, e, storage.KV, k, "v"+k)
	}
	wantScan(t, e, storage.KV, nil, nil, false, want...)
	reversed := slices.Clone(want)
	slices.Reverse(reversed)
	wantScan(t, e, storage.KV, nil, nil, true, reversed...)
	wantScan(t, e, storage.KV, []byte("\x00"), []byte("\xff"), false, want[1:6]...)
	wantScan(t, e, storage.KV, []byte("\x00"), []byte("\xff"), true, reversed[3:8]...)
	wantScan(t, e, storage.KV, []byte("\xff"), nil, false, want[6:]...)
	wantScan(t, e, storage.KV, []byte("\xff\x00"), nil, true, reversed[:2]...)
}

func (s suite) bucketIsolation(t *testing.T) {
	e := s.engine(t)
	for b := range storage.NumBuckets {
		put(t, e, b, "k", b.String())
	}
	for b := range storage.NumBuckets {
		wantValue(t, e, b, "k", b.String())
		wantScan(t, e, b, nil, nil, false, kv("k", b.String()))
	}
	commit(t, e, func(b storage.Batch) {
		b.Delete(storage.KV, []byte("k"))
		b.DeleteRange(storage.Meta, nil, nil)
	})
	for b := range storage.NumBuckets {
		if b == storage.KV || b == storage.Meta {
			wantAbsent(t, e, b, "k")
		} else {
			wantValue(t, e, b, "k", b.String())
		}
	}
}

func (s suite) iterate(t *testing.T) {
	e := s.engine(t)
	put(t, e, storage.KV, "a", "A", "b", "B", "c", "C", "cc", "CC", "d", "D", "e", "E")
	commit(t, e, func(b storage.Batch) { b.Delete(storage.KV, []byte("cc")) })
	put(t, e, storage.Lease, "0", "other bucket", "z", "other bucket")

	a, b, c, d, ee := kv("a", "A"), kv("b", "B"), kv("c", "C"), kv("d", "D"), kv("e", "E")
	cases := []struct {
		name       string
		start, end []byte
		want       []string // ascending
	}{
		{"all", nil, nil, []string{a, b, c, d, ee}},
		{"from existing key", []byte("b"), nil, []string{b, c, d, ee}},
		{"from between keys", []byte("bb"), nil, []string{c, d, ee}},
		{"to existing key, exclusive", nil, []byte("d"), []string{a, b, c}},
		{"to between keys", nil, []byte("bb"), []string{a, b}},
		{"existing bounds", []byte("b"), []byte("d"), []string{b, c}},
		{"bounds between keys", []byte("bb"), []byte("dd"), []string{c, d}},
		{"bounds outside keys", []byte("0"), []byte("z"), []string{a, b, c, d, ee}},
		{"empty start is the first key", []byte{}, []byte("b"), []string{a}},
		{"start equals end", []byte("c"), []byte("c"), nil},
		{"start after end", []byte("d"), []byte("b"), nil},
		{"empty end", nil, []byte{}, nil},
		{"start past last key", []byte("f"), nil, nil},
		{"end before first key", nil, []byte("0"), nil},
		{"single key", []byte("c"), []byte("c\x00"), []string{c}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantScan(t, e, storage.KV, tc.start, tc.end, false, tc.want...)
			rev := slices.Clone(tc.want)
			slices.Reverse(rev)
			wantScan(t, e, storage.KV, tc.start, tc.end, true, rev...)
		})
	}
}

func (s suite) iterateStopsEarly(t *testing.T) {
	e := s.engine(t)
	put(t, e, storage.KV, "a", "1", "b", "2", "c", "3", "d", "4")
	for _, reverse := range []bool{false, true} {
		for _, limit := range []int{1, 2} {
			var got []string
			err := e.Iterate(storage.KV, nil, nil, reverse, func(k, _ []byte) bool {
				got = append(got, string(k))
				return len(got) < limit
			})
			want := []string{"a", "b"}[:limit]
			if reverse {
				want = []string{"d", "c"}[:limit]
			}
			if err != nil || !slices.Equal(got, want) {
				t.Errorf("Iterate(reverse %t) stopping after %d = %q, %v; want %q", reverse, limit, got, err, want)
			}
		}
	}
}

func (s suite) batchOrderAndLen(t *testing.T) {
	e := s.engine(t)
	put(t, e, storage.KV, "m1", "old", "m2", "old", "zy", "old", "zzzz", "old")
	put(t, e, storage.Auth, "a", "old")
	b := e.NewBatch()
	if n := b.Len(); n != 0 {
		t.Errorf("Len of a new batch = %d", n)
	}
	// Operations apply in the order they were recorded.
	b.Put(storage.KV, []byte("x"), []byte("1"))
	b.Delete(storage.KV, []byte("x"))
	b.Delete(storage.KV, []byte("y"))
	b.Put(storage.KV, []byte("y"), []byte("2"))
	b.Put(storage.KV, []byte("r1"), []byte("3"))
	b.DeleteRange(storage.KV, []byte("r"), []byte("s"))
	b.Put(storage.KV, []byte("r2"), []byte("4"))
	// An open-ended range covers the committed keys and those put earlier
	// in the batch, whichever reaches further.
	b.Put(storage.KV, []byte("zz"), []byte("5"))
	b.DeleteRange(storage.KV, []byte("z"), nil)
	b.Put(storage.KV, []byte("zzz"), []byte("6"))
	b.Put(storage.Auth, []byte("b"), []byte("7"))
	b.DeleteRange(storage.Auth, nil, nil)
	b.Put(storage.Meta, []byte("other"), []byte("8"))
	if n := b.Len(); n != 13 {
		t.Errorf("Len = %d; want 13", n)
	}
	wantAbsent(t, e, storage.KV, "y") // not visible before Commit
	if err := b.Commit(false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	b.Close() // a no-op after Commit
	wantScan(t, e, storage.KV, nil, nil, false,
		kv("m1", "old"), kv("m2", "old"), kv("r2", "4"), kv("y", "2"), kv("zzz", "6"))
	wantScan(t, e, storage.Auth, nil, nil, false)
	wantValue(t, e, storage.Meta, "other", "8")
}

func (s suite) batchCloseAppliesNothing(t *testing.T) {
	e := s.engine(t)
	put(t, e, storage.KV, "keep", "v")
	b := e.NewBatch()
	b.Put(storage.KV, []byte("new"), []byte("v"))
	b.Delete(storage.KV, []byte("keep"))
	b.DeleteRange(storage.KV, nil, nil)
	b.Close()
	wantScan(t, e, storage.KV, nil, nil, false, kv("keep", "v"))
}

// An engine may reuse a closed batch's memory: a batch closed twice, or
// closed after Commit, must still leave every later batch its own.
func (s suite) batchesAfterClose(t *testing.T) {
	e := s.engine(t)
	a := e.NewBatch()
	a.Put(storage.KV, []byte("a"), []byte("1"))
	a.Close()
	a.Close()
	c := e.NewBatch()
	c.Put(storage.KV, []byte("c"), []byte("1"))
	if err := c.Commit(false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	c.Close()
	x, y := e.NewBatch(), e.NewBatch()
	x.Put(storage.KV, []byte("x"), []byte("xx"))
	y.Put(storage.KV, []byte("y"), []byte("yy"))
	x.Put(storage.KV, []byte("x2"), []byte("xx2"))
	if x.Len() != 2 || y.Len() != 1 {
		t.Fatalf("Len() = %d and %d after two puts and one; want 2 and 1", x.Len(), y.Len())
	}
	y.Close()
	if err := x.Commit(false); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	wantScan(t, e, storage.KV, nil, nil, false, kv("c", "1"), kv("x", "xx"), kv("x2", "xx2"))
}

func (s suite) deleteRange(t *testing.T) {
	abcde := []string{"a", "1", "b", "2", "c", "3", "d", "4", "e", "5"}
	a, b, c, d, ee := kv("a", "1"), kv("b", "2"), kv("c", "3"), kv("d", "4"), kv("e", "5")
	cases := []struct {
		name       string
		start, end []byte
		want       []string
	}{
		{"existing bounds", []byte("b"), []byte("d"), []string{a, d, ee}},
		{"bounds between keys", []byte("aa"), []byte("cc"), []string{a, d, ee}},
		{"nil start", nil, []byte("c"), []string{c, d, ee}},
		{"nil end", []byte("c"), nil, []string{a, b}},
		{"nil bounds", nil, nil, nil},
		{"empty end", nil, []byte{}, []string{a, b, c, d, ee}},
		{"start equals end", []byte("c"), []byte("c"), []string{a, b, c, d, ee}},
		{"start after end", []byte("d"), []byte("b"), []string{a, b, c, d, ee}},
		{"past last key", []byte("f"), nil, []string{a, b, c, d, ee}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := s.engine(t)
			put(t, e, storage.KV, abcde...)
			put(t, e, storage.Lease, abcde...)
			commit(t, e, func(bt storage.Batch) { bt.DeleteRange(storage.KV, tc.start, tc.end) })
			wantScan(t, e, storage.KV, nil, nil, false, tc.want...)
			wantScan(t, e, storage.Lease, nil, nil, false, a, b, c, d, ee)
			// Keys written after the range deletion are visible again.
			put(t, e, storage.KV, "c", "new")
			wantValue(t, e, storage.KV, "c", "new")
		})
	}
	t.Run("empty bucket", func(t *testing.T) {
		e := s.engine(t)
		commit(t, e, func(bt storage.Batch) { bt.DeleteRange(storage.KV, nil, nil) })
		wantScan(t, e, storage.KV, nil, nil, false)
	})
}

func (s suite) viewIsolation(t *testing.T) {
	e := s.engine(t)
	put(t, e, storage.KV, "a", "1", "b", "1", "c", "1", "d", "1")
	put(t, e, storage.Meta, "m", "1")
	v, err := e.NewView()
	if err != nil {
		t.Fatalf("NewView: %v", err)
	}
	before := []string{kv("a", "1"), kv("b", "1"), kv("c", "1"), kv("d", "1")}

	commit(t, e, func(b storage.Batch) {
		b.Put(storage.KV, []byte("a"), []byte("2"))
		b.Delete(storage.KV, []byte("b"))
		b.DeleteRange(storage.KV, []byte("c"), nil)
		b.Put(storage.KV, []byte("e"), []byte("2"))
		b.DeleteRange(storage.Meta, nil, nil)
	})
	dropped := e.NewBatch()
	dropped.Put(storage.KV, []byte("f"), []byte("3"))
	dropped.Close()

	wantScan(t, v, storage.KV, nil, nil, false, before...)
	rev := slices.Clone(before)
	slices.Reverse(rev)
	wantScan(t, v, storage.KV, nil, nil, true, rev...)
	wantScan(t, v, storage.KV, []byte("b"), []byte("d"), false, before[1:3]...)
	wantValue(t, v, storage.KV, "a", "1")
	wantValue(t, v, storage.KV, "b", "1")
	wantAbsent(t, v, storage.KV, "e")
	wantValue(t, v, storage.Meta, "m", "1")

	after := []string{kv("a", "2"), kv("e", "2")}
	wantScan(t, e, storage.KV, nil, nil, false, after...)
	v2, err := e.NewView()
	if err != nil {
		t.Fatalf("NewView: %v", err)
	}
	wantScan(t, v2, storage.KV, nil, nil, false, after...)
	v2.Close()

	v.Close()
	v.Close() // closing twice is harmless
	if _, err := v.Get(storage.KV, []byte("a")); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Get on a closed view: err = %v; want ErrClosed", err)
	}
	if err := v.Iterate(storage.KV, nil, nil, false, func(_, _ []byte) bool { return true }); !errors.Is(err, storage.ErrClosed) {
		t.Errorf("Iterate on a closed view: err = %v; want ErrClosed", err)
	}
}

func (s suite) closed(t *testing.T) {
	e := s.engine(t)
	put(t, e, storage.KV, "k", "v")
	var snap bytes.Buffer
	if err := e.WriteSnapshot(&snap); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	pending := e.NewBatch()
	pending.Put(storage.KV, []byte("late"), []byte("v"))
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	checks := map[string]error{
		"Commit of a batch made before Close": pending.Commit(true),
		"Checkpoint":                          e.Checkpoint(),
		"WriteSnapshot":                       e.WriteSnapshot(io.Discard),
		"Restore":                             e.Restore(bytes.NewReader(snap.Bytes())),
		"Iterate":                             e.Iterate(storage.KV, nil, nil, false, func(_, _ []byte) bool { return true }),
	}
	_, checks["Get"] = e.Get(storage.KV, []byte("k"))
	_, checks["NewView"] = e.NewView()
	b := e.NewBatch()
	b.Put(storage.KV, []byte("k"), []byte("v"))
	checks["Commit"] = b.Commit(false)
	for name, err := range checks {
		if !errors.Is(err, storage.ErrClosed) {
			t.Errorf("%s after Close: err = %v; want ErrClosed", name, err)
		}
	}
	e.Stats() // must not crash
}

// fill writes a varied content into every bucket, Raft included, and
// returns the expected dump of the data buckets.
func fill(t *testing.T, e storage.Engine, tag string) map[storage.Bucket][]string {
	t.Helper()
	want := make(map[storage.Bucket][]string)
	big := string(bytes.Repeat([]byte{0xAB}, 100<<10))
	for _, b := range dataBuckets {
		pairs := []string{"\x00", tag, "k1", "", "k2", tag + "-" + b.String(), "\xff\xff", big}
		put(t, e, b, pairs...)
		for i := 0; i < len(pairs); i += 2 {
			want[b] = append(want[b], kv(pairs[i], pairs[i+1]))
		}
	}
	put(t, e, storage.Raft, "entry-1", tag)
	return want
}

func (s suite) snapshotRoundTrip(t *testing.T) {
	src, dst := s.engine(t), s.engine(t)
	want := fill(t, src, "src")
	fill(t, dst, "dst")
	put(t, dst, storage.KV, "only-in-dst", "x")
	put(t, dst, storage.Raft, "entry-2", "dst")

	var snap bytes.Buffer
	if err := src.WriteSnapshot(&snap); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	err := storage.ReadSnapshot(bytes.NewReader(snap.Bytes()), func(b storage.Bucket, _, _ []byte) error {
		if b == storage.Raft {
			return errors.New("snapshot holds a Raft record")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("ReadSnapshot: %v", err)
	}
	if err := dst.Restore(bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	wantDump(t, dst, want)
	wantScan(t, dst, storage.Raft, nil, nil, false, kv("entry-1", "dst"), kv("entry-2", "dst"))

	// The format is canonical: the restored engine writes the same bytes.
	var again bytes.Buffer
	if err := dst.WriteSnapshot(&again); err != nil {
		t.Fatalf("WriteSnapshot after Restore: %v", err)
	}
	if !bytes.Equal(again.Bytes(), snap.Bytes()) {
		t.Errorf("snapshot of the restored engine differs from the original (%d vs %d bytes)", again.Len(), snap.Len())
	}
	// The restored engine takes writes as usual.
	put(t, dst, storage.KV, "k1", "after")
	wantValue(t, dst, storage.KV, "k1", "after")
}

func (s suite) restoreEmptySnapshot(t *testing.T) {
	empty, dst := s.engine(t), s.engine(t)
	fill(t, dst, "dst")
	var snap bytes.Buffer
	if err := empty.WriteSnapshot(&snap); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	if err := dst.Restore(&snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	wantDump(t, dst, map[storage.Bucket][]string{})
	wantValue(t, dst, storage.Raft, "entry-1", "dst")
}

// failingReader returns err once the first n bytes of data are read.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func (s suite) corruptSnapshot(t *testing.T) {
	src := s.engine(t)
	fill(t, src, "src")
	var buf bytes.Buffer
	if err := src.WriteSnapshot(&buf); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	snap := buf.Bytes()
	flip := func(i int) []byte {
		c := slices.Clone(snap)
		c[i] ^= 0x40
		return c
	}
	cases := map[string][]byte{
		"empty":              {},
		"bad magic":          flip(0),
		"header only":        snap[:8],
		"truncated halfway":  snap[:len(snap)/2],
		"no trailer":         snap[:len(snap)-5],
		"truncated checksum": snap[:len(snap)-1],
		"flipped record":     flip(len(snap) / 2),
		"flipped checksum":   flip(len(snap) - 1),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			dst := s.engine(t)
			fill(t, dst, "dst")
			err := dst.Restore(bytes.NewReader(data))
			if !errors.Is(err, storage.ErrCorruptSnapshot) {
				t.Fatalf("Restore = %v; want ErrCorruptSnapshot", err)
			}
			// The content is unspecified, but the engine still works.
			put(t, dst, storage.KV, "k", "v")
			wantValue(t, dst, storage.KV, "k", "v")
		})
	}
	t.Run("read error", func(t *testing.T) {
		dst := s.engine(t)
		r := &failingReader{data: snap[:len(snap)/2], err: errors.New("connection reset")}
		if err := dst.Restore(r); err == nil {
			t.Fatalf("Restore from a failing reader succeeded")
		}
	})
}

func (s suite) reopen(t *testing.T) {
	dir := t.TempDir()
	e := s.engineIn(t, dir)
	want := fill(t, e, "first")
	commit(t, e, func(b storage.Batch) {
		b.Delete(storage.KV, []byte("k1"))
		b.DeleteRange(storage.Lease, nil, []byte("k2"))
	})
	want[storage.KV] = slices.DeleteFunc(want[storage.KV], func(s string) bool { return s == kv("k1", "") })
	want[storage.Lease] = want[storage.Lease][2:]
	if err := e.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	e = s.engineIn(t, dir)
	wantDump(t, e, want)

	// A restored state survives a reopen too.
	other := s.engine(t)
	restored := fill(t, other, "other")
	var snap bytes.Buffer
	if err := other.WriteSnapshot(&snap); err != nil {
		t.Fatalf("WriteSnapshot: %v", err)
	}
	if err := e.Restore(&snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if err := e.Checkpoint(); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	e = s.engineIn(t, dir)
	wantDump(t, e, restored)
}

func (s suite) stats(t *testing.T) {
	e := s.engine(t)
	commit(t, e, func(b storage.Batch) {
		for i := range 100 {
			b.Put(storage.KV, fmt.Appendf(nil, "key-%03d", i), bytes.Repeat([]byte{'v'}, 100))
		}
	})
	st := e.Stats()
	if st.SizeBytes <= 0 || st.Keys <= 0 {
		t.Errorf("Stats after 100 puts = %+v; want positive SizeBytes and Keys", st)
	}
	if st.SizeInUseBytes < 0 || st.SizeInUseBytes > st.SizeBytes {
		t.Errorf("Stats = %+v; want 0 <= SizeInUseBytes <= SizeBytes", st)
	}
}

// concurrent runs readers against two committing writers and a
// checkpointer. Each batch of the KV writer sets every key of a group to
// the same generation, so a reader that sees two generations at once has
// seen part of a batch.
func (s suite) concurrent(t *testing.T) {
	e := s.engine(t)
	const keys, generations = 16, 150
	key := func(i int) []byte { return fmt.Appendf(nil, "k%02d", i) }
	writeGen := func(g int) error {
		b := e.NewBatch()
		defer b.Close()
		for i := range keys {
			b.Put(storage.KV, key(i), strconv.AppendInt(nil, int64(g), 10))
		}
		b.Put(storage.Meta, []byte("gen"), strconv.AppendInt(nil, int64(g), 10))
		return b.Commit(false)
	}
	if err := writeGen(0); err != nil {
		t.Fatalf("Commit: %v", err)
	}

	var (
		wg      sync.WaitGroup
		done    = make(chan struct{})
		writers sync.WaitGroup
	)
	writers.Add(3)
	go func() { // KV writer
		defer writers.Done()
		for g := 1; g <= generations; g++ {
			if err := writeGen(g); err != nil {
				t.Errorf("Commit: %v", err)
				return
			}
		}
	}()
	go func() { // a second writer, on another bucket
		defer writers.Done()
		for i := range generations {
			b := e.NewBatch()
			b.Put(storage.Lease, key(i%keys), []byte("x"))
			b.DeleteRange(storage.Lease, key(keys), nil)
			if err := b.Commit(i%10 == 0); err != nil {
				t.Errorf("Commit: %v", err)
				return
			}
		}
	}()
	go func() {
		defer writers.Done()
		for range 3 {
			if err := e.Checkpoint(); err != nil {
				t.Errorf("Checkpoint: %v", err)
				return
			}
		}
	}()

	// oneGeneration checks that Iterate on r yields every key, all of one
	// generation, which it returns.
	oneGeneration := func(r storage.Reader, reverse bool) (string, bool) {
		var gen string
		n := 0
		err := r.Iterate(storage.KV, nil, nil, reverse, func(k, v []byte) bool {
			if n == 0 {
				gen = string(v)
			} else if string(v) != gen {
				t.Errorf("Iterate saw generations %s and %s (key %s)", gen, v, k)
				return false
			}
			n++
			return true
		})
		if err != nil {
			t.Errorf("Iterate: %v", err)
			return "", false
		}
		if n != keys {
			t.Errorf("Iterate saw %d keys; want %d", n, keys)
			return "", false
		}
		return gen, true
	}
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, ok := oneGeneration(e, r == 1); !ok {
					return
				}
				v, err := e.NewView()
				if err != nil {
					t.Errorf("NewView: %v", err)
					return
				}
				gen, ok := oneGeneration(v, r == 0)
				meta, err := v.Get(storage.Meta, []byte("gen"))
				v.Close()
				if !ok {
					return
				}
				if err != nil || string(meta) != gen {
					t.Errorf("view: meta gen = %s, %v; KV gen = %s", meta, err, gen)
					return
				}
				if _, err := e.Get(storage.KV, key(r)); err != nil {
					t.Errorf("Get: %v", err)
					return
				}
			}
		}()
	}
	writers.Wait()
	close(done)
	wg.Wait()
	if gen, _ := oneGeneration(e, false); gen != strconv.Itoa(generations) {
		t.Errorf("final generation = %s; want %d", gen, generations)
	}
}

// defragment checks that defragmentation keeps every live key, drops
// nothing it should keep, and lets writes go on while it runs.
func (s suite) defragment(t *testing.T) {
	e := s.engine(t)
	for i := 0; i < 500; i++ {
		put(t, e, storage.KV, fmt.Sprintf("k%03d", i), strings.Repeat("v", 100))
	}
	commit(t, e, func(b storage.Batch) { b.DeleteRange(storage.KV, []byte("k100"), []byte("k400")) })
	put(t, e, storage.Meta, "m", "1")
	done := make(chan error, 1)
	go func() { done <- e.Defragment() }()
	put(t, e, storage.KV, "during", "x")
	if err := <-done; err != nil {
		t.Fatalf("Defragment: %v", err)
	}
	n := 0
	if err := e.Iterate(storage.KV, nil, nil, false, func(k, _ []byte) bool { n++; return true }); err != nil {
		t.Fatal(err)
	}
	if n != 201 {
		t.Fatalf("%d keys after defragmentation, want 201", n)
	}
	wantValue(t, e, storage.Meta, "m", "1")
	wantValue(t, e, storage.KV, "during", "x")
	wantAbsent(t, e, storage.KV, "k250")
	e.Close()
	if err := e.Defragment(); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Defragment after Close: %v, want ErrClosed", err)
	}
}
