package mvcc

import (
	"encoding/binary"
	"fmt"
	"sort"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/storage"
)

// The lease table: which leases are granted, with their granted TTL, and
// which keys each one holds. Grants and revokes are raft entries applied
// through the Applier like KV changes, and a lease record is written to the
// engine's Lease bucket in the same batch as the entry's KV changes, so the
// table and the keys never disagree after a crash.
//
// The key → lease map is kept in memory (rebuilt at Open from the KV
// bucket) so that attaching a key on put never needs its previous value.
// Expiry is not the table's business: the lease actor decides it and
// proposes revokes.

// LeaseInfo describes one granted lease.
type LeaseInfo struct {
	ID  int64
	TTL int64 // the granted TTL in seconds
	// Remaining is the remaining TTL in seconds at the lease's last
	// checkpoint, 0 if it has none (or a keep-alive cleared it).
	Remaining int64
}

type leaseRec struct {
	ttl       int64
	remaining int64
	keys      map[string]struct{}
}

// leaseValue is a lease record: the granted TTL, then the checkpointed
// remaining TTL when there is one. Records written before checkpoints
// existed hold the TTL alone.
func leaseValue(ttl, remaining int64) []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(ttl))
	if remaining > 0 {
		v = binary.BigEndian.AppendUint64(v, uint64(remaining))
	}
	return v
}

// leaseTable is guarded by KV.mu: the writer changes it only inside
// Commit, with the lock held exclusively; readers hold it shared.
type leaseTable struct {
	leases   map[int64]*leaseRec
	keyLease map[string]int64
	// checkpointed counts the leases with a remaining TTL recorded, so
	// that LeaseCheckpointed, on every keep-alive, needs no lock while
	// there are none (checkpoints are off by default).
	checkpointed atomic.Int64
}

// setRemaining records l's checkpointed remaining TTL; KV.mu is held.
func (t *leaseTable) setRemaining(l *leaseRec, remaining int64) {
	switch {
	case l.remaining == 0 && remaining > 0:
		t.checkpointed.Add(1)
	case l.remaining > 0 && remaining == 0:
		t.checkpointed.Add(-1)
	}
	l.remaining = remaining
}

func leaseKey(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

func loadLeases(e storage.Engine) (*leaseTable, error) {
	t := &leaseTable{leases: make(map[int64]*leaseRec), keyLease: make(map[string]int64)}
	var failed error
	err := e.Iterate(storage.Lease, nil, nil, false, func(k, v []byte) bool {
		info, err := ParseLeaseRecord(k, v)
		if err != nil {
			failed = err
			return false
		}
		l := &leaseRec{ttl: info.TTL, keys: make(map[string]struct{})}
		t.setRemaining(l, info.Remaining)
		t.leases[info.ID] = l
		return true
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return nil, fmt.Errorf("mvcc: load leases: %w", err)
	}
	return t, nil
}

// restoreKey follows one KV record, in revision order, at Open.
func (t *leaseTable) restoreKey(key []byte, lease int64, tomb bool) {
	if tomb || lease == 0 {
		delete(t.keyLease, string(key))
		return
	}
	t.keyLease[string(key)] = lease
}

// attachRestored fills each lease's key set from keyLease at Open.
func (t *leaseTable) attachRestored(lg *zap.Logger) {
	for k, id := range t.keyLease {
		l := t.leases[id]
		if l == nil {
			lg.Warn("key holds a lease that does not exist", zap.String("key", k), zap.Int64("lease", id))
			delete(t.keyLease, k)
			continue
		}
		l.keys[k] = struct{}{}
	}
}

// follow records a committed change of a key: it moves the key off its
// previous lease and onto the new one, if any.
func (t *leaseTable) follow(c change) {
	k := string(c.kv.Key)
	if old, ok := t.keyLease[k]; ok {
		if l := t.leases[old]; l != nil {
			delete(l.keys, k)
		}
		delete(t.keyLease, k)
	}
	if c.deleted || c.kv.Lease == 0 {
		return
	}
	if l := t.leases[c.kv.Lease]; l != nil {
		l.keys[k] = struct{}{}
		t.keyLease[k] = c.kv.Lease
	}
}

// leaseOp is a grant (ttl > 0), a revoke (ttl == 0) or a checkpoint
// staged in an Applier; at is len(Applier.changes) when it was staged,
// which orders it among the KV changes.
type leaseOp struct {
	id, ttl    int64
	remaining  int64
	checkpoint bool
	at         int
}

// leaseExists reports whether lease id exists after the staged entries.
func (a *Applier) leaseExists(id int64) bool {
	if _, ok := a.leaseTTL(id); ok {
		return true
	}
	return a.kv.opts.LeaseExists != nil && a.kv.opts.LeaseExists(id)
}

// leaseTTL is the granted TTL of lease id after the staged entries; ok is
// false if this KV holds no such lease.
func (a *Applier) leaseTTL(id int64) (ttl int64, ok bool) {
	for i := len(a.leaseOps) - 1; i >= 0; i-- {
		if op := a.leaseOps[i]; op.id == id {
			return op.ttl, op.ttl > 0
		}
	}
	a.kv.mu.RLock()
	l := a.kv.leases.leases[id]
	a.kv.mu.RUnlock()
	if l == nil {
		return 0, false
	}
	return l.ttl, true
}

// LeaseGrant stages the raft entry at index, which grants lease id with
// ttl seconds (ttl > 0; the caller has applied the TTL bounds). A lease
// that exists fails with ErrLeaseExist and stages nothing but the index.
// A grant changes no key, so it takes no revision.
func (a *Applier) LeaseGrant(index uint64, id, ttl int64) error {
	a.checkOpen()
	if a.err != nil {
		return a.err
	}
	a.applied = index
	if a.leaseExists(id) {
		return ErrLeaseExist
	}
	a.leaseOps = append(a.leaseOps, leaseOp{id: id, ttl: ttl, at: len(a.changes)})
	a.b.Put(storage.Lease, leaseKey(id), leaseValue(ttl, 0))
	return nil
}

// LeaseCheckpoint stages the raft entry at index, which records the
// remaining TTL of each listed lease (0 clears it), as etcd's lease
// checkpoints do. Leases that no longer exist are skipped. It changes no
// key and takes no revision.
func (a *Applier) LeaseCheckpoint(index uint64, cps []*pb.LeaseCheckpoint) error {
	a.checkOpen()
	if a.err != nil {
		return a.err
	}
	a.applied = index
	for _, cp := range cps {
		ttl, ok := a.leaseTTL(cp.ID)
		if !ok {
			continue
		}
		rem := max(cp.Remaining_TTL, 0)
		a.leaseOps = append(a.leaseOps, leaseOp{id: cp.ID, ttl: ttl, remaining: rem, checkpoint: true, at: len(a.changes)})
		a.b.Put(storage.Lease, leaseKey(cp.ID), leaseValue(ttl, rem))
	}
	return nil
}

// LeaseRevoke stages the raft entry at index, which revokes lease id and
// deletes every key attached to it, all at one revision, and returns the
// delete events in key order. An unknown lease fails with
// ErrLeaseNotFound. Other errors are as for Put.
func (a *Applier) LeaseRevoke(index uint64, id int64) ([]*mvccpb.Event, error) {
	a.checkOpen()
	if a.err != nil {
		return nil, a.err
	}
	if !a.leaseExists(id) {
		a.applied = index
		return nil, ErrLeaseNotFound
	}
	// The keys the lease holds: those committed with it, and those the
	// staged entries attached. Each is deleted only if its current value,
	// staged changes included, still names the lease.
	cand := make(map[string]struct{})
	a.kv.mu.RLock()
	if l := a.kv.leases.leases[id]; l != nil {
		for k := range l.keys {
			cand[k] = struct{}{}
		}
	}
	a.kv.mu.RUnlock()
	for _, c := range a.changes {
		if !c.deleted && c.kv.Lease == id {
			cand[string(c.kv.Key)] = struct{}{}
		}
	}
	keys := make([]string, 0, len(cand))
	for k := range cand {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	_, evs, err := stageEntry(a, index, func(w *writeTxn) (struct{}, error) {
		// etcd's lessor deletes each key of the lease in one transaction.
		w.ops.deletes += int64(len(keys))
		for _, k := range keys {
			cur, err := w.current([]byte(k))
			if err != nil {
				return struct{}{}, err
			}
			if cur != nil && cur.Lease == id {
				w.stage(&mvccpb.KeyValue{Key: cur.Key, ModRevision: w.rev + 1}, true, cur)
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		return nil, err
	}
	a.leaseOps = append(a.leaseOps, leaseOp{id: id, at: len(a.changes)})
	a.b.Delete(storage.Lease, leaseKey(id))
	return evs, nil
}

// commitLeases publishes the staged lease changes and key attachments in
// the order they were staged; KV.mu is held.
func (a *Applier) commitLeases() {
	t := a.kv.leases
	ops := a.leaseOps
	apply := func(op leaseOp) {
		if op.checkpoint {
			if l := t.leases[op.id]; l != nil {
				t.setRemaining(l, op.remaining)
			}
			return
		}
		if op.ttl > 0 {
			t.leases[op.id] = &leaseRec{ttl: op.ttl, keys: make(map[string]struct{})}
			return
		}
		if l := t.leases[op.id]; l != nil {
			for k := range l.keys {
				delete(t.keyLease, k)
			}
			t.setRemaining(l, 0)
		}
		delete(t.leases, op.id)
	}
	for i, c := range a.changes {
		for len(ops) > 0 && ops[0].at <= i {
			apply(ops[0])
			ops = ops[1:]
		}
		t.follow(c)
	}
	for _, op := range ops {
		apply(op)
	}
}

// Lease returns lease id's granted TTL and, if withKeys, its keys in key
// order; ok is false if the lease does not exist. Safe from any goroutine.
func (kv *KV) Lease(id int64, withKeys bool) (ttl int64, keys [][]byte, ok bool) {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	l := kv.leases.leases[id]
	if l == nil {
		return 0, nil, false
	}
	if withKeys {
		for k := range l.keys {
			keys = append(keys, []byte(k))
		}
		sort.Slice(keys, func(i, j int) bool { return string(keys[i]) < string(keys[j]) })
	}
	return l.ttl, keys, true
}

// Leases lists the granted leases in ID order. Safe from any goroutine.
func (kv *KV) Leases() []LeaseInfo {
	kv.mu.RLock()
	out := make([]LeaseInfo, 0, len(kv.leases.leases))
	for id, l := range kv.leases.leases {
		out = append(out, LeaseInfo{ID: id, TTL: l.ttl, Remaining: l.remaining})
	}
	kv.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LeaseCheckpointed is lease id's remaining TTL at its last checkpoint, 0
// if it has none or does not exist. Safe from any goroutine.
func (kv *KV) LeaseCheckpointed(id int64) int64 {
	if kv.leases.checkpointed.Load() == 0 {
		return 0
	}
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	if l := kv.leases.leases[id]; l != nil {
		return l.remaining
	}
	return 0
}
