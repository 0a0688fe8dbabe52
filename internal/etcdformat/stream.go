package etcdformat

import (
	"crypto/sha256"
	"errors"
	"io"

	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// chunkSize is the size of the database chunk each snapshot message
// carries, as in etcd.
const chunkSize = 32 << 10

// Stream sends the bbolt file at path as etcd's Maintenance Snapshot does:
// the database in chunks, each with the bytes still to come and the
// storage version the database records, then one message holding the
// SHA-256 of everything sent. It returns the database's size and storage
// version.
func Stream(path string, send func(*pb.SnapshotResponse) error) (total int64, version string, err error) {
	db, err := bolt.Open(path, 0o400, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, "", err
	}
	defer db.Close()
	tx, err := db.Begin(false)
	if err != nil {
		return 0, "", err
	}
	defer func() { _ = tx.Rollback() }()
	if meta := tx.Bucket(bucketMeta); meta != nil {
		version = versionString(meta.Get(keyStorageVersion))
	}
	total = tx.Size()
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := tx.WriteTo(pw)
		pw.CloseWithError(err)
	}()
	// The copy ends before the transaction does, also on an early return.
	defer func() {
		pr.Close()
		<-done
	}()
	h := sha256.New()
	// gRPC encodes a message before Send returns, so one buffer serves
	// every chunk.
	chunk := make([]byte, chunkSize)
	for sent := int64(0); sent < total; {
		buf := chunk[:min(chunkSize, total-sent)]
		n, err := io.ReadFull(pr, buf)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, "", err
		}
		sent += int64(n)
		h.Write(buf[:n])
		if err := send(&pb.SnapshotResponse{RemainingBytes: uint64(total - sent), Blob: buf[:n], Version: version}); err != nil {
			return 0, "", err
		}
		if n < len(buf) {
			return 0, "", io.ErrUnexpectedEOF
		}
	}
	if err := send(&pb.SnapshotResponse{Blob: h.Sum(nil), Version: version}); err != nil {
		return 0, "", err
	}
	return total, version, nil
}
