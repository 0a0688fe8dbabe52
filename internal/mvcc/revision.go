package mvcc

import (
	"encoding/binary"
	"fmt"
)

// revision names one change of the key space. main is the store revision of
// the raft entry that made the change; sub orders the changes that one entry
// makes, so a txn writing three keys produces (r,0), (r,1), (r,2).
type revision struct {
	main, sub int64
}

// Keys of the KV bucket are revisions, so the bucket iterates in the order
// the changes were made and compaction can delete "everything up to main
// revision r" as one key range. The layout follows etcd's so that a reader
// of both sees the same thing:
//
//	main (8 bytes, big endian) '_' sub (8 bytes, big endian) ['t']
//
// The optional trailing 't' marks a deletion (tombstone): the index is
// rebuilt from keys alone, without knowing what the value was.
const (
	revKeyLen     = 8 + 1 + 8
	revKeySep     = '_'
	tombstoneMark = 't'
)

// appendRevKey appends the KV bucket key of r to dst.
func appendRevKey(dst []byte, r revision, tombstone bool) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.main))
	dst = append(dst, revKeySep)
	dst = binary.BigEndian.AppendUint64(dst, uint64(r.sub))
	if tombstone {
		dst = append(dst, tombstoneMark)
	}
	return dst
}

// mainPrefix is the smallest KV bucket key whose main revision is main: every
// key of an earlier main revision sorts before it.
func mainPrefix(main int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(main))
}

// parseRevKey decodes a KV bucket key. It rejects anything appendRevKey
// cannot have produced, because such a key means the bucket is corrupt.
func parseRevKey(k []byte) (r revision, tombstone bool, err error) {
	switch {
	case len(k) == revKeyLen:
	case len(k) == revKeyLen+1 && k[revKeyLen] == tombstoneMark:
		tombstone = true
	default:
		return revision{}, false, fmt.Errorf("mvcc: malformed revision key %x", k)
	}
	if k[8] != revKeySep {
		return revision{}, false, fmt.Errorf("mvcc: malformed revision key %x", k)
	}
	r = revision{
		main: int64(binary.BigEndian.Uint64(k[:8])),
		sub:  int64(binary.BigEndian.Uint64(k[9:revKeyLen])),
	}
	if r.main < 0 || r.sub < 0 {
		return revision{}, false, fmt.Errorf("mvcc: negative revision in key %x", k)
	}
	return r, tombstone, nil
}
