package mvcc

import (
	"bytes"
	"sync"
	"unsafe"

	"github.com/google/btree"
)

// keySpan is the set of keys a request addresses, decoded once from etcd's
// key/range_end convention.
type keySpan struct {
	key []byte
	// end bounds a range [key, end); nil means no bound. Ignored for a
	// single key.
	end    []byte
	single bool
}

// spanOf decodes etcd's key/range_end pair: an empty range_end names the
// single key; "\x00" means every key from key on; anything else is the
// half-open range [key, range_end), which is empty when range_end <= key.
func spanOf(key, rangeEnd []byte) keySpan {
	switch {
	case len(rangeEnd) == 0:
		return keySpan{key: key, single: true}
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return keySpan{key: key}
	}
	return keySpan{key: key, end: rangeEnd}
}

// contains reports whether k is in the span.
func (s keySpan) contains(k []byte) bool {
	if s.single {
		return bytes.Equal(k, s.key)
	}
	return bytes.Compare(k, s.key) >= 0 && (s.end == nil || bytes.Compare(k, s.end) < 0)
}

// index maps each key to its keyIndex, in key order. It does no locking of
// its own: KV.mu guards it.
type index struct {
	tree *btree.BTreeG[*keyIndex]
	// hists holds the history of every key whose history is not a single
	// revision, at the keyIndex's hist; hists[0] is never used, and free
	// lists the slots given up since.
	hists []*history
	free  []uint32
}

func newIndex() *index {
	return &index{
		tree: btree.NewG(32, func(a, b *keyIndex) bool {
			return a.key() < b.key()
		}),
		hists: make([]*history, 1),
	}
}

// probe is a keyIndex to search the tree with, made from a caller's key.
type probe struct {
	words []uint64
}

// probes holds probes: a probe escapes to the heap, and every put and
// single-key read searches.
var probes = sync.Pool{New: func() any { return new(probe) }}

// of returns a keyIndex for key, without history, valid until the next call.
func (p *probe) of(key []byte) *keyIndex {
	n := keyWords(len(key))
	if cap(p.words) < n {
		p.words = make([]uint64, n)
	}
	p.words = p.words[:n]
	ki := (*keyIndex)(unsafe.Pointer(unsafe.SliceData(p.words)))
	*ki = keyIndex{keyLen: uint32(len(key))}
	copy(ki.keyBytes(), key)
	return ki
}

// lookup returns the key's entry, or nil if the index has none.
func (ix *index) lookup(key []byte) *keyIndex {
	p := probes.Get().(*probe)
	ki, _ := ix.tree.Get(p.of(key))
	probes.Put(p)
	return ki
}

// ascend calls fn, in key order, for each key of the span that has a
// history (live or not), until fn returns false.
func (ix *index) ascend(s keySpan, fn func(ki *keyIndex) bool) {
	if s.single {
		if ki := ix.lookup(s.key); ki != nil {
			fn(ki)
		}
		return
	}
	p := probes.Get().(*probe)
	ix.tree.AscendGreaterOrEqual(p.of(s.key), func(ki *keyIndex) bool {
		if s.end != nil && ki.key() >= string(s.end) {
			return false
		}
		return fn(ki)
	})
	probes.Put(p)
}

// put records a new value of key at r.
func (ix *index) put(key []byte, r revision) {
	ki := ix.lookup(key)
	if ki == nil {
		ki = newKeyIndex(string(key))
		ix.tree.ReplaceOrInsert(ki)
	}
	ix.record(ki, r)
}

// tombstone records the deletion of key at r; false means the key was not
// live (see history.tombstone).
func (ix *index) tombstone(key []byte, r revision) bool {
	ki := ix.lookup(key)
	return ki != nil && ix.remove(ki, r)
}

// record records a new value of ki's key written at r, creating the key if
// it does not exist.
func (ix *index) record(ki *keyIndex, r revision) {
	switch {
	case ki.hist != 0:
		ix.hists[ki.hist].put(r)
	case ki.ver == 0:
		ki.rev, ki.created, ki.ver = r, r.main, 1
	default:
		ix.spill(ki).put(r)
	}
}

// remove records the deletion of ki's key at r; false, with nothing
// changed, means the key does not exist.
func (ix *index) remove(ki *keyIndex, r revision) bool {
	switch {
	case ki.hist != 0:
		return ix.hists[ki.hist].tombstone(r)
	case ki.ver == 0:
		return false
	}
	return ix.spill(ki).tombstone(r)
}

// restoreFirst records the oldest record the KV bucket still holds for
// ki's key, which has no history yet, while the index is rebuilt. Older
// records may have been compacted away, so create revision and version
// come from the value of a put. A tombstone found first is kept as a
// closed generation, so that reads at revisions before the deletion (down
// to the compaction) still see it end.
func (ix *index) restoreFirst(ki *keyIndex, r revision, tombstone bool, created, ver int64) {
	if !tombstone {
		ki.rev, ki.created, ki.ver = r, created, ver
		return
	}
	h := newHistory(r, 0, 1)
	h.gens = append(h.gens, generation{})
	ix.hold(ki, h)
}

// get returns the revision of ki's value as of main revision atRev, with
// the key's create revision and version at that point; ok is false if the
// key did not exist then.
func (ix *index) get(ki *keyIndex, atRev int64) (mod revision, created, ver int64, ok bool) {
	if ki.hist != 0 {
		return ix.hists[ki.hist].get(atRev)
	}
	if ki.ver == 0 || ki.rev.main > atRev {
		return revision{}, 0, 0, false
	}
	return ki.rev, ki.created, ki.ver, true
}

// compactKey compacts ki's history at atRev (see history.compact) and
// reports whether none is left. A history left a single revision goes back
// inline.
func (ix *index) compactKey(ki *keyIndex, atRev int64, keep map[revision]struct{}) (empty bool) {
	if ki.hist == 0 {
		if ki.ver != 0 && ki.rev.main <= atRev {
			keep[ki.rev] = struct{}{}
		}
		return ki.ver == 0
	}
	h := ix.hists[ki.hist]
	h.compact(atRev, keep)
	switch {
	case h.empty():
		ix.release(ki)
		return true
	case h.single():
		g := &h.gens[0]
		ix.release(ki)
		ki.rev, ki.created, ki.ver = g.revs[0], g.created, g.ver
	}
	return false
}

// keepAt adds to keep the revision of ki's key a compaction at atRev would
// keep, unless it is a tombstone (see index.keep).
func (ix *index) keepAt(ki *keyIndex, atRev int64, keep map[revision]struct{}) {
	if ki.hist != 0 {
		ix.hists[ki.hist].keepAt(atRev, keep)
		return
	}
	if ki.ver != 0 && ki.rev.main <= atRev {
		keep[ki.rev] = struct{}{}
	}
}

// spill moves ki's inline history into one the index holds, and returns
// it.
func (ix *index) spill(ki *keyIndex) *history {
	h := newHistory(ki.rev, ki.created, ki.ver)
	ix.hold(ki, h)
	ki.rev, ki.created, ki.ver = revision{}, 0, 0
	return h
}

// hold gives h a slot and makes it ki's history.
func (ix *index) hold(ki *keyIndex, h *history) {
	if n := len(ix.free); n > 0 {
		ki.hist = ix.free[n-1]
		ix.free = ix.free[:n-1]
		ix.hists[ki.hist] = h
		return
	}
	ki.hist = uint32(len(ix.hists))
	ix.hists = append(ix.hists, h)
}

// release frees ki's history slot; ki is left without history.
func (ix *index) release(ki *keyIndex) {
	ix.hists[ki.hist] = nil
	ix.free = append(ix.free, ki.hist)
	ki.hist = 0
}

// compact compacts the histories of up to limit keys, starting at key from
// (nil for the first key), at revision atRev, adding the revisions to keep
// to keep and dropping keys left without history. It returns the key to
// resume from, or nil when it reached the last key. Working in chunks lets
// the caller release the lock between them, so writers are never held up
// for a whole index's worth of work.
func (ix *index) compact(from []byte, atRev int64, limit int, keep map[revision]struct{}) (next []byte) {
	var emptied []*keyIndex
	n := 0
	p := probes.Get().(*probe)
	ix.tree.AscendGreaterOrEqual(p.of(from), func(ki *keyIndex) bool {
		if n == limit {
			// A copy, not a view: the caller keeps it across the lock's
			// release, and nil would mean the end.
			next = []byte(ki.key())
			return false
		}
		n++
		if ix.compactKey(ki, atRev, keep) {
			emptied = append(emptied, ki)
		}
		return true
	})
	probes.Put(p)
	for _, ki := range emptied {
		ix.tree.Delete(ki)
	}
	return next
}
