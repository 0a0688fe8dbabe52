// Package clientmux serves etcd's gRPC API and plain HTTP (health, version,
// metrics, the JSON gateway, debug pages) on the same client port, as etcd
// does. A connection that opens with the HTTP/2 client preface goes to the
// gRPC server's native transport; anything else is HTTP/1 for net/http.
//
// Sniffing the preface (instead of serving gRPC through net/http's
// ServeHTTP bridge) keeps gRPC on its fast path.
package clientmux

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"sync"
	"time"

	"go.uber.org/zap"
)

// http2Preface is what every HTTP/2 client (and so every gRPC client on an
// insecure connection) sends first.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// sniffTimeout bounds how long a silent connection may hold its accept
// goroutine before it is dropped.
const sniffTimeout = 10 * time.Second

// Split accepts connections on l and hands each to one of the two returned
// listeners: grpcL for HTTP/2, httpL for the rest. Closing either returned
// listener does nothing to l; call Close on the returned closer to stop.
func Split(l net.Listener, lg *zap.Logger) (grpcL, httpL net.Listener, closeAll func() error) {
	g := newChanListener(l.Addr())
	h := newChanListener(l.Addr())
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				g.shut()
				h.shut()
				return
			}
			go route(c, g, h, lg)
		}
	}()
	return g, h, func() error {
		g.shut()
		h.shut()
		return l.Close()
	}
}

func route(c net.Conn, g, h *chanListener, lg *zap.Logger) {
	br := bufio.NewReaderSize(c, len(http2Preface))
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	isGRPC, err := sniff(br)
	// Clear the deadline before handing over: the server sets its own.
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		lg.Debug("dropping client connection before first bytes", zap.Error(err))
		c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: br}
	if isGRPC {
		g.deliver(pc)
	} else {
		h.deliver(pc)
	}
}

// sniff reports whether the connection opens with the HTTP/2 preface. It
// compares bytes as they arrive, so a short HTTP/1 request that differs
// early is routed without waiting for a full preface's worth of bytes. An
// error means the peer sent nothing usable.
func sniff(br *bufio.Reader) (bool, error) {
	for n := 1; n <= len(http2Preface); {
		head, err := br.Peek(n)
		if err != nil {
			if len(head) == 0 {
				return false, err
			}
			return false, nil
		}
		if !bytes.Equal(head, http2Preface[:n]) {
			return false, nil
		}
		n = max(n+1, min(br.Buffered(), len(http2Preface)))
	}
	return true, nil
}

// peekedConn replays the sniffed bytes before reading from the socket.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a net.Listener fed by the splitter.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *chanListener) shut() { l.once.Do(func() { close(l.done) }) }

// Accept implements net.Listener.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener; it stops this side only.
func (l *chanListener) Close() error {
	l.shut()
	return nil
}

// Addr implements net.Listener.
func (l *chanListener) Addr() net.Addr { return l.addr }
