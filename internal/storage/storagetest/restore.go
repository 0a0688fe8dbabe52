package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cairn-kv/cairn/internal/storage"
)

// CheckRestore restores data into e and checks the result against what
// storage.ReadSnapshot decodes from data.
func CheckRestore(t *testing.T, e storage.Engine, data []byte) {
	t.Helper()
	before := EngineContent(t, e)
	want := map[string]string{}
	for _, line := range before {
		if line[0] == byte('0'+storage.Raft) {
			want[line] = line
		}
	}
	readErr := storage.ReadSnapshot(bytes.NewReader(data), func(b storage.Bucket, k, v []byte) error {
		if b != storage.Raft {
			want[fmt.Sprintf("%d %q", b, k)] = fmt.Sprintf("%d %q=%q", b, k, v)
		}
		return nil
	})
	err := e.Restore(bytes.NewReader(data))
	after := EngineContent(t, e)
	if err != nil {
		if !errors.Is(err, storage.ErrCorruptSnapshot) || readErr == nil {
			t.Fatalf("Restore: %v; ReadSnapshot: %v", err, readErr)
		}
		if !slices.Equal(after, before) {
			t.Fatalf("failed Restore (%v) changed the engine:\n%q\nbecame\n%q", err, before, after)
		}
		return
	}
	if readErr != nil {
		t.Fatalf("Restore accepted what ReadSnapshot refuses (%v)", readErr)
	}
	var wantLines []string
	for _, line := range want {
		wantLines = append(wantLines, line)
	}
	slices.Sort(wantLines)
	if !slices.Equal(after, wantLines) {
		t.Fatalf("restored engine holds\n%q\nwant\n%q", after, wantLines)
	}
}

// EngineContent lists every key of every bucket as `bucket "key"="value"`,
// sorted.
func EngineContent(t *testing.T, e storage.Reader) []string {
	t.Helper()
	var out []string
	for b := range storage.NumBuckets {
		err := e.Iterate(b, nil, nil, false, func(k, v []byte) bool {
			out = append(out, fmt.Sprintf("%d %q=%q", b, k, v))
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(out)
	return out
}
