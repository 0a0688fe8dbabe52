package watch

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRangeIndexMatchesLinearScan checks the ranged-watcher index against
// a scan of every watcher, through random inserts, deletes and lookups of
// ranges, prefixes, from-key ranges and the whole keyspace over a small
// alphabet, so that starts, ends and keys often coincide.
func TestRangeIndexMatchesLinearScan(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 1))
		key := func() []byte {
			k := make([]byte, 1+r.IntN(3))
			for i := range k {
				k[i] = "\x00abc"[r.IntN(4)]
			}
			return k
		}
		var (
			x    rangeIndex
			live []*watcher
		)
		for step := range 2000 {
			switch op := r.IntN(10); {
			case op < 4 || len(live) == 0:
				w := &watcher{id: int64(step), key: key()}
				switch r.IntN(4) {
				case 0:
					w.end = []byte{} // from key on
				case 1:
					w.key, w.end = []byte{0}, []byte{} // the whole keyspace
				default:
					w.end = append(slices.Clone(w.key), key()...) // past key
				}
				x.insert(w)
				live = append(live, w)
			case op < 6:
				i := r.IntN(len(live))
				x.delete(live[i])
				x.delete(live[i]) // a second delete is a no-op
				live = slices.Delete(live, i, i+1)
			default:
				k := key()
				var want []int64
				for _, w := range live {
					if w.contains(k) {
						want = append(want, w.id)
					}
				}
				var got []int64
				for _, w := range x.stab(k, nil) {
					got = append(got, w.id)
				}
				slices.Sort(want)
				slices.Sort(got)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("seed %d step %d: stab(%q) = %v, want %v", seed, step, k, got, want)
				}
			}
			if x.size != len(live) {
				t.Fatalf("seed %d step %d: size %d, want %d", seed, step, x.size, len(live))
			}
		}
		checkRangeNodes(t, x.root)
	}
}

// checkRangeNodes checks the treap's order, heap and subtree-end
// invariants below n.
func checkRangeNodes(t *testing.T, n *rangeNode) {
	t.Helper()
	if n == nil {
		return
	}
	for _, c := range []*rangeNode{n.left, n.right} {
		if c != nil && c.prio > n.prio {
			t.Fatalf("heap order broken under %q", n.w.key)
		}
	}
	if n.left != nil && !before(n.left.w, n.w) || n.right != nil && !before(n.w, n.right.w) {
		t.Fatalf("search order broken under %q", n.w.key)
	}
	want := *n
	want.fix()
	if want.open != n.open || string(want.maxEnd) != string(n.maxEnd) {
		t.Fatalf("subtree end of %q is stale", n.w.key)
	}
	checkRangeNodes(t, n.left)
	checkRangeNodes(t, n.right)
}
