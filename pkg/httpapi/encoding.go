package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// codec carries keys and values between bytes and JSON strings for one
// request. With ?encoding=base64 every key, range end and value of the
// request and of its response is base64, which is the only way to send
// arbitrary bytes inside JSON. Without it keys and values are UTF-8 text;
// a stored key or value that is not valid UTF-8 is then sent base64-encoded
// anyway, marked by "encoding":"base64" on its object, rather than mangled
// or refused.
type codec struct {
	base64 bool
}

// base64Encodings are the forms accepted on input, tried in order. Besides
// standard base64, URL-safe and unpadded forms let a key sit in a URL path
// without escaping. A string valid in two of them decodes the same in both.
var base64Encodings = []*base64.Encoding{
	base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding,
}

// decode returns the bytes a request string stands for; field names it in
// the error.
func (c codec) decode(field, s string) ([]byte, error) {
	if !c.base64 {
		return []byte(s), nil
	}
	for _, enc := range base64Encodings {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: not base64", errInvalidArgument, field)
}

// keyValue is a stored key as the API shows it. Value is "" when the
// request asked for keys only. Encoding is "base64" when Key and Value are
// base64 (always under ?encoding=base64, otherwise when either is not
// valid UTF-8) and absent when they are plain text.
type keyValue struct {
	Key            string  `json:"key"`
	Value          string  `json:"value"`
	Encoding       string  `json:"encoding,omitempty"`
	CreateRevision int64   `json:"create_revision"`
	ModRevision    int64   `json:"mod_revision"`
	Version        int64   `json:"version"`
	Lease          leaseID `json:"lease,omitempty"`
}

// keyValue renders kv for a response.
func (c codec) keyValue(kv *mvccpb.KeyValue) keyValue {
	out := keyValue{
		Key:            string(kv.Key),
		Value:          string(kv.Value),
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Lease:          leaseID(kv.Lease),
	}
	if c.base64 || !utf8.Valid(kv.Key) || !utf8.Valid(kv.Value) {
		out.Key = base64.StdEncoding.EncodeToString(kv.Key)
		out.Value = base64.StdEncoding.EncodeToString(kv.Value)
		out.Encoding = "base64"
	}
	return out
}

// keyValues renders kvs; the result is never nil, so JSON shows [] and not
// null.
func (c codec) keyValues(kvs []*mvccpb.KeyValue) []keyValue {
	out := make([]keyValue, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, c.keyValue(kv))
	}
	return out
}

// leaseID is a lease ID in JSON. IDs are random 63-bit numbers, beyond the
// 2^53 a JSON number holds exactly in many clients, so the API writes them
// as decimal strings; it reads a string or a number.
type leaseID int64

// MarshalJSON writes the ID as a decimal string.
func (l leaseID) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, strconv.FormatInt(int64(l), 10)), nil
}

// UnmarshalJSON reads a non-negative decimal ID, quoted or not. null leaves
// the ID unchanged, as encoding/json does for other types.
func (l *leaseID) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("lease: want a non-negative decimal ID, got %s", b)
	}
	*l = leaseID(n)
	return nil
}

// writeJSON answers with status and v as the JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Response types are this package's own structs; failing to
		// marshal one is a bug, which recoverPanics logs and answers 500.
		panic(fmt.Sprintf("httpapi: marshal %T: %v", v, err))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A failed write means the client is gone; there is no one to tell.
	_, _ = w.Write(append(b, '\n'))
}

// readBody reads the whole request body, at most h.maxBody bytes.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		return nil, bodyError(err)
	}
	return b, nil
}

// decodeBody reads the request body as exactly one JSON value into v,
// refusing unknown fields and trailing data.
func (h *handler) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, h.maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	switch _, err := dec.Token(); {
	case err == io.EOF:
		return nil
	case err != nil:
		return bodyError(err)
	default:
		return fmt.Errorf("%w: data after the JSON value", errMalformedBody)
	}
}

// bodyError classifies an error met while reading or decoding a body.
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: limit is %d bytes", errBodyTooLarge, tooLarge.Limit)
	case err == io.EOF:
		return fmt.Errorf("%w: empty body", errMalformedBody)
	default:
		return fmt.Errorf("%w: %v", errMalformedBody, err)
	}
}
