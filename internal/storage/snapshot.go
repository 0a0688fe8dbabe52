package storage

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// The snapshot format is shared by every engine, so a snapshot taken from
// one engine restores into the other:
//
//	magic   "CAIRNSN1"
//	records { bucket byte; uvarint len(key); key; uvarint len(value); value }
//	trailer { 0xFF; crc32c (Castagnoli) of every byte before it, big endian }
//
// Records appear in bucket order, then key order.
const snapshotMagic = "CAIRNSN1"

const snapshotEnd = 0xFF

// maxRecordBytes bounds one key or value in a snapshot, so a corrupt length
// cannot make the reader allocate gigabytes before the checksum is checked.
// etcd's own limits (request size, key size) are far below it.
const maxRecordBytes = 64 << 20

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// SnapshotWriter encodes records in the snapshot format.
type SnapshotWriter struct {
	w   *bufio.Writer
	crc hash.Hash32
	buf [binary.MaxVarintLen64]byte
	err error
}

// NewSnapshotWriter writes the snapshot header to w and returns a writer for
// the records.
func NewSnapshotWriter(w io.Writer) *SnapshotWriter {
	sw := &SnapshotWriter{w: bufio.NewWriterSize(w, 1<<16), crc: crc32.New(crcTable)}
	sw.write([]byte(snapshotMagic))
	return sw
}

func (sw *SnapshotWriter) write(p []byte) {
	if sw.err != nil {
		return
	}
	sw.crc.Write(p)
	_, sw.err = sw.w.Write(p)
}

// Add appends one record.
func (sw *SnapshotWriter) Add(b Bucket, key, value []byte) error {
	sw.write([]byte{byte(b)})
	n := binary.PutUvarint(sw.buf[:], uint64(len(key)))
	sw.write(sw.buf[:n])
	sw.write(key)
	n = binary.PutUvarint(sw.buf[:], uint64(len(value)))
	sw.write(sw.buf[:n])
	sw.write(value)
	return sw.err
}

// Close writes the trailer and flushes; it does not close the underlying
// writer.
func (sw *SnapshotWriter) Close() error {
	sw.write([]byte{snapshotEnd})
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], sw.crc.Sum32())
	if sw.err == nil {
		_, sw.err = sw.w.Write(sum[:])
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	return sw.err
}

// crcReader checksums exactly the bytes its caller consumes.
type crcReader struct {
	br  *bufio.Reader
	crc hash.Hash32
	one [1]byte
}

func (c *crcReader) ReadByte() (byte, error) {
	b, err := c.br.ReadByte()
	if err == nil {
		c.one[0] = b
		c.crc.Write(c.one[:])
	}
	return b, err
}

func (c *crcReader) Read(p []byte) (int, error) {
	n, err := c.br.Read(p)
	c.crc.Write(p[:n])
	return n, err
}

// ReadSnapshot decodes a snapshot from r and calls fn for every record in
// order. It returns ErrCorruptSnapshot (wrapped) when the stream is
// malformed, truncated or fails its checksum; records already passed to fn
// must then be discarded by the caller. Errors returned by fn are passed
// through unchanged.
func ReadSnapshot(r io.Reader, fn func(b Bucket, key, value []byte) error) error {
	cr := &crcReader{br: bufio.NewReaderSize(r, 1<<16), crc: crc32.New(crcTable)}
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(cr, magic); err != nil || string(magic) != snapshotMagic {
		return fmt.Errorf("%w: bad header", ErrCorruptSnapshot)
	}
	for {
		bb, err := cr.ReadByte()
		if err != nil {
			return fmt.Errorf("%w: truncated: %v", ErrCorruptSnapshot, err)
		}
		if bb == snapshotEnd {
			break
		}
		if Bucket(bb) >= NumBuckets {
			return fmt.Errorf("%w: unknown bucket %d", ErrCorruptSnapshot, bb)
		}
		key, err := readChunk(cr)
		if err != nil {
			return err
		}
		value, err := readChunk(cr)
		if err != nil {
			return err
		}
		if err := fn(Bucket(bb), key, value); err != nil {
			return err
		}
	}
	want := cr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(cr.br, sum[:]); err != nil {
		return fmt.Errorf("%w: truncated trailer", ErrCorruptSnapshot)
	}
	if binary.BigEndian.Uint32(sum[:]) != want {
		return fmt.Errorf("%w: checksum mismatch", ErrCorruptSnapshot)
	}
	return nil
}

func readChunk(cr *crcReader) ([]byte, error) {
	n, err := binary.ReadUvarint(cr)
	if err != nil {
		return nil, fmt.Errorf("%w: truncated", ErrCorruptSnapshot)
	}
	if n > maxRecordBytes {
		return nil, fmt.Errorf("%w: record of %d bytes", ErrCorruptSnapshot, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(cr, p); err != nil {
		return nil, fmt.Errorf("%w: truncated: %v", ErrCorruptSnapshot, err)
	}
	return p, nil
}
