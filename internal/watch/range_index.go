package watch

import (
	"bytes"
	"math/rand/v2"
)

// rangeIndex holds a stream's ranged watchers (a range, a prefix, a
// from-key range or the whole keyspace) so that the ones containing a key
// are found in O((1 + matches) log W) rather than by a scan of all W:
// every commit looks its keys up here, and a stream may hold many ranged
// watchers that no commit touches.
//
// It is an interval tree kept as a treap ordered by (range start, watcher
// ID), each node carrying the largest range end of its subtree, so a
// lookup skips every subtree that ends at or before the key and every
// right subtree that starts after it. A treap keeps the tree balanced in
// expectation with much less code than a red-black tree, and
// github.com/google/btree has no hook for the subtree augmentation.
//
// The zero value is an empty index. It is used by its stream's actor only.
type rangeIndex struct {
	root *rangeNode
	size int
}

// rangeNode is one ranged watcher in the treap.
type rangeNode struct {
	w           *watcher
	prio        uint64 // heap order: a parent's is at least its children's
	left, right *rangeNode
	// maxEnd is the largest end among the subtree's watchers, and open is
	// set if one of them has no end (a from-key range), which is past
	// every key and makes maxEnd irrelevant.
	maxEnd []byte
	open   bool
}

// before orders watchers in the index: by range start, then by ID, which
// is unique within a stream, so no two watchers tie.
func before(a, b *watcher) bool {
	if c := bytes.Compare(a.key, b.key); c != 0 {
		return c < 0
	}
	return a.id < b.id
}

// fix recomputes n's subtree end from its own range and its children's.
func (n *rangeNode) fix() {
	n.open = len(n.w.end) == 0
	n.maxEnd = n.w.end
	for _, c := range [2]*rangeNode{n.left, n.right} {
		if c == nil {
			continue
		}
		n.open = n.open || c.open
		if bytes.Compare(c.maxEnd, n.maxEnd) > 0 {
			n.maxEnd = c.maxEnd
		}
	}
}

// reaches reports whether some range in n's subtree ends after k.
func (n *rangeNode) reaches(k []byte) bool {
	return n.open || bytes.Compare(k, n.maxEnd) < 0
}

// split cuts the subtree n into the watchers ordered before w and the
// others.
func split(n *rangeNode, w *watcher) (lo, hi *rangeNode) {
	if n == nil {
		return nil, nil
	}
	if before(n.w, w) {
		n.right, hi = split(n.right, w)
		n.fix()
		return n, hi
	}
	lo, n.left = split(n.left, w)
	n.fix()
	return lo, n
}

// merge joins two subtrees, every watcher of lo ordered before every one
// of hi.
func merge(lo, hi *rangeNode) *rangeNode {
	switch {
	case lo == nil:
		return hi
	case hi == nil:
		return lo
	case lo.prio >= hi.prio:
		lo.right = merge(lo.right, hi)
		lo.fix()
		return lo
	default:
		hi.left = merge(lo, hi.left)
		hi.fix()
		return hi
	}
}

// insert adds w, a ranged watcher not in the index.
func (x *rangeIndex) insert(w *watcher) {
	n := &rangeNode{w: w, prio: rand.Uint64()}
	n.fix()
	lo, hi := split(x.root, w)
	x.root = merge(merge(lo, n), hi)
	x.size++
}

// delete removes w if it is in the index.
func (x *rangeIndex) delete(w *watcher) {
	var found bool
	x.root, found = deleteFrom(x.root, w)
	if found {
		x.size--
	}
}

func deleteFrom(n *rangeNode, w *watcher) (*rangeNode, bool) {
	if n == nil {
		return nil, false
	}
	if n.w == w {
		return merge(n.left, n.right), true
	}
	var found bool
	if before(w, n.w) {
		n.left, found = deleteFrom(n.left, w)
	} else {
		n.right, found = deleteFrom(n.right, w)
	}
	if found {
		n.fix()
	}
	return n, found
}

// stab appends to out the watchers whose range contains k, in the order of
// their range starts, and returns it.
func (x *rangeIndex) stab(k []byte, out []*watcher) []*watcher {
	return stab(x.root, k, out)
}

func stab(n *rangeNode, k []byte, out []*watcher) []*watcher {
	for n != nil && n.reaches(k) {
		out = stab(n.left, k, out)
		if bytes.Compare(n.w.key, k) > 0 {
			break // this range and those to its right start after k
		}
		if n.w.contains(k) {
			out = append(out, n.w)
		}
		n = n.right
	}
	return out
}
