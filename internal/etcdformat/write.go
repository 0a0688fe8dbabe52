package etcdformat

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strconv"

	bolt "go.etcd.io/bbolt"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/lease/leasepb"
	"google.golang.org/protobuf/proto"

	"github.com/cairn-kv/cairn/internal/auth"
	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/cairn-kv/cairn/internal/storage"
	"github.com/cairn-kv/cairn/internal/store"
)

// Info is what Write records beside the replicated state: facts the
// engine does not keep.
type Info struct {
	// Term is the raft term recorded with the consistent index.
	Term uint64
}

// txLimit bounds the records, and txBytes the bytes, one bbolt
// transaction writes: bbolt keeps a transaction's dirty pages in memory
// until it commits, so a large state is written in many.
const (
	txLimit = 10000
	txBytes = 16 << 20
)

// Write writes the state r holds to a new bbolt file at path in etcd's
// layout. r should be a view, so that what is written is one moment's
// state while writes go on; memory stays bounded whatever its size.
// It stops with ctx's error once ctx is done.
func Write(ctx context.Context, path string, r storage.Reader, info Info) (err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := db.Close(); err == nil {
			err = cerr
		}
	}()
	w := &writer{ctx: ctx, db: db, arena: make([]byte, 0, txBytes)}
	defer w.abort()
	for _, b := range allBuckets {
		if err := w.put(b, nil, nil); err != nil {
			return err
		}
	}
	steps := []func(storage.Reader, Info) error{w.keys, w.meta, w.leases, w.auth, w.members, w.alarms}
	for _, step := range steps {
		if err := step(r, info); err != nil {
			return err
		}
	}
	if err := w.commit(); err != nil {
		return err
	}
	return db.Sync()
}

// gcEvery is how many bytes Write copies between the garbage collections
// it asks for. Writing a snapshot makes garbage of about three times its
// size (record copies, bbolt's page buffers), while the live heap of a
// member can be large (its raft log): left to its pace, the collector
// would let that garbage grow the process by up to the live heap.
const gcEvery = 16 << 20

// writer puts records into a bbolt file in transactions of bounded size.
type writer struct {
	ctx     context.Context
	db      *bolt.DB
	tx      *bolt.Tx
	n, size int
	// arena holds the copies of the records of the open transaction
	// (bbolt keeps the slices it is given until commit); it is reused by
	// the next one.
	arena []byte
	// sinceGC counts the bytes copied since the last collection.
	sinceGC int
}

// copyRecord copies key and value into the arena, committing the open
// transaction first when they do not fit, and returns the copies.
func (w *writer) copyRecord(key, value []byte) (k, v []byte, err error) {
	need := len(key) + len(value)
	if len(w.arena)+need > cap(w.arena) {
		if err := w.commit(); err != nil {
			return nil, nil, err
		}
		if need > cap(w.arena) {
			w.arena = make([]byte, 0, max(need, txBytes))
		}
	}
	start := len(w.arena)
	w.arena = append(w.arena, key...)
	w.arena = append(w.arena, value...)
	return w.arena[start : start+len(key) : start+len(key)], w.arena[start+len(key) : start+need : start+need], nil
}

// put adds key=value to bucket, starting and committing transactions as
// needed. A nil key only makes sure the bucket exists.
func (w *writer) put(bucket, key, value []byte) error {
	if w.tx == nil {
		tx, err := w.db.Begin(true)
		if err != nil {
			return err
		}
		w.tx = tx
	}
	b, err := w.tx.CreateBucketIfNotExists(bucket)
	if err != nil {
		return err
	}
	if key == nil {
		return nil
	}
	// The key bucket is written in key order, as etcd fills it, and packs
	// its pages as etcd's does.
	b.FillPercent = 0.9
	if err := b.Put(key, value); err != nil {
		return fmt.Errorf("etcdformat: write %s: %w", bucket, err)
	}
	w.n++
	w.size += len(key) + len(value)
	if w.n >= txLimit || w.size >= txBytes {
		return w.commit()
	}
	return nil
}

func (w *writer) commit() error {
	if w.tx == nil {
		return nil
	}
	if err := w.ctx.Err(); err != nil {
		return err
	}
	tx := w.tx
	w.tx, w.n = nil, 0
	w.sinceGC += w.size
	w.size = 0
	w.arena = w.arena[:0]
	if err := tx.Commit(); err != nil {
		return err
	}
	if w.sinceGC >= gcEvery {
		w.sinceGC = 0
		runtime.GC()
	}
	return nil
}

func (w *writer) abort() {
	if w.tx != nil {
		_ = w.tx.Rollback()
		w.tx = nil
	}
}

// keys copies the KV bucket, whose layout is etcd's key bucket's.
func (w *writer) keys(r storage.Reader, _ Info) error {
	var failed error
	err := r.Iterate(storage.KV, nil, nil, false, func(k, v []byte) bool {
		// bbolt keeps the slices it is given until the transaction
		// commits; the engine's are valid only during the call.
		var ck, cv []byte
		if ck, cv, failed = w.copyRecord(k, v); failed == nil {
			failed = w.put(bucketKey, ck, cv)
		}
		return failed == nil
	})
	if err == nil {
		err = failed
	}
	return err
}

func (w *writer) meta(r storage.Reader, info Info) error {
	applied, err := mvcc.AppliedIndexOf(r)
	if err != nil {
		return err
	}
	scheduled, finished, err := mvcc.CompactionOf(r)
	if err != nil {
		return err
	}
	cluster := clusterVersion(r)
	records := [][2][]byte{
		{keyConsistentIndex, u64(applied)},
		{keyTerm, u64(info.Term)},
		// As in etcd, the storage version follows the cluster version's
		// major.minor (a downgrade lowers both).
		{keyStorageVersion, []byte(cluster)},
	}
	if scheduled > 0 {
		records = append(records, [2][]byte{keyScheduledCompact, revBytes(scheduled)})
	}
	if finished > 0 {
		records = append(records, [2][]byte{keyFinishedCompact, revBytes(finished)})
	}
	var cs confState
	for _, m := range store.MembersOf(r) {
		if m.IsLearner {
			cs.Learners = append(cs.Learners, m.ID)
		} else {
			cs.Voters = append(cs.Voters, m.ID)
		}
	}
	if len(cs.Voters)+len(cs.Learners) > 0 {
		b, err := json.Marshal(cs)
		if err != nil {
			return err
		}
		records = append(records, [2][]byte{keyConfState, b})
	}
	for _, rec := range records {
		if err := w.put(bucketMeta, rec[0], rec[1]); err != nil {
			return err
		}
	}
	if err := w.put(bucketCluster, keyClusterVersion, []byte(cluster)); err != nil {
		return err
	}
	if target, enabled := store.DowngradeOf(r); target != "" || enabled {
		b, err := json.Marshal(downgradeInfo{TargetVersion: target, Enabled: enabled})
		if err != nil {
			return err
		}
		return w.put(bucketCluster, keyDowngrade, b)
	}
	return nil
}

// downgradeInfo is a downgrade as etcd's cluster bucket holds it (JSON).
type downgradeInfo struct {
	TargetVersion string `json:"target-version"`
	Enabled       bool   `json:"enabled"`
}

// clusterVersion returns the replicated cluster version, ClusterVersion
// when none was ever recorded.
func clusterVersion(r storage.Reader) string {
	if v := store.ClusterVersionOf(r); v != "" {
		return v
	}
	return ClusterVersion
}

func (w *writer) leases(r storage.Reader, _ Info) error {
	var failed error
	err := r.Iterate(storage.Lease, nil, nil, false, func(k, v []byte) bool {
		var l mvcc.LeaseInfo
		if l, failed = mvcc.ParseLeaseRecord(k, v); failed != nil {
			return false
		}
		var b []byte
		if b, failed = proto.Marshal(&leasepb.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.Remaining}); failed != nil {
			return false
		}
		failed = w.put(bucketLease, append([]byte(nil), k...), b)
		return failed == nil
	})
	if err == nil {
		err = failed
	}
	return err
}

func (w *writer) auth(r storage.Reader, _ Info) error {
	rec, err := auth.ReadRecords(r)
	if err != nil {
		return err
	}
	enabled := byte(0)
	if rec.Enabled {
		enabled = 1
	}
	if err := w.put(bucketAuth, keyAuthEnabled, []byte{enabled}); err != nil {
		return err
	}
	if err := w.put(bucketAuth, keyAuthRevision, u64(rec.Revision)); err != nil {
		return err
	}
	for _, u := range rec.Users {
		b, err := proto.Marshal(u)
		if err != nil {
			return err
		}
		if err := w.put(bucketAuthUsers, u.Name, b); err != nil {
			return err
		}
	}
	for _, role := range rec.Roles {
		b, err := proto.Marshal(role)
		if err != nil {
			return err
		}
		if err := w.put(bucketAuthRoles, role.Name, b); err != nil {
			return err
		}
	}
	return nil
}

// member is a member record as etcd's members bucket holds it (JSON).
type member struct {
	ID         uint64   `json:"id"`
	PeerURLs   []string `json:"peerURLs"`
	IsLearner  bool     `json:"isLearner,omitempty"`
	Name       string   `json:"name,omitempty"`
	ClientURLs []string `json:"clientURLs,omitempty"`
}

// confState is raft's configuration as etcd records it (JSON).
type confState struct {
	Voters   []uint64 `json:"voters,omitempty"`
	Learners []uint64 `json:"learners,omitempty"`
}

func memberKey(id uint64) []byte { return []byte(strconv.FormatUint(id, 16)) }

func (w *writer) members(r storage.Reader, _ Info) error {
	attrs := store.MemberAttrsOf(r)
	for _, m := range store.MembersOf(r) {
		rec := member{ID: m.ID, PeerURLs: m.PeerURLs, IsLearner: m.IsLearner}
		if a := attrs[m.ID]; a != nil {
			rec.Name, rec.ClientURLs = a.Name, a.ClientUrls
		}
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		if err := w.put(bucketMembers, memberKey(m.ID), b); err != nil {
			return err
		}
	}
	removed := store.RemovedOf(r)
	sort.Slice(removed, func(i, j int) bool { return removed[i] < removed[j] })
	for _, id := range removed {
		if err := w.put(bucketMembersRemoved, memberKey(id), []byte("removed")); err != nil {
			return err
		}
	}
	return nil
}

// alarms writes each active alarm as etcd does: the encoded AlarmMember
// is the key, with an empty value.
func (w *writer) alarms(r storage.Reader, _ Info) error {
	for _, a := range store.AlarmsOf(r) {
		b, err := proto.Marshal(&pb.AlarmMember{MemberID: a.MemberID, Alarm: a.Alarm})
		if err != nil {
			return err
		}
		if err := w.put(bucketAlarm, b, []byte{}); err != nil {
			return err
		}
	}
	return nil
}
