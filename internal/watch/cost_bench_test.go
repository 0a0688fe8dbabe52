package watch

import (
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/actors"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

// The BenchmarkCost benchmarks are cost guards: each runs one operation at
// three sizes n, 10n and 100n, as sub-benchmarks named .../n=<size>. Here
// n is how many watchers or streams are already there, and the operation
// (one registration, or one event for one watcher) should not cost more
// for them: ns/op is flat across the sizes on a sound path and grows about
// 10× per step on one that is linear in them (which makes n of those
// operations quadratic). `make bench-cost` runs them and
// test/bench/costreport turns their output into growth factors.

// costSizes returns the sizes n, 10n and 100n of a cost guard.
func costSizes(n int) []int { return []int{n, 10 * n, 100 * n} }

// newCostHub returns a hub over an empty KV on the memory engine, and the
// KV; both are closed when b ends.
func newCostHub(b *testing.B) (*Hub, *mvcc.KV) {
	b.Helper()
	e, err := memory.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	kv, err := mvcc.Open(e, mvcc.Options{})
	if err != nil {
		b.Fatal(err)
	}
	h := NewHub(actors.NewSystem(), kv, Options{})
	b.Cleanup(func() {
		h.Close()
		kv.Close()
		e.Close()
	})
	return h, kv
}

// costClient is a stream's client that hands each response to the
// benchmark, in order.
type costClient struct{ got chan *pb.WatchResponse }

func newCostClient() *costClient { return &costClient{got: make(chan *pb.WatchResponse, 1024)} }

func (c *costClient) send(r *pb.WatchResponse) error {
	c.got <- r
	return nil
}

// costTimeout is how long a guard waits for a response before it fails.
const costTimeout = 10 * time.Second

// recv returns the next response.
func (c *costClient) recv(b *testing.B) *pb.WatchResponse {
	select {
	case r := <-c.got:
		return r
	case <-time.After(costTimeout):
		b.Fatalf("no response in %v", costTimeout)
		return nil
	}
}

// next returns the next response, which must be a creation (create set) or
// a cancellation.
func (c *costClient) next(b *testing.B, create bool) *pb.WatchResponse {
	r := c.recv(b)
	if r.Created != create || r.Canceled == create {
		b.Fatalf("got %v, want created=%v", r, create)
	}
	return r
}

// costWatch returns the create request of the i-th watcher of a guard: on
// one key, or on a prefix.
func costWatch(prefix bool, i int) *pb.WatchCreateRequest {
	if prefix {
		return &pb.WatchCreateRequest{Key: fmt.Appendf(nil, "p/%07d/", i), RangeEnd: fmt.Appendf(nil, "p/%07d0", i)}
	}
	return &pb.WatchCreateRequest{Key: fmt.Appendf(nil, "k/%07d", i)}
}

// BenchmarkCostWatchCreate guards registering a watcher on a stream that
// already holds n watchers, each on a key (key) or a prefix (prefix) of its
// own. An op is one Create through the stream's actor, answered, and the
// Cancel of that watcher, answered, so the stream keeps n watchers.
func BenchmarkCostWatchCreate(b *testing.B) {
	for _, kind := range []struct {
		name   string
		prefix bool
	}{{"key", false}, {"prefix", true}} {
		b.Run(kind.name, func(b *testing.B) {
			for _, n := range costSizes(100) {
				b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
					h, _ := newCostHub(b)
					c := newCostClient()
					s := h.Open(c.send)
					defer s.Close()
					for i := range n {
						s.Create(costWatch(kind.prefix, i))
						c.next(b, true)
					}
					i := n
					for b.Loop() {
						s.Create(costWatch(kind.prefix, i))
						id := c.next(b, true).WatchId
						s.Cancel(id)
						c.next(b, false)
						i++
					}
				})
			}
		})
	}
}

// BenchmarkCostWatchOpen guards opening a stream on a hub that already has
// n open streams, each with one watcher. An op is one Open, a Create on the
// new stream, answered, and its Close, so the hub keeps n streams.
func BenchmarkCostWatchOpen(b *testing.B) {
	for _, n := range costSizes(10) {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			h, _ := newCostHub(b)
			for i := range n {
				c := newCostClient()
				s := h.Open(c.send)
				defer s.Close()
				s.Create(costWatch(false, i))
				c.next(b, true)
			}
			i := n
			for b.Loop() {
				c := newCostClient()
				s := h.Open(c.send)
				s.Create(costWatch(false, i))
				c.next(b, true)
				s.Close()
				i++
			}
		})
	}
}

// BenchmarkCostWatchDeliver guards delivering a commit to a stream that
// holds n watchers, each on a key (key) or a prefix (prefix) of its own
// that the commit does not touch, and one watcher on the key it puts. An
// op is one put, published, and its event received by that one watcher.
// The n watchers have nothing to do with the event, so its cost should not
// depend on them; ns/op growing with n means every commit costs a stream
// time in proportion to all of its watchers.
func BenchmarkCostWatchDeliver(b *testing.B) {
	for _, kind := range []struct {
		name   string
		prefix bool
	}{{"key", false}, {"prefix", true}} {
		b.Run(kind.name, func(b *testing.B) {
			for _, n := range costSizes(100) {
				b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
					h, kv := newCostHub(b)
					c := newCostClient()
					s := h.Open(c.send)
					defer s.Close()
					for i := range n {
						s.Create(costWatch(kind.prefix, i))
						c.next(b, true)
					}
					hot := &pb.PutRequest{Key: []byte("hot"), Value: []byte("v")}
					s.Create(&pb.WatchCreateRequest{Key: hot.Key})
					id := c.next(b, true).WatchId
					index := uint64(0)
					for b.Loop() {
						index++
						_, evs, err := kv.Put(index, hot)
						if err != nil {
							b.Fatal(err)
						}
						h.Publish(evs)
						if r := c.recv(b); r.WatchId != id || len(r.Events) != 1 {
							b.Fatalf("got %v, want one event for watcher %d", r, id)
						}
					}
				})
			}
		})
	}
}
