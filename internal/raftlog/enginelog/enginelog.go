// Package enginelog is the raftlog.Log that keeps raft's log in the
// storage.Raft bucket of a storage engine. RocksDB members created before
// the raft log moved to filelog have their log here; the server opens it to
// copy it out (raftlog.Copy) at their first start.
//
// Keys in storage.Raft:
//
//	"hardstate"           raftpb.HardState (protobuf)
//	"snapshot"            raftpb.Snapshot (protobuf): the latest snapshot
//	"start"               index:u64 term:u64, big-endian: the compaction
//	                      point, the entry just before the first one kept
//	'e' index:u64 (BE)    raftpb.Entry (protobuf), one key per entry, so
//	                      that keys sort by index
//
// A missing key means zero: no hard state, no snapshot, a log starting at 1.
// Every Save and CreateSnapshot is one batch committed with sync set.
package enginelog

import (
	"encoding/binary"
	"fmt"
	"math"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/internal/memlog"
	"github.com/cairn-kv/cairn/internal/storage"
)

var (
	hardStateKey = []byte("hardstate")
	snapshotKey  = []byte("snapshot")
	startKey     = []byte("start")
)

const entryPrefix = 'e'

// entriesEnd bounds every entry key from above.
var entriesEnd = []byte{entryPrefix + 1}

func entryKey(index uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{entryPrefix}, index)
}

// readPath names the embedded read path; raft.Storage's methods are promoted
// while MemoryStorage's mutators stay out of Log's method set.
type readPath = raft.Storage

// Log is a raftlog.Log kept in an engine's storage.Raft bucket. Create it
// with Open.
type Log struct {
	readPath
	ms  *raft.MemoryStorage
	e   storage.Engine
	buf []byte // encoding buffer, reused across Saves
	// err, once set, fails every later Save and CreateSnapshot.
	err error
}

var _ raftlog.Log = (*Log)(nil)

// Open loads the log kept in e. An engine without one gives an empty log.
// The engine stays the caller's: Log.Close does not close it, and it must
// outlive the Log.
func Open(e storage.Engine) (*Log, error) {
	var st memlog.State
	hs, snap := new(raftpb.HardState), new(raftpb.Snapshot)
	if ok, err := get(e, hardStateKey, hs); err != nil {
		return nil, err
	} else if ok {
		st.HardState = hs
	}
	if ok, err := get(e, snapshotKey, snap); err != nil {
		return nil, err
	} else if ok {
		st.Snapshot = snap
	}
	start, err := e.Get(storage.Raft, startKey)
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if start != nil {
		if len(start) != 16 {
			return nil, fmt.Errorf("%w: compaction point of %d bytes", raftlog.ErrCorrupt, len(start))
		}
		st.StartIndex = binary.BigEndian.Uint64(start)
		st.StartTerm = binary.BigEndian.Uint64(start[8:])
	}
	var decodeErr error
	err = e.Iterate(storage.Raft, entryKey(st.StartIndex+1), entriesEnd, false, func(k, v []byte) bool {
		ent := new(raftpb.Entry)
		if err := proto.Unmarshal(v, ent); err != nil {
			decodeErr = fmt.Errorf("%w: entry key %x: %v", raftlog.ErrCorrupt, k, err)
			return false
		}
		st.Entries = append(st.Entries, ent)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	if decodeErr != nil {
		return nil, decodeErr
	}
	ms, err := memlog.Load(st)
	if err != nil {
		return nil, err
	}
	return &Log{readPath: ms, ms: ms, e: e}, nil
}

// get decodes the message stored under key into m and reports whether the
// key was there.
func get(e storage.Engine, key []byte, m proto.Message) (bool, error) {
	v, err := e.Get(storage.Raft, key)
	if err != nil {
		return false, fmt.Errorf("raftlog: %w", err)
	}
	if v == nil {
		return false, nil
	}
	if err := proto.Unmarshal(v, m); err != nil {
		return false, fmt.Errorf("%w: %s: %v", raftlog.ErrCorrupt, key, err)
	}
	return true, nil
}

// Save implements raftlog.Log with one synced batch. A Save with nothing to
// persist touches nothing.
func (l *Log) Save(st *raftpb.HardState, ents []*raftpb.Entry, snap *raftpb.Snapshot) error {
	if l.err != nil {
		return l.err
	}
	p, err := memlog.PlanSave(l.ms, st, ents, snap)
	if err != nil {
		return err
	}
	if p.Snapshot == nil && len(p.Entries) == 0 && p.HardState == nil {
		return nil
	}
	b := l.e.NewBatch()
	defer b.Close()
	if p.Snapshot != nil {
		md := p.Snapshot.GetMetadata()
		b.DeleteRange(storage.Raft, entryKey(0), entriesEnd)
		if err := l.put(b, snapshotKey, p.Snapshot); err != nil {
			return err
		}
		b.Put(storage.Raft, startKey, startValue(md.GetIndex(), md.GetTerm()))
	}
	if p.Truncate != 0 {
		b.DeleteRange(storage.Raft, entryKey(p.Truncate), entriesEnd)
	}
	var key [9]byte
	key[0] = entryPrefix
	for _, e := range p.Entries {
		binary.BigEndian.PutUint64(key[1:], e.GetIndex())
		if err := l.put(b, key[:], e); err != nil {
			return err
		}
	}
	if p.HardState != nil {
		if err := l.put(b, hardStateKey, p.HardState); err != nil {
			return err
		}
	}
	if err := b.Commit(p.MustSync); err != nil {
		return l.fail(err)
	}
	if err := p.Apply(l.ms); err != nil {
		return l.fail(err)
	}
	return nil
}

// CreateSnapshot implements raftlog.Log with one synced batch that records
// the snapshot and compaction point and deletes the compacted entries.
func (l *Log) CreateSnapshot(index uint64, cs *raftpb.ConfState, data []byte, compactTo uint64) (*raftpb.Snapshot, error) {
	if l.err != nil {
		return nil, l.err
	}
	p, err := memlog.PlanSnapshot(l.ms, index, cs, data, compactTo)
	if err != nil {
		return nil, err
	}
	b := l.e.NewBatch()
	defer b.Close()
	if err := l.put(b, snapshotKey, p.Snapshot); err != nil {
		return nil, err
	}
	b.Put(storage.Raft, startKey, startValue(p.StartIndex, p.StartTerm))
	b.DeleteRange(storage.Raft, entryKey(0), entryKey(p.StartIndex+1))
	// A failed commit applies nothing, so the log stays usable.
	if err := b.Commit(true); err != nil {
		return nil, fmt.Errorf("raftlog: create snapshot: %w", err)
	}
	if err := p.Apply(l.ms); err != nil {
		return nil, l.fail(err)
	}
	return p.Snapshot, nil
}

// EntrySize implements raftlog.Log.
func (l *Log) EntrySize(i uint64) (int, error) {
	if last, _ := l.ms.LastIndex(); i > last {
		return 0, raft.ErrUnavailable
	}
	ents, err := l.ms.Entries(i, i+1, math.MaxUint64)
	if err != nil {
		return 0, err
	}
	return proto.Size(ents[0]), nil
}

// Handed implements raftlog.Log. This log holds every entry in memory
// until a compaction drops it (its reads are the MemoryStorage's), so it
// has nothing to let go earlier.
func (l *Log) Handed(uint64) {}

// Close implements raftlog.Log; the engine stays open.
func (l *Log) Close() error {
	l.err = raftlog.ErrClosed
	return nil
}

// put encodes m into the reused buffer and adds it to b under key.
func (l *Log) put(b storage.Batch, key []byte, m proto.Message) error {
	var err error
	if l.buf, err = (proto.MarshalOptions{}).MarshalAppend(l.buf[:0], m); err != nil {
		return fmt.Errorf("raftlog: encode %s: %w", key, err)
	}
	b.Put(storage.Raft, key, l.buf)
	return nil
}

// fail makes err sticky and returns it.
func (l *Log) fail(err error) error {
	l.err = fmt.Errorf("raftlog: %w", err)
	return l.err
}

func startValue(index, term uint64) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), index)
	return binary.BigEndian.AppendUint64(v, term)
}
