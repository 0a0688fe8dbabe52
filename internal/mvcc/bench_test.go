package mvcc

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

const benchKeys = 10000

func benchKey(i int) []byte { return fmt.Appendf(nil, "key/%05d", i%benchKeys) }

// loadBenchKeys puts the benchKeys keys with value.
func loadBenchKeys(b *testing.B, f *fixture, value []byte) {
	a := f.kv.BeginApply()
	for i := range benchKeys {
		f.index++
		if _, _, err := a.Put(f.index, &pb.PutRequest{Key: benchKey(i), Value: value}); err != nil {
			b.Fatal(err)
		}
	}
	if err := a.Commit(); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkPut measures applying one put of a 256-byte value to one of 10k
// existing keys: one engine batch, one index update, one event.
func BenchmarkPut(b *testing.B) {
	for _, ec := range engines {
		b.Run(ec.name, func(b *testing.B) {
			f := newFixture(b, ec, Options{})
			value := make([]byte, 256)
			loadBenchKeys(b, f, value)
			reqs := make([]*pb.PutRequest, benchKeys)
			for i := range reqs {
				reqs[i] = &pb.PutRequest{Key: benchKey(i), Value: value}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				f.index++
				if _, _, err := f.kv.Put(f.index, reqs[i%benchKeys]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkApply measures applying the entries of one busy raft Ready, 64
// puts of 256-byte values to existing keys: one by one, each its own engine
// commit, and staged in one Applier, one engine commit. An op is the 64
// entries; ns/entry divides by them.
func BenchmarkApply(b *testing.B) {
	const entries = 64
	modes := []struct {
		name  string
		apply func(f *fixture, reqs []*pb.PutRequest) error
	}{
		{"one-by-one", func(f *fixture, reqs []*pb.PutRequest) error {
			for _, req := range reqs {
				f.index++
				if _, _, err := f.kv.Put(f.index, req); err != nil {
					return err
				}
			}
			return nil
		}},
		{"applier", func(f *fixture, reqs []*pb.PutRequest) error {
			a := f.kv.BeginApply()
			for _, req := range reqs {
				f.index++
				if _, _, err := a.Put(f.index, req); err != nil {
					a.Abort()
					return err
				}
			}
			return a.Commit()
		}},
	}
	for _, ec := range engines {
		for _, mode := range modes {
			b.Run(ec.name+"/"+mode.name, func(b *testing.B) {
				f := newFixture(b, ec, Options{})
				value := make([]byte, 256)
				loadBenchKeys(b, f, value)
				reqs := make([]*pb.PutRequest, benchKeys)
				for i := range reqs {
					reqs[i] = &pb.PutRequest{Key: benchKey(i), Value: value}
				}
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := mode.apply(f, reqs[i:i+entries]); err != nil {
						b.Fatal(err)
					}
					i = (i + entries) % (benchKeys - entries)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*entries), "ns/entry")
			})
		}
	}
}

// BenchmarkRange measures reads over 10k keys of 256 bytes.
func BenchmarkRange(b *testing.B) {
	cases := []struct {
		name string
		req  *pb.RangeRequest
	}{
		{"key", &pb.RangeRequest{Key: benchKey(4242)}},
		{"prefix100", &pb.RangeRequest{Key: []byte("key/001"), RangeEnd: []byte("key/002")}},
		// The count makes a limited range walk the whole index range, as
		// in etcd.
		{"limit10of10k", &pb.RangeRequest{Key: []byte("key/"), RangeEnd: []byte("key0"), Limit: 10}},
		{"count10k", &pb.RangeRequest{Key: []byte("key/"), RangeEnd: []byte("key0"), CountOnly: true}},
	}
	for _, ec := range engines {
		b.Run(ec.name, func(b *testing.B) {
			f := newFixture(b, ec, Options{})
			value := make([]byte, 256)
			loadBenchKeys(b, f, value)
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := f.kv.Range(c.req); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

// BenchmarkIndexHeapPerKey measures the heap the key index holds per key
// after 100 000 keys of 8 bytes are put once each, as in the RSS row of
// the Performance issue (where the index is most of a RocksDB member's
// live heap), and after each is put twice (a history kept until the next
// compaction).
func BenchmarkIndexHeapPerKey(b *testing.B) {
	for _, writes := range []int{1, 2} {
		b.Run(fmt.Sprintf("writes=%d", writes), func(b *testing.B) {
			const keys = 100000
			var perKey float64
			for b.Loop() {
				b.StopTimer()
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				b.StartTimer()
				ix := newIndex()
				var key []byte
				rev := int64(0)
				for range writes {
					for i := range keys {
						rev++
						key = binary.BigEndian.AppendUint64(key[:0], uint64(i))
						ix.put(key, revision{main: rev})
					}
				}
				b.StopTimer()
				runtime.GC()
				runtime.ReadMemStats(&after)
				perKey = float64(after.HeapAlloc-before.HeapAlloc) / keys
				runtime.KeepAlive(ix)
				b.StartTimer()
			}
			b.ReportMetric(perKey, "heap-B/key")
		})
	}
}

// BenchmarkValidateTxnPut measures ValidateTxn on the usual txn, one
// compare and one put (etcd's txn-put benchmark, locks, elections): a
// branch of puts alone is checked without building key sets.
func BenchmarkValidateTxnPut(b *testing.B) {
	req := &pb.TxnRequest{
		Compare: []*pb.Compare{{Key: []byte("k"), Result: pb.Compare_EQUAL, Target: pb.Compare_VERSION}},
		Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}}}},
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := ValidateTxn(req, DefaultMaxTxnOps); err != nil {
			b.Fatal(err)
		}
	}
}
