package filelog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/raftlog"
	"github.com/cairn-kv/cairn/internal/raftlog/internal/memlog"
)

// magic opens every log file; its last byte is the format version.
var magic = [8]byte{'C', 'A', 'I', 'R', 'N', 'R', 'L', 1}

// Record types; see the package comment.
const (
	recSnapshot  byte = 1
	recTruncate  byte = 2
	recEntry     byte = 3
	recHardState byte = 4
	recCompact   byte = 5
)

const (
	frameHeaderLen  = 8 // length:u32 crc:u32
	recordHeaderLen = 5 // type:u8 n:u32
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendSave appends the frame that persists p to buf, and to locs where
// the encoding of each of p.Entries lies, relative to the start of buf.
func appendSave(buf []byte, p memlog.SavePlan, locs []loc) ([]byte, []loc, error) {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeaderLen)...)
	var err error
	if p.Snapshot != nil {
		md := p.Snapshot.GetMetadata()
		if buf, err = appendSnapshot(buf, recSnapshot, p.Snapshot, md.GetIndex(), md.GetTerm()); err != nil {
			return buf, locs, err
		}
	}
	if p.Truncate != 0 {
		buf = append(buf, recTruncate, 8, 0, 0, 0)
		buf = binary.LittleEndian.AppendUint64(buf, p.Truncate)
	}
	for _, e := range p.Entries {
		at := len(buf) + recordHeaderLen
		if buf, err = appendProto(buf, recEntry, e); err != nil {
			return buf, locs, err
		}
		locs = append(locs, loc{off: int64(at), size: len(buf) - at, crc: crc32.Checksum(buf[at:], castagnoli)})
	}
	if p.HardState != nil {
		if buf, err = appendProto(buf, recHardState, p.HardState); err != nil {
			return buf, locs, err
		}
	}
	buf, err = sealFrame(buf, start)
	return buf, locs, err
}

// baseFlushBytes is how much of a base frame writeBase buffers before it
// writes.
const baseFlushBytes = 1 << 20

// writeBase writes a whole log file to f, which must be empty: the magic and
// one base frame holding snap, the compaction point (startIndex,
// startTerm), the entries of kept, copied from their encodings in src, and
// hs. It returns where each kept entry lies in f and the length of the file.
// Nothing is synced.
func writeBase(f, src *os.File, snap *raftpb.Snapshot, startIndex, startTerm uint64, kept []loc, hs *raftpb.HardState) ([]loc, int64, error) {
	// Room for a whole flush and an entry beyond it, so that the buffer
	// is not regrown by doubling on its way to baseFlushBytes.
	buf := append(make([]byte, 0, baseFlushBytes+64<<10), magic[:]...)
	buf = append(buf, make([]byte, frameHeaderLen)...)
	bodyAt := len(buf)
	var (
		off     int64 // file offset of buf[0]
		crc     uint32
		crcFrom = bodyAt // where in buf the body starts
	)
	flush := func() error {
		crc = crc32.Update(crc, castagnoli, buf[crcFrom:])
		if _, err := f.Write(buf); err != nil {
			return err
		}
		off += int64(len(buf))
		buf, crcFrom = buf[:0], 0
		return nil
	}
	buf, err := appendSnapshot(buf, recSnapshot, snap, startIndex, startTerm)
	if err != nil {
		return nil, 0, err
	}
	locs := make([]loc, 0, len(kept))
	for _, s := range kept {
		buf = append(buf, recEntry, 0, 0, 0, 0)
		binary.LittleEndian.PutUint32(buf[len(buf)-4:], uint32(s.size))
		at := len(buf)
		buf = slices.Grow(buf, s.size)[:at+s.size]
		if _, err := src.ReadAt(buf[at:], s.off); err != nil {
			return nil, 0, fmt.Errorf("reading entries to keep: %w", err)
		}
		if err := s.check(buf[at:]); err != nil {
			return nil, 0, err
		}
		locs = append(locs, loc{off: off + int64(at), size: s.size, crc: s.crc})
		if len(buf) >= baseFlushBytes {
			if err := flush(); err != nil {
				return nil, 0, err
			}
		}
	}
	if !raft.IsEmptyHardState(hs) {
		if buf, err = appendProto(buf, recHardState, hs); err != nil {
			return nil, 0, err
		}
	}
	if err := flush(); err != nil {
		return nil, 0, err
	}
	body := off - int64(bodyAt)
	if body > math.MaxUint32 {
		return nil, 0, fmt.Errorf("raftlog: base frame of %d bytes is too large", body)
	}
	var hdr [frameHeaderLen]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(body))
	binary.LittleEndian.PutUint32(hdr[4:], crc)
	if _, err := f.WriteAt(hdr[:], int64(len(magic))); err != nil {
		return nil, 0, err
	}
	return locs, off, nil
}

// appendCompact appends the frame that records a CreateSnapshot: the
// snapshot and the new compaction point.
func appendCompact(buf []byte, snap *raftpb.Snapshot, startIndex, startTerm uint64) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, frameHeaderLen)...)
	buf, err := appendSnapshot(buf, recCompact, snap, startIndex, startTerm)
	if err != nil {
		return buf, err
	}
	return sealFrame(buf, start)
}

// appendSnapshot appends a record of type typ, recSnapshot or recCompact.
func appendSnapshot(buf []byte, typ byte, snap *raftpb.Snapshot, startIndex, startTerm uint64) ([]byte, error) {
	rec := len(buf)
	buf = append(buf, typ, 0, 0, 0, 0)
	buf = binary.LittleEndian.AppendUint64(buf, startIndex)
	buf = binary.LittleEndian.AppendUint64(buf, startTerm)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, snap)
	if err != nil {
		return buf, err
	}
	return sealRecord(buf, rec)
}

func appendProto(buf []byte, typ byte, m proto.Message) ([]byte, error) {
	rec := len(buf)
	buf = append(buf, typ, 0, 0, 0, 0)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return buf, err
	}
	return sealRecord(buf, rec)
}

// sealRecord fills in the length of the record that starts at buf[rec:].
func sealRecord(buf []byte, rec int) ([]byte, error) {
	n := len(buf) - rec - recordHeaderLen
	if uint64(n) > math.MaxUint32 {
		return buf, fmt.Errorf("raftlog: record of %d bytes is too large", n)
	}
	binary.LittleEndian.PutUint32(buf[rec+1:], uint32(n))
	return buf, nil
}

// sealFrame fills in the header of the frame that starts at buf[start:].
func sealFrame(buf []byte, start int) ([]byte, error) {
	body := buf[start+frameHeaderLen:]
	if uint64(len(body)) > math.MaxUint32 {
		return buf, fmt.Errorf("raftlog: frame of %d bytes is too large", len(body))
	}
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(body)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(body, castagnoli))
	return buf, nil
}

// replayed is a log file as replay reads it back: its state, with stubs
// (index and term) for entries, and where each entry's encoding lies.
type replayed struct {
	memlog.State
	locs []loc // locs[i] is where Entries[i] lies
}

// replay reads the log file r, of size bytes, back into the log it holds,
// one frame at a time, so that only the largest frame is in memory at once.
// end is the offset where the valid frames end: size unless the file ends
// in preallocated zeros or has a torn tail, which torn reports.
func replay(r io.ReaderAt, size int64) (st replayed, end int64, torn bool, err error) {
	var head [len(magic)]byte
	if size < int64(len(magic)) {
		return st, 0, false, fmt.Errorf("%w: not a raft log file of a known version", raftlog.ErrCorrupt)
	}
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return st, 0, false, err
	}
	if head != magic {
		return st, 0, false, fmt.Errorf("%w: not a raft log file of a known version", raftlog.ErrCorrupt)
	}
	off := int64(len(magic))
	var buf []byte
	// The first pass reads the base frame, which must be there.
	for off == int64(len(magic)) || off < size {
		body, ok, err := readFrame(r, size, off, &buf)
		if err != nil {
			return st, 0, false, err
		}
		if !ok && off == int64(len(magic)) {
			// The base frame was fsynced before the file got its name, so
			// it cannot be torn.
			return st, 0, false, fmt.Errorf("%w: base record is missing or damaged", raftlog.ErrCorrupt)
		}
		if !ok {
			return tailAt(r, size, off, st)
		}
		if err := replayFrame(&st, body, off+frameHeaderLen); err != nil {
			return st, 0, false, fmt.Errorf("%w: record at offset %d: %v", raftlog.ErrCorrupt, off, err)
		}
		off += frameHeaderLen + int64(len(body))
	}
	return st, off, false, nil
}

// tailAt decides what follows the valid frames of st, which end at off
// with something that is not a frame: preallocated zeros end the log
// undamaged; a damaged frame with no valid one after it is a torn tail; a
// damaged frame followed by a valid one is corruption.
func tailAt(r io.ReaderAt, size, off int64, st replayed) (replayed, int64, bool, error) {
	chunk := make([]byte, len(zeros))
	for at := off; at < size; {
		n := min(size-at, int64(len(chunk)))
		if _, err := r.ReadAt(chunk[:n], at); err != nil {
			return st, 0, false, err
		}
		if !allZero(chunk[:n]) {
			// Damage: the rest of the file is read to look for a valid
			// frame after it.
			rest := make([]byte, size-off)
			if _, err := r.ReadAt(rest, off); err != nil {
				return st, 0, false, err
			}
			if next := nextFrame(rest, 1); next >= 0 {
				return st, 0, false, fmt.Errorf("%w: damaged record at offset %d is followed by a valid one at offset %d",
					raftlog.ErrCorrupt, off, off+int64(next))
			}
			return st, off, true, nil
		}
		at += n
	}
	// Preallocated space: the log ends here, undamaged.
	return st, off, false, nil
}

// readFrame reads the frame at offset off of r (of size bytes) into *buf
// and returns its body, or false if there is no complete frame with a
// matching checksum there.
func readFrame(r io.ReaderAt, size, off int64, buf *[]byte) ([]byte, bool, error) {
	if size-off < frameHeaderLen {
		return nil, false, nil
	}
	var hdr [frameHeaderLen]byte
	if _, err := r.ReadAt(hdr[:], off); err != nil {
		return nil, false, err
	}
	n := int64(binary.LittleEndian.Uint32(hdr[:]))
	if n < recordHeaderLen || n > size-off-frameHeaderLen {
		return nil, false, nil
	}
	*buf = slices.Grow((*buf)[:0], int(n))[:n]
	if _, err := r.ReadAt(*buf, off+frameHeaderLen); err != nil {
		return nil, false, err
	}
	if crc32.Checksum(*buf, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
		return nil, false, nil
	}
	return *buf, true, nil
}

// zeros is compared against in blocks: bytes.Equal is vectorised, which
// matters for the megabytes of preallocated space read at every open.
var zeros = make([]byte, 64<<10)

// allZero reports whether b holds only zero bytes.
func allZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// frameAt returns the body of the frame at data[off:], or false if there is
// no complete frame with a matching checksum there.
func frameAt(data []byte, off int) ([]byte, bool) {
	rest := data[off:]
	if len(rest) < frameHeaderLen {
		return nil, false
	}
	n := binary.LittleEndian.Uint32(rest)
	if n < recordHeaderLen || uint64(n) > uint64(len(rest)-frameHeaderLen) {
		return nil, false
	}
	body := rest[frameHeaderLen : frameHeaderLen+int(n)]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(rest[4:]) {
		return nil, false
	}
	return body, true
}

// nextFrame returns the offset of the first valid frame at or after from, or
// -1. A damaged frame's length cannot be trusted, so every offset is tried.
func nextFrame(data []byte, from int) int {
	for off := from; off+frameHeaderLen <= len(data); off++ {
		if _, ok := frameAt(data, off); ok {
			return off
		}
	}
	return -1
}

// replayFrame applies the records of one frame, whose body is at offset at
// in the file, to st.
func replayFrame(st *replayed, body []byte, at int64) error {
	for len(body) > 0 {
		if len(body) < recordHeaderLen {
			return errors.New("truncated record header")
		}
		typ, n := body[0], binary.LittleEndian.Uint32(body[1:])
		if uint64(n) > uint64(len(body)-recordHeaderLen) {
			return fmt.Errorf("record length %d overruns its frame", n)
		}
		payload := body[recordHeaderLen : recordHeaderLen+int(n)]
		payloadAt := at + recordHeaderLen
		body = body[recordHeaderLen+int(n):]
		at += recordHeaderLen + int64(n)
		last := st.StartIndex + uint64(len(st.Entries))
		switch typ {
		case recSnapshot, recCompact:
			if len(payload) < 16 {
				return errors.New("short snapshot record")
			}
			snap := new(raftpb.Snapshot)
			if err := proto.Unmarshal(payload[16:], snap); err != nil {
				return fmt.Errorf("snapshot: %v", err)
			}
			start, term := binary.LittleEndian.Uint64(payload), binary.LittleEndian.Uint64(payload[8:])
			if typ == recSnapshot {
				st.Entries, st.locs = nil, nil
			} else {
				if start < st.StartIndex || start > last {
					return fmt.Errorf("compaction at %d outside the log [%d, %d]", start, st.StartIndex, last)
				}
				at := st.StartTerm
				if start > st.StartIndex {
					at = st.Entries[start-st.StartIndex-1].GetTerm()
				}
				if term != at {
					return fmt.Errorf("compaction at %d names term %d, the entry's is %d", start, term, at)
				}
				st.Entries, st.locs = st.Entries[start-st.StartIndex:], st.locs[start-st.StartIndex:]
			}
			st.Snapshot, st.StartIndex, st.StartTerm = snap, start, term
		case recTruncate:
			if len(payload) != 8 {
				return errors.New("bad truncation record")
			}
			i := binary.LittleEndian.Uint64(payload)
			if i <= st.StartIndex || i > last {
				return fmt.Errorf("truncation at %d outside the log [%d, %d]", i, st.StartIndex+1, last)
			}
			st.Entries = st.Entries[:i-st.StartIndex-1]
			st.locs = st.locs[:len(st.Entries)]
		case recEntry:
			e := new(raftpb.Entry)
			if err := proto.Unmarshal(payload, e); err != nil {
				return fmt.Errorf("entry: %v", err)
			}
			if e.GetIndex() != last+1 {
				return fmt.Errorf("entry %d found where %d belongs", e.GetIndex(), last+1)
			}
			st.Entries = append(st.Entries, stub(e))
			st.locs = append(st.locs, loc{off: payloadAt, size: len(payload), crc: crc32.Checksum(payload, castagnoli)})
		case recHardState:
			hs := new(raftpb.HardState)
			if err := proto.Unmarshal(payload, hs); err != nil {
				return fmt.Errorf("hard state: %v", err)
			}
			st.HardState = hs
		default:
			return fmt.Errorf("unknown record type %d", typ)
		}
	}
	return nil
}
