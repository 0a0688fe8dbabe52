package mvcc

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// history builds a keyIndex from a script: a positive number puts at that
// main revision, a negative one deletes at minus it.
func history(revs ...int64) *keyIndex {
	ki := newKeyIndex("k")
	for _, r := range revs {
		if r < 0 {
			if !ki.tombstone(revision{main: -r}) {
				panic("tombstone of a missing key")
			}
			continue
		}
		ki.put(revision{main: r})
	}
	return ki
}

func TestKeyIndexGet(t *testing.T) {
	ki := history(2, 3, -4, 6, 8, -9)
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
		mod, created, ver, ok := ki.get(tt.at)
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
		ki := history(1, 2, -3, 4, -5)
		keep := map[revision]struct{}{}
		ki.compact(tt.at, keep)
		var gens [][]int64
		for _, g := range ki.gens {
			mains := []int64{}
			for _, r := range g.revs {
				mains = append(mains, r.main)
			}
			gens = append(gens, mains)
		}
		if d := cmp.Diff(tt.wantGens, gens); d != "" {
			t.Errorf("compact(%d) generations (-want +got):\n%s", tt.at, d)
		}
		var kept []int64
		for r := range keep {
			kept = append(kept, r.main)
		}
		if d := cmp.Diff(tt.wantKeep, kept); d != "" {
			t.Errorf("compact(%d) keep (-want +got):\n%s", tt.at, d)
		}
		if ki.empty() != tt.empty {
			t.Errorf("compact(%d) empty = %v", tt.at, ki.empty())
		}
	}
}

// A compacted history must answer reads at and after the compaction
// revision exactly like the full one, including versions.
func TestKeyIndexCompactKeepsReads(t *testing.T) {
	script := []int64{2, 3, 5, -6, 7, 9, 10, -12, 13}
	for at := int64(1); at <= 14; at++ {
		full, compacted := history(script...), history(script...)
		compacted.compact(at, map[revision]struct{}{})
		for r := at; r <= 14; r++ {
			m1, c1, v1, ok1 := full.get(r)
			m2, c2, v2, ok2 := compacted.get(r)
			if m1 != m2 || c1 != c2 || v1 != v2 || ok1 != ok2 {
				t.Fatalf("compact(%d) then get(%d) = %v %d %d %v, want %v %d %d %v", at, r, m2, c2, v2, ok2, m1, c1, v1, ok1)
			}
		}
	}
}

func TestKeyIndexRestore(t *testing.T) {
	// The bucket's oldest record is a put whose generation began earlier.
	ki := &keyIndex{key: "k"}
	ki.restoreFirst(revision{main: 5}, false, 2, 3)
	ki.put(revision{main: 7})
	if mod, created, ver, ok := ki.get(7); !ok || mod.main != 7 || created != 2 || ver != 4 {
		t.Errorf("get(7) = %v %d %d %v, want 7 2 4 true", mod, created, ver, ok)
	}
	// The oldest record is a tombstone: the key exists at no revision,
	// until it is put again.
	ki = &keyIndex{key: "k"}
	ki.restoreFirst(revision{main: 5}, true, 0, 0)
	if _, _, _, ok := ki.get(5); ok {
		t.Error("key exists after its tombstone")
	}
	ki.put(revision{main: 8})
	if mod, created, ver, ok := ki.get(9); !ok || mod.main != 8 || created != 8 || ver != 1 {
		t.Errorf("get(9) = %v %d %d %v, want 8 8 1 true", mod, created, ver, ok)
	}
	if !ki.tombstone(revision{main: 10}) {
		t.Error("tombstone of a live key failed")
	}
	if ki.tombstone(revision{main: 11}) {
		t.Error("tombstone of a deleted key succeeded")
	}
}
