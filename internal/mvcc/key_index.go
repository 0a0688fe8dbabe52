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
//
// Most keys hold a single revision between compactions (written once, or
// compacted down to their latest value), so a keyIndex is laid out for
// them: it is the head of one pointer-free allocation that the key's bytes
// follow, and while hist is 0 the key's whole history is the one
// generation {rev} (or nothing, while ver is 0). Any other history lives
// in a history the index holds at hist (see index.hists); compaction moves
// a key back inline when it leaves it a single revision. Being
// pointer-free, these allocations are never scanned by the garbage
// collector, and a key written once costs one of them: 48 bytes for an
// 8-byte key, against 96 bytes and a second allocation for the key when
// the generations were kept in every key.
type keyIndex struct {
	rev     revision // the one revision, while hist is 0 and ver > 0
	created int64    // its generation's create revision
	ver     int64    // the key's version at rev; 0: no history
	hist    uint32   // the index's history of the key, 0 for none
	keyLen  uint32
}

// headSize is where a keyIndex's key starts in its allocation.
const headSize = int(unsafe.Sizeof(keyIndex{}))

// keyWords returns the number of 8-byte words holding a keyIndex with a key
// of n bytes: words, so that the head is aligned for its int64s.
func keyWords(n int) int { return (headSize + n + 7) / 8 }

// newKeyIndex returns an entry without history for key.
func newKeyIndex(key string) *keyIndex {
	words := make([]uint64, keyWords(len(key)))
	ki := (*keyIndex)(unsafe.Pointer(unsafe.SliceData(words)))
	ki.keyLen = uint32(len(key))
	copy(ki.keyBytes(), key)
	return ki
}

// keyBytes returns the key as a byte slice sharing the entry's memory. The
// key is never changed once written, so responses may hold it after the
// index's lock is released; no one may modify it.
func (ki *keyIndex) keyBytes() []byte {
	if ki.keyLen == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Add(unsafe.Pointer(ki), headSize)), ki.keyLen)
}

// key returns the key as a string sharing the entry's memory.
func (ki *keyIndex) key() string {
	if ki.keyLen == 0 {
		return ""
	}
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(ki), headSize)), ki.keyLen)
}

// history is the generations of a key whose history is more than one
// revision.
type history struct {
	gens []generation
	// gen0 and rev0 are where gens and its first generation's revisions
	// start out, so that a key spilled by its second write costs one
	// allocation.
	gen0 [1]generation
	rev0 [2]revision
}

// newHistory returns a history of one generation holding r, whose create
// revision and version are created and ver.
func newHistory(r revision, created, ver int64) *history {
	h := &history{}
	h.rev0[0] = r
	h.gen0[0] = generation{created: created, ver: ver, revs: h.rev0[:1:2]}
	h.gens = h.gen0[:1:1]
	return h
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

// put records a new value of the key written at r, creating the key if its
// live generation is empty.
func (h *history) put(r revision) {
	g := &h.gens[len(h.gens)-1]
	if len(g.revs) == 0 {
		g.created = r.main
	}
	g.revs = append(g.revs, r)
	g.ver++
}

// tombstone records the deletion of the key at r. It reports false, and
// changes nothing, when the key does not exist: a delete only ever targets
// live keys, so this means the caller's view is inconsistent.
func (h *history) tombstone(r revision) bool {
	g := &h.gens[len(h.gens)-1]
	if len(g.revs) == 0 {
		return false
	}
	g.revs = append(g.revs, r)
	g.ver++
	h.gens = append(h.gens, generation{})
	return true
}

// get returns the revision of the key's value as of main revision atRev,
// with the key's create revision and version at that point; ok is false if
// the key did not exist then.
func (h *history) get(atRev int64) (mod revision, created, ver int64, ok bool) {
	last := len(h.gens) - 1
	for i := last; i >= 0; i-- {
		g := &h.gens[i]
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
func (h *history) compact(atRev int64, keep map[revision]struct{}) {
	i := 0
	for i < len(h.gens)-1 {
		g := &h.gens[i]
		if len(g.revs) > 0 && g.revs[len(g.revs)-1].main >= atRev {
			break
		}
		i++
	}
	h.gens = slices.Delete(h.gens, 0, i)
	g := &h.gens[0]
	j := sort.Search(len(g.revs), func(n int) bool { return g.revs[n].main > atRev }) - 1
	if j >= 0 {
		keep[g.revs[j]] = struct{}{}
		g.revs = slices.Delete(g.revs, 0, j)
	}
}

// keepAt adds to keep the revision of the key a compaction at atRev would
// keep, unless it is a tombstone (see index.keep).
func (h *history) keepAt(atRev int64, keep map[revision]struct{}) {
	last := len(h.gens) - 1
	i := 0
	for i < last {
		g := &h.gens[i]
		if len(g.revs) > 0 && g.revs[len(g.revs)-1].main >= atRev {
			break
		}
		i++
	}
	g := &h.gens[i]
	j := sort.Search(len(g.revs), func(n int) bool { return g.revs[n].main > atRev }) - 1
	if j < 0 || (i != last && j == len(g.revs)-1) {
		return
	}
	keep[g.revs[j]] = struct{}{}
}

// single reports whether the history is one live generation of one
// revision, which a keyIndex holds inline.
func (h *history) single() bool {
	return len(h.gens) == 1 && len(h.gens[0].revs) == 1
}

// empty reports whether the key has no history left, after compaction
// removed a deletion older than the compaction revision: it can be dropped
// from the index.
func (h *history) empty() bool {
	return len(h.gens) == 1 && len(h.gens[0].revs) == 0
}
