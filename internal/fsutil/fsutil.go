// Package fsutil holds the file-system steps that Cairn's durable files
// share.
package fsutil

import "os"

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
