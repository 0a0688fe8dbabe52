// Package fsutil holds the file-system steps that Cairn's durable files
// share.
package fsutil

import (
	"os"

	"golang.org/x/sys/unix"
)

// SyncDir fsyncs directory dir, which makes the files created, renamed or
// removed in it durable; a file's own fsync does not cover its name.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Writeback writes a file from its start to its end and has the kernel
// write each chunk to disk as soon as it is complete, waiting for the
// chunk before it to be on disk first. The file then never holds more than
// two chunks of dirty pages: its final fsync is short, and the fsyncs of
// other files (the raft log's) do not queue behind gigabytes of it. It is
// an io.Writer over f; f must be written only through it.
type Writeback struct {
	f     *os.File
	chunk int64
	// off is how much was written; started is where the chunks handed to
	// the kernel end.
	off, started int64
}

// NewWriteback returns a Writeback of f, which must be empty, in chunks
// of chunk bytes.
func NewWriteback(f *os.File, chunk int) *Writeback {
	return &Writeback{f: f, chunk: int64(chunk)}
}

// Write implements io.Writer.
func (w *Writeback) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	for err == nil && w.off-w.started >= w.chunk {
		fd := int(w.f.Fd())
		// Start this chunk's writeback, then wait for the one before.
		err = unix.SyncFileRange(fd, w.started, w.chunk, unix.SYNC_FILE_RANGE_WRITE)
		if err == nil && w.started > 0 {
			err = unix.SyncFileRange(fd, w.started-w.chunk, w.chunk,
				unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER)
		}
		w.started += w.chunk
	}
	return n, err
}
