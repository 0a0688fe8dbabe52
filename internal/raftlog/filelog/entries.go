package filelog

import (
	"fmt"
	"hash/crc32"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
)

// defaultCacheBytes is how much entry encoding a Log keeps decoded in
// memory at most by default: the newest entries, which raft reads back to
// apply them and to send them to followers that keep up. Older entries are
// read from the file when asked for.
const defaultCacheBytes = 16 << 20

// handedCacheBytes bounds the cache once its oldest entries have been
// handed to the state machine (Handed): those leave it, oldest first,
// while it holds more, so that the newest stay for followers a little
// behind. Raft does not read handed entries again to apply them; keeping
// them up to defaultCacheBytes would only hold memory (between two
// compactions, thousands of small entries). Entries not yet handed stay
// within defaultCacheBytes, so that applying them reads nothing back.
const handedCacheBytes = 1 << 20

// readBufKeep is the largest read buffer kept between reads; a larger one,
// grown for a follower's catch-up, is dropped after use.
const readBufKeep = 4 << 20

// loc is where an entry's encoding (its record's payload) lies in the file,
// with its CRC-32C: the frame's checksum is verified only when the file is
// opened, and an entry read back later is checked against this one.
type loc struct {
	off  int64
	size int
	crc  uint32
}

// check verifies that b, read back from the file, is the encoding at l.
func (l loc) check(b []byte) error {
	if crc32.Checksum(b, castagnoli) != l.crc {
		return fmt.Errorf("%w: entry encoding at offset %d fails its checksum when read back", raftlog.ErrCorrupt, l.off)
	}
	return nil
}

// slot is one entry of the log: where it lies in the file and, while it is
// cached, the entry itself.
type slot struct {
	loc
	ent *raftpb.Entry // nil once evicted
}

// stub is what the MemoryStorage keeps of e: its index and term, which is
// all raft's bookkeeping reads there. The fields are shared with e, which
// nobody modifies.
func stub(e *raftpb.Entry) *raftpb.Entry {
	return &raftpb.Entry{Index: e.Index, Term: e.Term}
}

// setCacheBytes bounds the encoding of the entries kept decoded in memory
// (defaultCacheBytes unless set); 0 keeps none. Entries beyond the bound are
// read from the file when raft asks for them.
func (l *Log) setCacheBytes(n int) {
	l.cacheBytes = n
	l.evict()
}

// setHandedBytes bounds the entries kept cached once handed out
// (handedCacheBytes unless set).
func (l *Log) setHandedBytes(n int) {
	l.handedBytes = n
	l.evict()
}

// Handed implements raftlog.Log: entries up to index may leave the cache
// once it holds more than handedBytes.
func (l *Log) Handed(index uint64) {
	if index > l.handed {
		l.handed = index
		l.evict()
	}
}

// evict drops the oldest cached entries until the cache fits its bound,
// and then the oldest handed ones until it fits the handed bound. Entries
// are handed out in order, so the handed ones are the oldest.
func (l *Log) evict() {
	first, _ := l.ms.FirstIndex()
	for l.evicted < len(l.slots) {
		handed := first+uint64(l.evicted) <= l.handed
		if l.cached <= l.cacheBytes && (!handed || l.cached <= l.handedBytes) {
			return
		}
		if s := &l.slots[l.evicted]; s.ent != nil {
			l.cached -= s.size
			s.ent = nil
		}
		l.evicted++
	}
}

// appendSlots adds the entries just written, at locs, to the end of the
// log's slots and cache.
func (l *Log) appendSlots(ents []*raftpb.Entry, locs []loc) {
	for i, e := range ents {
		l.slots = append(l.slots, slot{loc: locs[i], ent: e})
		l.cached += locs[i].size
	}
	l.evict()
}

// truncateSlots keeps the first n slots.
func (l *Log) truncateSlots(n int) {
	for _, s := range l.slots[n:] {
		if s.ent != nil {
			l.cached -= s.size
		}
	}
	clear(l.slots[n:])
	l.slots = l.slots[:n]
	l.evicted = min(l.evicted, n)
}

// dropSlots drops the first n slots, compacted away.
func (l *Log) dropSlots(n int) {
	for _, s := range l.slots[:n] {
		if s.ent != nil {
			l.cached -= s.size
		}
	}
	l.slots = slices.Clone(l.slots[n:])
	l.evicted = max(l.evicted-n, 0)
}

// span returns the slots of entries [lo, hi), checking the bounds as
// raft.MemoryStorage does.
func (l *Log) span(lo, hi uint64) ([]slot, error) {
	first, _ := l.ms.FirstIndex()
	last, _ := l.ms.LastIndex()
	switch {
	case lo < first:
		return nil, raft.ErrCompacted
	case hi > last+1:
		return nil, fmt.Errorf("raftlog: entries up to %d asked of a log ending at %d: %w", hi-1, last, raft.ErrUnavailable)
	case last < first:
		return nil, raft.ErrUnavailable
	case lo > hi:
		return nil, fmt.Errorf("raftlog: entries from %d to %d asked", lo, hi)
	}
	return l.slots[lo-first : hi-first], nil
}

// Entries implements raft.Storage: cached entries come from memory, the
// others are read from the file. maxSize limits the result as
// MemoryStorage does: the first entry always, then as many as fit.
func (l *Log) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	slots, err := l.span(lo, hi)
	if err != nil {
		return nil, err
	}
	if len(slots) > 0 {
		size := uint64(slots[0].size)
		for n := 1; n < len(slots); n++ {
			if size += uint64(slots[n].size); size > maxSize {
				slots = slots[:n]
				break
			}
		}
	}
	ents := make([]*raftpb.Entry, len(slots))
	for i := 0; i < len(slots); {
		if ents[i] = slots[i].ent; ents[i] != nil {
			i++
			continue
		}
		j := i + 1
		for j < len(slots) && slots[j].ent == nil {
			j++
		}
		if err := l.read(ents[i:j], slots[i:j], lo+uint64(i)); err != nil {
			return nil, err
		}
		i = j
	}
	return ents, nil
}

// read decodes the entries of slots, the first of which has index first,
// from the file into dst. Their encodings lie in increasing order; when
// little else lies between them they are read at once.
func (l *Log) read(dst []*raftpb.Entry, slots []slot, first uint64) error {
	if l.f == nil {
		return raftlog.ErrClosed
	}
	defer func() {
		if cap(l.rbuf) > readBufKeep {
			l.rbuf = nil
		}
	}()
	need := 0
	for _, s := range slots {
		need += s.size
	}
	start, end := slots[0].off, slots[len(slots)-1].off+int64(slots[len(slots)-1].size)
	if end-start <= 2*int64(need)+64<<10 {
		buf, err := l.readAt(start, int(end-start))
		if err != nil {
			return err
		}
		for i, s := range slots {
			if dst[i], err = s.decode(buf[s.off-start:][:s.size], first+uint64(i)); err != nil {
				return err
			}
		}
		return nil
	}
	for i, s := range slots {
		buf, err := l.readAt(s.off, s.size)
		if err != nil {
			return err
		}
		if dst[i], err = s.decode(buf, first+uint64(i)); err != nil {
			return err
		}
	}
	return nil
}

// readAt reads n bytes at off into the reused read buffer.
func (l *Log) readAt(off int64, n int) ([]byte, error) {
	l.rbuf = slices.Grow(l.rbuf[:0], n)[:n]
	if _, err := l.f.ReadAt(l.rbuf, off); err != nil {
		return nil, fmt.Errorf("raftlog: reading entries back: %w", err)
	}
	return l.rbuf, nil
}

// decode checks b, read back from the file, and decodes the entry, which
// must have index want.
func (l loc) decode(b []byte, want uint64) (*raftpb.Entry, error) {
	if err := l.check(b); err != nil {
		return nil, err
	}
	e := new(raftpb.Entry)
	if err := proto.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("%w: entry %d read back: %v", raftlog.ErrCorrupt, want, err)
	}
	if e.GetIndex() != want {
		return nil, fmt.Errorf("%w: entry %d read back as %d", raftlog.ErrCorrupt, want, e.GetIndex())
	}
	return e, nil
}

// EntrySize implements raftlog.Log without reading the entry.
func (l *Log) EntrySize(i uint64) (int, error) {
	slots, err := l.span(i, i+1)
	if err != nil {
		return 0, err
	}
	return slots[0].size, nil
}
