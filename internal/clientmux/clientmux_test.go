package clientmux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// served is a loopback port split between a gRPC health server and an
// HTTP server answering "hello <path>".
type served struct {
	addr     string
	closeAll func() error
	grpcDone chan error
	httpDone chan error
}

func serve(t *testing.T) *served {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcL, httpL, closeAll := Split(l, zaptest.NewLogger(t))
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.URL.Path)
	})
	s := &served{addr: l.Addr().String(), closeAll: closeAll, grpcDone: make(chan error, 1), httpDone: make(chan error, 1)}
	hsrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { s.grpcDone <- gs.Serve(grpcL) }()
	go func() { s.httpDone <- hsrv.Serve(httpL) }()
	t.Cleanup(func() {
		gs.Stop()
		_ = hsrv.Close()
		_ = closeAll()
	})
	return s
}

// TestGRPCAndHTTPShareThePort runs gRPC and HTTP/1.1 clients at the same
// time against one port.
func TestGRPCAndHTTPShareThePort(t *testing.T) {
	s := serve(t)
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	httpClient := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer httpClient.CloseIdleConnections()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const workers, rounds = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, 2*workers*rounds)
	for w := range workers {
		wg.Go(func() {
			for range rounds {
				resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					errs <- fmt.Errorf("gRPC health check: %w", err)
					return
				}
				if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					errs <- fmt.Errorf("gRPC health status = %v, want SERVING", resp.GetStatus())
				}
			}
		})
		wg.Go(func() {
			for i := range rounds {
				path := fmt.Sprintf("/w%d/r%d", w, i)
				resp, err := httpClient.Get("http://" + s.addr + path)
				if err != nil {
					errs <- fmt.Errorf("HTTP GET: %w", err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					errs <- fmt.Errorf("HTTP body: %w", err)
					return
				}
				if resp.ProtoMajor != 1 || string(body) != "hello "+path {
					errs <- fmt.Errorf("HTTP GET %s = %s %q, want HTTP/1.x %q", path, resp.Proto, body, "hello "+path)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestShortHTTP10Request checks that a request shorter than the HTTP/2
// preface is routed as soon as it differs from it, not after the sniff
// timeout.
func TestShortHTTP10Request(t *testing.T) {
	s := serve(t)
	req := "GET / HTTP/1.0\r\n\r\n"
	if len(req) >= len(http2Preface) {
		t.Fatalf("request is %d bytes, must be shorter than the %d-byte preface", len(req), len(http2Preface))
	}
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	// Well under sniffTimeout: an answer that waited for it fails here.
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout / 3))
	resp, err := io.ReadAll(c) // HTTP/1.0: the server closes when done
	if err != nil {
		t.Fatalf("reading the answer after %v: %v (got %q)", time.Since(start), err, resp)
	}
	if !strings.HasPrefix(string(resp), "HTTP/1.0 200 OK\r\n") || !strings.HasSuffix(string(resp), "hello /") {
		t.Errorf("answer = %q, want an HTTP/1.0 200 with body %q", resp, "hello /")
	}
}

// TestSilentConnectionIsDropped checks that a connection which ends
// without sending a byte reaches neither server and is closed.
func TestSilentConnectionIsDropped(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcL, httpL, closeAll := Split(l, zaptest.NewLogger(t))
	defer closeAll()
	accepted := make(chan string, 4)
	var held []net.Conn
	var mu sync.Mutex
	for name, side := range map[string]net.Listener{"gRPC": grpcL, "HTTP": httpL} {
		go func() {
			for {
				c, err := side.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c) // kept open: a delivered conn never sees EOF
				mu.Unlock()
				accepted <- name
			}
		}()
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The splitter closes a conn it drops, and only then: a conn handed to
	// either side stays open, so this read would time out.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("Read on the silent conn = %d, %v; want 0, EOF (closed by the splitter)", n, err)
	}
	select {
	case side := <-accepted:
		t.Fatalf("silent connection was handed to the %s listener", side)
	default:
	}

	// The splitter still routes the next connection.
	c2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := io.WriteString(c2, "GET / HTTP/1.1\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case side := <-accepted:
		if side != "HTTP" {
			t.Errorf("HTTP/1 conn handed to the %s listener", side)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("next connection was not routed")
	}
}

// TestPeekedBytesAreReplayed checks that the server side reads the whole
// stream, sniffed bytes included, for each route.
func TestPeekedBytesAreReplayed(t *testing.T) {
	tests := []struct {
		name  string
		input string
		side  string
	}{
		{"HTTP/2 preface and more", string(http2Preface) + "frames", "gRPC"},
		{"short HTTP/1", "GET / HTTP/1.0\r\n\r\n", "HTTP"},
		{"long HTTP/1", "POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "HTTP"},
		{"preface prefix then divergence", "PRI * HTTP/1.1\r\n\r\n", "HTTP"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			grpcL, httpL, closeAll := Split(l, zaptest.NewLogger(t))
			defer closeAll()
			type got struct {
				side string
				data string
				err  error
			}
			results := make(chan got, 2)
			for name, side := range map[string]net.Listener{"gRPC": grpcL, "HTTP": httpL} {
				go func() {
					c, err := side.Accept()
					if err != nil {
						return
					}
					defer c.Close()
					_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
					data, err := io.ReadAll(c)
					results <- got{name, string(data), err}
				}()
			}
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, tt.input); err != nil {
				t.Fatal(err)
			}
			_ = c.(*net.TCPConn).CloseWrite()
			select {
			case r := <-results:
				if r.side != tt.side || r.data != tt.input || r.err != nil {
					t.Errorf("%s side read %q, %v; want %s side to read %q", r.side, r.data, r.err, tt.side, tt.input)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("connection was not routed")
			}
		})
	}
}

// TestCloseAllStopsBoth checks that closeAll ends both servers' Serve and
// closes the real listener.
func TestCloseAllStopsBoth(t *testing.T) {
	s := serve(t)
	// One request first, so both servers are known to be running.
	resp, err := http.Get("http://" + s.addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	if err := s.closeAll(); err != nil {
		t.Fatalf("closeAll() = %v", err)
	}
	for _, side := range []struct {
		name string
		done chan error
	}{{"gRPC", s.grpcDone}, {"HTTP", s.httpDone}} {
		select {
		case <-side.done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s Serve still running after closeAll", side.name)
		}
	}
	if c, err := net.DialTimeout("tcp", s.addr, time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections after closeAll")
	}
}

// TestClosingOneSideKeepsTheOther checks that closing the gRPC half (as
// grpc.Server.Stop does) leaves HTTP serving, and that gRPC connections are
// then refused rather than left hanging.
func TestClosingOneSideKeepsTheOther(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpcL, httpL, closeAll := Split(l, zaptest.NewLogger(t))
	defer closeAll()
	hsrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go hsrv.Serve(httpL)
	defer hsrv.Close()

	if err := grpcL.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := grpcL.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on the closed gRPC side = %v, want net.ErrClosed", err)
	}

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(http2Preface); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("gRPC conn after its side closed: Read = %v, want EOF", err)
	}

	hc, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer hc.Close()
	_ = hc.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(hc, "GET / HTTP/1.0\r\n\r\n")
	line, err := bufio.NewReader(hc).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.0 200") {
		t.Errorf("HTTP after closing the gRPC side: %q, %v; want a 200", line, err)
	}
}
