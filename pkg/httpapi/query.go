package httpapi

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/cairn-kv/cairn/internal/mvcc"
	"github.com/gorilla/mux"
)

// query reads a request's URL parameters strictly: an unknown or repeated
// parameter, or a value of the wrong form, is a 400 rather than silently
// ignored, so that a typo such as ?prefx=true cannot turn a range into a
// single-key read. Parsing records the first error in err; handlers read
// every parameter they need and then check err once.
type query struct {
	values url.Values
	err    error
}

// parseQuery parses r's query, accepting only the allowed parameter names.
func parseQuery(r *http.Request, allowed ...string) *query {
	values, err := url.ParseQuery(r.URL.RawQuery)
	q := &query{values: values}
	if err != nil {
		q.fail("query: %v", err)
		return q
	}
	for _, name := range slices.Sorted(maps.Keys(values)) {
		switch {
		case !slices.Contains(allowed, name):
			q.fail("unknown query parameter %q", name)
		case len(values[name]) > 1:
			q.fail("query parameter %q given more than once", name)
		}
	}
	return q
}

// onlyEncoding checks the query of a route that takes no parameter of its
// own: only ?encoding, which every route accepts so that a client may set
// it on all its requests.
func onlyEncoding(r *http.Request) error {
	q := parseQuery(r, "encoding")
	q.codec()
	return q.err
}

// fail records an invalid-argument error unless one is already recorded.
func (q *query) fail(format string, args ...any) {
	if q.err == nil {
		q.err = fmt.Errorf("%w: "+format, append([]any{errInvalidArgument}, args...)...)
	}
}

// bool reads a flag. A bare ?name or ?name= means true; otherwise the value
// is anything strconv.ParseBool accepts.
func (q *query) bool(name string) bool {
	s, ok := q.values[name]
	if !ok || s[0] == "" {
		return ok
	}
	b, err := strconv.ParseBool(s[0])
	if err != nil {
		q.fail("%s: want true or false, got %q", name, s[0])
	}
	return b
}

// int reads a non-negative decimal integer; absent means 0.
func (q *query) int(name string) int64 {
	s, ok := q.values[name]
	if !ok {
		return 0
	}
	n, err := strconv.ParseInt(s[0], 10, 64)
	if err != nil || n < 0 {
		q.fail("%s: want a non-negative decimal integer, got %q", name, s[0])
	}
	return n
}

// codec reads ?encoding, whose only value is "base64".
func (q *query) codec() codec {
	s, ok := q.values["encoding"]
	if ok && s[0] != "base64" {
		q.fail(`encoding: want "base64", got %q`, s[0])
	}
	return codec{base64: ok}
}

// pathKey returns the key named by the request path: the URL-decoded bytes
// after /v1/kv/, base64-decoded too under ?encoding=base64.
func pathKey(r *http.Request, c codec) ([]byte, error) {
	raw, err := url.PathUnescape(mux.Vars(r)["key"])
	if err != nil {
		return nil, fmt.Errorf("%w: key: %v", errInvalidArgument, err)
	}
	key, err := c.decode("key", raw)
	if err != nil {
		return nil, err
	}
	if len(key) == 0 {
		return nil, mvcc.ErrEmptyKey
	}
	return key, nil
}
