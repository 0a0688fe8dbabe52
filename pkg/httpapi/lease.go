package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"
	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/cairn-kv/cairn/internal/mvcc"
)

// Leases is the lease service as the REST API needs it; the member's lessor
// implements it. Errors are the core packages' sentinels, as for Backend;
// unknown leases are mvcc.ErrLeaseNotFound. On a follower, Renew and
// TimeToLive are answered by the leader, which is asked again, as etcd's
// followers do, until the request timeout (store.ErrTimeout) when it cannot
// be reached. A gRPC status is mapped too, as fromForwarded says.
type Leases interface {
	Grant(ctx context.Context, r *etcdserverpb.LeaseGrantRequest) (*etcdserverpb.LeaseGrantResponse, error)
	Revoke(ctx context.Context, r *etcdserverpb.LeaseRevokeRequest) (*etcdserverpb.LeaseRevokeResponse, error)
	// Renew restarts the lease's TTL and returns it.
	Renew(ctx context.Context, id int64) (int64, error)
	TimeToLive(ctx context.Context, r *etcdserverpb.LeaseTimeToLiveRequest) (*etcdserverpb.LeaseTimeToLiveResponse, error)
}

// grantRequest is the body of POST /v1/leases; ttl is required.
type grantRequest struct {
	TTL *int64  `json:"ttl"`
	ID  leaseID `json:"id,omitempty"`
}

// leaseResponse describes a lease; fields that an endpoint does not know
// are left out. Encoding is "base64" when Keys are base64, as for
// keyValue: always under ?encoding=base64, otherwise when a key is not
// valid UTF-8.
type leaseResponse struct {
	ID         leaseID  `json:"id"`
	TTL        int64    `json:"ttl"`
	GrantedTTL int64    `json:"granted_ttl,omitempty"`
	Keys       []string `json:"keys,omitempty"`
	Encoding   string   `json:"encoding,omitempty"`
	Revision   int64    `json:"revision,omitempty"`
}

// grantLease serves POST /v1/leases: {"ttl": seconds, "id"?: "ID"}. The
// TTL is raised to the member's minimum as etcd does.
func (h *handler) grantLease(w http.ResponseWriter, r *http.Request) error {
	if err := onlyEncoding(r); err != nil {
		return err
	}
	var body grantRequest
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	if body.TTL == nil {
		return fmt.Errorf("%w: ttl is required", errInvalidArgument)
	}
	resp, err := h.leases.Grant(r.Context(), &etcdserverpb.LeaseGrantRequest{TTL: *body.TTL, ID: int64(body.ID)})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, leaseResponse{ID: leaseID(resp.ID), TTL: resp.TTL, Revision: resp.GetHeader().GetRevision()})
	return nil
}

// getLease serves GET /v1/leases/{id}: the remaining and granted TTL, and
// with ?keys=true the keys attached. An expired or unknown lease is a 404.
func (h *handler) getLease(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r, "keys", "encoding")
	keys, c := q.bool("keys"), q.codec()
	if q.err != nil {
		return q.err
	}
	id, err := pathLease(r)
	if err != nil {
		return err
	}
	resp, err := h.leases.TimeToLive(r.Context(), &etcdserverpb.LeaseTimeToLiveRequest{ID: id, Keys: keys})
	if err != nil {
		return err
	}
	if resp.TTL < 0 {
		return mvcc.ErrLeaseNotFound
	}
	out := leaseResponse{ID: leaseID(id), TTL: resp.TTL, GrantedTTL: resp.GrantedTTL}
	out.Keys, out.Encoding = c.keys(resp.Keys)
	writeJSON(w, http.StatusOK, out)
	return nil
}

// keepAlive serves POST /v1/leases/{id}/keepalive: one renewal.
func (h *handler) keepAlive(w http.ResponseWriter, r *http.Request) error {
	if err := onlyEncoding(r); err != nil {
		return err
	}
	id, err := pathLease(r)
	if err != nil {
		return err
	}
	ttl, err := h.leases.Renew(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, leaseResponse{ID: leaseID(id), TTL: ttl})
	return nil
}

// revokeLease serves DELETE /v1/leases/{id}: the lease goes, and every key
// attached to it is deleted at one revision.
func (h *handler) revokeLease(w http.ResponseWriter, r *http.Request) error {
	if err := onlyEncoding(r); err != nil {
		return err
	}
	id, err := pathLease(r)
	if err != nil {
		return err
	}
	resp, err := h.leases.Revoke(r.Context(), &etcdserverpb.LeaseRevokeRequest{ID: id})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]int64{"revision": resp.GetHeader().GetRevision()})
	return nil
}

// pathLease reads the decimal lease ID of the path.
func pathLease(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(mux.Vars(r)["id"], 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%w: lease ID must be a positive decimal number", errInvalidArgument)
	}
	return id, nil
}
