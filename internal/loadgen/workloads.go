package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	mrand "math/rand/v2"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// PutOptions shape the keys and values of a put workload. Keys are built
// as etcd's benchmark builds them: the key number as a varint in a
// KeySize-byte buffer.
type PutOptions struct {
	KeySize    int  // bytes per key; default 8
	ValueSize  int  // bytes per value; default 256
	KeySpace   int  // keys are numbered [0, KeySpace); default 100000
	Sequential bool // key i mod KeySpace for the i-th request, instead of a uniform random one
}

func (o PutOptions) withDefaults() (PutOptions, error) {
	if o.KeySize <= 0 {
		o.KeySize = 8
	}
	if o.ValueSize <= 0 {
		o.ValueSize = 256
	}
	if o.KeySpace <= 0 {
		o.KeySpace = 100_000
	}
	if o.KeySize < binary.MaxVarintLen64 && o.KeySpace > 1<<(7*o.KeySize-1) {
		return o, fmt.Errorf("loadgen: key space %d does not fit in %d-byte keys", o.KeySpace, o.KeySize)
	}
	return o, nil
}

// keyFunc returns the key of the i-th request; it is safe for concurrent
// use.
func (o PutOptions) keyFunc() func(i int) string {
	return func(i int) string {
		n := i % o.KeySpace
		if !o.Sequential {
			n = mrand.IntN(o.KeySpace)
		}
		k := make([]byte, max(o.KeySize, binary.MaxVarintLen64))
		binary.PutVarint(k, int64(n))
		return string(k[:o.KeySize])
	}
}

// randomValue returns n random bytes, drawn once per run as etcd's
// benchmark does.
func randomValue(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return string(b)
}

// Put sends cfg.Total puts of opts.ValueSize-byte values to keys drawn from
// opts.KeySpace.
func Put(ctx context.Context, cfg Config, opts PutOptions) (Result, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return Result{}, err
	}
	key, val := opts.keyFunc(), randomValue(opts.ValueSize)
	return run(ctx, cfg, "put", func(i int) clientv3.Op {
		return clientv3.OpPut(key(i), val)
	})
}

// TxnOptions shape a txn-put workload: each transaction, with no
// comparisons, puts Ops keys, as etcd's `benchmark txn-put` does.
type TxnOptions struct {
	PutOptions
	Ops int // puts per transaction; default 1
}

// TxnPut sends cfg.Total transactions of opts.Ops puts each.
func TxnPut(ctx context.Context, cfg Config, opts TxnOptions) (Result, error) {
	po, err := opts.PutOptions.withDefaults()
	if err != nil {
		return Result{}, err
	}
	ops := max(opts.Ops, 1)
	if ops > po.KeySpace {
		return Result{}, fmt.Errorf("loadgen: %d puts per txn need as many keys, the key space has %d", ops, po.KeySpace)
	}
	key, val := po.keyFunc(), randomValue(po.ValueSize)
	return run(ctx, cfg, "txn-put", func(i int) clientv3.Op {
		// A txn may not put one key twice (etcd refuses it), so random
		// keys are drawn again until they differ.
		puts := make([]clientv3.Op, 0, ops)
		seen := make(map[string]bool, ops)
		for j := 0; len(puts) < ops; j++ {
			k := key(i*ops + j)
			if !seen[k] {
				seen[k] = true
				puts = append(puts, clientv3.OpPut(k, val))
			}
		}
		return clientv3.OpTxn(nil, puts, nil)
	})
}

// Consistency is the read guarantee a range asks for.
type Consistency int

const (
	// Linearizable reads go through the leader's read index (etcd's
	// default, "l").
	Linearizable Consistency = iota
	// Serializable reads are served from the member's local state ("s").
	Serializable
)

// ParseConsistency reads etcd benchmark's spelling: "l" or "s" (or the
// words in full).
func ParseConsistency(s string) (Consistency, error) {
	switch s {
	case "l", "linearizable":
		return Linearizable, nil
	case "s", "serializable":
		return Serializable, nil
	}
	return 0, fmt.Errorf("loadgen: consistency must be l or s, got %q", s)
}

func (c Consistency) String() string {
	if c == Serializable {
		return "s"
	}
	return "l"
}

// RangeOptions shape a range workload: every request reads the same key or
// range.
type RangeOptions struct {
	Key         string // default "loadgen/range"
	End         string // range end; empty reads the one key
	Limit       int64
	Consistency Consistency
	// ValueSize, if positive, first writes Key with a value of this many
	// bytes (untimed), so the reads return data.
	ValueSize int
}

// Range sends cfg.Total range requests for opts.Key.
func Range(ctx context.Context, cfg Config, opts RangeOptions) (Result, error) {
	if opts.Key == "" {
		opts.Key = "loadgen/range"
	}
	if opts.ValueSize > 0 {
		if err := prefill(ctx, cfg, opts.Key, randomValue(opts.ValueSize)); err != nil {
			return Result{}, err
		}
	}
	var getOpts []clientv3.OpOption
	if opts.End != "" {
		getOpts = append(getOpts, clientv3.WithRange(opts.End))
	}
	if opts.Limit > 0 {
		getOpts = append(getOpts, clientv3.WithLimit(opts.Limit))
	}
	if opts.Consistency == Serializable {
		getOpts = append(getOpts, clientv3.WithSerializable())
	}
	op := clientv3.OpGet(opts.Key, getOpts...)
	return run(ctx, cfg, "range-"+opts.Consistency.String(), func(int) clientv3.Op { return op })
}

// prefill writes key once through a connection of its own.
func prefill(ctx context.Context, cfg Config, key, val string) error {
	one := cfg
	one.Conns, one.Clients, one.Total = 1, 1, 1
	one, err := one.normalise()
	if err != nil {
		return err
	}
	conns, err := dial(ctx, one)
	if err != nil {
		return err
	}
	defer conns[0].Close()
	pctx, cancel := context.WithTimeout(ctx, one.RequestTimeout)
	defer cancel()
	if _, err := conns[0].Put(pctx, key, val); err != nil {
		return fmt.Errorf("loadgen: prefill %q: %w", key, err)
	}
	return nil
}
