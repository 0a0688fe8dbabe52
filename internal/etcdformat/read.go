package etcdformat

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"hash/fnv"
	"io"
	"os"
	"runtime/debug"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// ErrNoHash is returned by Open for a file without the SHA-256 trailer
// (such as a stopped member's db file) unless the check is skipped. The
// message is etcdutl's.
var ErrNoHash = errors.New("snapshot missing hash but --skip-hash-check=false")

// File is an etcd backend database opened for reading: a snapshot whose
// SHA-256 trailer was checked and removed, or a member's db file.
type File struct {
	db  *bolt.DB
	tmp string
}

// Open checks the snapshot or db file at path and opens it read-only. A
// snapshot's trailer must match its content unless skipHashCheck is set,
// which a db file without a trailer needs. The database is copied into
// tmpDir first (bbolt cannot read a file with the trailer); Close removes
// the copy. A file that is truncated, corrupt or not a bbolt database is
// refused with an error saying so.
func Open(path, tmpDir string, skipHashCheck bool) (_ *File, err error) {
	src, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	// etcd's rule: a database is a whole number of 512-byte sectors, so
	// 32 bytes more are the trailer.
	hasHash := size%512 == sha256.Size
	if !hasHash && !skipHashCheck {
		return nil, ErrNoHash
	}
	dbSize := size
	if hasHash {
		dbSize -= sha256.Size
	}
	tmp, err := os.CreateTemp(tmpDir, "etcd-db-*.tmp")
	if err != nil {
		return nil, err
	}
	f := &File{tmp: tmp.Name()}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), io.LimitReader(src, dbSize))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	if hasHash && !skipHashCheck {
		want := make([]byte, sha256.Size)
		if _, err := io.ReadFull(src, want); err != nil {
			return nil, err
		}
		if got := h.Sum(nil); !bytes.Equal(got, want) {
			return nil, fmt.Errorf("snapshot is corrupt: its SHA-256 is %x, the trailer says %x", got, want)
		}
	}
	if err := checkSize(f.tmp); err != nil {
		return nil, err
	}
	err = guard(func() error {
		if f.db, err = bolt.Open(f.tmp, 0o400, &bolt.Options{ReadOnly: true}); err != nil {
			return fmt.Errorf("not an etcd database: %w", err)
		}
		return f.check()
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// checkSize refuses a database shorter than its own meta page says, as a
// truncated file is: bbolt maps the file and would fault reading past its
// end. Of the two meta pages, the valid one with the newer transaction
// counts, as for bbolt.
func checkSize(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	best, ok := readMeta(f, 0)
	if m, ok2 := readMeta(f, int64(max(best.pageSize, 4096))); ok2 && (!ok || m.txid > best.txid) {
		best, ok = m, true
	}
	if !ok {
		return errors.New("not an etcd database: no valid bbolt meta page")
	}
	if need := best.pgid * uint64(best.pageSize); uint64(fi.Size()) < need {
		return fmt.Errorf("database is truncated: it needs %d bytes, the file holds %d", need, fi.Size())
	}
	return nil
}

// bboltMeta is what checkSize reads of a bbolt meta page.
type bboltMeta struct {
	pageSize   uint32
	pgid, txid uint64
}

// readMeta reads the meta page at off: after a 16-byte page header, the
// magic number, version, page size, flags, root bucket, freelist page,
// high-water page id, transaction id and an FNV-64a checksum of the
// fields before it, little-endian.
func readMeta(f *os.File, off int64) (bboltMeta, bool) {
	const metaMagic, metaLen = 0xED0CDAED, 64
	m := make([]byte, metaLen)
	if _, err := f.ReadAt(m, off+16); err != nil {
		return bboltMeta{}, false
	}
	le := binary.LittleEndian
	h := fnv.New64a()
	h.Write(m[:56])
	if le.Uint32(m[0:]) != metaMagic || h.Sum64() != le.Uint64(m[56:]) {
		return bboltMeta{}, false
	}
	meta := bboltMeta{pageSize: le.Uint32(m[8:]), pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	if meta.pageSize < 512 || meta.pageSize > 1<<20 {
		return bboltMeta{}, false
	}
	return meta, true
}

// guard runs fn, turning a panic of bbolt's on a damaged page, or a fault
// reading a page past the end of the mapped file, into an error. bbolt's
// reads must happen in the calling goroutine for this.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("database is corrupt: %v", r)
		}
	}()
	return fn()
}

// check verifies that the file has etcd's key and meta buckets. (bbolt's
// own Check is not used: on a file without a stored freelist, such as
// etcd's, it walks the pages in a goroutine of its own, where a damaged
// page would crash the process instead of failing the check. Pages are
// verified as they are read instead, under guard.)
func (f *File) check() error {
	return f.db.View(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketKey, bucketMeta} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("not an etcd database: no %q bucket", b)
			}
		}
		return nil
	})
}

// Close releases the database and removes its copy.
func (f *File) Close() {
	if f.db != nil {
		f.db.Close()
	}
	os.Remove(f.tmp)
}

// Status describes a database as etcdutl's snapshot status does.
type Status struct {
	// Hash is a CRC-32C of every bucket's name and records, in order.
	Hash uint32 `json:"hash"`
	// Revision is the newest revision in the key bucket.
	Revision int64 `json:"revision"`
	// TotalKey counts the keys that exist at Revision.
	TotalKey int `json:"totalKey"`
	// TotalSize is the database's size in bytes.
	TotalSize int64 `json:"totalSize"`
	// Version is the storage version recorded, empty if none.
	Version string `json:"version"`
}

// Status computes what etcdutl's snapshot status reports, with the same
// hash, so that both tools print the same for the same file.
func (f *File) Status() (Status, error) {
	var st Status
	live := make(map[string]struct{})
	h := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	err := guard(func() error {
		return f.db.View(func(tx *bolt.Tx) error {
			st.TotalSize = tx.Size()
			if meta := tx.Bucket(bucketMeta); meta != nil {
				st.Version = versionString(meta.Get(keyStorageVersion))
			}
			return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
				h.Write(name)
				isKey := bytes.Equal(name, bucketKey)
				return b.ForEach(func(k, v []byte) error {
					h.Write(k)
					h.Write(v)
					if !isKey {
						return nil
					}
					main, err := revMain(k)
					if err != nil {
						return err
					}
					st.Revision = main
					var kv mvccpb.KeyValue
					if err := proto.Unmarshal(v, &kv); err != nil {
						return fmt.Errorf("revision %d: %w", main, err)
					}
					if len(k) == 18 {
						delete(live, string(kv.Key))
					} else {
						live[string(kv.Key)] = struct{}{}
					}
					return nil
				})
			})
		})
	})
	if err != nil {
		return Status{}, err
	}
	st.TotalKey = len(live)
	st.Hash = h.Sum32()
	return st, nil
}

// versionString returns a recorded storage version ("3.6.0"), empty when
// it is absent or not a version.
func versionString(v []byte) string {
	var major, minor, patch int
	if _, err := fmt.Sscanf(string(v), "%d.%d.%d", &major, &minor, &patch); err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d.%d", major, minor, patch)
}

// Restored summarises what Restore wrote.
type Restored struct {
	// Revision is the newest revision written; Keys counts the key
	// bucket records, Leases the leases.
	Revision     int64
	Keys, Leases int
}

// Restore writes the database's replicated state into e, which should be
// empty: every key bucket record, the compaction revisions, the leases
// with their checkpointed remaining TTL, and the auth state. Membership,
// alarms and raft indexes are left out: a restored member starts a new
// cluster, as etcdutl's restore makes it. A record etcd keeps with no
// value (the placeholder etcdutl's --bump-revision leaves) is skipped; the
// compaction revisions keep the revision from going below it. Writes are
// committed in bounded batches and made durable before Restore returns.
func (f *File) Restore(e storage.Engine) (Restored, error) {
	var out Restored
	bw := &batchWriter{e: e}
	defer bw.close()
	err := guard(func() error {
		return f.db.View(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketKey).ForEach(func(k, v []byte) error {
				main, err := revMain(k)
				if err != nil {
					return err
				}
				if len(v) == 0 {
					return nil
				}
				out.Revision, out.Keys = main, out.Keys+1
				return bw.put(storage.KV, k, v)
			}); err != nil {
				return fmt.Errorf("key bucket: %w", err)
			}
			var revs [2]int64
			for i, key := range [][]byte{keyScheduledCompact, keyFinishedCompact} {
				if v := tx.Bucket(bucketMeta).Get(key); v != nil {
					main, err := revMain(v)
					if err != nil {
						return fmt.Errorf("meta %s: %w", key, err)
					}
					revs[i] = main
				}
			}
			mvcc.PutCompaction(bw.batch(), revs[0], revs[1])
			if b := tx.Bucket(bucketLease); b != nil {
				if err := b.ForEach(func(k, v []byte) error {
					var l leasepb.Lease
					if err := proto.Unmarshal(v, &l); err != nil {
						return fmt.Errorf("lease %x: %w", k, err)
					}
					out.Leases++
					key, value := mvcc.LeaseRecord(mvcc.LeaseInfo{ID: l.ID, TTL: l.TTL, Remaining: l.RemainingTTL})
					return bw.put(storage.Lease, key, value)
				}); err != nil {
					return err
				}
			}
			rec, err := readAuth(tx)
			if err != nil {
				return err
			}
			return auth.WriteRecords(bw.batch(), rec)
		})
	})
	if err == nil {
		err = bw.flush()
	}
	if err == nil {
		err = e.Checkpoint()
	}
	return out, err
}

// readAuth reads etcd's auth buckets.
func readAuth(tx *bolt.Tx) (*auth.Records, error) {
	rec := &auth.Records{Revision: 1}
	if b := tx.Bucket(bucketAuth); b != nil {
		rec.Enabled = bytes.Equal(b.Get(keyAuthEnabled), []byte{1})
		if v := b.Get(keyAuthRevision); len(v) == 8 {
			rec.Revision = binary.BigEndian.Uint64(v)
		}
	}
	if b := tx.Bucket(bucketAuthUsers); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			u := &authpb.User{}
			if err := proto.Unmarshal(v, u); err != nil {
				return fmt.Errorf("user %q: %w", k, err)
			}
			rec.Users = append(rec.Users, u)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	if b := tx.Bucket(bucketAuthRoles); b != nil {
		if err := b.ForEach(func(k, v []byte) error {
			r := &authpb.Role{}
			if err := proto.Unmarshal(v, r); err != nil {
				return fmt.Errorf("role %q: %w", k, err)
			}
			rec.Roles = append(rec.Roles, r)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// batchWriter writes records into an engine in batches of bounded size.
type batchWriter struct {
	e       storage.Engine
	b       storage.Batch
	n, size int
}

func (w *batchWriter) batch() storage.Batch {
	if w.b == nil {
		w.b = w.e.NewBatch()
	}
	return w.b
}

func (w *batchWriter) put(bucket storage.Bucket, key, value []byte) error {
	w.batch().Put(bucket, key, value)
	w.n++
	w.size += len(key) + len(value)
	if w.n >= txLimit || w.size >= txBytes {
		return w.flush()
	}
	return nil
}

func (w *batchWriter) flush() error {
	if w.b == nil {
		return nil
	}
	b := w.b
	w.b, w.n, w.size = nil, 0, 0
	return b.Commit(false)
}

func (w *batchWriter) close() {
	if w.b != nil {
		w.b.Close()
	}
}
