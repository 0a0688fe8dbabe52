package httpapi

import (
	"fmt"
	"net/http"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// POST /v1/txn: etcd's Txn in JSON. Keys, range ends and values are strings
// decoded by the request's codec (?encoding=base64 for binary data).

// txnJSON is a txn in a request body, at the top level or nested in an op.
type txnJSON struct {
	Compare []compareJSON `json:"compare"`
	Success []opJSON      `json:"success"`
	Failure []opJSON      `json:"failure"`
}

// txnRequest is the body of POST /v1/txn. RequireSuccess turns a failed
// compare into a 412 (the failure branch has still run, and its results
// are in the body); without it a failed compare is a 200 with
// "succeeded": false, as in etcd.
type txnRequest struct {
	txnJSON
	RequireSuccess bool `json:"require_success"`
}

// compareJSON is one compare. Target names the field compared, and exactly
// that field carries the operand: value, version, create_revision,
// mod_revision or lease. Key, range_end and prefix select keys as in a get.
type compareJSON struct {
	Key            string   `json:"key"`
	RangeEnd       string   `json:"range_end"`
	Prefix         bool     `json:"prefix"`
	Target         string   `json:"target"`
	Result         string   `json:"result"`
	Value          *string  `json:"value"`
	Version        *int64   `json:"version"`
	CreateRevision *int64   `json:"create_revision"`
	ModRevision    *int64   `json:"mod_revision"`
	Lease          *leaseID `json:"lease"`
}

// opJSON is one op of a branch; exactly one field is set.
type opJSON struct {
	Put    *putOpJSON    `json:"put"`
	Get    *getOpJSON    `json:"get"`
	Delete *deleteOpJSON `json:"delete"`
	Txn    *txnJSON      `json:"txn"`
}

// putOpJSON is a put op; the fields mean what PUT's parameters mean.
type putOpJSON struct {
	Key         string  `json:"key"`
	Value       string  `json:"value"`
	Lease       leaseID `json:"lease"`
	PrevKv      bool    `json:"prev_kv"`
	IgnoreValue bool    `json:"ignore_value"`
	IgnoreLease bool    `json:"ignore_lease"`
}

// getOpJSON is a range read; without range_end or prefix it reads one key.
type getOpJSON struct {
	Key       string `json:"key"`
	RangeEnd  string `json:"range_end"`
	Prefix    bool   `json:"prefix"`
	Limit     int64  `json:"limit"`
	Revision  int64  `json:"revision"`
	KeysOnly  bool   `json:"keys_only"`
	CountOnly bool   `json:"count_only"`
}

// deleteOpJSON is a delete; without range_end or prefix it deletes one key.
type deleteOpJSON struct {
	Key      string `json:"key"`
	RangeEnd string `json:"range_end"`
	Prefix   bool   `json:"prefix"`
	PrevKv   bool   `json:"prev_kv"`
}

// compareResults maps the JSON comparison operators to etcd's.
var compareResults = map[string]etcdserverpb.Compare_CompareResult{
	"=":  etcdserverpb.Compare_EQUAL,
	"!=": etcdserverpb.Compare_NOT_EQUAL,
	"<":  etcdserverpb.Compare_LESS,
	">":  etcdserverpb.Compare_GREATER,
}

// txnDecoder turns a JSON txn into an etcdserverpb.TxnRequest, checking
// what etcd's API layer checks before a txn reaches the store: op counts
// and empty keys. Every error names the offending element by its path in
// the body, such as txn.success[2].put.
type txnDecoder struct {
	codec  codec
	maxOps int
}

func (d txnDecoder) txn(path string, t txnJSON) (*etcdserverpb.TxnRequest, error) {
	if len(t.Compare) > d.maxOps || len(t.Success) > d.maxOps || len(t.Failure) > d.maxOps {
		return nil, fmt.Errorf("%s: %w: at most %d compares and %d ops per branch", path, mvcc.ErrTooManyOps, d.maxOps, d.maxOps)
	}
	req := &etcdserverpb.TxnRequest{}
	for i, c := range t.Compare {
		cmp, err := d.compare(fmt.Sprintf("%s.compare[%d]", path, i), c)
		if err != nil {
			return nil, err
		}
		req.Compare = append(req.Compare, cmp)
	}
	var err error
	if req.Success, err = d.ops(path+".success", t.Success); err != nil {
		return nil, err
	}
	if req.Failure, err = d.ops(path+".failure", t.Failure); err != nil {
		return nil, err
	}
	return req, nil
}

// key decodes a key that must not be empty.
func (d txnDecoder) key(path, s string) ([]byte, error) {
	key, err := d.codec.decode(path+".key", s)
	if err != nil {
		return nil, err
	}
	if len(key) == 0 {
		return nil, fmt.Errorf("%s: %w", path, mvcc.ErrEmptyKey)
	}
	return key, nil
}

func (d txnDecoder) compare(path string, c compareJSON) (*etcdserverpb.Compare, error) {
	key, err := d.key(path, c.Key)
	if err != nil {
		return nil, err
	}
	end, err := rangeEnd(d.codec, path, key, c.RangeEnd, c.Prefix)
	if err != nil {
		return nil, err
	}
	result, ok := compareResults[c.Result]
	if !ok {
		return nil, fmt.Errorf(`%w: %s: result: want "=", "!=", "<" or ">", got %q`, errInvalidArgument, path, c.Result)
	}
	cmp := &etcdserverpb.Compare{Key: key, RangeEnd: end, Result: result}

	operands := 0
	for _, given := range []bool{c.Value != nil, c.Version != nil, c.CreateRevision != nil, c.ModRevision != nil, c.Lease != nil} {
		if given {
			operands++
		}
	}
	var field string
	switch c.Target {
	case "value":
		field = "value"
		if c.Value != nil {
			v, err := d.codec.decode(path+".value", *c.Value)
			if err != nil {
				return nil, err
			}
			cmp.Target, cmp.TargetUnion = etcdserverpb.Compare_VALUE, &etcdserverpb.Compare_Value{Value: v}
		}
	case "version":
		field = "version"
		if c.Version != nil {
			cmp.Target, cmp.TargetUnion = etcdserverpb.Compare_VERSION, &etcdserverpb.Compare_Version{Version: *c.Version}
		}
	case "create":
		field = "create_revision"
		if c.CreateRevision != nil {
			cmp.Target, cmp.TargetUnion = etcdserverpb.Compare_CREATE, &etcdserverpb.Compare_CreateRevision{CreateRevision: *c.CreateRevision}
		}
	case "mod":
		field = "mod_revision"
		if c.ModRevision != nil {
			cmp.Target, cmp.TargetUnion = etcdserverpb.Compare_MOD, &etcdserverpb.Compare_ModRevision{ModRevision: *c.ModRevision}
		}
	case "lease":
		field = "lease"
		if c.Lease != nil {
			cmp.Target, cmp.TargetUnion = etcdserverpb.Compare_LEASE, &etcdserverpb.Compare_Lease{Lease: int64(*c.Lease)}
		}
	default:
		return nil, fmt.Errorf(`%w: %s: target: want "value", "version", "create", "mod" or "lease", got %q`, errInvalidArgument, path, c.Target)
	}
	if cmp.TargetUnion == nil || operands != 1 {
		return nil, fmt.Errorf("%w: %s: target %q takes its operand in %q, and no other operand field", errInvalidArgument, path, c.Target, field)
	}
	return cmp, nil
}

func (d txnDecoder) ops(path string, ops []opJSON) ([]*etcdserverpb.RequestOp, error) {
	var out []*etcdserverpb.RequestOp
	for i, op := range ops {
		o, err := d.op(fmt.Sprintf("%s[%d]", path, i), op)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func (d txnDecoder) op(path string, op opJSON) (*etcdserverpb.RequestOp, error) {
	kinds := 0
	for _, given := range []bool{op.Put != nil, op.Get != nil, op.Delete != nil, op.Txn != nil} {
		if given {
			kinds++
		}
	}
	if kinds != 1 {
		return nil, fmt.Errorf(`%w: %s: want exactly one of "put", "get", "delete", "txn"`, errInvalidArgument, path)
	}
	switch {
	case op.Put != nil:
		r, err := d.put(path+".put", op.Put)
		if err != nil {
			return nil, err
		}
		return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestPut{RequestPut: r}}, nil
	case op.Get != nil:
		r, err := d.get(path+".get", op.Get)
		if err != nil {
			return nil, err
		}
		return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestRange{RequestRange: r}}, nil
	case op.Delete != nil:
		r, err := d.delete(path+".delete", op.Delete)
		if err != nil {
			return nil, err
		}
		return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}, nil
	default:
		r, err := d.txn(path+".txn", *op.Txn)
		if err != nil {
			return nil, err
		}
		return &etcdserverpb.RequestOp{Request: &etcdserverpb.RequestOp_RequestTxn{RequestTxn: r}}, nil
	}
}

func (d txnDecoder) put(path string, p *putOpJSON) (*etcdserverpb.PutRequest, error) {
	key, err := d.key(path, p.Key)
	if err != nil {
		return nil, err
	}
	value, err := d.codec.decode(path+".value", p.Value)
	if err != nil {
		return nil, err
	}
	return &etcdserverpb.PutRequest{
		Key:         key,
		Value:       value,
		Lease:       int64(p.Lease),
		PrevKv:      p.PrevKv,
		IgnoreValue: p.IgnoreValue,
		IgnoreLease: p.IgnoreLease,
	}, nil
}

func (d txnDecoder) get(path string, g *getOpJSON) (*etcdserverpb.RangeRequest, error) {
	if g.Limit < 0 || g.Revision < 0 {
		return nil, fmt.Errorf("%w: %s: limit and revision must not be negative", errInvalidArgument, path)
	}
	key, err := d.key(path, g.Key)
	if err != nil {
		return nil, err
	}
	end, err := rangeEnd(d.codec, path, key, g.RangeEnd, g.Prefix)
	if err != nil {
		return nil, err
	}
	return &etcdserverpb.RangeRequest{
		Key:       key,
		RangeEnd:  end,
		Limit:     g.Limit,
		Revision:  g.Revision,
		KeysOnly:  g.KeysOnly,
		CountOnly: g.CountOnly,
	}, nil
}

func (d txnDecoder) delete(path string, del *deleteOpJSON) (*etcdserverpb.DeleteRangeRequest, error) {
	key, err := d.key(path, del.Key)
	if err != nil {
		return nil, err
	}
	end, err := rangeEnd(d.codec, path, key, del.RangeEnd, del.Prefix)
	if err != nil {
		return nil, err
	}
	return &etcdserverpb.DeleteRangeRequest{Key: key, RangeEnd: end, PrevKv: del.PrevKv}, nil
}

// txnResponse is the body of POST /v1/txn. Error is set only for a
// require_success txn whose compare failed.
type txnResponse struct {
	Error     *errorDetail `json:"error,omitempty"`
	Succeeded bool         `json:"succeeded"`
	Revision  int64        `json:"revision"`
	Responses []opResponse `json:"responses"`
}

// nestedTxnResult is the answer to a txn op.
type nestedTxnResult struct {
	Succeeded bool         `json:"succeeded"`
	Responses []opResponse `json:"responses"`
}

// opResponse is the answer to one op of the branch that ran, in op order;
// the one field set names the op's kind.
type opResponse struct {
	Get    *rangeResult     `json:"get,omitempty"`
	Put    *putResult       `json:"put,omitempty"`
	Delete *deleteResult    `json:"delete,omitempty"`
	Txn    *nestedTxnResult `json:"txn,omitempty"`
}

func (c codec) opResponses(rs []*etcdserverpb.ResponseOp) []opResponse {
	out := make([]opResponse, 0, len(rs))
	for _, r := range rs {
		var o opResponse
		switch r := r.Response.(type) {
		case *etcdserverpb.ResponseOp_ResponseRange:
			res := c.rangeResult(r.ResponseRange)
			o.Get = &res
		case *etcdserverpb.ResponseOp_ResponsePut:
			res := c.putResult(r.ResponsePut)
			o.Put = &res
		case *etcdserverpb.ResponseOp_ResponseDeleteRange:
			res := c.deleteResult(r.ResponseDeleteRange)
			o.Delete = &res
		case *etcdserverpb.ResponseOp_ResponseTxn:
			o.Txn = &nestedTxnResult{
				Succeeded: r.ResponseTxn.GetSucceeded(),
				Responses: c.opResponses(r.ResponseTxn.GetResponses()),
			}
		}
		out = append(out, o)
	}
	return out
}

// txn serves POST /v1/txn.
func (h *handler) txn(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r, "encoding")
	c := q.codec()
	if q.err != nil {
		return q.err
	}
	var body txnRequest
	if err := h.decodeBody(w, r, &body); err != nil {
		return err
	}
	req, err := txnDecoder{codec: c, maxOps: h.maxTxnOps}.txn("txn", body.txnJSON)
	if err != nil {
		return err
	}

	resp, err := h.backend.Txn(r.Context(), req)
	if err != nil {
		return err
	}
	out := txnResponse{
		Succeeded: resp.Succeeded,
		Revision:  resp.GetHeader().GetRevision(),
		Responses: c.opResponses(resp.Responses),
	}
	status := http.StatusOK
	if body.RequireSuccess && !resp.Succeeded {
		var detail errorDetail
		status, detail = h.classify(r, errCompareFailed)
		out.Error = &detail
	}
	writeJSON(w, status, out)
	return nil
}
