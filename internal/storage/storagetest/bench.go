package storagetest

import (
	"encoding/binary"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
)

// The benchmarks model the store's traffic: 8-byte big-endian revision keys
// in the KV bucket and values of a typical small etcd object.
const (
	benchValueSize = 256
	benchBatchOps  = 8
	benchKeys      = 10000
	benchScanLen   = 100
)

func revKey(buf []byte, rev uint64) []byte {
	return binary.BigEndian.AppendUint64(buf[:0], rev)
}

// benchEngine opens an engine for b and closes it when b ends.
func benchEngine(b *testing.B, open func(tb testing.TB, dir string) storage.Engine) storage.Engine {
	b.Helper()
	e := open(b, b.TempDir())
	b.Cleanup(func() { e.Close() })
	return e
}

// preload writes benchKeys revisions in batches of 1000.
func preload(b *testing.B, e storage.Engine) {
	b.Helper()
	value := make([]byte, benchValueSize)
	var key []byte
	for start := 0; start < benchKeys; start += 1000 {
		bt := e.NewBatch()
		for rev := start; rev < start+1000; rev++ {
			key = revKey(key, uint64(rev))
			bt.Put(storage.KV, key, value)
		}
		if err := bt.Commit(false); err != nil {
			b.Fatalf("Commit: %v", err)
		}
	}
}

// BenchBatchCommit measures committing batches of eight puts, without and
// with sync, as the store does per applied raft entry.
func BenchBatchCommit(b *testing.B, open func(tb testing.TB, dir string) storage.Engine) {
	for _, sync := range []bool{false, true} {
		name := "nosync"
		if sync {
			name = "sync"
		}
		b.Run(name, func(b *testing.B) {
			e := benchEngine(b, open)
			value := make([]byte, benchValueSize)
			var key []byte
			rev := uint64(0)
			b.SetBytes(benchBatchOps * benchValueSize)
			b.ReportAllocs()
			for b.Loop() {
				bt := e.NewBatch()
				for range benchBatchOps {
					rev++
					key = revKey(key, rev)
					bt.Put(storage.KV, key, value)
				}
				if err := bt.Commit(sync); err != nil {
					b.Fatalf("Commit: %v", err)
				}
			}
		})
	}
}

// BenchGet measures point reads of present keys.
func BenchGet(b *testing.B, open func(tb testing.TB, dir string) storage.Engine) {
	e := benchEngine(b, open)
	preload(b, e)
	var key []byte
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		// A stride co-prime with benchKeys visits keys in scattered order.
		key = revKey(key, i*7919%benchKeys)
		v, err := e.Get(storage.KV, key)
		if err != nil || v == nil {
			b.Fatalf("Get(%x) = %v, %v", key, v, err)
		}
	}
}

// BenchIterate measures reading ranges of 100 consecutive keys.
func BenchIterate(b *testing.B, open func(tb testing.TB, dir string) storage.Engine) {
	e := benchEngine(b, open)
	preload(b, e)
	var start, end []byte
	b.ReportAllocs()
	for i := uint64(0); b.Loop(); i++ {
		first := i * 7919 % (benchKeys - benchScanLen)
		start, end = revKey(start, first), revKey(end, first+benchScanLen)
		n := 0
		err := e.Iterate(storage.KV, start, end, false, func(_, _ []byte) bool {
			n++
			return true
		})
		if err != nil || n != benchScanLen {
			b.Fatalf("Iterate = %d keys, %v", n, err)
		}
	}
}
