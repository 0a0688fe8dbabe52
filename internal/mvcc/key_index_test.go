package mvcc

import (
	"fmt"
	"math/rand"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// script builds an index holding key "k" from a script: a positive number
// puts at that main revision, a negative one deletes at minus it.
func script(revs ...int64) (*index, *keyIndex) {
	ix := newIndex()
	for _, r := range revs {
		if r < 0 {
			if !ix.tombstone([]byte("k"), revision{main: -r}) {
				panic("tombstone of a missing key")
			}
			continue
		}
		ix.put([]byte("k"), revision{main: r})
	}
	return ix, ix.lookup([]byte("k"))
}

// gensOf returns the main revisions of ki's generations, whether they are
// inline or held by the index.
func gensOf(ix *index, ki *keyIndex) [][]int64 {
	if ki.hist == 0 {
		if ki.ver == 0 {
			return [][]int64{{}}
		}
		return [][]int64{{ki.rev.main}}
	}
	var gens [][]int64
	for _, g := range ix.hists[ki.hist].gens {
		mains := []int64{}
		for _, r := range g.revs {
			mains = append(mains, r.main)
		}
		gens = append(gens, mains)
	}
	return gens
}

func TestKeyIndexGet(t *testing.T) {
	ix, ki := script(2, 3, -4, 6, 8, -9)
	tests := []struct {
		at                int64
		ok                bool
		mod, created, ver int64
	}{
		{at: 1},
		{at: 2, ok: true, mod: 2, created: 2, ver: 1},
		{at: 3, ok: true, mod: 3, created: 2, ver: 2},
		{at: 4},
		{at: 5},
		{at: 6, ok: true, mod: 6, created: 6, ver: 1},
		{at: 7, ok: true, mod: 6, created: 6, ver: 1},
		{at: 8, ok: true, mod: 8, created: 6, ver: 2},
		{at: 9},
		{at: 100},
	}
	for _, tt := range tests {
		mod, created, ver, ok := ix.get(ki, tt.at)
		if ok != tt.ok || mod.main != tt.mod || created != tt.created || ver != tt.ver {
			t.Errorf("get(%d) = %d %d %d %v, want %d %d %d %v", tt.at, mod.main, created, ver, ok, tt.mod, tt.created, tt.ver, tt.ok)
		}
	}
}

// TestKeyIndexCompact follows the example of etcd's key_index.go: after
// put(1) put(2) del(3) put(4) del(5), each compaction keeps the newest
// revision at or below it in the first generation still alive then.
func TestKeyIndexCompact(t *testing.T) {
	tests := []struct {
		at       int64
		wantGens [][]int64
		wantKeep []int64
		empty    bool
	}{
		{at: 1, wantGens: [][]int64{{1, 2, 3}, {4, 5}, {}}, wantKeep: []int64{1}},
		{at: 2, wantGens: [][]int64{{2, 3}, {4, 5}, {}}, wantKeep: []int64{2}},
		// A tombstone at the compaction revision survives it...
		{at: 3, wantGens: [][]int64{{3}, {4, 5}, {}}, wantKeep: []int64{3}},
		{at: 4, wantGens: [][]int64{{4, 5}, {}}, wantKeep: []int64{4}},
		{at: 5, wantGens: [][]int64{{5}, {}}, wantKeep: []int64{5}},
		// ...and goes with the next one, taking the key along.
		{at: 6, wantGens: [][]int64{{}}, empty: true},
	}
	for _, tt := range tests {
		ix, ki := script(1, 2, -3, 4, -5)
		keep := map[revision]struct{}{}
		empty := ix.compactKey(ki, tt.at, keep)
		if tt.empty {
			if !empty || ki.hist != 0 || len(ix.free) != 1 {
				t.Errorf("compact(%d) = %v, history slot %d, free %v; want the key empty and its slot free", tt.at, empty, ki.hist, ix.free)
			}
			continue
		}
		if d := cmp.Diff(tt.wantGens, gensOf(ix, ki)); d != "" {
			t.Errorf("compact(%d) generations (-want +got):\n%s", tt.at, d)
		}
		var kept []int64
		for r := range keep {
			kept = append(kept, r.main)
		}
		if d := cmp.Diff(tt.wantKeep, kept); d != "" {
			t.Errorf("compact(%d) keep (-want +got):\n%s", tt.at, d)
		}
		if empty {
			t.Errorf("compact(%d) reports the key empty", tt.at)
		}
	}
}

// A compacted history must answer reads at and after the compaction
// revision exactly like the full one, including versions.
func TestKeyIndexCompactKeepsReads(t *testing.T) {
	revs := []int64{2, 3, 5, -6, 7, 9, 10, -12, 13}
	for at := int64(1); at <= 14; at++ {
		fullIx, full := script(revs...)
		ix, compacted := script(revs...)
		ix.compactKey(compacted, at, map[revision]struct{}{})
		for r := at; r <= 14; r++ {
			m1, c1, v1, ok1 := fullIx.get(full, r)
			m2, c2, v2, ok2 := ix.get(compacted, r)
			if m1 != m2 || c1 != c2 || v1 != v2 || ok1 != ok2 {
				t.Fatalf("compact(%d) then get(%d) = %v %d %d %v, want %v %d %d %v", at, r, m2, c2, v2, ok2, m1, c1, v1, ok1)
			}
		}
	}
}

func TestKeyIndexRestore(t *testing.T) {
	// The bucket's oldest record is a put whose generation began earlier.
	ix := newIndex()
	ki := newKeyIndex("k")
	ix.restoreFirst(ki, revision{main: 5}, false, 2, 3)
	ix.record(ki, revision{main: 7})
	if mod, created, ver, ok := ix.get(ki, 7); !ok || mod.main != 7 || created != 2 || ver != 4 {
		t.Errorf("get(7) = %v %d %d %v, want 7 2 4 true", mod, created, ver, ok)
	}
	if mod, created, ver, ok := ix.get(ki, 6); !ok || mod.main != 5 || created != 2 || ver != 3 {
		t.Errorf("get(6) = %v %d %d %v, want 5 2 3 true", mod, created, ver, ok)
	}
	// The oldest record is a tombstone: the key exists at no revision,
	// until it is put again.
	ki = newKeyIndex("k")
	ix.restoreFirst(ki, revision{main: 5}, true, 0, 0)
	if _, _, _, ok := ix.get(ki, 5); ok {
		t.Error("key exists after its tombstone")
	}
	ix.record(ki, revision{main: 8})
	if mod, created, ver, ok := ix.get(ki, 9); !ok || mod.main != 8 || created != 8 || ver != 1 {
		t.Errorf("get(9) = %v %d %d %v, want 8 8 1 true", mod, created, ver, ok)
	}
	if !ix.remove(ki, revision{main: 10}) {
		t.Error("tombstone of a live key failed")
	}
	if ix.remove(ki, revision{main: 11}) {
		t.Error("tombstone of a deleted key succeeded")
	}
}

// A key written once holds its revision inline; a second write moves its
// history into the index, and a compaction that leaves it one revision
// moves it back and frees the slot for the next key that needs one.
func TestKeyIndexInline(t *testing.T) {
	ix := newIndex()
	ix.put([]byte("a"), revision{main: 2})
	a := ix.lookup([]byte("a"))
	if a.hist != 0 || len(ix.hists) != 1 {
		t.Fatalf("a key written once has history slot %d, index holds %d", a.hist, len(ix.hists))
	}
	ix.put([]byte("a"), revision{main: 3, sub: 1})
	if a.hist == 0 {
		t.Fatal("a key written twice is still inline")
	}
	slot := a.hist
	keep := map[revision]struct{}{}
	if empty := ix.compactKey(a, 3, keep); empty || a.hist != 0 || len(ix.free) != 1 {
		t.Fatalf("compact(3) = %v, slot %d, free %v; want the key inline again and its slot free", empty, a.hist, ix.free)
	}
	if mod, created, ver, ok := ix.get(a, 3); !ok || mod != (revision{main: 3, sub: 1}) || created != 2 || ver != 2 {
		t.Errorf("get(3) after compact = %v %d %d %v, want {3 1} 2 2 true", mod, created, ver, ok)
	}
	if _, ok := keep[revision{main: 3, sub: 1}]; !ok || len(keep) != 1 {
		t.Errorf("compact(3) keeps %v, want {3 1}", keep)
	}
	ix.put([]byte("b"), revision{main: 4})
	ix.tombstone([]byte("b"), revision{main: 5})
	if b := ix.lookup([]byte("b")); b.hist != slot || len(ix.free) != 0 {
		t.Errorf("the next history took slot %d (free %v), want the freed slot %d", b.hist, ix.free, slot)
	}
	if got := string(a.keyBytes()); got != "a" {
		t.Errorf("key = %q, want a", got)
	}
}

// TestIndexAgainstHistories drives the index and, for each key, a plain
// history (never inline) with the same random puts, deletes and chunked
// compactions, and compares every read at and after the compaction
// revision, the revisions compactions keep, the keys left and their bytes.
func TestIndexAgainstHistories(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		checkIndexAgainstHistories(t, fmt.Sprintf("seed %d", seed), 400, rng.Intn)
	}
}

// FuzzIndexAgainstHistories is TestIndexAgainstHistories with the fuzzer
// choosing the operations, the keys and their lengths (empty, around the
// 8-byte words the key is stored in, and long), so that the key bytes
// kept after each key's head are read back at every length. Run under
// -race, the checks of unsafe pointer conversions watch the layout too.
func FuzzIndexAgainstHistories(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{9, 9, 9, 0, 0, 0, 7, 7, 8, 8, 9, 1, 1, 1, 6, 6})
	f.Fuzz(func(t *testing.T, choices []byte) {
		i := 0
		choose := func(n int) int {
			if i >= len(choices) {
				return 0
			}
			c := int(choices[i])
			i++
			return c % n
		}
		checkIndexAgainstHistories(t, "fuzz", min(len(choices)/3, 300), choose)
	})
}

// indexKey is key number n of the checks, of one of several lengths.
func indexKey(n, length int) string {
	lengths := []int{0, 1, 3, 7, 8, 9, 15, 16, 17, 100}
	k := fmt.Sprintf("k%02d", n)
	l := lengths[length%len(lengths)]
	for len(k) < l {
		k += k
	}
	return k[:l]
}

// checkIndexAgainstHistories applies steps operations chosen by choose
// (which returns a number in [0, n)) to an index and to a plain history
// per key, and compares them after each step.
func checkIndexAgainstHistories(t *testing.T, name string, steps int, choose func(n int) int) {
	t.Helper()
	ix := newIndex()
	ref := map[string]*history{}
	rev, compacted := int64(1), int64(0)
	for step := 0; step < steps; step++ {
		key := indexKey(choose(12), choose(10))
		h := ref[key]
		switch op := choose(10); {
		case op < 6:
			rev++
			r := revision{main: rev, sub: int64(choose(3))}
			ix.put([]byte(key), r)
			if h == nil {
				h = &history{gens: []generation{{}}}
				ref[key] = h
			}
			h.put(r)
		case op < 8:
			rev++
			r := revision{main: rev}
			want := h != nil && h.tombstone(r)
			if got := ix.tombstone([]byte(key), r); got != want {
				t.Fatalf("%s step %d: tombstone(%q) = %v, want %v", name, step, key, got, want)
			}
		default:
			at := compacted + int64(choose(int(rev-compacted)+1))
			wantKeep, gotKeep := map[revision]struct{}{}, map[revision]struct{}{}
			for k, h := range ref {
				h.compact(at, wantKeep)
				if h.empty() {
					delete(ref, k)
				}
			}
			for from := []byte{}; from != nil; {
				from = ix.compact(from, at, 1+choose(4), gotKeep)
			}
			if d := cmp.Diff(wantKeep, gotKeep, cmp.AllowUnexported(revision{})); d != "" {
				t.Fatalf("%s step %d: compact(%d) keeps (-want +got):\n%s", name, step, at, d)
			}
			compacted = at
		}
		if ix.tree.Len() != len(ref) {
			t.Fatalf("%s step %d: index holds %d keys, want %d", name, step, ix.tree.Len(), len(ref))
		}
		held := len(ix.hists) - 1 - len(ix.free)
		inline := 0
		for k, h := range ref {
			ki := ix.lookup([]byte(k))
			if ki == nil {
				t.Fatalf("%s step %d: key %q missing", name, step, k)
			}
			if ki.key() != k || string(ki.keyBytes()) != k {
				t.Fatalf("%s step %d: key %q reads back as %q / %q", name, step, k, ki.key(), ki.keyBytes())
			}
			if (ki.hist == 0) != h.single() {
				t.Fatalf("%s step %d: key %q has history slot %d for history %v", name, step, k, ki.hist, h.gens)
			}
			if ki.hist == 0 {
				inline++
			}
			for at := compacted; at <= rev+1; at++ {
				m1, c1, v1, ok1 := h.get(at)
				m2, c2, v2, ok2 := ix.get(ki, at)
				if m1 != m2 || c1 != c2 || v1 != v2 || ok1 != ok2 {
					t.Fatalf("%s step %d: %q get(%d) = %v %d %d %v, want %v %d %d %v", name, step, k, at, m2, c2, v2, ok2, m1, c1, v1, ok1)
				}
			}
		}
		if held != len(ref)-inline {
			t.Fatalf("%s step %d: %d history slots held for %d keys not inline", name, step, held, len(ref)-inline)
		}
	}
}
