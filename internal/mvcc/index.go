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
}

func newIndex() *index {
	return &index{tree: btree.NewG(32, func(a, b *keyIndex) bool {
		return a.key < b.key
	})}
}

// probes holds keyIndexes to search the tree with: a probe escapes to the
// heap, and every put and single-key read searches.
var probes = sync.Pool{New: func() any { return new(keyIndex) }}

// viewString returns b as a string sharing its memory, for a probe that
// is only compared while b stays unchanged.
func viewString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// lookup returns the key's history, or nil if the index has none.
func (ix *index) lookup(key []byte) *keyIndex {
	p := probes.Get().(*keyIndex)
	p.key = viewString(key)
	ki, _ := ix.tree.Get(p)
	p.key = ""
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
	p := probes.Get().(*keyIndex)
	p.key = viewString(s.key)
	ix.tree.AscendGreaterOrEqual(p, func(ki *keyIndex) bool {
		if s.end != nil && ki.key >= string(s.end) {
			return false
		}
		return fn(ki)
	})
	p.key = ""
	probes.Put(p)
}

// put records a new value of key at r.
func (ix *index) put(key []byte, r revision) {
	ki := ix.lookup(key)
	if ki == nil {
		ki = newKeyIndex(string(key))
		ix.tree.ReplaceOrInsert(ki)
	}
	ki.put(r)
}

// tombstone records the deletion of key at r; false means the key was not
// live (see keyIndex.tombstone).
func (ix *index) tombstone(key []byte, r revision) bool {
	ki := ix.lookup(key)
	return ki != nil && ki.tombstone(r)
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
	ix.tree.AscendGreaterOrEqual(&keyIndex{key: viewString(from)}, func(ki *keyIndex) bool {
		if n == limit {
			// A copy, not a view: the caller keeps it across the lock's
			// release, and nil would mean the end.
			next = []byte(ki.key)
			return false
		}
		n++
		ki.compact(atRev, keep)
		if ki.empty() {
			emptied = append(emptied, ki)
		}
		return true
	})
	for _, ki := range emptied {
		ix.tree.Delete(ki)
	}
	return next
}
