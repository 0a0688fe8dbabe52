package httpapi

import (
	"testing"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

func TestStatus(t *testing.T) {
	h := newHarness(t, Options{})
	h.f.status = &etcdserverpb.StatusResponse{
		Version:          "3.7.3",
		StorageVersion:   "3.6.0",
		DbSize:           1 << 20,
		DbSizeInUse:      1 << 19,
		DbSizeQuota:      2 << 30,
		Leader:           18446744073709551557,
		RaftIndex:        120,
		RaftAppliedIndex: 119,
		RaftTerm:         4,
		IsLearner:        false,
	}
	h.do("PUT", "/v1/kv/a", "v")
	expectJSON(t, h.do("GET", "/v1/status", ""), 200, `{
		"version": "3.7.3",
		"storage_version": "3.6.0",
		"cluster_id": "11",
		"member_id": "22",
		"leader": "18446744073709551557",
		"is_learner": false,
		"raft_term": 4,
		"raft_index": 120,
		"raft_applied_index": 119,
		"db_size": 1048576,
		"db_size_in_use": 524288,
		"db_size_quota": 2147483648,
		"revision": 2,
		"errors": []
	}`)

	h.f.status = &etcdserverpb.StatusResponse{Version: "3.7.3", Errors: []string{"memberID:22 alarm:NOSPACE"}}
	expectJSON(t, h.do("GET", "/v1/status", ""), 200, `{
		"version": "3.7.3", "cluster_id": "11", "member_id": "22", "leader": "0", "is_learner": false,
		"raft_term": 0, "raft_index": 0, "raft_applied_index": 0,
		"db_size": 0, "db_size_in_use": 0, "db_size_quota": 0, "revision": 2,
		"errors": ["memberID:22 alarm:NOSPACE"]
	}`)
}
