package store

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
)

// The cluster version and the downgrade state are replicated state, as in
// etcd: both change only through raft entries (ClusterVersionSet and
// DowngradeInfoSet), applied in log order on every member into the Meta
// bucket, and so carried by snapshots.
//
// A downgrade is enabled for a target one minor version below the cluster
// version (Maintenance.Downgrade ENABLE). The leader then moves the cluster
// version to the target, as etcd's version monitor does, and every member
// reports its storage version at the cluster version's minor. etcd ends
// the downgrade by itself once every member runs the target version; a
// Cairn member always runs Version, so the downgrade lasts until it is
// cancelled (CANCEL), after which the leader moves the cluster version
// back up to Version's minor.

// The Meta keys of the cluster version ("3.6.0"; absent until first set)
// and of the downgrade state (etcd's JSON record, as in its cluster bucket).
var (
	clusterVersionKey = []byte("cluster/version")
	downgradeKey      = []byte("cluster/downgrade")
)

// defaultClusterVersion is the cluster version of members that all run
// Version, before anything has set one.
const defaultClusterVersion = "3.7.0"

// versionMonitorInterval is how often the leader checks whether the
// cluster version must move, unless Config.VersionMonitorInterval says
// otherwise: etcd's period, so that the cluster version moves as long
// after an enable or a cancel as it does in etcd.
const versionMonitorInterval = 4 * time.Second

// downgradeRecord is the downgrade state as etcd stores it.
type downgradeRecord struct {
	TargetVersion string `json:"target-version"`
	Enabled       bool   `json:"enabled"`
}

// versionState is the cluster version ("" until set) and the downgrade
// state, as staged by the actor or as last published to the client. It is
// a value: a published one is never changed.
type versionState struct {
	cluster string
	target  string
	enabled bool
}

// clusterVersion is the cluster version in effect.
func (v versionState) clusterVersion() string {
	if v.cluster == "" {
		return defaultClusterVersion
	}
	return v.cluster
}

// ClusterVersionOf reads the cluster version recorded in r, such as
// "3.6.0"; empty when none has been set (the cluster then runs at
// defaultClusterVersion).
func ClusterVersionOf(r storage.Reader) string {
	v, err := r.Get(storage.Meta, clusterVersionKey)
	if err != nil {
		return ""
	}
	return string(v)
}

// DowngradeOf reads the downgrade state recorded in r: its target version
// (such as "3.6.0") and whether it is enabled. A cancelled downgrade, or
// none, is ("", false).
func DowngradeOf(r storage.Reader) (target string, enabled bool) {
	v, err := r.Get(storage.Meta, downgradeKey)
	if err != nil || v == nil {
		return "", false
	}
	var d downgradeRecord
	if json.Unmarshal(v, &d) != nil {
		return "", false
	}
	return d.TargetVersion, d.Enabled
}

func versionStateOf(r storage.Reader) versionState {
	target, enabled := DowngradeOf(r)
	return versionState{cluster: ClusterVersionOf(r), target: target, enabled: enabled}
}

// semVersion is the major and minor numbers of a version, all that
// cluster versions and downgrade targets keep.
type semVersion struct{ major, minor int64 }

func (v semVersion) String() string { return fmt.Sprintf("%d.%d.0", v.major, v.minor) }

// short is the version as etcd's responses give cluster versions: "3.6".
func (v semVersion) short() string { return fmt.Sprintf("%d.%d", v.major, v.minor) }

// below is the only version a cluster at v may be downgraded to.
func (v semVersion) below() semVersion { return semVersion{v.major, v.minor - 1} }

// semverIdentifier is what a pre-release or build part must look like
// (the parser etcd uses lets either be empty).
var semverIdentifier = regexp.MustCompile(`^([0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$`)

// parseSemver reads a full "major.minor.patch" version with optional
// "-pre-release" and "+build" parts, with the rules of the semver parser
// etcd uses (github.com/coreos/go-semver): the first "+" starts the build
// part, then the first "-" the pre-release, and each number is a decimal
// that may have leading zeros.
func parseSemver(s string) (semVersion, bool) {
	if i := strings.IndexByte(s, '+'); i >= 0 {
		if !semverIdentifier.MatchString(s[i+1:]) {
			return semVersion{}, false
		}
		s = s[:i]
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		if !semverIdentifier.MatchString(s[i+1:]) {
			return semVersion{}, false
		}
		s = s[:i]
	}
	parts := strings.SplitN(s, ".", 3)
	if len(parts) != 3 {
		return semVersion{}, false
	}
	var n [3]int64
	for i, p := range parts {
		v, err := strconv.ParseInt(p, 10, 64)
		if err != nil {
			return semVersion{}, false
		}
		n[i] = v
	}
	return semVersion{n[0], n[1]}, true
}

// parseDowngradeTarget reads a downgrade target as etcd does: a full
// version or "major.minor", of which only major and minor count.
func parseDowngradeTarget(s string) (semVersion, error) {
	if v, ok := parseSemver(s); ok {
		return v, nil
	}
	if v, ok := parseSemver(s + ".0"); ok {
		return v, nil
	}
	return semVersion{}, ErrWrongDowngradeVersionFormat
}

// nextClusterVersion decides, as etcd's leader does, the version the
// cluster must move to, given its state and the lowest server version of
// its members; ok is false when it stays. While a downgrade is enabled the
// cluster moves to its target, if the target is one minor below both the
// cluster version and the lowest server version. Otherwise a cluster below
// the servers' minor (in the same major) moves up to it.
func nextClusterVersion(st versionState, server string) (next string, ok bool) {
	cv, okc := parseSemver(st.clusterVersion())
	sv, oks := parseSemver(server)
	if !okc || !oks {
		return "", false
	}
	if st.enabled {
		target, okt := parseSemver(st.target)
		if !okt || target != cv.below() || target != sv.below() {
			return "", false
		}
		return target.String(), true
	}
	if cv.major == sv.major && cv.minor < sv.minor {
		return sv.String(), true
	}
	return "", false
}

// Downgrade serves etcd's Maintenance.Downgrade. VALIDATE checks that the
// cluster may be downgraded to r.Version: one minor below the cluster
// version (ErrInvalidDowngradeTargetVersion), with no downgrade enabled
// (ErrDowngradeInProcess); a version that is not "x.y" nor a full semantic
// version fails with ErrWrongDowngradeVersionFormat. ENABLE checks the
// same, then records the downgrade through raft. CANCEL records its end
// through raft; as in etcd it never fails, not even when no downgrade is
// enabled or raft does not answer (the outcome is only logged). Each
// answers with the cluster version as "major.minor", as the member knew it
// when it answered, before the leader moves it. The caller's permission is
// the front end's to check.
func (c *Client) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	var (
		cv  string
		err error
	)
	switch r.Action {
	case pb.DowngradeRequest_VALIDATE:
		cv, err = c.validateDowngrade(ctx, r.Version)
	case pb.DowngradeRequest_ENABLE:
		cv, err = c.enableDowngrade(ctx, r.Version)
	case pb.DowngradeRequest_CANCEL:
		cv = c.cancelDowngrade(ctx)
	default:
		err = ErrUnknownDowngradeAction
	}
	if err != nil {
		return nil, err
	}
	v, _ := parseSemver(cv)
	return &pb.DowngradeResponse{Header: c.header(c.kv.Rev()), Version: v.short()}, nil
}

// validateDowngrade checks a downgrade to target against the state as of
// every entry committed before the call, and returns the cluster version.
func (c *Client) validateDowngrade(ctx context.Context, target string) (string, error) {
	t, err := parseDowngradeTarget(target)
	if err != nil {
		return "", err
	}
	if err := c.linearize(ctx); err != nil {
		return "", err
	}
	st := c.versionState()
	cv, _ := parseSemver(st.clusterVersion())
	if t != cv.below() {
		return "", ErrInvalidDowngradeTargetVersion
	}
	if st.enabled {
		return "", ErrDowngradeInProcess
	}
	return st.clusterVersion(), nil
}

func (c *Client) enableDowngrade(ctx context.Context, target string) (string, error) {
	if _, err := c.validateDowngrade(ctx, target); err != nil {
		c.cfg.Logger.Warn("downgrade refused", zap.String("target-version", target), zap.Error(err))
		return "", err
	}
	t, _ := parseDowngradeTarget(target)
	res, err := c.propose(ctx, &pb.InternalRaftRequest{DowngradeInfoSet: &membershippb.DowngradeInfoSetRequest{Enabled: true, Ver: t.String()}})
	if err != nil {
		c.cfg.Logger.Warn("downgrade refused", zap.String("target-version", target), zap.Error(err))
		return "", err
	}
	return res.(versionState).clusterVersion(), nil
}

func (c *Client) cancelDowngrade(ctx context.Context) string {
	err := c.linearize(ctx)
	if err == nil && !c.versionState().enabled {
		err = errNoInflightDowngrade
	}
	if err == nil {
		var res any
		if res, err = c.propose(ctx, &pb.InternalRaftRequest{DowngradeInfoSet: &membershippb.DowngradeInfoSetRequest{}}); err == nil {
			return res.(versionState).clusterVersion()
		}
	}
	c.cfg.Logger.Warn("failed to cancel the downgrade", zap.Error(err))
	return c.versionState().clusterVersion()
}

// ClusterVersion is the cluster version as this member last applied it,
// such as "3.7.0": what /version reports as etcdcluster.
func (c *Client) ClusterVersion() string { return c.versionState().clusterVersion() }

// StorageVersion is the storage version this member reports: the cluster
// version's minor, which a member follows as etcd's members migrate their
// storage schema to it.
func (c *Client) StorageVersion() string { return c.ClusterVersion() }

// versionState is the state as last applied.
func (c *Client) versionState() versionState {
	if p := c.versions.Load(); p != nil {
		return *p
	}
	return versionState{}
}

// monitorVersions is the leader's part, as in etcd: periodically the
// leader moves the cluster version where the downgrade state says it must
// be.
func (c *Client) monitorVersions() {
	t := time.NewTicker(c.cfg.VersionMonitorInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		if c.IsLeader() {
			c.updateClusterVersion()
		}
	}
}

// updateClusterVersion proposes the cluster version the state calls for,
// if it is not the current one.
func (c *Client) updateClusterVersion() {
	st := c.versionState()
	next, ok := nextClusterVersion(st, Version)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.RequestTimeout)
	defer cancel()
	c.cfg.Logger.Info("updating the cluster version", zap.String("from", st.clusterVersion()), zap.String("to", next))
	if _, err := c.propose(ctx, &pb.InternalRaftRequest{ClusterVersionSet: &membershippb.ClusterVersionSetRequest{Ver: next}}); err != nil {
		// The next check tries again.
		c.cfg.Logger.Warn("failed to update the cluster version", zap.String("to", next), zap.Error(err))
	}
}

// The actor's side, as for alarms: a.versions is the state as staged,
// published to the client (c.versions) once the batch commits.

// loadVersions reads the state from the engine and publishes it: at start
// and after a snapshot was restored.
func (a *storeActor) loadVersions() {
	a.versions = versionStateOf(a.c.cfg.Engine)
	a.versionsStaged = true
	a.publishVersions()
}

// publishVersions makes the staged state the client's, after a commit.
func (a *storeActor) publishVersions() {
	if !a.versionsStaged {
		return
	}
	a.versionsStaged = false
	st := a.versions
	a.c.versions.Store(&st)
}

// setClusterVersion applies a ClusterVersionSet entry; its result is the
// state after it.
func (a *storeActor) setClusterVersion(ap *mvcc.Applier, index uint64, r *membershippb.ClusterVersionSetRequest) result {
	v, ok := parseSemver(r.Ver)
	if !ok {
		a.lg.Warn("cluster version entry with a bad version", zap.Uint64("index", index), zap.String("version", r.Ver))
		ap.SetApplied(index)
		return result{resp: a.versions}
	}
	a.lg.Info("updated the cluster version", zap.String("from", a.versions.clusterVersion()), zap.String("to", v.String()))
	a.versions.cluster = v.String()
	a.versionsStaged = true
	ap.SetMeta(index, clusterVersionKey, []byte(a.versions.cluster))
	return result{resp: a.versions}
}

// setDowngrade applies a DowngradeInfoSet entry; its result is the state
// before it (the cluster version the downgrade starts or ends at).
func (a *storeActor) setDowngrade(ap *mvcc.Applier, index uint64, r *membershippb.DowngradeInfoSetRequest) result {
	before := a.versions
	d := downgradeRecord{}
	if r.Enabled {
		d = downgradeRecord{TargetVersion: r.Ver, Enabled: true}
	}
	b, err := json.Marshal(d)
	if err != nil {
		ap.SetApplied(index)
		return result{err: err}
	}
	ap.SetMeta(index, downgradeKey, b)
	a.versions.target, a.versions.enabled = d.TargetVersion, d.Enabled
	a.versionsStaged = true
	if d.Enabled {
		a.lg.Info("downgrade enabled", zap.String("target-version", d.TargetVersion), zap.String("cluster-version", before.clusterVersion()))
	} else {
		a.lg.Info("downgrade cancelled", zap.String("cluster-version", before.clusterVersion()))
	}
	return result{resp: before}
}
