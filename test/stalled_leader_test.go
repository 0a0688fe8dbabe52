package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// freezableDisk is a filesystem of its own, on a loop device, that freeze
// stops: every write to it blocks until thaw, as on a disk stuck in
// fsync.
type freezableDisk struct {
	t   *testing.T
	mnt string

	mu sync.Mutex
	// watchdog thaws the filesystem if the test binary dies while it is
	// frozen (a test timeout runs no cleanup); nil while thawed.
	watchdog *exec.Cmd
}

// newFreezableDisk mounts a fresh 256 MiB ext4 filesystem for the test and
// unmounts it at the end, once the members on it have stopped. It skips
// the test where that cannot be done (see mountFreezableDisk).
func newFreezableDisk(t *testing.T) *freezableDisk {
	t.Helper()
	d, why := mountFreezableDisk(t)
	if d == nil {
		t.Skip(why)
	}
	return d
}

// mountFreezableDisk is newFreezableDisk that returns nil and the reason
// where the disk cannot be made: it needs root, a loop device, mkfs.ext4
// and fsfreeze.
func mountFreezableDisk(t *testing.T) (*freezableDisk, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil, "freezing a filesystem needs root"
	}
	for _, tool := range []string{"mkfs.ext4", "mount", "umount", "fsfreeze", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, "freezing a filesystem needs " + tool
		}
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(256 << 20)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		return nil, fmt.Sprintf("cannot mount a loop filesystem here: %v: %s", err, out)
	}
	d := &freezableDisk{t: t, mnt: mnt}
	t.Cleanup(func() {
		d.thaw()
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return d, ""
}

// freeze stops every write to the filesystem until thaw, which runs at
// the latest when the test ends, before the members stop, or a minute
// later if the test binary dies.
func (d *freezableDisk) freeze() {
	d.t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	wd := exec.Command("setsid", "sh", "-c", fmt.Sprintf("sleep 60; fsfreeze -u %s", d.mnt))
	if err := wd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.watchdog = wd
	if out, err := exec.Command("fsfreeze", "-f", d.mnt).CombinedOutput(); err != nil {
		d.t.Fatalf("fsfreeze -f: %v\n%s", err, out)
	}
	d.t.Cleanup(d.thaw)
}

// thaw lets writes through again; it does nothing if the filesystem is
// not frozen.
func (d *freezableDisk) thaw() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.watchdog == nil {
		return
	}
	if out, err := exec.Command("fsfreeze", "-u", d.mnt).CombinedOutput(); err != nil {
		d.t.Errorf("fsfreeze -u: %v\n%s", err, out)
	}
	// setsid made the watchdog's shell the leader of its own group, which
	// its sleep is in too.
	_ = syscall.Kill(-d.watchdog.Process.Pid, syscall.SIGKILL)
	_ = d.watchdog.Wait()
	d.watchdog = nil
}

// TestClusterStalledLeaderKeepsLeases: the leader's disk freezes under a
// write, so its raft log write hangs and its raft clock stops, while a
// client keeps a lease alive through the other members, which elect a
// new leader. The stalled member still believes it leads: its own clock
// for the lease runs out and its lessor wants the lease revoked. When the
// disk thaws the lease must survive, as in etcd since issue 15247 was
// fixed: a member revokes only once it has confirmed that it leads.
// Before that fix Cairn's stalled member queued a revoke every second,
// which reached the new leader once it stepped down. A client talking to
// the stalled member alone must stop hearing that its lease is renewed.
func TestClusterStalledLeaderKeepsLeases(t *testing.T) {
	forEachEngineParallel(t, func(t *testing.T, engine string) {
		disk := newFreezableDisk(t)
		c := startClusterOpts(t, engine, 3, clusterOpts{memberArgs: func(name string) []string {
			if name == "c0" {
				return []string{"--data-dir", filepath.Join(disk.mnt, "c0")}
			}
			return nil
		}})
		stalled, others := c.members[0], c.members[1:]
		stalledID := stalled.statusID(t)
		if l := c.leader(); l != stalled {
			if _, err := l.client(t).MoveLeader(ctx(t), stalledID); err != nil {
				t.Fatalf("move leader to %s: %v", stalled.name, err)
			}
			if !waitFor(10*time.Second, func() bool { return c.leader() == stalled }) {
				t.Fatalf("%s did not become leader", stalled.name)
			}
		}

		const ttl = 5 // seconds
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{others[0].clientEP, others[1].clientEP},
			DialTimeout: 5 * time.Second,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		lease, err := cli.Grant(ctx(t), ttl)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cli.Put(ctx(t), "held", "v", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
		kactx, stopKeepAlive := context.WithCancel(context.Background())
		defer stopKeepAlive()
		kas, err := cli.KeepAlive(kactx, lease.ID)
		if err != nil {
			t.Fatal(err)
		}
		kaDone := make(chan struct{})
		go func() {
			defer close(kaDone)
			for range kas {
			}
		}()

		// A second client talks to the leader alone. Once the leader
		// stalls, it must stop hearing that its lease was renewed: the
		// stalled member cannot confirm that it leads, and answers
		// etcd's "not a primary lessor".
		direct := stalled.client(t)
		alone, err := direct.Grant(ctx(t), ttl)
		if err != nil {
			t.Fatal(err)
		}
		aloneKAs, err := direct.KeepAlive(kactx, alone.ID)
		if err != nil {
			t.Fatal(err)
		}
		aloneClosed := make(chan time.Time, 1)
		go func() {
			for range aloneKAs {
			}
			aloneClosed <- time.Now()
		}()

		disk.freeze()
		// A write makes the stalled leader's raft actor hang in its log
		// write; it answers once the disk thaws.
		stuck := make(chan error, 1)
		go func() {
			pctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			_, err := stalled.client(t).Put(pctx, "stuck", "v")
			stuck <- err
		}()
		var newLeader uint64
		if !waitFor(15*time.Second, func() bool {
			st, err := others[0].status()
			if err == nil && st.Leader != 0 && st.Leader != stalledID {
				newLeader = st.Leader
				return true
			}
			return false
		}) {
			t.Fatal("the other members elected no leader while the leader's disk was frozen")
		}
		// Longer than the TTL: the stalled member's clock for the lease,
		// which nobody renews there, runs out.
		time.Sleep((ttl + 3) * time.Second)
		thawed := time.Now()
		disk.thaw()
		if err := <-stuck; err != nil {
			t.Logf("the write made while frozen: %v", err)
		}
		// Whatever the stalled member queued reaches the new leader now.
		time.Sleep(3 * time.Second)

		select {
		case <-kaDone:
			t.Fatal("clientv3's keep-alive channel closed: the lease was lost")
		default:
		}
		select {
		case at := <-aloneClosed:
			if at.After(thawed) {
				t.Errorf("the client of the stalled leader heard its lease renewed until the thaw")
			}
		default:
			t.Errorf("the client of the stalled leader still believes its lease alive after the thaw")
		}
		ttlResp, err := cli.TimeToLive(ctx(t), lease.ID)
		if err != nil || ttlResp.TTL <= 0 {
			t.Fatalf("TimeToLive of the kept-alive lease after the thaw: %v %v, want alive", ttlResp, err)
		}
		if r, err := cli.Get(ctx(t), "held"); err != nil || len(r.Kvs) != 1 {
			t.Fatalf("the kept-alive lease's key after the thaw: %v %v", r, err)
		}
		if st, err := others[0].status(); err != nil || st.Leader != newLeader {
			t.Logf("leader after the thaw: %v %v (was %x)", st, err, newLeader)
		}
	})
}
