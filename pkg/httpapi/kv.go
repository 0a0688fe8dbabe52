package httpapi

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The /v1/kv/{key} endpoints: one key, or with ?prefix=true every key that
// starts with it. Responses carry "revision", the store's revision when the
// request was served.

// rangeResult is the answer to a range read, in GET ?prefix=true and in
// txn "get" ops: the keys (none with count_only), how many keys the range
// holds, and whether limit cut the list short.
type rangeResult struct {
	Kvs   []keyValue `json:"kvs"`
	Count int64      `json:"count"`
	More  bool       `json:"more"`
}

func (c codec) rangeResult(r *etcdserverpb.RangeResponse) rangeResult {
	return rangeResult{Kvs: c.keyValues(r.GetKvs()), Count: r.GetCount(), More: r.GetMore()}
}

// putResult is the answer to a put, in PUT and in txn "put" ops. PrevKv is
// the key before the put, present when prev_kv was asked for and the key
// existed.
type putResult struct {
	PrevKv *keyValue `json:"prev_kv,omitempty"`
}

func (c codec) putResult(r *etcdserverpb.PutResponse) putResult {
	if r.GetPrevKv() == nil {
		return putResult{}
	}
	kv := c.keyValue(r.PrevKv)
	return putResult{PrevKv: &kv}
}

// deleteResult is the answer to a delete, in DELETE and in txn "delete"
// ops. PrevKvs are the deleted keys, present when prev_kv was asked for and
// something was deleted.
type deleteResult struct {
	Deleted int64      `json:"deleted"`
	PrevKvs []keyValue `json:"prev_kvs,omitempty"`
}

func (c codec) deleteResult(r *etcdserverpb.DeleteRangeResponse) deleteResult {
	out := deleteResult{Deleted: r.GetDeleted()}
	if len(r.GetPrevKvs()) > 0 {
		out.PrevKvs = c.keyValues(r.PrevKvs)
	}
	return out
}

// getKeyResponse is the body of GET /v1/kv/{key}.
type getKeyResponse struct {
	keyValue
	Revision int64 `json:"revision"`
}

// getRangeResponse is the body of GET /v1/kv/{key}?prefix=true.
type getRangeResponse struct {
	rangeResult
	Revision int64 `json:"revision"`
}

// putResponse is the body of PUT /v1/kv/{key}.
type putResponse struct {
	Revision int64 `json:"revision"`
	putResult
}

// deleteResponse is the body of DELETE /v1/kv/{key}.
type deleteResponse struct {
	deleteResult
	Revision int64 `json:"revision"`
}

// getKV serves GET /v1/kv/{key}. A single key that does not exist (at
// ?revision, if given) is a 404; a range that matches nothing is an empty
// list. limit and count_only apply to ranges only. GET /v1/kv/?prefix=true
// lists every key; DELETE has no such form, so that wiping the keyspace
// takes a deliberate txn rather than a truncated URL.
func (h *handler) getKV(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r, "encoding", "prefix", "limit", "revision", "keys_only", "count_only", "serializable")
	c := q.codec()
	prefix := q.bool("prefix")
	req := &etcdserverpb.RangeRequest{
		Limit:        q.int("limit"),
		Revision:     q.int("revision"),
		KeysOnly:     q.bool("keys_only"),
		CountOnly:    q.bool("count_only"),
		Serializable: q.bool("serializable"),
	}
	if q.err != nil {
		return q.err
	}
	if !prefix && (req.Limit != 0 || req.CountOnly) {
		return fmt.Errorf("%w: limit and count_only need prefix=true", errInvalidArgument)
	}
	if !req.Serializable {
		if err := h.refuseOnLearner(); err != nil {
			return err
		}
	}
	switch key, err := pathKey(r, c); {
	case prefix && errors.Is(err, mvcc.ErrEmptyKey):
		// The empty prefix is the whole keyspace, as with clientv3.WithPrefix.
		req.Key, req.RangeEnd = []byte{0}, []byte{0}
	case err != nil:
		return err
	case prefix:
		req.Key, req.RangeEnd = key, prefixEnd(key)
	default:
		req.Key = key
	}

	resp, err := h.backend.Range(r.Context(), req)
	if err != nil {
		return err
	}
	rev := resp.GetHeader().GetRevision()
	if prefix {
		writeJSON(w, http.StatusOK, getRangeResponse{rangeResult: c.rangeResult(resp), Revision: rev})
		return nil
	}
	if len(resp.Kvs) == 0 {
		return mvcc.ErrKeyNotFound
	}
	writeJSON(w, http.StatusOK, getKeyResponse{keyValue: c.keyValue(resp.Kvs[0]), Revision: rev})
	return nil
}

// putKV serves PUT /v1/kv/{key}: the body is the value, raw bytes, or
// base64 text under ?encoding=base64. ?lease attaches the key to a lease;
// ignore_value and ignore_lease keep the key's current value or lease.
func (h *handler) putKV(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r, "encoding", "lease", "prev_kv", "ignore_value", "ignore_lease")
	c := q.codec()
	req := &etcdserverpb.PutRequest{
		Lease:       q.int("lease"),
		PrevKv:      q.bool("prev_kv"),
		IgnoreValue: q.bool("ignore_value"),
		IgnoreLease: q.bool("ignore_lease"),
	}
	if q.err != nil {
		return q.err
	}
	key, err := pathKey(r, c)
	if err != nil {
		return err
	}
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	if c.base64 {
		// Tools such as base64(1) end their output with a newline.
		body, err = c.decode("body", string(bytes.TrimSpace(body)))
		if err != nil {
			return err
		}
	}
	req.Key, req.Value = key, body

	resp, err := h.backend.Put(r.Context(), req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, putResponse{Revision: resp.GetHeader().GetRevision(), putResult: c.putResult(resp)})
	return nil
}

// deleteKV serves DELETE /v1/kv/{key}. Deleting a single key that does not
// exist is a 404, as GET is; a prefix that matches nothing deletes 0 keys
// and is a 200.
func (h *handler) deleteKV(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r, "encoding", "prefix", "prev_kv")
	c := q.codec()
	prefix := q.bool("prefix")
	req := &etcdserverpb.DeleteRangeRequest{PrevKv: q.bool("prev_kv")}
	if q.err != nil {
		return q.err
	}
	key, err := pathKey(r, c)
	if err != nil {
		return err
	}
	req.Key = key
	if prefix {
		req.RangeEnd = prefixEnd(key)
	}

	resp, err := h.backend.DeleteRange(r.Context(), req)
	if err != nil {
		return err
	}
	if !prefix && resp.Deleted == 0 {
		return mvcc.ErrKeyNotFound
	}
	writeJSON(w, http.StatusOK, deleteResponse{deleteResult: c.deleteResult(resp), Revision: resp.GetHeader().GetRevision()})
	return nil
}
