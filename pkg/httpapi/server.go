package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"
)

// Timeouts of the REST listener, so that a client that stalls cannot hold
// a connection for ever. None bounds a whole response: a watch is an open
// SSE stream.
const (
	// readHeaderTimeout bounds reading a request's line and headers.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes a kept-alive connection that sends no request.
	idleTimeout = 2 * time.Minute
	// DefaultBodyTimeout is Options.BodyTimeout when not set: time to send
	// a whole body, which at most MaxRequestBytes makes generous.
	DefaultBodyTimeout = 30 * time.Second
	// jsonWriteTimeout bounds writing a JSON answer to a client that does
	// not read it.
	jsonWriteTimeout = 30 * time.Second
)

// NewServer returns an http.Server for h, a handler made by New, with the
// header and idle timeouts of the REST API. Serve it on Listener(l).
func NewServer(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: readHeaderTimeout, IdleTimeout: idleTimeout}
}

// Listener wraps l so that the errors net/http answers by itself, before
// any handler runs, come as the API's JSON error body with code
// "malformed_request" instead of plain text: a request line or header it
// cannot parse, an invalid escape in the path, a bad or repeated
// Content-Length, an unsupported Transfer-Encoding.
func Listener(l net.Listener) net.Listener { return jsonErrorListener{l} }

type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return jsonErrorConn{c}, nil
}

// plainErrorHeaders is what net/http writes right after the status line of
// an error it answers itself, in the same write as the status line and the
// body. Responses from handlers never look like this: their headers are
// sorted (Connection before Content-Type) and include Date.
const plainErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// jsonErrorConn rewrites net/http's own error responses; every other write
// passes through unchanged.
type jsonErrorConn struct{ net.Conn }

func (c jsonErrorConn) Write(p []byte) (int, error) {
	if !bytes.HasPrefix(p, []byte("HTTP/1.1 ")) {
		return c.Conn.Write(p)
	}
	statusLine, text, ok := bytes.Cut(p, []byte(plainErrorHeaders))
	if !ok || bytes.Contains(statusLine, []byte("\r\n")) || len(statusLine) < len("HTTP/1.1 400") {
		return c.Conn.Write(p)
	}
	status, err := strconv.Atoi(string(statusLine[len("HTTP/1.1 "):len("HTTP/1.1 400")]))
	if err != nil || status < 400 {
		return c.Conn.Write(p)
	}
	body, _ := json.Marshal(errorResponse{Error: errorDetail{Code: "malformed_request", Message: string(text)}})
	body = append(body, '\n')
	resp := fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
	if _, err := c.Conn.Write(resp); err != nil {
		return 0, err
	}
	return len(p), nil
}
