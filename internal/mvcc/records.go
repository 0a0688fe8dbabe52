package mvcc

import (
	"encoding/binary"
	"fmt"

	"github.com/cairn-kv/cairn/internal/storage"
)

// Records of this package's share of the replicated state, for the code
// that translates it to and from other layouts (etcd's backend): the KV
// bucket needs no translation (its layout is etcd's), the rest does.

// AppliedIndexOf returns the applied raft index recorded in r, 0 if none.
func AppliedIndexOf(r storage.Reader) (uint64, error) {
	v, _, err := readMeta(r, appliedIndexKey)
	return uint64(v), err
}

// CompactionOf returns the revisions of the last scheduled and the last
// finished compaction recorded in r, 0 for none.
func CompactionOf(r storage.Reader) (scheduled, finished int64, err error) {
	if scheduled, _, err = readMeta(r, scheduledCompactKey); err != nil {
		return 0, 0, err
	}
	finished, _, err = readMeta(r, finishedCompactKey)
	return scheduled, finished, err
}

// PutCompaction records compaction revisions in b; a revision of 0 or less
// records nothing. A store opened on a scheduled revision above the
// finished one resumes that compaction, and its revision never goes below
// either.
func PutCompaction(b storage.Batch, scheduled, finished int64) {
	if scheduled > 0 {
		b.Put(storage.Meta, scheduledCompactKey, metaValue(scheduled))
	}
	if finished > 0 {
		b.Put(storage.Meta, finishedCompactKey, metaValue(finished))
	}
}

// LeaseRecord returns the Lease bucket key and value of a lease.
func LeaseRecord(l LeaseInfo) (key, value []byte) {
	return leaseKey(l.ID), leaseValue(l.TTL, l.Remaining)
}

// ParseLeaseRecord decodes a Lease bucket record.
func ParseLeaseRecord(key, value []byte) (LeaseInfo, error) {
	if len(key) != 8 || (len(value) != 8 && len(value) != 16) {
		return LeaseInfo{}, fmt.Errorf("mvcc: corrupt lease record %x", key)
	}
	l := LeaseInfo{ID: int64(binary.BigEndian.Uint64(key)), TTL: int64(binary.BigEndian.Uint64(value))}
	if len(value) == 16 {
		l.Remaining = int64(binary.BigEndian.Uint64(value[8:]))
	}
	return l, nil
}
