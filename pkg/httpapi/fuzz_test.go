package httpapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The fuzz targets drive the real handler over the fake backend with
// arbitrary requests. Every target checks that the answer is a 2xx, or a
// 4xx carrying the API's JSON error: input alone never earns a 5xx (see
// checkAnswer). The write targets also check that what a 2xx stored is,
// byte for byte, what the request meant, reading it back through the
// handler (see readBack).

// FuzzTxnBody posts arbitrary bytes to /v1/txn, with and without
// ?encoding=base64. Besides the shape of the answer it checks that a body
// holding a string that stands for no bytes (invalid UTF-8, a lone UTF-16
// surrogate escape) or the body null is refused with a 400, and that after
// a txn that ran (200, or 412 with require_success) every key a put of the
// branches that ran wrote reads back as exactly the bytes of its JSON
// string, or of its base64 text decoded, unless a later delete of the txn
// removed it.
func FuzzTxnBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, useBase64 bool) {
		h, _, _ := newFuzzHandler(t)
		target := "/v1/txn"
		if useBase64 {
			target += "?encoding=base64"
		}
		rec := serveFuzz(h, http.MethodPost, target, body)
		checkAnswer(t, rec)
		if hasUnrepresentableString(body) && rec.Code != http.StatusBadRequest {
			t.Fatalf("body with a string that is not valid UTF-8 answered %d, want 400; body %q, answer %s", rec.Code, body, rec.Body)
		}
		if string(bytes.TrimSpace(body)) == "null" && rec.Code != http.StatusBadRequest {
			t.Fatalf("body null answered %d, want 400; answer %s", rec.Code, rec.Body)
		}
		if rec.Code != http.StatusOK && rec.Code != http.StatusPreconditionFailed {
			return
		}
		var req fuzzTxn
		if err := json.Unmarshal(body, &req); err != nil {
			t.Fatalf("body accepted (%d) but does not decode as a txn: %v; body %q", rec.Code, err, body)
		}
		var resp fuzzTxnResult
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("txn answer does not decode: %v; answer %s", err, rec.Body)
		}
		w := txnWrites{t: t, base64: useBase64, values: map[string][]byte{}, deleted: map[string]bool{}}
		w.branch(&req, &resp)
		for _, k := range w.order {
			if w.deleted[k] {
				if got, ok := readBack(t, h, []byte(k)); ok {
					t.Fatalf("key %q put then deleted by the txn reads back as %q; body %q", k, got, body)
				}
				continue
			}
			want := w.values[k]
			got, ok := readBack(t, h, []byte(k))
			if !ok || !bytes.Equal(got, want) {
				t.Fatalf("key %q put by the txn reads back as %q (found %v), want %q; body %q", k, got, ok, want, body)
			}
		}
	})
}

// FuzzLeaseBody posts arbitrary bytes to /v1/leases. Besides the shape of
// the answer it checks that the bodies {} and null, which grant nothing in
// particular, are refused with a 400, and that a granted lease answers with
// the ID the lease service granted, as a decimal string.
func FuzzLeaseBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte) {
		h, _, leases := newFuzzHandler(t)
		rec := serveFuzz(h, http.MethodPost, "/v1/leases", body)
		checkAnswer(t, rec)
		var v any
		if json.Unmarshal(body, &v) == nil {
			if m, isObject := v.(map[string]any); v == nil || isObject && len(m) == 0 {
				if rec.Code != http.StatusBadRequest {
					t.Fatalf("lease body %q answered %d, want 400; answer %s", body, rec.Code, rec.Body)
				}
			}
		}
		if rec.Code != http.StatusOK {
			return
		}
		if len(leases.granted) != 1 {
			t.Fatalf("lease body %q answered 200 after %d grants", body, len(leases.granted))
		}
		var out struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("grant answer does not decode: %v; answer %s", err, rec.Body)
		}
		if want := leases.granted[0]; out.ID != want {
			t.Fatalf("grant answered ID %q, lease service granted %q", out.ID, want)
		}
	})
}

// FuzzKVPathAndQuery sends GET, PUT or DELETE to /v1/kv/ followed by an
// arbitrary escaped path and an arbitrary raw query, as the request line a
// client sends (requests net/http would refuse to parse are skipped).
// Besides the shape of the answer it checks that a 2xx PUT stored, under
// the path unescaped (then base64-decoded under ?encoding=base64), exactly
// the body (base64-decoded, surrounding space trimmed, under
// ?encoding=base64), or kept the old value under ?ignore_value; that a
// 2xx DELETE removed the key; and that a 2xx GET of one key answered with
// that key.
func FuzzKVPathAndQuery(f *testing.F) {
	f.Fuzz(func(t *testing.T, method byte, path, query string, body []byte) {
		if strings.ContainsAny(path, "?#") {
			t.Skip("not a path")
		}
		target := "/v1/kv/" + path
		if query != "" {
			target += "?" + query
		}
		verb := []string{http.MethodGet, http.MethodPut, http.MethodDelete}[int(method)%3]
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(verb + " " + target + " HTTP/1.1\r\nHost: cairn\r\n\r\n")))
		if err != nil {
			t.Skip("net/http refuses this request line")
		}
		r.Body = http.NoBody
		if verb == http.MethodPut {
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		// The key the path names: unescaped, then base64-decoded under
		// ?encoding=base64. It exists beforehand, as do a few others, so
		// that GET and DELETE find something and PUT overwrites.
		values, queryErr := url.ParseQuery(query)
		_, useBase64 := values["encoding"]
		keyBytes, keyErr := pathKeyOf(path, useBase64)
		h, backend, _ := newFuzzHandler(t)
		for _, k := range [][]byte{[]byte("a"), []byte("a/b"), []byte("\xff\x00"), keyBytes} {
			if len(k) == 0 {
				continue
			}
			if _, err := backend.Put(context.Background(), &etcdserverpb.PutRequest{Key: k, Value: []byte("old")}); err != nil {
				t.Fatal(err)
			}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		checkAnswer(t, rec)
		if rec.Code != http.StatusOK {
			return
		}
		if queryErr != nil || keyErr != nil {
			t.Fatalf("%s %s answered 200, but its query (%v) or key (%v) is invalid", verb, target, queryErr, keyErr)
		}
		switch verb {
		case http.MethodPut:
			value := body
			if v, ok := values["ignore_value"]; ok && (v[0] == "" || isTrue(v[0])) {
				value = []byte("old") // the key's value before the PUT
			} else if useBase64 {
				var err error
				if value, err = decodeAnyBase64(string(bytes.TrimSpace(body))); err != nil {
					t.Fatalf("body %q is not base64 but PUT ?encoding=base64 answered 200", body)
				}
			}
			if got, ok := readBack(t, h, keyBytes); !ok || !bytes.Equal(got, value) {
				t.Fatalf("PUT %s: key %q reads back as %q (found %v), want %q", target, keyBytes, got, ok, value)
			}
		case http.MethodDelete:
			if got, ok := readBack(t, h, keyBytes); ok {
				t.Fatalf("DELETE %s: key %q still reads as %q", target, keyBytes, got)
			}
		case http.MethodGet:
			if _, prefix := values["prefix"]; prefix {
				return
			}
			var kv keyValue
			if err := json.Unmarshal(rec.Body.Bytes(), &kv); err != nil {
				t.Fatalf("GET answer does not decode: %v; answer %s", err, rec.Body)
			}
			got := []byte(kv.Key)
			if kv.Encoding == "base64" {
				var err error
				if got, err = base64.StdEncoding.DecodeString(kv.Key); err != nil {
					t.Fatalf("GET answered key %q marked base64: %v", kv.Key, err)
				}
			}
			if !bytes.Equal(got, keyBytes) {
				t.Fatalf("GET %s answered key %q, want %q", target, got, keyBytes)
			}
		}
	})
}

// FuzzBase64 checks codec.decode against the encodings it documents:
// under ?encoding=base64 a string decodes if standard, URL-safe, or either
// unpadded, base64 accepts it, and then to the bytes every accepting
// encoding gives; otherwise it fails with an invalid-argument error.
// Without the parameter it is the string's bytes, unchanged.
func FuzzBase64(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		if got, err := (codec{}).decode("key", s); err != nil || string(got) != s {
			t.Fatalf("plain decode(%q) = %q, %v", s, got, err)
		}
		got, err := codec{base64: true}.decode("key", s)
		accepted := false
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
			b, encErr := enc.DecodeString(s)
			if encErr != nil {
				continue
			}
			accepted = true
			if err != nil || !bytes.Equal(got, b) {
				t.Fatalf("decode(%q) = %q, %v; an accepting encoding gives %q", s, got, err, b)
			}
		}
		if !accepted && !errors.Is(err, errInvalidArgument) {
			t.Fatalf("decode(%q) = %q, %v; no encoding accepts it, want an invalid-argument error", s, got, err)
		}
	})
}

// fuzzLeases is a lease service that grants every request, with ID 7 when
// the request names none, and records the IDs it granted.
type fuzzLeases struct{ granted []string }

func (l *fuzzLeases) Grant(_ context.Context, r *etcdserverpb.LeaseGrantRequest) (*etcdserverpb.LeaseGrantResponse, error) {
	id := r.ID
	if id == 0 {
		id = 7
	}
	l.granted = append(l.granted, leaseIDString(id))
	return &etcdserverpb.LeaseGrantResponse{ID: id, TTL: r.TTL, Header: &etcdserverpb.ResponseHeader{Revision: 1}}, nil
}

func (l *fuzzLeases) Revoke(context.Context, *etcdserverpb.LeaseRevokeRequest) (*etcdserverpb.LeaseRevokeResponse, error) {
	return &etcdserverpb.LeaseRevokeResponse{}, nil
}

func (l *fuzzLeases) Renew(context.Context, int64) (int64, error) { return 5, nil }

func (l *fuzzLeases) TimeToLive(_ context.Context, r *etcdserverpb.LeaseTimeToLiveRequest) (*etcdserverpb.LeaseTimeToLiveResponse, error) {
	return &etcdserverpb.LeaseTimeToLiveResponse{ID: r.ID, TTL: 5, GrantedTTL: 5}, nil
}

func leaseIDString(id int64) string {
	b, _ := leaseID(id).MarshalJSON()
	var s string
	_ = json.Unmarshal(b, &s)
	return s
}

func newFuzzHandler(t *testing.T) (http.Handler, *fakeBackend, *fuzzLeases) {
	t.Helper()
	b, l := newFakeBackend(), &fuzzLeases{}
	return New(b, Options{Leases: l}), b, l
}

func isTrue(s string) bool {
	b, err := strconv.ParseBool(s)
	return err == nil && b
}

// pathKeyOf returns the key an escaped path after /v1/kv/ names.
func pathKeyOf(path string, useBase64 bool) ([]byte, error) {
	key, err := url.PathUnescape(path)
	if err != nil || !useBase64 {
		return []byte(key), err
	}
	return decodeAnyBase64(key)
}

func serveFuzz(h http.Handler, method, target string, body []byte) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, bytes.NewReader(body)))
	return rec
}

// checkAnswer checks that rec is a JSON 2xx, or a 4xx whose body holds the
// API's error object with a code and a message.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Fatalf("status %d with Content-Type %q; body %s", rec.Code, ct, rec.Body)
	}
	switch {
	case rec.Code >= 200 && rec.Code < 300:
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("status %d with a body that is not JSON: %q", rec.Code, rec.Body)
		}
	case rec.Code >= 400 && rec.Code < 500:
		var body struct {
			Error *errorDetail `json:"error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == nil || body.Error.Code == "" || body.Error.Message == "" {
			t.Fatalf("status %d without the JSON error object (%v): %s", rec.Code, err, rec.Body)
		}
	default:
		t.Fatalf("status %d for a request alone; body %s", rec.Code, rec.Body)
	}
}

// readBack reads key through the handler, naming it in base64 so that any
// bytes fit in the path, and returns its value and whether it exists.
func readBack(t *testing.T, h http.Handler, key []byte) ([]byte, bool) {
	t.Helper()
	rec := serveFuzz(h, http.MethodGet, "/v1/kv/"+base64.RawURLEncoding.EncodeToString(key)+"?encoding=base64", nil)
	if rec.Code == http.StatusNotFound {
		return nil, false
	}
	if rec.Code != http.StatusOK {
		t.Fatalf("reading back %q: status %d; body %s", key, rec.Code, rec.Body)
	}
	var kv keyValue
	if err := json.Unmarshal(rec.Body.Bytes(), &kv); err != nil {
		t.Fatalf("reading back %q: %v; body %s", key, err, rec.Body)
	}
	k, errK := base64.StdEncoding.DecodeString(kv.Key)
	v, errV := base64.StdEncoding.DecodeString(kv.Value)
	if errK != nil || errV != nil || !bytes.Equal(k, key) {
		t.Fatalf("reading back %q: answer %s", key, rec.Body)
	}
	return v, true
}

// decodeAnyBase64 decodes s in the first of the four base64 forms the API
// accepts that accepts it (FuzzBase64 checks they agree).
func decodeAnyBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

// jsonString is a JSON string field kept as the literal the body holds, so
// that its exact bytes can be worked out independently of encoding/json
// (which turns what it cannot represent into U+FFFD). Like a string field
// it is left unchanged by null.
type jsonString struct{ lit []byte }

func (s *jsonString) UnmarshalJSON(b []byte) error {
	if string(b) != "null" {
		s.lit = append([]byte(nil), b...)
	}
	return nil
}

// The body of POST /v1/txn as far as writes go, field for field like
// txnJSON, so that encoding/json fills both alike (duplicate and
// differently cased fields included).
type (
	fuzzTxn struct {
		Success []fuzzOp `json:"success"`
		Failure []fuzzOp `json:"failure"`
	}
	fuzzOp struct {
		Put    *fuzzPut    `json:"put"`
		Get    *getOpJSON  `json:"get"`
		Delete *fuzzDelete `json:"delete"`
		Txn    *fuzzTxn    `json:"txn"`
	}
	fuzzPut struct {
		Key         jsonString `json:"key"`
		Value       jsonString `json:"value"`
		IgnoreValue bool       `json:"ignore_value"`
	}
	fuzzDelete struct {
		Key      jsonString `json:"key"`
		RangeEnd jsonString `json:"range_end"`
		Prefix   bool       `json:"prefix"`
	}
	// fuzzTxnResult says which branch ran, in the txn and in every nested
	// txn that ran.
	fuzzTxnResult struct {
		Succeeded bool `json:"succeeded"`
		Responses []struct {
			Txn *fuzzTxnResult `json:"txn"`
		} `json:"responses"`
	}
)

// txnWrites replays the writes of the branches that ran, in order, over
// the keys the txn puts: values holds what each key should read back,
// deleted the keys a later delete removed.
type txnWrites struct {
	t       *testing.T
	base64  bool
	order   []string
	values  map[string][]byte
	deleted map[string]bool
}

func (w *txnWrites) bytesOf(field string, s jsonString) []byte {
	if s.lit == nil {
		return []byte{}
	}
	b, ok := jsonStringBytes(s.lit)
	if !ok {
		w.t.Fatalf("%s %s is not valid UTF-8, yet the txn was accepted", field, s.lit)
	}
	if !w.base64 {
		return b
	}
	d, err := decodeAnyBase64(string(b))
	if err != nil {
		w.t.Fatalf("%s %s is not base64, yet the txn was accepted", field, s.lit)
	}
	return d
}

func (w *txnWrites) branch(req *fuzzTxn, resp *fuzzTxnResult) {
	ops := req.Success
	if !resp.Succeeded {
		ops = req.Failure
	}
	if len(resp.Responses) != len(ops) {
		w.t.Fatalf("%d responses for a branch of %d ops", len(resp.Responses), len(ops))
	}
	for i, op := range ops {
		switch {
		case op.Put != nil:
			k := string(w.bytesOf("put key", op.Put.Key))
			if _, seen := w.values[k]; !seen && !w.deleted[k] {
				w.order = append(w.order, k)
			}
			if op.Put.IgnoreValue {
				if _, ok := w.values[k]; !ok {
					w.t.Fatalf("ignore_value put of %q, which the txn did not write before, was accepted", k)
				}
			} else {
				w.values[k] = w.bytesOf("put value", op.Put.Value)
			}
			delete(w.deleted, k)
		case op.Delete != nil:
			from := w.bytesOf("delete key", op.Delete.Key)
			end := w.bytesOf("delete range_end", op.Delete.RangeEnd)
			if op.Delete.Prefix {
				end = refPrefixEnd(from)
			}
			for k := range w.values {
				if inRange([]byte(k), from, end) {
					delete(w.values, k)
					w.deleted[k] = true
				}
			}
		case op.Txn != nil:
			if resp.Responses[i].Txn == nil {
				w.t.Fatalf("op %d is a txn but its response is not", i)
			}
			w.branch(op.Txn, resp.Responses[i].Txn)
		}
	}
}

// inRange reports whether k is selected by a delete of from and end: from
// alone when end is empty, every key from from on when end is "\x00", else
// [from, end).
func inRange(k, from, end []byte) bool {
	switch {
	case len(end) == 0:
		return bytes.Equal(k, from)
	case bytes.Equal(end, []byte{0}):
		return bytes.Compare(k, from) >= 0
	default:
		return bytes.Compare(k, from) >= 0 && bytes.Compare(k, end) < 0
	}
}

// refPrefixEnd is the smallest key above every key starting with p, or
// "\x00" (every key) when there is none.
func refPrefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for len(end) > 0 && end[len(end)-1] == 0xff {
		end = end[:len(end)-1]
	}
	if len(end) == 0 {
		return []byte{0}
	}
	end[len(end)-1]++
	return end
}

// hasUnrepresentableString reports whether body is valid JSON with a string
// (member names included) that stands for no byte sequence: invalid UTF-8,
// or a \u escape of a lone UTF-16 surrogate.
func hasUnrepresentableString(body []byte) bool {
	if !json.Valid(body) {
		return false
	}
	for i := 0; i < len(body); i++ {
		if body[i] != '"' {
			continue
		}
		j := i + 1
		for body[j] != '"' {
			if body[j] == '\\' {
				j++
			}
			j++
		}
		if _, ok := jsonStringBytes(body[i : j+1]); !ok {
			return true
		}
		i = j
	}
	return false
}

// jsonStringBytes returns the bytes the JSON string literal lit (quotes
// included, already known to be valid JSON) stands for, and false if it
// holds invalid UTF-8 or a \u escape of a lone surrogate.
func jsonStringBytes(lit []byte) ([]byte, bool) {
	s := lit[1 : len(lit)-1]
	out := []byte{}
	hex4 := func(h []byte) rune {
		var r rune
		for _, c := range h {
			r <<= 4
			switch {
			case c >= '0' && c <= '9':
				r |= rune(c - '0')
			case c >= 'a' && c <= 'f':
				r |= rune(c - 'a' + 10)
			default:
				r |= rune(c - 'A' + 10)
			}
		}
		return r
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\\':
			e := s[i+1]
			i += 2
			switch e {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(s[i : i+4])
				i += 4
				if utf16.IsSurrogate(r) {
					if r >= 0xdc00 || i+6 > len(s) || s[i] != '\\' || s[i+1] != 'u' {
						return nil, false
					}
					r = utf16.DecodeRune(r, hex4(s[i+2:i+6]))
					if r == utf8.RuneError {
						return nil, false
					}
					i += 6
				}
				out = utf8.AppendRune(out, r)
			default: // '"', '\\', '/'
				out = append(out, e)
			}
		case c < utf8.RuneSelf:
			out = append(out, c)
			i++
		default:
			r, n := utf8.DecodeRune(s[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, false
			}
			out = append(out, s[i:i+n]...)
			i += n
		}
	}
	return out, true
}
