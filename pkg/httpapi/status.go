package httpapi

import (
	"net/http"
	"strconv"
)

// statusResponse is the body of GET /v1/status: the member's view of
// itself and of the cluster, from Backend.Status. IDs are decimal strings
// for the reason given at leaseID; Leader is "0" while no leader is known.
// Errors lists active alarms and health problems, [] when there are none.
type statusResponse struct {
	Version          string   `json:"version"`
	StorageVersion   string   `json:"storage_version,omitempty"`
	ClusterID        string   `json:"cluster_id"`
	MemberID         string   `json:"member_id"`
	Leader           string   `json:"leader"`
	IsLearner        bool     `json:"is_learner"`
	RaftTerm         uint64   `json:"raft_term"`
	RaftIndex        uint64   `json:"raft_index"`
	RaftAppliedIndex uint64   `json:"raft_applied_index"`
	DBSize           int64    `json:"db_size"`
	DBSizeInUse      int64    `json:"db_size_in_use"`
	DBSizeQuota      int64    `json:"db_size_quota"`
	Revision         int64    `json:"revision"`
	Errors           []string `json:"errors"`
}

// status serves GET /v1/status.
func (h *handler) status(w http.ResponseWriter, r *http.Request) error {
	if err := onlyEncoding(r); err != nil {
		return err
	}
	s, err := h.backend.Status(r.Context())
	if err != nil {
		return err
	}
	out := statusResponse{
		Version:          s.Version,
		StorageVersion:   s.StorageVersion,
		ClusterID:        strconv.FormatUint(s.GetHeader().GetClusterId(), 10),
		MemberID:         strconv.FormatUint(s.GetHeader().GetMemberId(), 10),
		Leader:           strconv.FormatUint(s.Leader, 10),
		IsLearner:        s.IsLearner,
		RaftTerm:         s.RaftTerm,
		RaftIndex:        s.RaftIndex,
		RaftAppliedIndex: s.RaftAppliedIndex,
		DBSize:           s.DbSize,
		DBSizeInUse:      s.DbSizeInUse,
		DBSizeQuota:      s.DbSizeQuota,
		Revision:         s.GetHeader().GetRevision(),
		Errors:           append([]string{}, s.Errors...),
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
