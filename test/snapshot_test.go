package test

// etcd-format snapshots: a Cairn snapshot restores into a real etcd with
// etcdutl, an etcd snapshot (or a stopped etcd member's db file) restores
// into Cairn with cairnutl, and a Cairn snapshot restores into Cairn on the
// other engine. What the restored server serves is compared with what the
// source served: keys with their revisions and versions, the compaction,
// leases, users and roles.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
)

// runTool runs a command-line tool and returns what it printed and its
// exit status.
func runTool(t *testing.T, bin string, args ...string) (stdout, stderr string, exit int) {
	t.Helper()
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(c, bin, args...)
	cmd.Env = cleanEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		exit = exitErr.ExitCode()
	default:
		t.Fatalf("%s %v: %v", bin, args, err)
	}
	return out.String(), errOut.String(), exit
}

// snapshotState is what a server serves of the state a snapshot carries.
type snapshotState struct {
	Revision int64
	Keys     []string // key=value@create/mod/version/lease
	// Compacted is whether a read at revision 2 is refused as compacted.
	Compacted bool
	Leases    []string // id:granted TTL
	Users     []string // name:roles
	Roles     []string // name:permissions
}

// fillForSnapshot writes history worth restoring: overwritten and deleted
// keys, a compaction, a lease with a key, users and roles.
func fillForSnapshot(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	c := ctx(t)
	for _, kv := range [][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}, {"a", "11"}, {"bin\xff", "\x00v"}} {
		if _, err := cli.Put(c, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Delete(c, "b"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(c, 4, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	l, err := cli.Grant(c, 600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(c, "leased", "x", clientv3.WithLease(l.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(c, "d", "4"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.RoleAdd(c, "reader"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.RoleGrantPermission(c, "reader", "a", "b", clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserAdd(c, "alice", "secret"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.UserGrantRole(c, "alice", "reader"); err != nil {
		t.Fatal(err)
	}
}

// observeSnapshotState reads what a restored server must serve alike.
func observeSnapshotState(t *testing.T, cli *clientv3.Client) snapshotState {
	t.Helper()
	c := ctx(t)
	var st snapshotState
	r, err := cli.Get(c, "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	st.Revision = r.Header.Revision
	for _, kv := range r.Kvs {
		st.Keys = append(st.Keys, fmt.Sprintf("%q=%q@%d/%d/%d/%x", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease))
	}
	_, err = cli.Get(c, "a", clientv3.WithRev(2))
	st.Compacted = errors.Is(err, rpctypes.ErrCompacted)
	if err != nil && !st.Compacted {
		t.Fatal(err)
	}
	ls, err := cli.Leases(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls.Leases {
		ttl, err := cli.TimeToLive(c, l.ID)
		if err != nil {
			t.Fatal(err)
		}
		st.Leases = append(st.Leases, fmt.Sprintf("%x:%d", l.ID, ttl.GrantedTTL))
	}
	users, err := cli.UserList(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users.Users {
		g, err := cli.UserGet(c, u)
		if err != nil {
			t.Fatal(err)
		}
		st.Users = append(st.Users, fmt.Sprintf("%s:%v", u, g.Roles))
	}
	roles, err := cli.RoleList(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range roles.Roles {
		g, err := cli.RoleGet(c, name)
		if err != nil {
			t.Fatal(err)
		}
		st.Roles = append(st.Roles, fmt.Sprintf("%s:%v", name, g.Perm))
	}
	return st
}

// saveSnapshot streams a snapshot from cli into a file, as etcdctl
// snapshot save does.
func saveSnapshot(t *testing.T, cli *clientv3.Client) string {
	t.Helper()
	rc, err := cli.Snapshot(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	path := filepath.Join(t.TempDir(), "snap.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// restoredMember is a Cairn member to be started on a restored data
// directory: its name and ports are chosen first, for the restore.
func restoredMember(t *testing.T, engine string) *member {
	m := &member{t: t, engine: engine, dataDir: filepath.Join(t.TempDir(), "restored"), name: "r1",
		clientEP: fmt.Sprintf("127.0.0.1:%d", freePort(t)), httpURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		peerURL: fmt.Sprintf("http://127.0.0.1:%d", freePort(t))}
	m.clusterArgs = []string{"--initial-cluster", "r1=" + m.peerURL, "--initial-cluster-token", "restored"}
	return m
}

// cairnutlRestore restores path into m's data directory with cairnutl.
func cairnutlRestore(t *testing.T, m *member, path string, extra ...string) {
	t.Helper()
	args := append([]string{"snapshot", "restore", path, "--data-dir", m.dataDir, "--storage-engine", m.engine,
		"--name", m.name, "--initial-advertise-peer-urls", m.peerURL}, m.clusterArgs...)
	if out, errOut, code := runTool(t, cairnutlBin, append(args, extra...)...); code != 0 {
		t.Fatalf("cairnutl restore: exit %d\n%s%s", code, out, errOut)
	}
}

// TestSnapshotCairnToEtcd: etcdctl saves a Cairn snapshot, etcdutl reads
// its status and restores it, and a real etcd on the restored directory
// serves what Cairn served.
func TestSnapshotCairnToEtcd(t *testing.T) {
	forEachEngine(t, func(t *testing.T, engine string) {
		m := startMember(t, engine)
		cli := m.client(t)
		fillForSnapshot(t, cli)
		want := observeSnapshotState(t, cli)

		path := filepath.Join(t.TempDir(), "cairn.db")
		if out, errOut, code := runTool(t, etcdctlBin, "--endpoints", m.clientEP, "snapshot", "save", path); code != 0 {
			t.Fatalf("etcdctl snapshot save: exit %d\n%s%s", code, out, errOut)
		}
		out, errOut, code := runTool(t, etcdutlBin, "snapshot", "status", path, "-w", "json")
		if code != 0 {
			t.Fatalf("etcdutl snapshot status: exit %d\n%s%s", code, out, errOut)
		}
		var st struct {
			Revision int64  `json:"revision"`
			TotalKey int    `json:"totalKey"`
			Version  string `json:"version"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("etcdutl status output %q: %v", out, err)
		}
		if st.Revision != want.Revision || st.TotalKey != len(want.Keys) || st.Version != "3.7.0" {
			t.Errorf("etcdutl status: revision %d, %d keys, version %q; Cairn serves revision %d, %d keys", st.Revision, st.TotalKey, st.Version, want.Revision, len(want.Keys))
		}
		// cairnutl reports the same, hash included.
		utlOut, _, _ := runTool(t, etcdutlBin, "snapshot", "status", path)
		cairnOut, errOut, code := runTool(t, cairnutlBin, "snapshot", "status", path)
		if code != 0 || cairnOut != utlOut {
			t.Errorf("cairnutl status %q (exit %d, %s), etcdutl's %q", cairnOut, code, errOut, utlOut)
		}

		dir := filepath.Join(t.TempDir(), "etcd")
		peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		if out, errOut, code := runTool(t, etcdutlBin, "snapshot", "restore", path, "--data-dir", dir, "--name", "r1",
			"--initial-cluster", "r1="+peer, "--initial-advertise-peer-urls", peer); code != 0 {
			t.Fatalf("etcdutl snapshot restore: exit %d\n%s%s", code, out, errOut)
		}
		etcd := startEtcd(t, func(cfg *embed.Config) {
			pu, _ := url.Parse(peer)
			cfg.Dir, cfg.Name = dir, "r1"
			cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
			cfg.InitialCluster = "r1=" + peer
		})
		if got := observeSnapshotState(t, etcd); !reflect.DeepEqual(got, want) {
			t.Errorf("etcd restored from Cairn's snapshot serves\n%+v\nCairn served\n%+v", got, want)
		}
	})
}

// TestSnapshotEtcdToCairn: a snapshot of a real etcd restores with
// cairnutl into Cairn on either engine, and so does a copy of the etcd
// member's db file, with --skip-hash-check as etcdutl needs it.
func TestSnapshotEtcdToCairn(t *testing.T) {
	var etcdCfg *embed.Config
	etcd := startEtcd(t, func(cfg *embed.Config) { etcdCfg = cfg })
	fillForSnapshot(t, etcd)
	want := observeSnapshotState(t, etcd)
	path := saveSnapshot(t, etcd)
	dbFile := filepath.Join(etcdCfg.Dir, "member", "snap", "db")
	forEachEngine(t, func(t *testing.T, engine string) {
		m := restoredMember(t, engine)
		cairnutlRestore(t, m, path)
		m.start()
		t.Cleanup(m.stop)
		if got := observeSnapshotState(t, m.client(t)); !reflect.DeepEqual(got, want) {
			t.Errorf("Cairn restored from etcd's snapshot serves\n%+v\netcd served\n%+v", got, want)
		}
		// The restored member goes on from there.
		r, err := m.client(t).Put(ctx(t), "after", "restore")
		if err != nil || r.Header.Revision != want.Revision+1 {
			t.Errorf("put after restore: %v, revision %v, want %d", err, r, want.Revision+1)
		}
	})
	// A member's live db file is a bbolt file without the trailer: a copy
	// is taken while etcd runs (bbolt's file is consistent at each commit,
	// and etcd commits every 100 ms), after a pause past the commit.
	time.Sleep(300 * time.Millisecond)
	copyPath := filepath.Join(t.TempDir(), "member.db")
	b, err := os.ReadFile(dbFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("db file", func(t *testing.T) {
		m := restoredMember(t, "memory")
		args := []string{"snapshot", "restore", copyPath, "--data-dir", m.dataDir, "--storage-engine", m.engine,
			"--name", m.name, "--initial-advertise-peer-urls", m.peerURL}
		_, errOut, code := runTool(t, cairnutlBin, append(args, m.clusterArgs...)...)
		if code == 0 || !strings.Contains(errOut, "snapshot missing hash but --skip-hash-check=false") {
			t.Errorf("restore of a db file without --skip-hash-check: exit %d, %q", code, errOut)
		}
		if _, err := os.Stat(m.dataDir); !os.IsNotExist(err) {
			t.Errorf("a refused restore left %s: %v", m.dataDir, err)
		}
		cairnutlRestore(t, m, copyPath, "--skip-hash-check")
		m.start()
		t.Cleanup(m.stop)
		if got := observeSnapshotState(t, m.client(t)); !reflect.DeepEqual(got, want) {
			t.Errorf("Cairn restored from etcd's db file serves\n%+v\netcd served\n%+v", got, want)
		}
	})
}

// TestSnapshotCairnToCairn: a snapshot of one engine restores into the
// other, and a corrupt or truncated snapshot is refused with a clear error
// and no data directory made.
func TestSnapshotCairnToCairn(t *testing.T) {
	for _, pair := range [][2]string{{"memory", "rocksdb"}, {"rocksdb", "memory"}} {
		t.Run(pair[0]+"-to-"+pair[1], func(t *testing.T) {
			src := startMember(t, pair[0])
			cli := src.client(t)
			fillForSnapshot(t, cli)
			want := observeSnapshotState(t, cli)
			path := saveSnapshot(t, cli)

			corrupt, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			corrupt[len(corrupt)/2] ^= 0xff
			for name, content := range map[string][]byte{"corrupt": corrupt, "truncated": corrupt[:len(corrupt)/3]} {
				bad := filepath.Join(t.TempDir(), name+".db")
				if err := os.WriteFile(bad, content, 0o600); err != nil {
					t.Fatal(err)
				}
				m := restoredMember(t, pair[1])
				args := []string{"snapshot", "restore", bad, "--data-dir", m.dataDir, "--storage-engine", m.engine,
					"--name", m.name, "--initial-advertise-peer-urls", m.peerURL}
				_, errOut, code := runTool(t, cairnutlBin, append(args, m.clusterArgs...)...)
				if code != 1 || !strings.HasPrefix(errOut, "Error: ") {
					t.Errorf("%s snapshot: exit %d, %q", name, code, errOut)
				}
				if _, err := os.Stat(m.dataDir); !os.IsNotExist(err) {
					t.Errorf("%s snapshot left %s: %v", name, m.dataDir, err)
				}
				if entries, _ := os.ReadDir(filepath.Dir(m.dataDir)); len(entries) != 0 {
					t.Errorf("%s snapshot left files beside the data directory: %v", name, entries)
				}
			}

			m := restoredMember(t, pair[1])
			cairnutlRestore(t, m, path)
			m.start()
			t.Cleanup(m.stop)
			if got := observeSnapshotState(t, m.client(t)); !reflect.DeepEqual(got, want) {
				t.Errorf("%s restored from %s's snapshot serves\n%+v\nthe source served\n%+v", pair[1], pair[0], got, want)
			}
		})
	}
}

// TestSnapshotRestoreBumpRevision: --bump-revision with --mark-compacted
// raises the revision and marks it compacted, in Cairn as in etcd.
func TestSnapshotRestoreBumpRevision(t *testing.T) {
	src := startMember(t, "memory")
	cli := src.client(t)
	fillForSnapshot(t, cli)
	path := saveSnapshot(t, cli)
	observe := func(t *testing.T, c *clientv3.Client) string {
		r, err := c.Put(ctx(t), "next", "v")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Get(ctx(t), "a", clientv3.WithRev(r.Header.Revision-5))
		return fmt.Sprintf("put at %d, read before: %v", r.Header.Revision, err)
	}

	dir := filepath.Join(t.TempDir(), "etcd")
	peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	if out, errOut, code := runTool(t, etcdutlBin, "snapshot", "restore", path, "--data-dir", dir, "--name", "r1",
		"--initial-cluster", "r1="+peer, "--initial-advertise-peer-urls", peer, "--bump-revision", "100", "--mark-compacted"); code != 0 {
		t.Fatalf("etcdutl snapshot restore: exit %d\n%s%s", code, out, errOut)
	}
	etcd := startEtcd(t, func(cfg *embed.Config) {
		pu, _ := url.Parse(peer)
		cfg.Dir, cfg.Name = dir, "r1"
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
		cfg.InitialCluster = "r1=" + peer
	})
	want := observe(t, etcd)

	forEachEngine(t, func(t *testing.T, engine string) {
		m := restoredMember(t, engine)
		cairnutlRestore(t, m, path, "--bump-revision", "100", "--mark-compacted")
		m.start()
		t.Cleanup(m.stop)
		if got := observe(t, m.client(t)); got != want {
			t.Errorf("Cairn after a bumped restore: %s\netcd: %s", got, want)
		}
	})
	m := restoredMember(t, "memory")
	_, errOut, code := runTool(t, cairnutlBin, "snapshot", "restore", path, "--data-dir", m.dataDir, "--bump-revision", "5")
	if code != 2 || !strings.Contains(errOut, "--mark-compacted required") {
		t.Errorf("--bump-revision alone: exit %d, %q", code, errOut)
	}
}
