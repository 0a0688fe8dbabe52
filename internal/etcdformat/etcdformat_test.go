package etcdformat

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/storage/memory"
)

func openEngine(t testing.TB) storage.Engine {
	t.Helper()
	e, err := memory.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func revKey(main, sub int64, tomb bool) []byte {
	k := append(revBytes(main)[:9], u64(uint64(sub))...)
	if tomb {
		k = append(k, 't')
	}
	return k
}

// fill writes a small replicated state: history with an overwrite and a
// tombstone, compaction revisions, leases, users and roles.
func fill(t testing.TB, e storage.Engine) {
	t.Helper()
	b := e.NewBatch()
	put := func(main, sub int64, tomb bool, kv *mvccpb.KeyValue) {
		v, err := proto.Marshal(kv)
		if err != nil {
			t.Fatal(err)
		}
		b.Put(storage.KV, revKey(main, sub, tomb), v)
	}
	put(2, 0, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("1"), CreateRevision: 2, ModRevision: 2, Version: 1})
	put(3, 0, false, &mvccpb.KeyValue{Key: []byte("b"), Value: []byte("2"), CreateRevision: 3, ModRevision: 3, Version: 1, Lease: 7})
	put(3, 1, false, &mvccpb.KeyValue{Key: []byte("a"), Value: []byte("11"), CreateRevision: 2, ModRevision: 3, Version: 2})
	put(4, 0, true, &mvccpb.KeyValue{Key: []byte("a")})
	mvcc.PutCompaction(b, 3, 3)
	for _, l := range []mvcc.LeaseInfo{{ID: 7, TTL: 60}, {ID: 9, TTL: 100, Remaining: 40}} {
		k, v := mvcc.LeaseRecord(l)
		b.Put(storage.Lease, k, v)
	}
	rec := &auth.Records{Enabled: true, Revision: 5,
		Users: []*authpb.User{{Name: []byte("root"), Password: []byte("x"), Roles: []string{"root"}}},
		Roles: []*authpb.Role{{Name: []byte("root")}, {Name: []byte("r"), KeyPermission: []*authpb.Permission{{PermType: authpb.READ, Key: []byte("a")}}}}}
	if err := auth.WriteRecords(b, rec); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
}

// snapshot writes e's state as a streamed snapshot file and returns its
// path and the messages' count.
func snapshot(t testing.TB, e storage.Engine) (string, int) {
	t.Helper()
	dir := t.TempDir()
	view, err := e.NewView()
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	db := filepath.Join(dir, "db")
	if err := Write(context.Background(), db, view, Info{Term: 3}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	msgs := 0
	total, _, err := Stream(db, func(r *pb.SnapshotResponse) error {
		msgs++
		if r.Version != ClusterVersion {
			t.Errorf("message version %q", r.Version)
		}
		buf.Write(r.Blob)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != total+sha256.Size {
		t.Fatalf("streamed %d bytes for a %d-byte database", buf.Len(), total)
	}
	path := filepath.Join(dir, "snap.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, msgs
}

func dump(t testing.TB, r storage.Reader, b storage.Bucket) []string {
	t.Helper()
	var out []string
	if err := r.Iterate(b, nil, nil, false, func(k, v []byte) bool {
		out = append(out, fmt.Sprintf("%x=%x", k, v))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRoundTrip: a state written as an etcd snapshot and restored is the
// same state, and the file's status describes it.
func TestRoundTrip(t *testing.T) {
	src := openEngine(t)
	fill(t, src)
	path, _ := snapshot(t, src)
	f, err := Open(path, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Revision != 4 || st.TotalKey != 1 || st.Version != ClusterVersion || st.TotalSize == 0 {
		t.Errorf("status %+v: want revision 4, 1 key (b), version %s", st, ClusterVersion)
	}
	dst := openEngine(t)
	res, err := f.Restore(dst)
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 4 || res.Keys != 4 || res.Leases != 2 {
		t.Errorf("restored %+v", res)
	}
	for _, b := range []storage.Bucket{storage.KV, storage.Lease, storage.Auth} {
		if got, want := dump(t, dst, b), dump(t, src, b); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("bucket %s restored as\n%v\nwant\n%v", b, got, want)
		}
	}
	s, fin, err := mvcc.CompactionOf(dst)
	if err != nil || s != 3 || fin != 3 {
		t.Errorf("compaction restored as %d/%d (%v), want 3/3", s, fin, err)
	}
}

// TestStreamChunks: a database larger than a chunk goes out in several
// messages, as etcd sends it.
func TestStreamChunks(t *testing.T) {
	e := openEngine(t)
	b := e.NewBatch()
	for i := range 200 {
		v, _ := proto.Marshal(&mvccpb.KeyValue{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte("v"), 1000),
			CreateRevision: int64(i + 2), ModRevision: int64(i + 2), Version: 1})
		b.Put(storage.KV, revKey(int64(i+2), 0, false), v)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	path, msgs := snapshot(t, e)
	if msgs < 3 {
		t.Errorf("%d messages for 200 kB", msgs)
	}
	f, err := Open(path, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if st, err := f.Status(); err != nil || st.TotalKey != 200 || st.Revision != 201 {
		t.Errorf("status %+v, %v", st, err)
	}
}

// TestOpenRefuses: damaged files are refused with an error, and the
// scratch copy is removed.
func TestOpenRefuses(t *testing.T) {
	src := openEngine(t)
	fill(t, src)
	path, _ := snapshot(t, src)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	cases := []struct {
		name    string
		content []byte
		skip    bool
		want    string
	}{
		{"no trailer", good[:len(good)-sha256.Size], false, ErrNoHash.Error()},
		{"flipped byte", flipped, false, "snapshot is corrupt"},
		{"truncated", good[:len(good)/2], true, ""},
		{"garbage", bytes.Repeat([]byte("etcd"), 2048), true, ""},
		{"empty", nil, true, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "f.db")
			if err := os.WriteFile(p, c.content, 0o600); err != nil {
				t.Fatal(err)
			}
			tmp := t.TempDir()
			f, err := Open(p, tmp, c.skip)
			if err == nil {
				f.Close()
				t.Fatal("opened")
			}
			if c.want != "" && !bytes.Contains([]byte(err.Error()), []byte(c.want)) {
				t.Errorf("error %q, want %q", err, c.want)
			}
			if c.name == "no trailer" && !errors.Is(err, ErrNoHash) {
				t.Errorf("error %v is not ErrNoHash", err)
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("left %v", entries)
			}
		})
	}
}

// FuzzOpen: whatever a file holds, opening, reading its status and
// restoring it end in a result or an error, never a crash.
func FuzzOpen(f *testing.F) {
	src := openEngine(f)
	fill(f, src)
	path, _ := snapshot(f, src)
	good, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, 0, byte(0))
	f.Add(good, len(good)/3, byte(0xff))
	f.Add(good, 4096+100, byte(0x10))
	f.Fuzz(func(t *testing.T, content []byte, at int, x byte) {
		if len(content) > 0 && at >= 0 {
			content = bytes.Clone(content)
			content[at%len(content)] ^= x
		}
		p := filepath.Join(t.TempDir(), "f.db")
		if err := os.WriteFile(p, content, 0o600); err != nil {
			t.Fatal(err)
		}
		file, err := Open(p, t.TempDir(), true)
		if err != nil {
			return
		}
		defer file.Close()
		_, _ = file.Status()
		_, _ = file.Restore(openEngine(t))
	})
}
