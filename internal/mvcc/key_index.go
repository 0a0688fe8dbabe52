package mvcc

import (
	"slices"
	"sort"
	"unsafe"
)

// keyIndex is what the in-memory index knows about one key: the revisions
// at which it changed, grouped into generations. A generation runs from the
// put that creates the key to the delete that ends it, and a delete opens a
// new, empty generation for the next creation. So the last generation is
// the live one (empty while the key does not exist) and every earlier one
// ends with a tombstone.
//
// For put(2) put(3) del(4) put(5) on "foo" the generations are
//
//	{2, 3, 4(tombstone)} {5}
//
// Values are not here: a revision locates the record in the KV bucket.
type keyIndex struct {
	key  string // owned by the index
	gens []generation
	// gen0 and rev0 are where gens and its first generation's revisions
	// start out, so that a key written once, as most keys are, costs one
	// allocation besides its key's instead of three (a key index at
	// 100 000 keys was two thirds of a RocksDB member's live heap).
	gen0 [1]generation
	rev0 [1]revision
}

type generation struct {
	// created is the main revision of the put that created the key, taken
	// from the stored value when the index is rebuilt (compaction may have
	// removed that put's own record), and 0 for a generation rebuilt from
	// its tombstone alone, which no read ever returns.
	created int64
	// ver is the version of the key at the last revision in revs. Versions
	// of earlier revisions follow by counting back, which stays right when
	// compaction drops the oldest revisions.
	ver  int64
	revs []revision // ascending
}

func newKeyIndex(key string) *keyIndex {
	ki := &keyIndex{key: key}
	ki.gens = ki.gen0[:1:1]
	ki.gens[0].revs = ki.rev0[:0:1]
	return ki
}

// keyBytes returns the key as a byte slice sharing the key's memory, for
// responses: no one may modify it.
func (ki *keyIndex) keyBytes() []byte {
	return unsafe.Slice(unsafe.StringData(ki.key), len(ki.key))
}

// put records a new value of the key written at r, creating the key if its
// live generation is empty.
func (ki *keyIndex) put(r revision) {
	g := &ki.gens[len(ki.gens)-1]
	if len(g.revs) == 0 {
		g.created = r.main
	}
	g.revs = append(g.revs, r)
	g.ver++
}

// tombstone records the deletion of the key at r. It reports false, and
// changes nothing, when the key does not exist: a delete only ever targets
// live keys, so this means the caller's view is inconsistent.
func (ki *keyIndex) tombstone(r revision) bool {
	g := &ki.gens[len(ki.gens)-1]
	if len(g.revs) == 0 {
		return false
	}
	g.revs = append(g.revs, r)
	g.ver++
	ki.gens = append(ki.gens, generation{})
	return true
}

// restoreFirst records the oldest record the KV bucket still holds for the
// key while the index is rebuilt. Older records may have been compacted
// away, so create revision and version come from the value of a put. A
// tombstone found first is kept as a closed generation, so that reads at
// revisions before the deletion (down to the compaction) still see it end.
func (ki *keyIndex) restoreFirst(r revision, tombstone bool, created, ver int64) {
	ki.rev0[0] = r
	if tombstone {
		ki.gens = []generation{{ver: 1, revs: ki.rev0[:1:1]}, {}}
		return
	}
	ki.gen0[0] = generation{created: created, ver: ver, revs: ki.rev0[:1:1]}
	ki.gens = ki.gen0[:1:1]
}

// get returns the revision of the key's value as of main revision atRev,
// with the key's create revision and version at that point; ok is false if
// the key did not exist then.
func (ki *keyIndex) get(atRev int64) (mod revision, created, ver int64, ok bool) {
	last := len(ki.gens) - 1
	for i := last; i >= 0; i-- {
		g := &ki.gens[i]
		if len(g.revs) == 0 {
			continue
		}
		if i != last && g.revs[len(g.revs)-1].main <= atRev {
			// This generation had ended by atRev and the next one had not
			// started yet: the key was deleted at atRev.
			return revision{}, 0, 0, false
		}
		if g.revs[0].main > atRev {
			continue
		}
		j := sort.Search(len(g.revs), func(n int) bool { return g.revs[n].main > atRev }) - 1
		return g.revs[j], g.created, g.ver - int64(len(g.revs)-1-j), true
	}
	return revision{}, 0, 0, false
}

// compact drops the history no read at or after atRev can reach: every
// generation that ended before atRev, and within the first remaining one
// every revision older than the newest one at or before atRev. That newest
// one is what a read at atRev returns (or, for a tombstone at exactly
// atRev, what ends the key there), so it is added to keep and its record
// must survive in the KV bucket; every other record at or below atRev may
// go.
func (ki *keyIndex) compact(atRev int64, keep map[revision]struct{}) {
	i := 0
	for i < len(ki.gens)-1 {
		g := &ki.gens[i]
		if len(g.revs) > 0 && g.revs[len(g.revs)-1].main >= atRev {
			break
		}
		i++
	}
	ki.gens = slices.Delete(ki.gens, 0, i)
	g := &ki.gens[0]
	j := sort.Search(len(g.revs), func(n int) bool { return g.revs[n].main > atRev }) - 1
	if j >= 0 {
		keep[g.revs[j]] = struct{}{}
		g.revs = slices.Delete(g.revs, 0, j)
	}
}

// empty reports whether the key has no history left, after compaction
// removed a deletion older than the compaction revision: it can be dropped
// from the index.
func (ki *keyIndex) empty() bool {
	return len(ki.gens) == 1 && len(ki.gens[0].revs) == 0
}
