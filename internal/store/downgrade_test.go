package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/store"
)

func downgrade(c *store.Client, action pb.DowngradeRequest_DowngradeAction, version string) (string, error) {
	resp, err := c.Downgrade(context.Background(), &pb.DowngradeRequest{Action: action, Version: version})
	if err != nil {
		return "", err
	}
	return resp.Version, nil
}

// waitClusterVersion waits for the leader's version monitor to move the
// cluster version to want.
func waitClusterVersion(t *testing.T, c *store.Client, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for c.ClusterVersion() != want {
		if time.Now().After(deadline) {
			t.Fatalf("cluster version %s, want %s", c.ClusterVersion(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkDowngrade checks what Status, ClusterVersion and the engine say of
// the downgrade state.
func checkDowngrade(t *testing.T, m *member, cluster, target string, enabled bool) {
	t.Helper()
	st, err := m.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.DowngradeInfo.GetTargetVersion() != target || st.DowngradeInfo.GetEnabled() != enabled {
		t.Errorf("status downgrade info %v, want target %q enabled %v", st.DowngradeInfo, target, enabled)
	}
	if st.StorageVersion != cluster || m.c.ClusterVersion() != cluster || m.c.StorageVersion() != cluster {
		t.Errorf("storage version %s (status %s), cluster version %s; want %s",
			m.c.StorageVersion(), st.StorageVersion, m.c.ClusterVersion(), cluster)
	}
	if st.Version != store.Version {
		t.Errorf("status version %s, want the server's %s", st.Version, store.Version)
	}
	if gt, ge := store.DowngradeOf(m.engine); gt != target || ge != enabled {
		t.Errorf("DowngradeOf = %q, %v; want %q, %v", gt, ge, target, enabled)
	}
}

// TestDowngradeLifecycle: validate, enable and cancel with etcd 3.7.3's
// checks and answers; the leader moves the cluster (and so the storage)
// version to the target while the downgrade is enabled, and back after
// it is cancelled.
func TestDowngradeLifecycle(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		m := start(t, open, t.TempDir(), 0)
		defer m.stop()
		c := m.c
		if got := store.ClusterVersionOf(m.engine); got != "" {
			t.Errorf("ClusterVersionOf a new member: %q, want none", got)
		}
		checkDowngrade(t, m, "3.7.0", "", false)
		for _, tt := range []struct {
			action  pb.DowngradeRequest_DowngradeAction
			version string
			want    string
			err     error
		}{
			{pb.DowngradeRequest_VALIDATE, "3.6", "3.7", nil},
			{pb.DowngradeRequest_VALIDATE, "3.6.1", "3.7", nil},
			{pb.DowngradeRequest_VALIDATE, "3.5", "", store.ErrInvalidDowngradeTargetVersion},
			{pb.DowngradeRequest_VALIDATE, "3.7", "", store.ErrInvalidDowngradeTargetVersion},
			{pb.DowngradeRequest_VALIDATE, "3.8", "", store.ErrInvalidDowngradeTargetVersion},
			{pb.DowngradeRequest_VALIDATE, "bad", "", store.ErrWrongDowngradeVersionFormat},
			{pb.DowngradeRequest_ENABLE, "3.5", "", store.ErrInvalidDowngradeTargetVersion},
			// No downgrade to cancel: etcd answers all the same.
			{pb.DowngradeRequest_CANCEL, "", "3.7", nil},
			{pb.DowngradeRequest_DowngradeAction(7), "3.6", "", store.ErrUnknownDowngradeAction},
			{pb.DowngradeRequest_ENABLE, "3.6", "3.7", nil},
		} {
			got, err := downgrade(c, tt.action, tt.version)
			if got != tt.want || !errors.Is(err, tt.err) {
				t.Errorf("%v %q: %q, %v; want %q, %v", tt.action, tt.version, got, err, tt.want, tt.err)
			}
		}
		waitClusterVersion(t, c, "3.6.0")
		checkDowngrade(t, m, "3.6.0", "3.6.0", true)
		if got := store.ClusterVersionOf(m.engine); got != "3.6.0" {
			t.Errorf("ClusterVersionOf: %q", got)
		}
		if _, err := downgrade(c, pb.DowngradeRequest_ENABLE, "3.6"); !errors.Is(err, store.ErrInvalidDowngradeTargetVersion) {
			t.Errorf("enable again: %v", err)
		}
		if _, err := downgrade(c, pb.DowngradeRequest_VALIDATE, "3.5"); !errors.Is(err, store.ErrDowngradeInProcess) {
			t.Errorf("validate one below the downgraded cluster: %v", err)
		}
		if got, err := downgrade(c, pb.DowngradeRequest_CANCEL, ""); got != "3.6" || err != nil {
			t.Errorf("cancel: %q, %v", got, err)
		}
		waitClusterVersion(t, c, "3.7.0")
		checkDowngrade(t, m, "3.7.0", "", false)
		if got, err := downgrade(c, pb.DowngradeRequest_CANCEL, ""); got != "3.7" || err != nil {
			t.Errorf("cancel again: %q, %v", got, err)
		}
		if got := store.ClusterVersionOf(m.engine); got != "3.7.0" {
			t.Errorf("ClusterVersionOf after the cancel: %q", got)
		}
	})
}

// TestDowngradeSurvivesRestart: the downgrade state and cluster version
// are read back from the engine and the replayed log.
func TestDowngradeSurvivesRestart(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		dir := t.TempDir()
		// A snapshot count of 1 checkpoints the engine after every batch,
		// so that both the engine and the log's replay are exercised.
		for _, snapshotCount := range []uint64{0, 1} {
			m := start(t, open, dir, snapshotCount)
			if _, err := downgrade(m.c, pb.DowngradeRequest_ENABLE, "3.6"); err != nil {
				t.Fatal(err)
			}
			waitClusterVersion(t, m.c, "3.6.0")
			m.stop()
			m = start(t, open, dir, snapshotCount)
			if err := m.c.WaitReady(context.Background()); err != nil {
				t.Fatal(err)
			}
			checkDowngrade(t, m, "3.6.0", "3.6.0", true)
			if _, err := downgrade(m.c, pb.DowngradeRequest_CANCEL, ""); err != nil {
				t.Fatal(err)
			}
			waitClusterVersion(t, m.c, "3.7.0")
			m.stop()
		}
	})
}

// TestRestoreCarriesDowngrade: a member that restores another's snapshot
// takes its downgrade state and cluster version.
func TestRestoreCarriesDowngrade(t *testing.T) {
	forEachEngine(t, func(t *testing.T, open opener) {
		src := start(t, open, t.TempDir(), 0)
		if _, err := downgrade(src.c, pb.DowngradeRequest_ENABLE, "3.6"); err != nil {
			t.Fatal(err)
		}
		waitClusterVersion(t, src.c, "3.6.0")
		var snap bytes.Buffer
		if err := src.engine.WriteSnapshot(&snap); err != nil {
			t.Fatal(err)
		}
		srcApplied := src.kv.AppliedIndex()
		src.stop()

		restored := make(chan struct{}, 1)
		dst := startAs(t, 2, open, t.TempDir(), 0, func() { restored <- struct{}{} })
		defer dst.stop()
		for dst.kv.AppliedIndex() <= srcApplied+2 {
			put(t, dst.c, "k", "v")
		}
		if err := dst.c.Restore(bytes.NewReader(snap.Bytes())); err != nil {
			t.Fatal(err)
		}
		<-restored
		checkDowngrade(t, dst, "3.6.0", "3.6.0", true)
		if got, err := downgrade(dst.c, pb.DowngradeRequest_CANCEL, ""); got != "3.6" || err != nil {
			t.Errorf("cancel after the restore: %q, %v", got, err)
		}
		waitClusterVersion(t, dst.c, "3.7.0")
	})
}
