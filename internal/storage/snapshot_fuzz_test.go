package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"testing"
)

// snapRecord is one record of a snapshot.
type snapRecord struct {
	b          Bucket
	key, value []byte
}

func (r snapRecord) String() string { return fmt.Sprintf("%v %q=%q", r.b, r.key, r.value) }

// readAll decodes a snapshot into its records.
func readAll(data []byte) ([]snapRecord, error) {
	var recs []snapRecord
	err := ReadSnapshot(bytes.NewReader(data), func(b Bucket, k, v []byte) error {
		recs = append(recs, snapRecord{b, bytes.Clone(k), bytes.Clone(v)})
		return nil
	})
	return recs, err
}

// encodeAll is what NewSnapshotWriter writes for recs.
func encodeAll(tb testing.TB, recs []snapRecord) []byte {
	tb.Helper()
	var buf bytes.Buffer
	w := NewSnapshotWriter(&buf)
	for _, r := range recs {
		if err := w.Add(r.b, r.key, r.value); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzReadSnapshot feeds arbitrary bytes to ReadSnapshot. It must not
// panic, and it either fails with ErrCorruptSnapshot or accepts data that
// starts with a snapshot whose checksum holds: magic and records, the end
// byte, and the CRC-32C of all of them, decoding to the same records.
// Nothing the checksum does not cover may be accepted.
func FuzzReadSnapshot(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := readAll(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptSnapshot) {
				t.Fatalf("ReadSnapshot: %v, want an error wrapping ErrCorruptSnapshot", err)
			}
			return
		}
		for end := len(snapshotMagic); end+5 <= len(data); end++ {
			sum := binary.BigEndian.Uint32(data[end+1:])
			if data[end] != snapshotEnd || crc32.Checksum(data[:end+1], crcTable) != sum {
				continue
			}
			if again, err := readAll(data[:end+5]); err == nil && fmt.Sprint(again) == fmt.Sprint(recs) {
				return
			}
		}
		t.Fatalf("accepted %q as records %v, but no prefix of it is a checksummed snapshot of them", data, recs)
	})
}

// FuzzSnapshotDamage writes the records spec describes (see specRecords)
// with NewSnapshotWriter, checks that ReadSnapshot gives them back in
// order, then damages the snapshot (mode 0: xor the byte at pos with a
// non-zero mask; 1: cut it at pos) and checks that ReadSnapshot refuses it
// with ErrCorruptSnapshot.
func FuzzSnapshotDamage(f *testing.F) {
	f.Fuzz(func(t *testing.T, spec []byte, mode byte, pos uint32, mask byte) {
		recs := specRecords(spec)
		data := encodeAll(t, recs)
		got, err := readAll(data)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(recs) {
			t.Fatalf("wrote %v, read back %v, %v", recs, got, err)
		}
		damaged := bytes.Clone(data)
		at := int(pos % uint32(len(data)))
		if mode%2 == 0 {
			damaged[at] ^= mask | 1
		} else {
			damaged = damaged[:at]
		}
		if got, err := readAll(damaged); !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("snapshot of %v damaged at %d (mode %d) read as %v, %v; want ErrCorruptSnapshot", recs, at, mode%2, got, err)
		}
	})
}

// specRecords turns spec into records: each starts with a byte giving the
// bucket (low 3 bits, modulo NumBuckets, so Raft is included), the key
// length (next 2 bits) and the value length (top 3 bits, doubled), and
// takes its key and value from the bytes that follow.
func specRecords(spec []byte) []snapRecord {
	var recs []snapRecord
	for len(spec) > 0 {
		h := spec[0]
		spec = spec[1:]
		r := snapRecord{b: Bucket(h & 7 % byte(NumBuckets))}
		kn := min(int(h>>3&3), len(spec))
		r.key, spec = bytes.Clone(spec[:kn]), spec[kn:]
		vn := min(int(h>>5)*2, len(spec))
		r.value, spec = bytes.Clone(spec[:vn]), spec[vn:]
		recs = append(recs, r)
	}
	return recs
}
