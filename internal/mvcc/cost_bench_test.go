package mvcc

import (
	"fmt"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The BenchmarkCost benchmarks are cost guards: each runs one operation at
// three sizes n, 10n and 100n, as sub-benchmarks named .../n=<size>, and
// reports ns/item, the time per unit of work. A linear path shows a flat
// ns/item across the sizes; a quadratic one shows it grow about 10× per
// step. `make bench-cost` runs them and test/bench/costreport turns their
// output into growth factors.

// costSizes returns the sizes n, 10n and 100n of a cost guard.
func costSizes(n int) []int { return []int{n, 10 * n, 100 * n} }

// runCost runs fn as the sub-benchmark n=<size> for each size, and reports
// ns/item with items(size) items per op.
func runCost(b *testing.B, sizes []int, items func(n int) int, fn func(b *testing.B, n int)) {
	for _, n := range sizes {
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			fn(b, n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/(float64(b.N)*float64(items(n))), "ns/item")
		})
	}
}

// costTxnOps returns n single-key deletes and n puts, on distinct keys that
// no delete covers, interleaved in a fixed random order so that no check
// gets its input sorted for free. prefix makes the keys distinct from those
// of another call.
func costTxnOps(n int, prefix string) []*pb.RequestOp {
	ops := make([]*pb.RequestOp, 0, 2*n)
	for i := range n {
		ops = append(ops,
			&pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{
				Key: fmt.Appendf(nil, "%sdel/%07d", prefix, i)}}},
			&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{
				Key: fmt.Appendf(nil, "%sput/%07d", prefix, i), Value: []byte("v")}}},
		)
	}
	r := rand.New(rand.NewPCG(uint64(n), 1))
	r.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	return ops
}

// BenchmarkCostTxnValidate guards ValidateTxn, which a client reaches with
// any txn before it is proposed. An item is one operation of the txn.
//
//   - flat: one branch of n single-key deletes and n puts on distinct keys.
//   - nested: one branch of two nested txns, each with n/2 deletes and n/2
//     puts in its success branch, so the puts of each nested txn are
//     checked against the deletes of the other when the branch is merged.
func BenchmarkCostTxnValidate(b *testing.B) {
	cases := []struct {
		name string
		req  func(n int) *pb.TxnRequest
	}{
		{"flat", func(n int) *pb.TxnRequest {
			return &pb.TxnRequest{Success: costTxnOps(n, "")}
		}},
		{"nested", func(n int) *pb.TxnRequest {
			nested := func(prefix string) *pb.RequestOp {
				return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
					Success: costTxnOps(n/2, prefix)}}}
			}
			return &pb.TxnRequest{Success: []*pb.RequestOp{nested("a/"), nested("b/")}}
		}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			runCost(b, costSizes(50), func(n int) int { return 2 * n }, func(b *testing.B, n int) {
				req := c.req(n)
				maxOps := 4*n + 16
				if err := ValidateTxn(req, maxOps); err != nil {
					b.Fatalf("valid txn rejected: %v", err)
				}
				for b.Loop() {
					if err := ValidateTxn(req, maxOps); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// costRangeStoreKeys is how many keys the store of the window range guard
// holds: more than its largest range, so that range reads a part of it.
const costRangeStoreKeys = 40000

// costRangeKey is the i-th key of a range guard's store under prefix.
func costRangeKey(prefix string, i int) []byte { return fmt.Appendf(nil, "%s%07d", prefix, i) }

// loadCostKeys puts n keys under prefix, with a 64-byte value each, in one
// Applier.
func loadCostKeys(b *testing.B, f *fixture, prefix string, n int) {
	b.Helper()
	value := make([]byte, 64)
	a := f.kv.BeginApply()
	for i := range n {
		f.index++
		if _, _, err := a.Put(f.index, &pb.PutRequest{Key: costRangeKey(prefix, i), Value: value}); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Commit(); err != nil {
		b.Fatal(err)
	}
}

// memoryEngine is the engine the cost guards run on: the cost of a path is
// the same shape on both, and the memory engine is the cheaper to load.
func memoryEngine(b *testing.B) engineCase {
	for _, ec := range engines {
		if ec.name == "memory" {
			return ec
		}
	}
	b.Fatal("no memory engine")
	return engineCase{}
}

// checkRange runs req once and fails unless it returns want keys.
func checkRange(b *testing.B, f *fixture, req *pb.RangeRequest, want int) {
	b.Helper()
	resp, err := f.kv.Range(req)
	if err != nil {
		b.Fatal(err)
	}
	if len(resp.Kvs) != want {
		b.Fatalf("range returned %d keys, want %d", len(resp.Kvs), want)
	}
}

// BenchmarkCostRange guards KV.Range on the memory engine. An item is one
// key returned.
//
//   - window: a range of n keys out of a store of 40,000, from its middle,
//     so the cost follows what is returned, not the size of the store.
//   - prefix: the full range of a prefix holding n keys, in a store holding
//     those n keys and n more on either side of the prefix.
func BenchmarkCostRange(b *testing.B) {
	ec := memoryEngine(b)
	b.Run("window", func(b *testing.B) {
		f := newFixture(b, ec, Options{})
		loadCostKeys(b, f, "k/", costRangeStoreKeys)
		runCost(b, costSizes(100), func(n int) int { return n }, func(b *testing.B, n int) {
			from := (costRangeStoreKeys - n) / 2
			req := &pb.RangeRequest{Key: costRangeKey("k/", from), RangeEnd: costRangeKey("k/", from+n)}
			checkRange(b, f, req, n)
			for b.Loop() {
				if _, err := f.kv.Range(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("prefix", func(b *testing.B) {
		runCost(b, costSizes(100), func(n int) int { return n }, func(b *testing.B, n int) {
			f := newFixture(b, ec, Options{})
			loadCostKeys(b, f, "a/", n)
			loadCostKeys(b, f, "p/", n)
			loadCostKeys(b, f, "z/", n)
			req := &pb.RangeRequest{Key: []byte("p/"), RangeEnd: []byte("p0")}
			checkRange(b, f, req, n)
			for b.Loop() {
				if _, err := f.kv.Range(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
