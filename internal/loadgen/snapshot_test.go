package loadgen

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/server"
)

// The snapshot workload, scaled down to 4 MiB, against an embedded etcd
// and an in-process Cairn member on each engine (with a garbage
// collection through pprof): the snapshot taken under writes must pass
// the workload's own checks, and every figure must be there.
func TestSnapshotWorkload(t *testing.T) {
	targets := map[string]func(t *testing.T) string{
		"etcd":          startEtcd,
		"cairn-rocksdb": func(t *testing.T) string { return startCairn(t, "rocksdb") },
		"cairn-memory":  func(t *testing.T) string { return startCairn(t, "memory") },
	}
	for _, name := range []string{"etcd", "cairn-rocksdb", "cairn-memory"} {
		t.Run(name, func(t *testing.T) {
			ep, dir := targets[name](t), t.TempDir()
			cfg := Config{Endpoints: []string{ep}, Conns: 2, ServerPID: os.Getpid(), MaxDuration: time.Minute}
			opts := SnapshotOptions{
				DataBytes: 4 << 20, ValueSize: 64 << 10, Loaders: 4, Writers: 2,
				Settle: 100 * time.Millisecond, Dir: dir,
			}
			if name != "etcd" {
				opts.PprofURL = "http://" + ep + "/debug/pprof/"
			}
			res, err := Snapshot(context.Background(), cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			checkMetrics(t, res, "snapshot", "snapshot MB/s", "snapshot size", "snapshot duration",
				"RSS before", "RSS peak", "RSS growth", "puts during snapshot", "snapshot revision")
			if m, _ := res.Metric("loaded keys in snapshot"); m.Value != 64 {
				t.Errorf("4 MiB of 64 KiB values should be 64 keys in the snapshot, got %v", m.Value)
			}
			if m, _ := res.Metric("snapshot size"); m.Value < 4 {
				t.Errorf("snapshot of 4 MiB of values is %v MiB", m.Value)
			}
			before, _ := res.Metric("revision before")
			after, _ := res.Metric("revision after")
			if before.Value < 65 || after.Value < before.Value {
				t.Errorf("revisions before %v and after %v the snapshot", before.Value, after.Value)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("snapshot file left behind: %v", entries)
			}

			// A second run finds the data loaded and takes another
			// snapshot of it.
			again, err := Snapshot(context.Background(), cfg, opts)
			if err != nil {
				t.Fatal(err)
			}
			checkMetrics(t, again, "snapshot", "load skipped", "snapshot revision")
			if m, _ := again.Metric("loaded keys in snapshot"); m.Value != 64 {
				t.Errorf("second run: %v keys in the snapshot", m.Value)
			}
		})
	}
}

// checkSnapshot must catch a wrong trailer, a newest revision outside the
// window, missing keys and a gap in the revisions.
func TestCheckSnapshot(t *testing.T) {
	write := func(t *testing.T, revs []int64, corrupt bool) (string, int64) {
		t.Helper()
		path := filepath.Join(t.TempDir(), "db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("key"))
			if err != nil {
				return err
			}
			for i, rev := range revs {
				k := binary.BigEndian.AppendUint64(nil, uint64(rev))
				k = binary.BigEndian.AppendUint64(append(k, '_'), 0)
				v, _ := proto.Marshal(&mvccpb.KeyValue{Key: fmt.Appendf(nil, "p/%d", i%3), ModRevision: rev})
				if err := b.Put(k, v); err != nil {
					return err
				}
			}
			return nil
		})
		if cerr := db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			t.Fatal(err)
		}
		sum := h.Sum(nil)
		if corrupt {
			sum[0] ^= 1
		}
		if _, err := f.Write(sum); err != nil {
			t.Fatal(err)
		}
		fi, _ := f.Stat()
		f.Close()
		return path, fi.Size()
	}

	path, size := write(t, []int64{2, 3, 4, 5}, false)
	chk, err := checkSnapshot(path, size, "p/")
	if err != nil {
		t.Fatal(err)
	}
	if chk.revision != 5 || chk.keys != 3 || len(chk.gaps) != 0 {
		t.Errorf("check = %+v", chk)
	}
	if ps := chk.problems(4, 6, 3); len(ps) != 0 {
		t.Errorf("a good snapshot has problems: %v", ps)
	}
	for _, tc := range []struct {
		name                  string
		before, after, loaded int64
		want                  string
	}{
		{"newer than the revision after", 2, 4, 3, "outside [2, 4]"},
		{"older than the revision before", 6, 9, 3, "outside [6, 9]"},
		{"keys missing", 4, 6, 4, "3 loaded keys, want 4"},
	} {
		ps := chk.problems(tc.before, tc.after, tc.loaded)
		if len(ps) != 1 || !strings.Contains(ps[0], tc.want) {
			t.Errorf("%s: problems %v, want %q", tc.name, ps, tc.want)
		}
	}

	path, size = write(t, []int64{2, 3, 5, 6}, false)
	chk, err = checkSnapshot(path, size, "p/")
	if err != nil {
		t.Fatal(err)
	}
	if ps := chk.problems(5, 6, 3); len(ps) != 1 || !strings.Contains(ps[0], "missing from [4]") {
		t.Errorf("a gap at revision 4: problems %v", ps)
	}

	path, size = write(t, []int64{2, 3}, true)
	if _, err := checkSnapshot(path, size, "p/"); err == nil || !strings.Contains(err.Error(), "SHA-256") {
		t.Errorf("a wrong trailer: %v", err)
	}
}

// startCairn runs a single Cairn member on engine in this process and
// returns its client endpoint.
func startCairn(t *testing.T, engine string) string {
	t.Helper()
	port := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", port())
	peer := fmt.Sprintf("http://127.0.0.1:%d", port())
	cfg, err := config.Parse([]string{
		"--name", "default", "--data-dir", t.TempDir(), "--storage-engine", engine,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "default=" + peer,
		"--http-listen-addr", fmt.Sprintf("127.0.0.1:%d", port()), "--enable-pprof",
	}, nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.Start(cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	// Wait for the member to lead: a linearizable read succeeds.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Get(ctx, "x"); err != nil {
		t.Fatalf("cairn %s not serving: %v", engine, err)
	}
	return strings.TrimPrefix(client, "http://")
}
