// Package etcdformat reads and writes etcd's backend database: the bbolt
// file an etcd member keeps its state in, and which etcd's Maintenance
// Snapshot streams followed by a SHA-256 of its bytes. Cairn writes it so
// that etcdctl and etcdutl take Cairn's snapshots as etcd's, and reads it
// so that a snapshot (or the db file of a stopped member) taken from etcd
// restores into Cairn.
//
// The translation covers the replicated state: keys with their whole
// history (the KV layout is etcd's already), compaction revisions, leases
// with their checkpointed remaining TTL, users, roles and the auth switch,
// members, and the alarms. Member-local state (raft's log and hard state,
// the member's own identity) is not part of it, in etcd's file either.
package etcdformat

import (
	"encoding/binary"
	"fmt"
)

// etcd's bucket names.
var (
	bucketKey            = []byte("key")
	bucketMeta           = []byte("meta")
	bucketLease          = []byte("lease")
	bucketAlarm          = []byte("alarm")
	bucketCluster        = []byte("cluster")
	bucketMembers        = []byte("members")
	bucketMembersRemoved = []byte("members_removed")
	bucketAuth           = []byte("auth")
	bucketAuthUsers      = []byte("authUsers")
	bucketAuthRoles      = []byte("authRoles")

	// allBuckets are the buckets an etcd 3.7 backend always has; Write
	// creates every one, even empty, as etcd does.
	allBuckets = [][]byte{
		bucketKey, bucketMeta, bucketLease, bucketAlarm, bucketCluster,
		bucketMembers, bucketMembersRemoved, bucketAuth, bucketAuthUsers, bucketAuthRoles,
	}
)

// Keys inside etcd's meta, auth and cluster buckets.
var (
	keyConsistentIndex  = []byte("consistent_index")
	keyTerm             = []byte("term")
	keyConfState        = []byte("confState")
	keyStorageVersion   = []byte("storageVersion")
	keyScheduledCompact = []byte("scheduledCompactRev")
	keyFinishedCompact  = []byte("finishedCompactRev")
	keyAuthEnabled      = []byte("authEnabled")
	keyAuthRevision     = []byte("authRevision")
	keyClusterVersion   = []byte("clusterVersion")
	keyDowngrade        = []byte("downgrade")
)

// ClusterVersion is the cluster version of a Cairn cluster that has not
// recorded one (none is recorded until a downgrade changes it). The
// storage version etcd 3.7 records, and reports with every snapshot
// message, is the same while no downgrade is under way.
const ClusterVersion = "3.7.0"

// revBytes encodes a main revision as etcd encodes the compaction
// revisions in its meta bucket: the key bucket's revision layout with a
// zero sub revision.
func revBytes(main int64) []byte {
	b := binary.BigEndian.AppendUint64(nil, uint64(main))
	b = append(b, '_')
	return binary.BigEndian.AppendUint64(b, 0)
}

// revMain decodes the main revision of a key bucket key or of a
// compaction revision: 8 bytes of main revision, '_', 8 bytes of sub
// revision, and for a key bucket tombstone a trailing 't'.
func revMain(b []byte) (int64, error) {
	if (len(b) != 17 && !(len(b) == 18 && b[17] == 't')) || b[8] != '_' {
		return 0, fmt.Errorf("malformed revision %x", b)
	}
	return int64(binary.BigEndian.Uint64(b[:8])), nil
}

// u64 encodes the 8-byte big-endian integers of etcd's meta and auth
// buckets.
func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
