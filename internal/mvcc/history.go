package mvcc

import (
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Events replays the changes with main revisions in [fromRev, toRev],
// oldest first, as watch events: a put as PUT with the key-value as stored
// (create revision, mod revision, version), a deletion as DELETE whose Kv
// holds only the key and the mod revision, as etcd sends. Events carry no
// PrevKv. fn returning false stops the replay.
//
// It fails with ErrCompacted when fromRev is below the compaction revision:
// part of that history is gone, and etcd cancels such a watch. Events may be
// called from any goroutine, concurrently with the writer; it sees only
// committed revisions, so callers pass a toRev no newer than Rev.
func (kv *KV) Events(fromRev, toRev int64, fn func(ev *mvccpb.Event) bool) error {
	kv.readers.RLock()
	defer kv.readers.RUnlock()
	if fromRev < kv.CompactRev() {
		return ErrCompacted
	}
	if toRev < fromRev {
		return nil
	}
	// fn may read the store (for a PrevKv, say), and an engine iteration
	// must not call back into the engine, so the events are decoded first
	// and handed out after the iteration.
	var (
		evs    []*mvccpb.Event
		failed error
	)
	err := kv.e.Iterate(storage.KV, mainPrefix(fromRev), mainPrefix(toRev+1), false, func(k, v []byte) bool {
		r, tomb, err := parseRevKey(k)
		if err != nil {
			failed = err
			return false
		}
		m := &mvccpb.KeyValue{}
		if err := proto.Unmarshal(v, m); err != nil {
			failed = fmt.Errorf("mvcc: decode revision %d.%d: %w", r.main, r.sub, err)
			return false
		}
		ev := &mvccpb.Event{Type: mvccpb.Event_PUT, Kv: m}
		if tomb {
			ev.Type = mvccpb.Event_DELETE
		}
		evs = append(evs, ev)
		return true
	})
	if err == nil {
		err = failed
	}
	if err != nil {
		return fmt.Errorf("mvcc: replay history from %d: %w", fromRev, err)
	}
	for _, ev := range evs {
		if !fn(ev) {
			break
		}
	}
	return nil
}

// PrevKV returns the value key had just before revision rev (at rev-1), or
// nil when it did not exist then or that history is compacted. A watch
// asking for prev_kv uses it for events replayed by Events.
func (kv *KV) PrevKV(key []byte, rev int64) *mvccpb.KeyValue {
	kv.readers.RLock()
	defer kv.readers.RUnlock()
	v := kv.readView()
	at := rev - 1
	if at <= 0 || at < v.compactRev || at > v.rev {
		return nil
	}
	ents, _ := v.collect(spanOf(key, nil), at, false, 1)
	if len(ents) == 0 {
		return nil
	}
	kvs, err := v.fetch(ents)
	if err != nil || len(kvs) == 0 {
		return nil
	}
	return kvs[0]
}
