package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
	"unicode/utf16"
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

// keys renders a list of keys and the encoding to mark it with: all of
// them base64 under ?encoding=base64 or when any is not valid UTF-8, so
// that one marker describes the whole list.
func (c codec) keys(keys [][]byte) ([]string, string) {
	encode := c.base64
	for _, k := range keys {
		encode = encode || !utf8.Valid(k)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if encode {
			out = append(out, base64.StdEncoding.EncodeToString(k))
		} else {
			out = append(out, string(k))
		}
	}
	if encode && len(keys) > 0 {
		return out, "base64"
	}
	return out, ""
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

// writeJSON answers with status and v as the JSON body, giving a client
// that does not read it jsonWriteTimeout.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Response types are this package's own structs; failing to
		// marshal one is a bug, which recoverPanics logs and answers 500.
		panic(fmt.Sprintf("httpapi: marshal %T: %v", v, err))
	}
	// Not every ResponseWriter has deadlines (httptest's has none).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(jsonWriteTimeout))
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A failed write means the client is gone; there is no one to tell.
	_, _ = w.Write(append(b, '\n'))
}

// readBody reads the whole request body, at most h.maxBody bytes within
// h.bodyTimeout. A client that stalls mid-body gets a 408 and its
// connection is closed, since the rest of its body may never come.
func (h *handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(h.bodyTimeout))
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		w.Header().Set("Connection", "close")
		return nil, bodyError(err)
	}
	// net/http lifts the deadline itself once the body is read to its end.
	return b, nil
}

// decodeBody reads the request body as exactly one JSON object into v,
// refusing unknown fields, trailing data, and text that JSON cannot carry
// byte for byte (see checkJSONText).
func (h *handler) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := h.readBody(w, r)
	if err != nil {
		return err
	}
	if err := checkJSONText(body); err != nil {
		return err
	}
	if first := bytes.TrimLeft(body, " \t\r\n"); len(first) > 0 && first[0] != '{' {
		return fmt.Errorf("%w: want a JSON object", errMalformedBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
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

// checkJSONText refuses a body that encoding/json would silently alter:
// bytes that are not UTF-8, and \u escapes of UTF-16 surrogates that do not
// form a pair, both of which it replaces with U+FFFD. Storing the
// replacement instead of what the client sent would lose data; binary keys
// and values go through ?encoding=base64 instead.
func checkJSONText(body []byte) error {
	if !utf8.Valid(body) {
		return fmt.Errorf("%w: body is not valid UTF-8 (send binary keys and values base64-encoded, with ?encoding=base64)", errMalformedBody)
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 >= len(body) {
			continue
		}
		if body[i+1] != 'u' {
			i++ // an escaped character such as \\ or \"
			continue
		}
		r, ok := escapedRune(body[i:])
		switch {
		case !ok || !utf16.IsSurrogate(r):
		case r < 0xdc00: // a high surrogate needs a low one right after it
			if low, ok := escapedRune(body[i+6:]); ok && 0xdc00 <= low && low <= 0xdfff {
				i += 6
				break
			}
			fallthrough
		default:
			return fmt.Errorf("%w: unpaired UTF-16 surrogate %s at offset %d (send binary keys and values base64-encoded, with ?encoding=base64)", errMalformedBody, body[i:i+6], i)
		}
	}
	return nil
}

// escapedRune reads the \uXXXX escape at the start of b.
func escapedRune(b []byte) (rune, bool) {
	if len(b) < 6 || b[0] != '\\' || b[1] != 'u' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[2:6]), 16, 16)
	return rune(n), err == nil
}

// bodyError classifies an error met while reading or decoding a body.
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return fmt.Errorf("%w: limit is %d bytes", errBodyTooLarge, tooLarge.Limit)
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%w: body not received within the time allowed", errBodyTimeout)
	case err == io.EOF:
		return fmt.Errorf("%w: empty body", errMalformedBody)
	default:
		return fmt.Errorf("%w: %v", errMalformedBody, err)
	}
}
