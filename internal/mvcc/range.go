package mvcc

import (
	"bytes"
	"fmt"
	"math"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// view reads the store as of one revision. A read-only view sees the
// committed state at rev. The view of a write txn (w set) has rev = the
// revision before the entry, which may be that of an entry staged in the
// same Applier: its reads see the staged entries up to the revision they
// read at, and reads "at the current revision" also see the entry's own
// changes, as etcd's do.
type view struct {
	kv         *KV
	rev        int64
	compactRev int64
	w          *writeTxn
	// ops counts the view's ranges and compares for etcd's operation
	// counters; nil counts nothing.
	ops *opTally
}

// Range serves a range request at one consistent revision. The request is
// expected to have passed ValidateRange.
func (kv *KV) Range(req *pb.RangeRequest) (*pb.RangeResponse, error) {
	kv.metrics.ranges.Inc()
	kv.readers.RLock()
	defer kv.readers.RUnlock()
	v := kv.readView()
	return v.rangeReq(req)
}

// readView pins the current revision for a read; the caller holds
// kv.readers shared until the read is done.
func (kv *KV) readView() *view {
	kv.mu.RLock()
	defer kv.mu.RUnlock()
	return &view{kv: kv, rev: kv.rev, compactRev: kv.compactRev}
}

// headerRev is the revision a response reports: the txn's new revision once
// it has changed something, the view's revision otherwise.
func (v *view) headerRev() int64 {
	if v.w != nil && v.w.changed() {
		return v.rev + 1
	}
	return v.rev
}

// readRev resolves a request's revision field to the revision to read at.
// own reports whether the txn's own changes are visible: they are only for
// reads at the current revision. Requests above the view's revision are
// future even inside a txn that already wrote, as etcd checks them before
// the txn runs.
func (v *view) readRev(reqRev int64) (atRev int64, own bool, err error) {
	switch {
	case reqRev > v.rev:
		return 0, false, ErrFutureRev
	case reqRev <= 0:
		return v.rev, true, nil
	case reqRev < v.compactRev:
		return 0, false, ErrCompacted
	}
	return reqRev, false, nil
}

// rangeEntry is a key found by the index, before its value is fetched.
type rangeEntry struct {
	key     []byte
	mod     revision
	created int64
	ver     int64
	staged  *mvccpb.KeyValue // the uncommitted value of a staged entry, if it is one
}

// all is a keep limit of collect that keeps every entry.
const all = math.MaxInt

// collect finds the keys of span s that exist at atRev, merged, in a write
// txn, with the staged changes up to atRev and with the entry's own changes
// when own is set. It keeps the first keep of them, in key order, and counts
// them all, as etcd's count ignores the limit.
func (v *view) collect(s keySpan, atRev int64, own bool, keep int) (ents []rangeEntry, total int) {
	var staged []change
	if v.w != nil {
		limit := atRev
		if own {
			limit = v.rev + 1
		}
		staged = v.w.a.visible(s, limit)
	}
	add := func(e rangeEntry) {
		total++
		if len(ents) < keep {
			ents = append(ents, e)
		}
	}
	addStaged := func(c change) {
		if !c.deleted {
			add(rangeEntry{key: c.kv.Key, mod: c.rev, created: c.kv.CreateRevision, ver: c.kv.Version, staged: c.kv})
		}
	}
	v.kv.mu.RLock()
	v.kv.idx.ascend(s, func(ki *keyIndex) bool {
		for len(staged) > 0 && string(staged[0].kv.Key) < ki.key() {
			addStaged(staged[0])
			staged = staged[1:]
		}
		if len(staged) > 0 && string(staged[0].kv.Key) == ki.key() {
			// A staged entry changed this key: its state replaces the
			// committed one.
			addStaged(staged[0])
			staged = staged[1:]
			return true
		}
		if mod, created, ver, ok := v.kv.idx.get(ki, atRev); ok {
			add(rangeEntry{key: ki.keyBytes(), mod: mod, created: created, ver: ver})
		}
		return true
	})
	v.kv.mu.RUnlock()
	for _, c := range staged {
		addStaged(c)
	}
	return ents, total
}

// fetch returns the full key-values of entries, read from the KV bucket (or
// copied from the staged changes). Every message is new, so callers may
// modify them.
func (v *view) fetch(ents []rangeEntry) ([]*mvccpb.KeyValue, error) {
	kvs := make([]*mvccpb.KeyValue, len(ents))
	key := make([]byte, 0, revKeyLen)
	for i, e := range ents {
		if e.staged != nil {
			kvs[i] = cloneKV(e.staged)
			continue
		}
		key = appendRevKey(key[:0], e.mod, false)
		raw, err := v.kv.e.Get(storage.KV, key)
		if err != nil {
			return nil, fmt.Errorf("mvcc: read revision %d.%d: %w", e.mod.main, e.mod.sub, err)
		}
		if raw == nil {
			return nil, fmt.Errorf("mvcc: revision %d.%d of key %q is indexed but not stored", e.mod.main, e.mod.sub, e.key)
		}
		kv := &mvccpb.KeyValue{}
		if err := proto.Unmarshal(raw, kv); err != nil {
			return nil, fmt.Errorf("mvcc: decode revision %d.%d: %w", e.mod.main, e.mod.sub, err)
		}
		kvs[i] = kv
	}
	return kvs, nil
}

// indexOnly builds key-values from what the index knows. Like etcd's
// keys-only fast path, they carry no value and no lease.
func indexOnly(ents []rangeEntry) []*mvccpb.KeyValue {
	kvs := make([]*mvccpb.KeyValue, len(ents))
	for i, e := range ents {
		kvs[i] = &mvccpb.KeyValue{Key: e.key, ModRevision: e.mod.main, CreateRevision: e.created, Version: e.ver}
	}
	return kvs
}

func cloneKV(kv *mvccpb.KeyValue) *mvccpb.KeyValue {
	return &mvccpb.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Value:          kv.Value,
		Lease:          kv.Lease,
	}
}

// current returns the full key-value of one key at the view's current
// revision (with the entry's own changes), or nil if the key does not
// exist.
func (v *view) current(key []byte) (*mvccpb.KeyValue, error) {
	ents, _ := v.collect(keySpan{key: key, single: true}, v.rev, true, 1)
	if len(ents) == 0 {
		return nil, nil
	}
	kvs, err := v.fetch(ents)
	if err != nil {
		return nil, err
	}
	return kvs[0], nil
}

// rangeReq executes a range request the way etcd's apply layer does,
// including its quirks: count is the number of keys in the range whatever
// the limit and the revision filters; filters apply to the fetched keys
// before the limit; keys_only responses (unless sorted by value) come from
// the index alone and so carry no lease.
func (v *view) rangeReq(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if !validSort(r) {
		return nil, ErrInvalidSortOption
	}
	atRev, own, err := v.readRev(r.Revision)
	if err != nil {
		return nil, err
	}
	s := spanOf(r.Key, r.RangeEnd)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: v.headerRev()}}
	if r.CountOnly {
		_, total := v.collect(s, atRev, own, 0)
		resp.Count = int64(total)
		return resp, nil
	}

	ents, total := v.collect(s, atRev, own, fetchLimit(r))
	var kvs []*mvccpb.KeyValue
	if r.KeysOnly && r.SortTarget != pb.RangeRequest_VALUE {
		kvs = indexOnly(ents)
	} else if kvs, err = v.fetch(ents); err != nil {
		return nil, err
	}
	kvs = filterRevisions(kvs, r)
	sortKVs(kvs, r)
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for _, kv := range kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = kvs
	resp.Count = int64(total)
	return resp, nil
}

// fetchLimit is how many keys a range must fetch: all of them when they are
// re-sorted or filtered afterwards, otherwise one more than the limit, which
// tells whether there are more.
func fetchLimit(r *pb.RangeRequest) int {
	if r.Limit <= 0 || !keyOrdered(r) || hasRevisionFilters(r) {
		return all
	}
	if r.Limit == math.MaxInt64 {
		return all
	}
	return int(r.Limit) + 1
}

// keyOrdered reports whether the requested order is the index's own
// (ascending keys), which needs no sorting.
func keyOrdered(r *pb.RangeRequest) bool {
	return r.SortOrder == pb.RangeRequest_NONE ||
		(r.SortTarget == pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_ASCEND)
}

func hasRevisionFilters(r *pb.RangeRequest) bool {
	return r.MinModRevision != 0 || r.MaxModRevision != 0 ||
		r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
}

func validSort(r *pb.RangeRequest) bool {
	_, orderOK := pb.RangeRequest_SortOrder_name[int32(r.SortOrder)]
	_, targetOK := pb.RangeRequest_SortTarget_name[int32(r.SortTarget)]
	return orderOK && targetOK
}

// filterRevisions drops, in place, the key-values outside the request's
// mod and create revision bounds (0 means unbounded).
func filterRevisions(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) []*mvccpb.KeyValue {
	if !hasRevisionFilters(r) {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case r.MaxModRevision != 0 && kv.ModRevision > r.MaxModRevision:
		case r.MinModRevision != 0 && kv.ModRevision < r.MinModRevision:
		case r.MaxCreateRevision != 0 && kv.CreateRevision > r.MaxCreateRevision:
		case r.MinCreateRevision != 0 && kv.CreateRevision < r.MinCreateRevision:
		default:
			out = append(out, kv)
		}
	}
	return out
}

// sortKVs orders kvs as requested. A sort target other than KEY with order
// NONE means ascending, as in etcd. The sort is sort.Sort, not a stable
// sort, because that is what decides the order of equal elements in etcd
// and responses must match it element for element.
func sortKVs(kvs []*mvccpb.KeyValue, r *pb.RangeRequest) {
	order := r.SortOrder
	if r.SortTarget != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order == pb.RangeRequest_NONE || (r.SortTarget == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND) {
		return
	}
	s := kvSorter{kvs: kvs}
	switch r.SortTarget {
	case pb.RangeRequest_KEY:
		s.less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 }
	case pb.RangeRequest_VERSION:
		s.less = func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version }
	case pb.RangeRequest_CREATE:
		s.less = func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision }
	case pb.RangeRequest_MOD:
		s.less = func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision }
	case pb.RangeRequest_VALUE:
		s.less = func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 }
	}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(s)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(s))
	}
}

type kvSorter struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (s kvSorter) Len() int           { return len(s.kvs) }
func (s kvSorter) Swap(i, j int)      { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }
func (s kvSorter) Less(i, j int) bool { return s.less(s.kvs[i], s.kvs[j]) }
